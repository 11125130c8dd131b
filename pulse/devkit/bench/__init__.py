"""Benchmarks that print figures (`pulse bench ...`)."""

"""Tools for developing and demonstrating Pulse: the demo world, benchmarks and API doubles.

Only the CLI and the tests import it; product code never does.
"""

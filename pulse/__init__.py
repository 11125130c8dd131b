"""Pulse: a proactive customer-health and feedback engine."""
from __future__ import annotations

__version__ = "0.1.0"

"""Everything that hears the outside world and lands it through the data contract.

Installed as `pulse.listeners` (the repository keeps the folder `listeners/` at its top level).
"""
from __future__ import annotations

if __name__ != "pulse.listeners":  # imported as a top-level `listeners`, e.g. from the repository root
    raise ImportError(f"this folder is the package pulse.listeners: import pulse.listeners, not {__name__}")

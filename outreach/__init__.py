"""Everything that speaks to people: templates, the outbox, transports, notices, surveys, digests.

Installed as `pulse.outreach` (the repository keeps the folder `outreach/` at its top level).
"""
from __future__ import annotations

if __name__ != "pulse.outreach":  # imported as a top-level `outreach`, e.g. from the repository root
    raise ImportError(f"this folder is the package pulse.outreach: import pulse.outreach, not {__name__}")

"""The judgement: features, scorecard, churn model, flags, outage impact, text, themes.

Installed as `pulse.models` (the repository keeps the folder `models/` at its top level).
"""
from __future__ import annotations

if __name__ != "pulse.models":  # imported as a top-level `models`, e.g. from the repository root
    raise ImportError(f"this folder is the package pulse.models: import pulse.models, not {__name__}")

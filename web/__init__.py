"""The web app: the CSM console pages, the survey page, unsubscribe links and webhooks.

Installed as `pulse.web` (the repository keeps the folder `web/` at its top level).
"""
from __future__ import annotations

if __name__ != "pulse.web":  # imported as a top-level `web`, e.g. from the repository root
    raise ImportError(f"this folder is the package pulse.web: import pulse.web, not {__name__}")

"""Where the team's shared folder is: public data sets and published API specs.

It sits beside the repository (`<repo>/../shared`). A clone elsewhere finds it through
`PULSE_SHARED`, or at `/work/shared`, where the team's machines keep it. Tests read from it
and never copy it into the repository.
"""
from __future__ import annotations

from pathlib import Path

from pulse.core.settings import PROJECT_ROOT, get_settings


def shared_candidates() -> list[Path]:
    """The places looked at, in order."""
    env = get_settings().shared
    return [p for p in (env.expanduser() if env else None, PROJECT_ROOT.parent / "shared",
                        Path("/work/shared")) if p is not None]


def shared_path(*parts: str) -> Path:
    """The first existing `<shared>/<parts>`, else the first candidate's (for the message)."""
    for base in shared_candidates():
        path = base.joinpath(*parts)
        if path.exists():
            return path
    return shared_candidates()[0].joinpath(*parts)

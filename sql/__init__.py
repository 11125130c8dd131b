"""The warehouse: table definitions, migrations and set-based SQL.

Installed as `pulse.sql` (the repository keeps the folder `sql/` at its top level).
"""
from __future__ import annotations

if __name__ != "pulse.sql":  # imported as a top-level `sql`, e.g. from the repository root
    raise ImportError(f"this folder is the package pulse.sql: import pulse.sql, not {__name__}")

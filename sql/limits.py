"""What the warehouse's columns can hold, without importing the table definitions (the
ingest worker process validates against these and starts faster without SQLAlchemy)."""
from __future__ import annotations

#: NUMERIC(precision, scale) of money columns; listeners/validate.py checks values fit.
MONEY_PRECISION, MONEY_SCALE = 18, 4

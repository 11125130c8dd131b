"""Settings from the environment (and an optional `.env` file)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root (or the installed package's parent); relative paths resolve from the
#: current directory, as a user would expect from a command-line tool.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob Pulse reads, with its environment variable `PULSE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PULSE_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("var"), description="Outbox files, models, reports")
    database_url: str = Field(default="", description="SQLAlchemy URL of the warehouse")
    batch_rows: int = Field(default=50_000, ge=1, description="Rows per landing batch")
    max_future_skew_hours: float = Field(
        default=24.0, ge=0, description="How far in the future an event timestamp may lie"
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'pulse.db'}"

    @property
    def landing_dir(self) -> Path:
        return self.resolved_home() / "landing"

    @property
    def airflow_home(self) -> Path:
        return self.resolved_home() / "airflow"


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def get_settings(*, fresh: bool = False) -> Settings:
    """The settings of this process; `fresh=True` re-reads the environment."""
    if fresh:
        _cached.cache_clear()
    return _cached()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}

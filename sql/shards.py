"""Shards of accounts: a stable hash of the account id into N shards, the same in SQL on
SQLite and PostgreSQL and in Python.

`shard_key(account_id)` is the first 28 bits of the id's MD5 as an integer; an account is in
shard `shard_key % shards`. The hash depends only on the id, so an account stays in its shard
from run to run and machine to machine, and any N works without storing anything: changing N
only changes which shard scores an account. `shard_of(column, Shard)` is the SQL condition;
on SQLite it calls `pulse_shard_key`, a function every connection of `sql.db.make_engine`
registers; on PostgreSQL it is plain `md5`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from pulse.core.errors import InvalidArgumentError


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidArgumentError(
                f"invalid shard {self.index} of {self.count}: expected 0 <= index < count")

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(int(data["index"]), int(data["count"]))


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]


def shard_key(account_id: str | None) -> int | None:
    """The stable 28-bit key of an account id (SQLite's `pulse_shard_key`)."""
    if account_id is None:
        return None
    return int(hashlib.md5(account_id.encode("utf-8"), usedforsecurity=False)
               .hexdigest()[:7], 16)


class shard_key_sql(FunctionElement[int]):
    """`shard_key` of a column, in SQL."""

    type = Integer()
    inherit_cache = True
    name = "shard_key_sql"


@compiles(shard_key_sql, "sqlite")
def _key_sqlite(element: FunctionElement[int], compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"pulse_shard_key({compiler.process(arg, **kw)})"


@compiles(shard_key_sql, "postgresql")
def _key_pg(element: FunctionElement[int], compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return f"CAST(CAST('x' || substr(md5({compiler.process(arg, **kw)}), 1, 7) AS BIT(28)) AS INTEGER)"


def shard_of(column: Any, shard: Shard | None) -> ColumnElement[bool] | None:
    """The condition "`column` (an account id) is in `shard`"; None for no shard (all)."""
    if shard is None or shard.count == 1:
        return None
    return (shard_key_sql(column) % shard.count) == shard.index


def register_sqlite(dbapi_conn: Any) -> None:
    """Make `pulse_shard_key` known to one SQLite connection."""
    dbapi_conn.create_function("pulse_shard_key", 1, shard_key, deterministic=True)

"""The public "Customer Support on Twitter" threads (TWCS) as contract mentions with replies.

`<shared>/datasets/twcs-threads/twcs_head.csv` (see its SOURCE.md): the first 5,000 tweets of
the Kaggle set with their threads intact, 76 brands answering customers. `twcs_mentions`
maps them onto the contract's `mentions` source (a brand's tweet is `from_brand`, the tweet it
answers `in_reply_to_id`) and `land_twcs` lands them through the one landing path, so
response times can be measured on real conversations (tests/test_responses.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pulse.core.errors import InputFileError


def twcs_csv() -> Path:
    from pulse.devkit.bench.text import datasets_dir

    return datasets_dir() / "twcs-threads" / "twcs_head.csv"


def read_twcs(path: Path | None = None) -> Any:
    """The raw file as pandas reads it (only `\\n` ends a row: some tweets hold a `\\r`)."""
    import pandas as pd

    path = path or twcs_csv()
    if not path.is_file():
        raise InputFileError(f"the TWCS threads are missing: {path}")
    return pd.read_csv(path, index_col=0, lineterminator="\n",
                       dtype={"tweet_id": str, "author_id": str, "response_tweet_id": str})


def twcs_mentions(raw: Any) -> list[dict[str, Any]]:
    """Contract mention rows (dicts) of the raw TWCS frame."""
    import pandas as pd

    created = pd.to_datetime(raw["created_at"], format="%a %b %d %H:%M:%S %z %Y", utc=True)
    parent = raw["in_response_to_tweet_id"].astype("Int64").astype("string")
    frame = pd.DataFrame({
        "mention_id": raw["tweet_id"].astype(str),
        "created_at": created.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "text": raw["text"],
        "author_handle": raw["author_id"].astype(str),
        "platform": "x",
        "url": "https://x.com/" + raw["author_id"].astype(str) + "/status/"
               + raw["tweet_id"].astype(str),
        "in_reply_to_id": parent,
        "from_brand": ~raw["inbound"].astype(bool),
    })
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def land_twcs(engine: Engine, folder: Path, path: Path | None = None) -> Any:
    """Write the TWCS tweets as `mentions.jsonl` in `folder` and land it; the ingest result."""
    from pulse.listeners.landing import land_file

    rows = twcs_mentions(read_twcs(path))
    out = Path(folder) / "mentions.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    return land_file(engine, out, source="mentions")

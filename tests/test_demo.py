"""Tests of pulse.devkit.demo: determinism, the data contract, and the behaviour truth.json promises.

A small world (60 accounts x 60 days) is generated once per module. An independent validator
of the data contract must find exactly the rows that truth.json counts as malformed; every
other check runs on the valid rows only.
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from pulse.devkit import demo

END = date(2026, 3, 15)
N_ACCOUNTS, DAYS, SEED, RATE = 60, 60, 3, 0.03
START = END - timedelta(days=DAYS - 1)
WINDOW_START = datetime(START.year, START.month, START.day, tzinfo=UTC)
WINDOW_END = datetime(END.year, END.month, END.day, 23, 59, 59, tzinfo=UTC)

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
_SIGNED_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_INT = re.compile(r"^\d+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


# --------------------------------------------------------------------------------------
# An independent reading of the data contract
# --------------------------------------------------------------------------------------


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not _TS.match(value):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def valid_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def valid_tz(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def opt(value: str | None, check: Callable[[str], Any]) -> bool:
    """An optional field: absent, empty, or passing `check`."""
    return value is None or value == "" or bool(check(value))


@dataclass
class Source:
    valid: list[dict[str, Any]] = field(default_factory=list)
    invalid: int = 0
    records: int = 0


@dataclass
class World:
    out: Path
    summary: demo.DemoSummary
    truth: dict[str, Any]
    sources: dict[str, Source]

    def rows(self, source: str) -> list[dict[str, Any]]:
        return self.sources[source].valid


def read_csv(path: Path, header: tuple[str, ...]) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == header
        return list(reader)


def shape_ok(row: dict[str, Any]) -> bool:
    return None not in row and None not in row.values()


def load(out: Path, summary: demo.DemoSummary) -> World:
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    sources: dict[str, Source] = {}

    def classify(name: str, rows: list[Any], ok: Callable[[Any], bool]) -> Source:
        src = Source(records=len(rows))
        for row in rows:
            if ok(row):
                src.valid.append(row)
            else:
                src.invalid += 1
        sources[name] = src
        return src

    def account_ok(r: dict[str, Any]) -> bool:
        return (shape_ok(r) and bool(r["account_id"]) and bool(r["name"])
                and bool(_DECIMAL.match(r["mrr"])) and opt(r["currency"], _CURRENCY.match)
                and opt(r["seats"], _INT.match) and opt(r["created_at"], parse_ts)
                and opt(r["renewal_date"], valid_date))

    accounts = classify("accounts", read_csv(out / "accounts.csv", demo.HEADERS["accounts"]),
                        account_ok)
    known_accounts = {r["account_id"] for r in accounts.valid}

    def contact_ok(r: dict[str, Any]) -> bool:
        return (shape_ok(r) and bool(r["contact_id"]) and r["account_id"] in known_accounts
                and bool(_EMAIL.match(r["email"])) and opt(r["timezone"], valid_tz)
                and r["opted_out"] in ("", "true", "false"))

    contacts = classify("contacts", read_csv(out / "contacts.csv", demo.HEADERS["contacts"]),
                        contact_ok)
    contact_account = {r["contact_id"]: r["account_id"] for r in contacts.valid}

    def usage_ok(r: dict[str, Any]) -> bool:
        return (shape_ok(r) and bool(r["event_id"]) and r["account_id"] in known_accounts
                and parse_ts(r["occurred_at"]) is not None and bool(r["feature"])
                and opt(r["quantity"], _DECIMAL.match) and r["outcome"] in ("", "ok", "error"))

    classify("usage", read_csv(out / "usage.csv", demo.HEADERS["usage"]), usage_ok)

    def purchase_ok(r: dict[str, Any]) -> bool:
        return (shape_ok(r) and bool(r["event_id"]) and r["account_id"] in known_accounts
                and parse_ts(r["occurred_at"]) is not None
                and r["kind"] in demo.PURCHASE_KINDS
                and opt(r["amount"], _SIGNED_DECIMAL.match)
                and opt(r["currency"], _CURRENCY.match) and opt(r["mrr_after"], _DECIMAL.match))

    classify("purchases", read_csv(out / "purchases.csv", demo.HEADERS["purchases"]),
             purchase_ok)

    def ticket_ok(r: dict[str, Any]) -> bool:
        if not (shape_ok(r) and bool(r["ticket_id"]) and r["account_id"] in known_accounts):
            return False
        opened = parse_ts(r["opened_at"])
        if opened is None or not opt(r["resolved_at"], parse_ts):
            return False
        if r["resolved_at"] and parse_ts(r["resolved_at"]) < opened:  # type: ignore[operator]
            return False
        return (r["status"] in ("",) + demo.TICKET_STATUSES
                and r["channel"] in ("",) + demo.TICKET_CHANNELS
                and r["priority"] in ("",) + demo.TICKET_PRIORITIES)

    classify("tickets", read_csv(out / "tickets.csv", demo.HEADERS["tickets"]), ticket_ok)

    def jsonl(path: Path) -> list[Any]:
        out_rows: list[Any] = []
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            try:
                out_rows.append(json.loads(line))
            except json.JSONDecodeError:
                out_rows.append(None)
        return out_rows

    def nonempty(rec: dict[str, Any], key: str) -> bool:
        return isinstance(rec.get(key), str) and rec[key] != ""

    def mention_ok(rec: Any) -> bool:
        return (isinstance(rec, dict)
                and all(nonempty(rec, k) for k in ("mention_id", "text", "author_handle"))
                and parse_ts(rec.get("created_at")) is not None
                and rec.get("account_id") in (None, "", *known_accounts))

    classify("mentions", jsonl(out / "mentions.jsonl"), mention_ok)

    def incident_ok(rec: Any) -> bool:
        if not (isinstance(rec, dict) and nonempty(rec, "incident_id")
                and nonempty(rec, "title")):
            return False
        started = parse_ts(rec.get("started_at"))
        resolved = rec.get("resolved_at")
        if started is None or not (resolved is None or parse_ts(resolved) is not None):
            return False
        if resolved is not None and parse_ts(resolved) < started:  # type: ignore[operator]
            return False
        lists = all(isinstance(rec.get(k, []), list)
                    and all(isinstance(x, str) for x in rec.get(k, []))
                    for k in ("components", "regions"))
        return (lists and rec.get("status") in (None,) + demo.INCIDENT_STATUSES
                and rec.get("impact") in (None,) + demo.INCIDENT_IMPACTS)

    classify("incidents", jsonl(out / "incidents.jsonl"), incident_ok)

    # Contacts referenced by valid rows exist and belong to the same account.
    for name in ("usage", "tickets"):
        for r in sources[name].valid:
            if r["contact_id"]:
                assert contact_account.get(r["contact_id"]) == r["account_id"], r
    return World(out, summary, truth, sources)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    out = tmp_path_factory.mktemp("demo") / "world"
    summary = demo.generate(out, accounts=N_ACCOUNTS, days=DAYS, seed=SEED, end=END,
                            malformed_rate=RATE)
    return load(out, summary)


def usage_per_day(world: World, *, quantity: bool = False) -> dict[str, Counter[date]]:
    """Rows (or the quantity of successful rows) per account and UTC day."""
    per: dict[str, Counter[date]] = defaultdict(Counter)
    for r in world.rows("usage"):
        ts = parse_ts(r["occurred_at"])
        assert ts is not None
        day = ts.astimezone(UTC).date()
        if not quantity:
            per[r["account_id"]][day] += 1
        elif r["outcome"] != "error":
            per[r["account_id"]][day] += int(float(r["quantity"] or 1))
    return per


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_summary_and_files(world: World) -> None:
    s = world.summary
    assert s.out_dir == world.out
    assert s.truth_path == world.out / "truth.json"
    assert set(s.files) == set(demo.SOURCES)
    for source, path in s.files.items():
        assert path == world.out / demo.FILE_NAMES[source]
        assert s.rows[source] == world.sources[source].records, source
    assert sorted(p.name for p in world.out.iterdir()) == sorted(
        [*demo.FILE_NAMES.values(), "truth.json"])
    assert s.rows["accounts"] == N_ACCOUNTS + s.malformed["accounts"]
    assert 2_000 < s.rows["usage"] < 40_000


def test_same_seed_gives_identical_bytes(world: World, tmp_path: Path) -> None:
    again = demo.generate(tmp_path / "again", accounts=N_ACCOUNTS, days=DAYS, seed=SEED,
                          end=END, malformed_rate=RATE)
    for source, path in world.summary.files.items():
        assert again.files[source].read_bytes() == path.read_bytes(), source
    assert again.truth_path.read_bytes() == world.summary.truth_path.read_bytes()


def test_different_seed_gives_a_different_world(world: World, tmp_path: Path) -> None:
    other = demo.generate(tmp_path / "other", accounts=N_ACCOUNTS, days=DAYS, seed=SEED + 1,
                          end=END, malformed_rate=RATE)
    for source in ("accounts", "contacts", "usage", "tickets", "mentions"):
        assert other.files[source].read_bytes() != world.summary.files[source].read_bytes()


def test_exactly_the_counted_rows_are_malformed(world: World) -> None:
    assert world.truth["malformed"] == world.summary.malformed
    for source in demo.SOURCES:
        src = world.sources[source]
        assert src.invalid == world.summary.malformed[source], source
        assert src.invalid > 0, source
        clean = src.records - src.invalid
        if clean >= 100:
            assert RATE / 2 <= src.invalid / src.records <= RATE * 2, source


def test_malformed_rate_zero_gives_a_clean_world(tmp_path: Path) -> None:
    s = demo.generate(tmp_path / "clean", accounts=15, days=20, seed=5, end=END,
                      malformed_rate=0.0)
    w = load(tmp_path / "clean", s)
    assert all(v == 0 for v in s.malformed.values())
    assert all(src.invalid == 0 for src in w.sources.values())


def test_csv_quoting_and_utf8(world: World) -> None:
    bodies = [r["body"] for r in world.rows("tickets")]
    assert any("\n" in b for b in bodies) and any("," in b for b in bodies)
    assert any('"' in b for b in bodies)
    names = [r["name"] for r in world.rows("accounts")] + [
        r["name"] for r in world.rows("contacts")]
    assert any(not n.isascii() for n in names)
    for r in world.rows("contacts"):
        assert r["email"].isascii()
        domain = r["email"].split("@", 1)[1]
        assert domain.endswith(".example")


def test_every_timestamp_lies_in_the_window(world: World) -> None:
    stamps: list[tuple[str, datetime]] = []
    fields = {"usage": ("occurred_at",), "purchases": ("occurred_at",),
              "tickets": ("opened_at", "resolved_at"), "mentions": ("created_at",),
              "incidents": ("started_at", "resolved_at")}
    for source, keys in fields.items():
        for r in world.rows(source):
            for key in keys:
                value = r.get(key)
                if value:
                    ts = parse_ts(value)
                    assert ts is not None
                    stamps.append((source, ts))
    assert stamps
    for source, ts in stamps:
        assert WINDOW_START <= ts <= WINDOW_END, (source, ts)
    for r in world.rows("accounts"):
        if r["created_at"]:
            assert parse_ts(r["created_at"]) <= WINDOW_END  # type: ignore[operator]
    # Most timestamps are written as Z, some with an offset, a few without one.
    usage_stamps = [r["occurred_at"] for r in world.rows("usage")]
    z = sum(s.endswith("Z") for s in usage_stamps)
    offset = sum(bool(re.search(r"[+-]\d{2}:\d{2}$", s)) for s in usage_stamps)
    naive = len(usage_stamps) - z - offset
    assert z > 0.8 * len(usage_stamps) and offset > 0 and naive > 0


def test_default_end_is_today_and_nothing_lies_in_the_future(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    s = demo.generate(tmp_path / "today", accounts=12, days=7, seed=1, malformed_rate=0.0)
    after = datetime.now(UTC)
    truth = json.loads(s.truth_path.read_text(encoding="utf-8"))
    assert truth["generated_with"]["end"] in (before.date().isoformat(),
                                              after.date().isoformat())
    with s.files["usage"].open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            assert parse_ts(r["occurred_at"]) <= after  # type: ignore[operator]


def test_arguments_are_checked(tmp_path: Path) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=2)
    with pytest.raises(ValueError):
        demo.generate(tmp_path / "x", accounts=5, days=5, end=tomorrow)
    with pytest.raises(ValueError):
        demo.generate(tmp_path / "x", accounts=0, days=5, end=END)
    with pytest.raises(ValueError):
        demo.generate(tmp_path / "x", accounts=5, days=5, end=END, malformed_rate=0.9)


def test_progress_is_called_per_source(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    s = demo.generate(tmp_path / "p", accounts=8, days=10, seed=2, end=END,
                      progress=lambda stage, n: calls.append((stage, n)))
    assert [c[0] for c in calls] == list(demo.SOURCES)
    assert dict(calls) == s.rows


def test_weekdays_are_busier_than_weekends(world: World) -> None:
    per_day: Counter[date] = Counter()
    for counts in usage_per_day(world).values():
        per_day.update(counts)
    weekday = [per_day[d] for d in per_day if d.weekday() < 5]
    weekend = [per_day[d] for d in per_day if d.weekday() >= 5]
    assert weekday and weekend
    assert sum(weekday) / len(weekday) > 2.5 * sum(weekend) / len(weekend)


def test_truth_is_complete(world: World) -> None:
    truth = world.truth
    assert set(truth) >= {"generated_with", "groups", "churn", "silent_dissatisfied",
                          "incident_hits", "malformed"}
    assert truth["generated_with"]["seed"] == SEED
    account_ids = {r["account_id"] for r in world.rows("accounts")}
    assert set(truth["groups"]) == account_ids
    assert set(truth["groups"].values()) == set(demo.GROUPS)
    groups = truth["groups"]
    assert sorted(truth["silent_dissatisfied"]) == sorted(
        a for a, g in groups.items() if g == "silent_fade")
    assert set(truth["churn"]) == {a for a, g in groups.items() if g == "churner"}
    assert 4 <= len(truth["incident_hits"]) <= 8


def test_silent_faders_fade_and_keep_quiet(world: World) -> None:
    per = usage_per_day(world, quantity=True)
    rows = usage_per_day(world)
    last28 = END - timedelta(days=27)
    quiet_from = datetime(END.year, END.month, END.day, tzinfo=UTC) - timedelta(
        days=44)
    faders = world.truth["silent_dissatisfied"]
    assert faders
    totals = [0.0, 0.0]
    for acc in faders:
        counts = per[acc]
        recent = sum(counts[d] for d in counts if d >= last28) / 28
        earlier = sum(counts[d] for d in counts if d < last28) / (DAYS - 28)
        if sum(n for d, n in rows[acc].items() if d < last28) >= 40:  # enough to see a trend
            assert recent < 0.85 * earlier, (acc, recent, earlier)
        totals[0] += recent
        totals[1] += earlier
    assert totals[0] < 0.75 * totals[1]
    # Silent: no ticket activity and no mentions of their own in the last 45 days.
    for r in world.rows("tickets"):
        if r["account_id"] in faders:
            assert parse_ts(r["opened_at"]) < quiet_from, r  # type: ignore[operator]
            if r["resolved_at"]:
                assert parse_ts(r["resolved_at"]) < quiet_from  # type: ignore[operator]
    handles = {r["x_handle"] for r in world.rows("accounts")
               if r["account_id"] in faders and r["x_handle"]}
    handles |= {r["x_handle"] for r in world.rows("contacts")
                if r["account_id"] in faders and r["x_handle"]}
    for m in world.rows("mentions"):
        if m["author_handle"] in handles or m.get("account_id") in faders:
            assert parse_ts(m["created_at"]) < quiet_from, m  # type: ignore[operator]
    # ...while their share of error rows rises well above that of healthy accounts
    # (outside incidents, which hit everybody).
    groups = world.truth["groups"]
    windows = [(parse_ts(i["started_at"]),
                parse_ts(i["resolved_at"]) if i["resolved_at"] else WINDOW_END)
               for i in world.rows("incidents")]
    errors: dict[str, list[int]] = {"silent_fade": [0, 0], "healthy": [0, 0]}
    for r in world.rows("usage"):
        group = groups[r["account_id"]]
        ts = parse_ts(r["occurred_at"])
        assert ts is not None
        if group not in errors or ts.astimezone(UTC).date() < last28:
            continue
        if any(a <= ts <= b for a, b in windows):  # type: ignore[operator]
            continue
        errors[group][0] += r["outcome"] == "error"
        errors[group][1] += 1
    fade_share = errors["silent_fade"][0] / errors["silent_fade"][1]
    healthy_share = errors["healthy"][0] / errors["healthy"][1]
    assert fade_share > 2.0 * healthy_share, (fade_share, healthy_share)


def test_loud_complainers_complain(world: World) -> None:
    groups = world.truth["groups"]
    tickets: Counter[str] = Counter(
        r["account_id"] for r in world.rows("tickets") if r["status"] == "open")
    loud = [a for a, g in groups.items() if g == "loud_complainer"]
    healthy = [a for a, g in groups.items() if g == "healthy"]
    assert loud
    loud_mean = sum(tickets[a] for a in loud) / len(loud)
    healthy_mean = sum(tickets[a] for a in healthy) / len(healthy)
    assert loud_mean > 2.5 * healthy_mean, (loud_mean, healthy_mean)


def test_churners_cancel_and_stop_using(world: World) -> None:
    churn = world.truth["churn"]
    assert churn
    cancelled: dict[str, datetime] = {}
    for r in world.rows("purchases"):
        if r["kind"] == "cancelled":
            cancelled[r["account_id"]] = parse_ts(r["occurred_at"])  # type: ignore[assignment]
    assert set(cancelled) == set(churn)
    for acc, day in churn.items():
        assert cancelled[acc].astimezone(UTC).date().isoformat() == day
    for r in world.rows("usage"):
        if r["account_id"] in cancelled:
            assert parse_ts(r["occurred_at"]) < cancelled[r["account_id"]], r  # type: ignore
    for r in world.rows("purchases"):
        acc = r["account_id"]
        if acc in cancelled and r["kind"] not in ("cancelled", "refunded"):
            assert parse_ts(r["occurred_at"]) < cancelled[acc], r  # type: ignore[operator]


def test_payment_trouble_never_recovers(world: World) -> None:
    groups = world.truth["groups"]
    trouble = [a for a, g in groups.items() if g == "payment_trouble"]
    assert trouble
    events: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for r in world.rows("purchases"):
        events[r["account_id"]].append((parse_ts(r["occurred_at"]), r["kind"]))  # type: ignore
    for acc in trouble:
        kinds = [k for _, k in sorted(events[acc])]
        assert "payment_failed" in kinds, acc
        first_fail = kinds.index("payment_failed")
        assert "payment_succeeded" not in kinds[first_fail:], acc


def test_incidents_hit_their_components_and_regions(world: World) -> None:
    incidents = {r["incident_id"]: r for r in world.rows("incidents")}
    region_of = {r["account_id"]: r["region"] for r in world.rows("accounts")}
    errors: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for r in world.rows("usage"):
        if r["outcome"] == "error":
            errors[r["account_id"]].append((parse_ts(r["occurred_at"]), r["feature"]))  # type: ignore
    hit_total = 0
    for inc_id, hits in world.truth["incident_hits"].items():
        inc = incidents[inc_id]
        start = parse_ts(inc["started_at"])
        stop = parse_ts(inc["resolved_at"]) if inc["resolved_at"] else WINDOW_END
        assert start is not None and stop is not None
        features = {f for f, c in demo.FEATURES.items() if c in inc["components"]}
        for acc in hits:
            assert region_of[acc] in inc["regions"], (inc_id, acc)
            assert any(start <= ts <= stop and f in features for ts, f in errors[acc]), (
                inc_id, acc)
        hit_total += len(hits)
    assert hit_total > 0


def test_the_live_incident_hits_accounts_on_a_quiet_saturday_night(tmp_path: Path) -> None:
    """At 03:16 UTC on a Saturday a 30-account world's live incident used to hit nobody (no
    outage notice was planned, and CI failed at that hour): the generator's clock is pinned
    to that night."""
    demo.generate(tmp_path, accounts=30, days=10, seed=5, live_incident=True,
                  now=datetime(2026, 12, 5, 3, 16, tzinfo=UTC))
    truth = json.loads((tmp_path / "truth.json").read_text())
    live = truth["live_incident"]
    assert live and live.startswith("INC-20261205-")
    assert len(truth["incident_hits"][live]) >= 3

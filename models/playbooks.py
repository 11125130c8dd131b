"""Playbooks: rules that turn what Pulse sees into tasks for people.

`models/playbooks.yaml` (documented in the file) holds the rules; `load_playbooks()` reads and
checks it, and a file that cannot be used raises `PlaybookError` naming each problem with its
line and rule (`pulse playbooks check`). `run_playbooks(engine, as_of)` evaluates every rule
over every account scored on the date, set-based (one frame of the date's health, flags,
renewals, CSAT and incidents; one vectorised mask per rule), and creates one task per account
per episode: an episode is the run of consecutive scored dates of the account on which the
rule holds. The day after, the same episode only moves its `last_seen`; after a scored date
on which it did not hold, the next hit starts a new episode and a new task, unless the
rule's task for the account is still open: then that task goes on (its `last_seen` moves),
so a score that wavers around a band's edge never gives a CSM the same task twice.
Re-running a date changes nothing.

Tasks are open, done (with an outcome) or skipped (with a reason): `close_task` records who
closed it and why (and writes the audit entry in the same transaction), with the account's
health and churn probability then, beside those at creation; `later_outcomes` reads the
health and churn N days after each task was created, to measure which plays work.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update

from pulse.core.errors import PlaybookError, TaskClosedError, TaskError, UnknownTaskError
from pulse.models.flag_rules import FLAG_NAMES
from pulse.models.scorecard import BANDS, _Checker, compose_checked_yaml, read_checked_file
from pulse.sql import audit
from pulse.sql.db import dialect_insert
from pulse.sql.schema import (
    Account,
    AccountFeatures,
    AccountFlag,
    AccountHealth,
    ChurnScore,
    IncidentImpact,
    PlaybookTask,
    SurveyResponse,
)

log = logging.getLogger(__name__)

DEFAULT_PLAYBOOKS = Path(__file__).resolve().with_name("playbooks.yaml")
OPEN, DONE, SKIPPED = "open", "done", "skipped"
STATES = (OPEN, DONE, SKIPPED)
UNASSIGNED = "queue:unassigned"
TASK_DONE, TASK_SKIPPED = "task_done", "task_skipped"  # audit actions
TASKS = PlaybookTask.__table__
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_QUEUE = re.compile(r"^queue:[a-z0-9][a-z0-9_.-]{0,63}$")
_CONDITIONS = ("band", "flags_any", "change_7d_at_most", "change_30d_at_most",
               "renewal_within_days", "csat_latest_at_most", "low_rating",
               "incident_hit_within_days")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Condition:
    """Every field given must hold (None: not part of the condition)."""

    bands: tuple[str, ...] | None = None
    flags_any: tuple[str, ...] | None = None
    change_7d_at_most: float | None = None
    change_30d_at_most: float | None = None
    renewal_within_days: int | None = None
    csat_latest_at_most: int | None = None
    low_rating_days: int | None = None
    low_rating_at_most: int | None = None
    incident_hit_within_days: int | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    when: Condition
    owner: str  # csm or queue:NAME
    due_days: int
    business_days: bool
    steps: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Playbooks:
    source: str
    version: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)


def load_playbooks(path: Path | str | None = None) -> Playbooks:
    """Read and check a playbooks file; raises `PlaybookError` naming the line of each problem."""
    p = Path(path) if path else DEFAULT_PLAYBOOKS
    return parse_playbooks(read_checked_file(p, PlaybookError), source=str(p))


def parse_playbooks(text: str, *, source: str = "<playbooks>") -> Playbooks:
    """Check a playbooks file's YAML text and build it; raises `PlaybookError`."""
    root = compose_checked_yaml(text, source, PlaybookError)
    checker = _PlaybookChecker()
    books = checker.playbooks(root, source)
    if checker.problems or books is None:
        raise PlaybookError(source, checker.problems or [(None, "no rules")])
    return books


class _PlaybookChecker(_Checker):
    """The scorecard's checker (shapes, numbers, text, lines), taught the playbook rules."""

    def playbooks(self, root: yaml.Node | None, source: str) -> Playbooks | None:
        if root is None:
            self.problems.append((None, "the file is empty"))
            return None
        top = self.mapping(root, "playbooks", allowed=("version", "rules"),
                           required=("rules",))
        if top is None or "rules" not in top:
            return None
        version = "1"
        if "version" in top:
            version = self.text(top["version"][1], "version") or version
        node = top["rules"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, "rules: expected a list of at least one rule")
            return None
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for item in node.value:
            rule = self.rule(item)
            if rule is None:
                continue
            if rule.name in seen:
                self.fail(item, f"rule {rule.name!r} is given twice (first on line "
                          f"{seen[rule.name]})")
                continue
            seen[rule.name] = rule.line
            rules.append(rule)
        return Playbooks(source=source, version=version, rules=tuple(rules))

    def whole(self, node: yaml.Node, where: str, *, low: int, high: int | None = None
              ) -> int | None:
        value = self.number(node, where)
        if value is None:
            return None
        if value != int(value) or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.fail(node, f"{where}: expected a whole number {span} (not {value:g})")
            return None
        return int(value)

    def names(self, node: yaml.Node, where: str, known: tuple[str, ...]) -> tuple[str, ...] | None:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[str] = []
        for item in items:
            value = self.text(item, where)
            if value is None:
                return None
            if value not in known:
                self.fail(item, f"{where}: unknown {value!r} (expected one of "
                          f"{', '.join(known)})")
                return None
            out.append(value)
        if not out:
            self.fail(node, f"{where}: expected at least one of {', '.join(known)}")
            return None
        return tuple(out)

    def rule(self, node: yaml.Node) -> Rule | None:
        m = self.mapping(node, "rule", allowed=("name", "title", "when", "owner", "due",
                                                "steps"),
                         required=("name", "title", "when", "owner", "due"))
        if m is None:
            return None
        name = self.text(m["name"][1], "rule name") if "name" in m else None
        if name is not None and not _NAME.match(name):
            self.fail(m["name"][1], f"rule name {name!r}: expected lower-case letters, digits "
                      "and _ (at most 64, starting with a letter)")
            name = None
        where = f"rule {name!r}" if name else "rule"
        title = self.text(m["title"][1], f"{where}: title") if "title" in m else None
        if title is not None and not 0 < len(title.strip()) <= 200:
            self.fail(m["title"][1], f"{where}: title: expected 1 to 200 characters")
            title = None
        when = self.condition(m["when"][1], where) if "when" in m else None
        owner = self.text(m["owner"][1], f"{where}: owner") if "owner" in m else None
        if owner is not None and owner != "csm" and not _QUEUE.match(owner):
            self.fail(m["owner"][1], f"{where}: owner: expected 'csm' or 'queue:NAME' "
                      f"(not {owner!r})")
            owner = None
        due = self.due(m["due"][1], where) if "due" in m else None
        steps: list[str] = []
        if "steps" in m:
            snode = m["steps"][1]
            if not isinstance(snode, yaml.SequenceNode):
                self.fail(snode, f"{where}: steps: expected a list of text")
            else:
                for item in snode.value:
                    step = self.text(item, f"{where}: step")
                    if step is not None:
                        steps.append(step)
        if None in (name, title, when, owner, due):
            return None
        assert due is not None
        return Rule(name=str(name), title=str(title).strip(), when=when,  # type: ignore[arg-type]
                    owner=str(owner), due_days=due[0], business_days=due[1],
                    steps=tuple(steps), line=node.start_mark.line + 1)

    def due(self, node: yaml.Node, where: str) -> tuple[int, bool] | None:
        m = self.mapping(node, f"{where}: due", allowed=("days", "business"),
                         required=("days",))
        if m is None or "days" not in m:
            return None
        days = self.whole(m["days"][1], f"{where}: due.days", low=0, high=365)
        business = False
        if "business" in m:
            value = self.scalar(m["business"][1])
            if not isinstance(value, bool):
                self.fail(m["business"][1], f"{where}: due.business: expected true or false")
                return None
            business = value
        return None if days is None else (days, business)

    def condition(self, node: yaml.Node, where: str) -> Condition | None:
        m = self.mapping(node, f"{where}: when", allowed=_CONDITIONS)
        if m is None:
            return None
        if not m:
            if not node.value:  # (an unknown key was named already)
                self.fail(node, f"{where}: when: expected at least one condition "
                          f"({', '.join(_CONDITIONS)})")
            return None
        ok = True
        values: dict[str, Any] = {}
        for key, (_k, vnode) in m.items():
            w = f"{where}: when.{key}"
            value: Any
            if key == "band":
                value = self.names(vnode, w, BANDS)
                values["bands"] = value
            elif key == "flags_any":
                value = self.names(vnode, w, tuple(FLAG_NAMES))
                values["flags_any"] = value
            elif key in ("change_7d_at_most", "change_30d_at_most"):
                value = self.number(vnode, w)
                if value is not None and not -100 <= value <= 100:
                    self.fail(vnode, f"{w}: expected a change of health within -100..100 "
                              f"(not {value:g})")
                    value = None
                values[key] = value
            elif key in ("renewal_within_days", "incident_hit_within_days"):
                value = self.whole(vnode, w, low=0 if key.startswith("renewal") else 1,
                                   high=3650)
                values[key] = value
            elif key == "csat_latest_at_most":
                value = self.whole(vnode, w, low=1, high=5)
                values[key] = value
            else:  # low_rating
                lm = self.mapping(vnode, w, allowed=("within_days", "at_most"),
                                  required=("within_days", "at_most"))
                value = None
                if lm and "within_days" in lm and "at_most" in lm:
                    days = self.whole(lm["within_days"][1], f"{w}.within_days", low=1,
                                      high=365)
                    most = self.whole(lm["at_most"][1], f"{w}.at_most", low=1, high=5)
                    if days is not None and most is not None:
                        value = (days, most)
                        values["low_rating_days"], values["low_rating_at_most"] = value
            ok = ok and value is not None
        return Condition(**values) if ok else None


# --------------------------------------------------------------------------- evaluating


def _day_end(as_of: date) -> pd.Timestamp:
    return pd.Timestamp(as_of + timedelta(days=1), tz=UTC)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def account_frame(conn: Connection, as_of: date, books: Playbooks) -> pd.DataFrame:
    """One row per account scored on `as_of`: band, score, changes, churn probability, CSM,
    days to renewal, latest CSAT rating; set-based reads of the date.

    Days to renewal as the renewal flag reads them (`models.flags.renewal_days`, from the
    date's features: the stored renewal date when it describes the date, else an annual
    contract's estimate); the account's stored renewal date only where the date has no
    features row."""
    from pulse.models.flags import renewal_days

    h, a, c = AccountHealth.__table__, Account.__table__, ChurnScore.__table__
    f = AccountFeatures.__table__
    renewal_cols = ["days_to_renewal", "days_to_renewal_est", "billing_term_days", "is_annual"]
    query = (select(h.c.account_id, h.c.score, h.c.band, h.c.change_7d, h.c.change_30d,
                    a.c.csm_email, a.c.renewal_date, c.c.probability,
                    f.c.as_of.label("featured"), *(f.c[k] for k in renewal_cols))
             .join(a, a.c.account_id == h.c.account_id)
             .outerjoin(c, and_(c.c.account_id == h.c.account_id, c.c.as_of == h.c.as_of))
             .outerjoin(f, and_(f.c.account_id == h.c.account_id, f.c.as_of == h.c.as_of))
             .where(h.c.as_of == as_of))
    frame = pd.DataFrame(conn.execute(query).mappings().all(),
                         columns=["account_id", "score", "band", "change_7d", "change_30d",
                                  "csm_email", "renewal_date", "probability", "featured",
                                  *renewal_cols])
    stored = pd.to_datetime(frame["renewal_date"], errors="coerce")
    stored_days = (stored - pd.Timestamp(as_of)).dt.days.to_numpy(dtype="float64")
    numbers = frame[renewal_cols].apply(pd.to_numeric, errors="coerce")
    days, _how = renewal_days(numbers)
    frame["renewal_in_days"] = np.where(frame["featured"].notna(), days, stored_days)
    frame = frame.drop(columns=["featured", *renewal_cols])
    end = _day_end(as_of)
    r = SurveyResponse.__table__
    columns = ["account_id", "rating", "rated_at"]
    latest = pd.DataFrame(columns=columns)
    ratings = pd.DataFrame(columns=columns)
    scored = select(h.c.account_id).where(h.c.as_of == as_of)
    rated = and_(r.c.rating.is_not(None), r.c.rated_at < end.to_pydatetime(),
                 r.c.account_id.in_(scored))
    if any(rule.when.csat_latest_at_most is not None for rule in books.rules):
        # each scored account's latest rating, ranked in SQL (not every rating ever given)
        ranked = select(r.c.account_id, r.c.rating, r.c.rated_at, func.row_number().over(
            partition_by=r.c.account_id, order_by=(r.c.rated_at.desc(), r.c.survey_id.desc())
        ).label("n")).where(rated).subquery()
        latest = pd.DataFrame(conn.execute(
            select(ranked.c.account_id, ranked.c.rating, ranked.c.rated_at)
            .where(ranked.c.n == 1)).all(), columns=columns)
    windows = [(rule.when.low_rating_days, rule.when.low_rating_at_most) for rule in books.rules
               if rule.when.low_rating_days is not None
               and rule.when.low_rating_at_most is not None]
    if windows:
        # the low ratings any rule's window may hold
        since = end - pd.Timedelta(days=max(int(days or 0) for days, _ in windows))
        ratings = pd.DataFrame(conn.execute(
            select(r.c.account_id, r.c.rating, r.c.rated_at)
            .where(rated, r.c.rated_at >= since.to_pydatetime(),
                   r.c.rating <= max(int(most or 0) for _, most in windows))).all(),
            columns=columns)
    ratings["rated_at"] = _utc(ratings["rated_at"])
    frame = frame.merge(latest.set_index("account_id")["rating"].rename("csat_latest"),
                        how="left", left_on="account_id", right_index=True)
    frame.attrs["ratings"] = ratings
    return frame


def _holds(rule: Rule, frame: pd.DataFrame, flags: pd.DataFrame, hits: pd.DataFrame,
           as_of: date) -> pd.Series:
    """The rule's condition over every row of `frame` (a boolean Series)."""
    w = rule.when
    mask = pd.Series(True, index=frame.index)
    if w.bands is not None:
        mask &= frame["band"].isin(w.bands)
    if w.flags_any is not None:
        mask &= frame["account_id"].isin(flags.loc[flags["flag"].isin(w.flags_any),
                                                   "account_id"])
    if w.change_7d_at_most is not None:
        mask &= frame["change_7d"].astype("float64") <= w.change_7d_at_most
    if w.change_30d_at_most is not None:
        mask &= frame["change_30d"].astype("float64") <= w.change_30d_at_most
    if w.renewal_within_days is not None:
        days = frame["renewal_in_days"]
        mask &= (days >= 0) & (days <= w.renewal_within_days)
    if w.csat_latest_at_most is not None:
        mask &= frame["csat_latest"].astype("float64") <= w.csat_latest_at_most
    end = _day_end(as_of)
    if w.low_rating_days is not None and w.low_rating_at_most is not None:
        ratings = frame.attrs["ratings"]
        low = ratings[(ratings["rating"] <= w.low_rating_at_most)
                      & (ratings["rated_at"] >= end - pd.Timedelta(days=w.low_rating_days))]
        mask &= frame["account_id"].isin(low["account_id"])
    if w.incident_hit_within_days is not None:
        recent = hits[hits["at"] >= end - pd.Timedelta(days=w.incident_hit_within_days)]
        mask &= frame["account_id"].isin(recent["account_id"])
    return mask.fillna(False).astype(bool)


def due_dates(as_of: date, days: int, business: bool, n: int) -> np.ndarray:
    """`n` copies of the due date: `days` (business) days after `as_of`. A business-day count
    from a weekend starts from the Friday before, so "within 1 business day" of a Saturday
    is the Monday."""
    start = np.full(n, np.datetime64(as_of, "D"))
    if business:
        return np.busday_offset(start, days, roll="backward")
    return start + np.timedelta64(days, "D")


def evaluate(engine: Engine | Connection, as_of: date, books: Playbooks | None = None
             ) -> pd.DataFrame:
    """Every (rule, account) whose condition holds on `as_of`, with the task it would create:
    rule, account_id, title, owner, due_date, steps, score, probability."""
    books = books or load_playbooks()
    columns = ["rule", "account_id", "title", "owner", "due_date", "steps", "score",
               "probability"]
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return evaluate(conn, as_of, books)
    conn = engine
    frame = account_frame(conn, as_of, books)
    f, i = AccountFlag.__table__, IncidentImpact.__table__
    flags = pd.DataFrame(conn.execute(select(f.c.account_id, f.c.flag)
                                      .where(f.c.as_of == as_of)).mappings().all(),
                         columns=["account_id", "flag"])
    longest = max([r.when.incident_hit_within_days or 0 for r in books.rules] + [0])
    end = _day_end(as_of)
    hits = pd.DataFrame(conn.execute(
        select(i.c.account_id, func.coalesce(i.c.first_affected_at, i.c.window_start)
               .label("at"))
        .where(i.c.status == "hit",
               func.coalesce(i.c.first_affected_at, i.c.window_start) < end.to_pydatetime(),
               func.coalesce(i.c.first_affected_at, i.c.window_start)
               >= (end - pd.Timedelta(days=longest)).to_pydatetime())).mappings().all(),
        columns=["account_id", "at"]) if longest else pd.DataFrame(columns=["account_id", "at"])
    hits["at"] = _utc(hits["at"])
    parts = []
    for rule in books.rules:  # a loop over the rules; each is one vectorised mask
        chosen = frame[_holds(rule, frame, flags, hits, as_of)]
        if chosen.empty:
            continue
        owner = (chosen["csm_email"].fillna(UNASSIGNED).replace("", UNASSIGNED)
                 if rule.owner == "csm" else pd.Series(rule.owner, index=chosen.index))
        parts.append(pd.DataFrame({
            "rule": rule.name, "account_id": chosen["account_id"], "title": rule.title,
            "owner": owner.astype(str).str.strip().str.lower().where(
                owner != UNASSIGNED, UNASSIGNED),
            "due_date": pd.to_datetime(due_dates(as_of, rule.due_days, rule.business_days,
                                                 len(chosen))).date,
            "steps": [list(rule.steps)] * len(chosen),
            "score": chosen["score"], "probability": chosen["probability"]}))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


@dataclass(frozen=True)
class PlaybookRun:
    as_of: date
    holding: int  # (rule, account) pairs whose condition held
    created: int  # new tasks (new episodes)
    continued: int  # episodes that went on (no new task)

    def __str__(self) -> str:
        return (f"{self.as_of}: {self.holding} rule hits, {self.created} new tasks, "
                f"{self.continued} continuing episodes")


def _nullable(values: pd.Series) -> pd.Series:
    """Floats, with None (SQL NULL) where a value is missing."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers.astype(object).where(numbers.notna(), None)


def run_playbooks(engine: Engine, as_of: date, books: Playbooks | None = None, *,
                  now: datetime | None = None) -> PlaybookRun:
    """Evaluate every rule on `as_of` and create one task per account per episode, never a
    second open one of a rule for an account (idempotent: re-running a date creates nothing
    new)."""
    books = books or load_playbooks()
    now = now or datetime.now(UTC)
    h = AccountHealth.__table__
    with engine.begin() as conn:
        found = evaluate(conn, as_of, books)
        if found.empty:
            return PlaybookRun(as_of, 0, 0, 0)
        previous = pd.DataFrame(conn.execute(
            select(h.c.account_id, func.max(h.c.as_of).label("previous"))
            .where(h.c.as_of < as_of).group_by(h.c.account_id)).mappings().all(),
            columns=["account_id", "previous"])
        earliest = previous["previous"].min() if len(previous) else as_of
        earliest = as_of if pd.isna(earliest) else min(earliest, as_of)
        tasks = pd.DataFrame(conn.execute(
            select(TASKS.c.task_id, TASKS.c.rule, TASKS.c.account_id, TASKS.c.episode_start,
                   TASKS.c.last_seen, TASKS.c.state)
            .where(or_(TASKS.c.last_seen >= earliest, TASKS.c.state == OPEN),
                   TASKS.c.episode_start <= as_of,
                   TASKS.c.rule.in_(found["rule"].unique().tolist()))).mappings().all(),
            columns=["task_id", "rule", "account_id", "episode_start", "last_seen", "state"])
        found = found.merge(previous, how="left", on="account_id")
        found["previous"] = found["previous"].where(found["previous"].notna(), as_of)
        joined = found.merge(tasks, how="left", on=["rule", "account_id"])
        # the same episode: a task whose run reached the previous scored date (or this one);
        # or one still open, which goes on rather than a second one starting
        same = joined["task_id"].notna() & (
            (pd.to_datetime(joined["last_seen"]) >= pd.to_datetime(joined["previous"]))
            | (joined["state"] == OPEN))
        going = joined[same]
        key = ["rule", "account_id"]
        new = found[~found.set_index(key).index.isin(going.set_index(key).index)]
        moving = going[pd.to_datetime(going["last_seen"]) < pd.Timestamp(as_of)]
        if len(moving):
            conn.execute(update(TASKS).where(TASKS.c.task_id == bindparam("tid"))
                         .values(last_seen=as_of),
                         [{"tid": int(t)} for t in moving["task_id"].unique()])
        created = 0
        if len(new):
            records = pd.DataFrame({
                "rule": new["rule"], "account_id": new["account_id"],
                "episode_start": as_of, "last_seen": as_of, "title": new["title"],
                "owner": new["owner"], "due_date": new["due_date"], "steps": new["steps"],
                "state": OPEN, "created_at": now,
                "health_at_open": _nullable(new["score"]),
                "churn_at_open": _nullable(new["probability"])}).to_dict("records")
            stmt = (dialect_insert(conn, TASKS).on_conflict_do_nothing(
                index_elements=["rule", "account_id", "episode_start"])
                .returning(TASKS.c.task_id))
            created = len(conn.execute(stmt, records).all())
    run = PlaybookRun(as_of, len(found), created, int(going["task_id"].nunique()))
    log.info("playbooks %s", run)
    return run


# --------------------------------------------------------------------------- tasks


def list_tasks(engine: Engine, *, owner: str | None = None, state: str | None = None,
               today: date | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Tasks with their account's name: open ones first, overdue first then by due date;
    then closed ones, the latest first. `owner` None: everyone's."""
    today = today or datetime.now(UTC).date()
    a = Account.__table__
    overdue = and_(TASKS.c.state == OPEN, TASKS.c.due_date < today)
    query = (select(TASKS, a.c.name.label("account_name"))
             .outerjoin(a, a.c.account_id == TASKS.c.account_id)
             .order_by((TASKS.c.state != OPEN), (~overdue), TASKS.c.due_date,
                       TASKS.c.closed_at.desc(), TASKS.c.task_id).limit(limit))
    if owner is not None:
        query = query.where(TASKS.c.owner == owner.strip().lower())
    if state is not None:
        if state not in STATES:
            raise TaskError(f"unknown task state {state!r}: expected one of "
                            f"{', '.join(STATES)}")
        query = query.where(TASKS.c.state == state)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for r in rows:
        r["overdue"] = r["state"] == OPEN and r["due_date"] < today
    return rows


def close_task(engine: Engine, task_id: int, *, state: str, text: str, actor: str,
               address: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Mark an open task done (`text` is its outcome) or skipped (`text` is the reason), with
    the account's latest health and churn probability; audited in the same transaction."""
    if state not in (DONE, SKIPPED):
        raise TaskError(f"a task closes as {DONE} or {SKIPPED} (not {state!r})")
    text = (text or "").strip()
    if not text:
        raise TaskError("say what happened (done) or why (skipped): the text is empty")
    if len(text) > 2000:
        raise TaskError("the outcome or reason is too long: at most 2000 characters")
    now = now or datetime.now(UTC)
    h, c = AccountHealth.__table__, ChurnScore.__table__
    with engine.begin() as conn:
        row = conn.execute(select(TASKS.c.task_id, TASKS.c.state, TASKS.c.account_id,
                                  TASKS.c.rule).where(TASKS.c.task_id == task_id)).first()
        if row is None:
            raise UnknownTaskError(f"no task {task_id}")
        if row.state != OPEN:
            raise TaskClosedError(f"task {task_id} is {row.state} already")
        health = conn.execute(select(h.c.score).where(
            h.c.account_id == row.account_id, h.c.as_of <= now.date())
            .order_by(h.c.as_of.desc()).limit(1)).scalar_one_or_none()
        churn = conn.execute(select(c.c.probability).where(
            c.c.account_id == row.account_id, c.c.as_of <= now.date())
            .order_by(c.c.as_of.desc()).limit(1)).scalar_one_or_none()
        changed = conn.execute(update(TASKS).where(TASKS.c.task_id == task_id,
                                                   TASKS.c.state == OPEN).values(
            state=state, outcome=text if state == DONE else None,
            skip_reason=text if state == SKIPPED else None, closed_at=now,
            closed_by=actor[:254], health_at_close=health, churn_at_close=churn)).rowcount
        if changed != 1:
            raise TaskClosedError(f"task {task_id} was closed meanwhile")
        audit.record(conn, actor=actor, action=TASK_DONE if state == DONE else TASK_SKIPPED,
                     target=row.account_id, reason=text, address=address, at=now,
                     detail={"task": int(task_id), "rule": row.rule})
    return {"task_id": task_id, "state": state, "health_at_close": health,
            "churn_at_close": churn}


def later_outcomes(engine: Engine, days: int = 30) -> pd.DataFrame:
    """Each task with the account's health and churn probability `days` after the task was
    created (the latest scored on or before then; NaN when that day has not come): the
    measure of which plays work."""
    h, c = AccountHealth.__table__, ChurnScore.__table__
    with engine.connect() as conn:
        tasks = pd.DataFrame(conn.execute(select(
            TASKS.c.task_id, TASKS.c.rule, TASKS.c.account_id, TASKS.c.episode_start,
            TASKS.c.state, TASKS.c.outcome, TASKS.c.skip_reason, TASKS.c.health_at_open,
            TASKS.c.churn_at_open, TASKS.c.health_at_close, TASKS.c.churn_at_close))
            .mappings().all())
        if tasks.empty:
            return tasks
        accounts = tasks["account_id"].unique().tolist()
        health = pd.DataFrame(conn.execute(select(h.c.account_id, h.c.as_of, h.c.score)
                                           .where(h.c.account_id.in_(accounts)))
                              .mappings().all(), columns=["account_id", "as_of", "score"])
        churn = pd.DataFrame(conn.execute(select(c.c.account_id, c.c.as_of, c.c.probability)
                                          .where(c.c.account_id.in_(accounts)))
                             .mappings().all(),
                             columns=["account_id", "as_of", "probability"])
    tasks["after"] = (pd.to_datetime(tasks["episode_start"]) + pd.Timedelta(days=days)
                      ).astype("datetime64[ns]")
    out = tasks.sort_values("after")
    for frame, column, name in ((health, "score", "health_after"),
                                (churn, "probability", "churn_after")):
        frame = frame.assign(as_of=pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")
                             ).sort_values("as_of")
        frame[column] = frame[column].astype("float64")
        out = pd.merge_asof(out, frame.rename(columns={column: name}), left_on="after",
                            right_on="as_of", by="account_id", direction="backward")
        out = out.drop(columns=["as_of"])
    latest = health.groupby("account_id")["as_of"].max() if len(health) else pd.Series(
        dtype="object")
    reached = (pd.to_datetime(out["account_id"].map(latest)).astype("datetime64[ns]")
               >= out["after"])
    out.loc[~reached, ["health_after", "churn_after"]] = np.nan
    out["health_change"] = out["health_after"] - out["health_at_open"].astype("float64")
    return out.sort_values("task_id").reset_index(drop=True)


def play_summary(outcomes: pd.DataFrame) -> pd.DataFrame:
    """`later_outcomes` by rule and state: how many tasks, how many have reached their later
    day, and the mean health change, health and churn probability then. A first measure of
    which plays work: done against skipped within a rule (not a controlled trial: a CSM picks
    what to skip)."""
    columns = ["rule", "state", "tasks", "measured", "health_change", "health_after",
               "churn_after"]
    if outcomes.empty:
        return pd.DataFrame(columns=columns)
    grouped = outcomes.groupby(["rule", "state"], sort=True)
    out = grouped.agg(tasks=("task_id", "size"), measured=("health_after", "count"),
                      health_change=("health_change", "mean"),
                      health_after=("health_after", "mean"),
                      churn_after=("churn_after", "mean")).reset_index()
    return out[columns]

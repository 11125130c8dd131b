"""Flags: named warnings on an account as of a date, each with its evidence in words.

`compute_flags(engine, as_of)` reads the date's materialised features and health
(`pulse score`), adds a few set-based inputs (sql/flags.py: each account's own usage
baseline, its champion, its open failed payments), decides every flag for every account at
once (numpy masks over one frame) and replaces the date's rows of `account_flags`. Each row
carries `evidence` (one line a CSM can read) and `details` (the numbers behind it).

The flags, what each means and the thresholds that decide it are in models/flag_rules.py
(`FLAG_NAMES`, `SilentRule`, `FlagSettings`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from pulse.core.errors import NotScoredError, UnknownNameError
from pulse.models.flag_rules import (
    CHAMPION,
    OUTAGE,
    PAYMENT,
    RENEWAL,
    SILENT,
    STRONG,
    WEAK,
    FlagSettings,
    SilentRule,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")


def _num(value: Any, digits: int = 4) -> float | int | None:
    """A JSON-safe number: None for missing, whole numbers as int."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(x):
        return None
    if x == int(x) and abs(x) < 2**53:
        return int(x)
    return round(x, digits)


def _count(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    """A share as a percentage: one decimal below 10 %, whole percents above."""
    return f"{100 * x:.1f}%" if abs(x) < 0.1 else f"{100 * x:.0f}%"


def _score(x: float) -> str:
    """A health score as stored (one decimal), without a trailing .0."""
    return f"{x:.1f}".removesuffix(".0")


def _day(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _plural(n: float, one: str, many: str | None = None) -> str:
    return f"{_count(n)} {one if n == 1 else (many or one + 's')}"


# --------------------------------------------------------------------------- deciding


@dataclass
class _Frame:
    """One row per account: features, health and the extra inputs side by side."""

    data: pd.DataFrame
    _cache: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        key = (name, True)
        if key not in self._cache:
            self._cache[key] = _col(self.data, name)
        return self._cache[key]

    def text(self, name: str) -> np.ndarray:
        key = (name, False)
        if key not in self._cache:
            if name in self.data:
                values = np.array(self.data[name].to_numpy(dtype=object), dtype=object)
                values[pd.isna(self.data[name]).to_numpy()] = None
            else:
                values = np.full(len(self.data), None, dtype=object)
            self._cache[key] = values
        return self._cache[key]


def _assemble(features: pd.DataFrame, health: pd.DataFrame | None,
              baselines: pd.DataFrame | None, champions: pd.DataFrame | None,
              failures: pd.DataFrame | None) -> pd.DataFrame:
    frame = features.reset_index(drop=True)
    health_cols = ["score", "band", "change_7d", "change_30d"]
    if health is not None and len(health):
        frame = frame.merge(health[["account_id", *health_cols]], on="account_id", how="left")
    else:
        frame = frame.assign(**{c: None for c in health_cols})
    if baselines is not None and len(baselines):
        frame = frame.merge(baselines, on="account_id", how="left")
    if champions is not None and len(champions):
        frame = frame.merge(champions.add_prefix("champion_").rename(
            columns={"champion_account_id": "account_id"}), on="account_id", how="left")
    if failures is not None and len(failures):
        frame = frame.merge(failures.add_prefix("failed_").rename(
            columns={"failed_account_id": "account_id"}), on="account_id", how="left")
    return frame


def usual_events(f: _Frame) -> np.ndarray:
    """The account's usual events per 28 days: its baseline window's events, per 28 days of
    the baseline it has (NaN without any)."""
    key = ("usual_events (derived)", True)
    if key not in f._cache:
        with np.errstate(invalid="ignore", divide="ignore"):
            f._cache[key] = np.where(f["base_days"] > 0,
                                     f["base_events"] * 28.0 / f["base_days"], np.nan)
    return f._cache[key]


def error_rise_z(errors: np.ndarray, rows: np.ndarray, errors_prev: np.ndarray,
                 rows_prev: np.ndarray) -> np.ndarray:
    """How many standard errors the error share rose (two-proportion z, pooled); NaN
    without rows in either window."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p0 = errors / rows, errors_prev / rows_prev
        pooled = (errors + errors_prev) / (rows + rows_prev)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / rows + 1.0 / rows_prev))
        return np.where((rows > 0) & (rows_prev > 0),
                        np.where(se > 0, (p1 - p0) / se, 0.0), np.nan)


def silent_signals(f: _Frame, rule: SilentRule, *, usage_ok: bool = True
                   ) -> dict[str, np.ndarray]:
    """Each signal's level per account: 0 none, 1 weak, 2 strong (see models/flag_rules.py)."""
    n = len(f.data)
    none = np.zeros(n, dtype=np.int8)

    def level(weak: np.ndarray, strong: np.ndarray | None = None) -> np.ndarray:
        out = np.where(weak, WEAK, 0).astype(np.int8)
        if strong is not None:
            out = np.where(strong, STRONG, out).astype(np.int8)
        return out

    with np.errstate(invalid="ignore", divide="ignore"):
        events, usual = f["events_28d"], usual_events(f)
        baseline = ((f["base_days"] >= 28)
                    & (f["base_active_days"] >= rule.min_baseline_active_days) & (usual > 0))
        drop = np.where(baseline, 1.0 - events / usual, np.nan)
        usage = level(drop >= rule.usage_drop_weak, drop >= rule.usage_drop_strong)

        rate = np.where(events > 0, f["errors_28d"] / events, np.nan)
        rate_usual = f["base_errors"] / f["base_events"]
        rise = rate - rate_usual
        real = error_rise_z(f["error_rows_28d"], f["rows_28d"], f["base_error_rows"],
                            f["base_rows"]) >= rule.error_min_z
        errors = level(baseline & real & (rate >= rule.error_ratio_weak * rate_usual)
                       & (rise >= rule.error_points_weak),
                       baseline & real & (rate >= rule.error_ratio_strong * rate_usual)
                       & (rise >= rule.error_points_strong))

        users, users_prev = f["active_users_28d"], f["active_users_prev_28d"]
        users_down = level((users <= (1.0 - rule.users_drop) * users_prev)
                           & (users_prev - users >= rule.users_drop_min))

        contraction = level((f["downgrades_90d"] >= 1)
                            | (f["mrr_change_90d_pct"] <= -100.0 * rule.mrr_drop))
        failed = level(f["open_failed_payments"] >= 1)
        negative = level((f["negative_mentions_28d"] >= 1)
                         & (f["negative_share_28d"] >= rule.negative_share))
        band = f.text("band")
        low = np.isin(band.astype(str), list(rule.low_health_bands)) & (band != None)  # noqa: E711
        low_health = level(low | (f["change_30d"] <= -rule.health_drop_points))
    return {
        "usage_drop": usage if usage_ok else none,
        "error_rise": errors if usage_ok else none,
        "users_drop": users_down if usage_ok else none,
        "contraction": contraction,
        "failed_payment": failed,
        "negative_voice": negative,
        "low_health": low_health,
    }


def _signal_text(name: str, i: int, f: _Frame) -> str:
    if name == "usage_drop":
        e, usual = f["events_28d"][i], usual_events(f)[i]
        return (f"events down {_pct(1 - e / usual)} over 28 days ({_count(e)} against a usual "
                f"{_count(usual)})")
    if name == "error_rise":
        rate = f["errors_28d"][i] / f["events_28d"][i]
        return (f"error rate {_pct(rate)} over 28 days, up from a usual "
                f"{_pct(f['base_errors'][i] / f['base_events'][i])}")
    if name == "users_drop":
        return (f"active users down from {_count(f['active_users_prev_28d'][i])} to "
                f"{_count(f['active_users_28d'][i])} over 28 days")
    if name == "contraction":
        parts = []
        if f["downgrades_90d"][i] >= 1:
            parts.append("downgraded " + ("once" if f["downgrades_90d"][i] == 1 else
                                          f"{_count(f['downgrades_90d'][i])} times")
                         + " in 90 days")
        change = f["mrr_change_90d_pct"][i]
        if change < 0:
            parts.append(f"MRR down {abs(change):.0f}% over 90 days")
        return "; ".join(parts)
    if name == "failed_payment":
        return _plural(f["open_failed_payments"][i], "failed payment") + " not recovered"
    if name == "negative_voice":
        return (f"{_count(f['negative_mentions_28d'][i])} of "
                f"{_plural(f['mentions_28d'][i], 'social mention')} negative in 28 days")
    if name == "low_health":
        parts = []
        score, band = f["score"][i], f.text("band")[i]
        if band is not None and not np.isnan(score):
            parts.append(f"health {_score(score)} ({band})")
        change = f["change_30d"][i]
        if change < 0:
            parts.append(f"down {abs(change):.0f} points in 30 days")
        return ", ".join(parts)
    raise UnknownNameError(f"unknown flag {name!r}")


def _silent(f: _Frame, as_of: date, rule: SilentRule, *, usage_ok: bool, support_ok: bool,
            cancelled: np.ndarray) -> list[dict[str, Any]]:
    if not support_ok:
        log.warning("support source stale as of %s: no account is called silent", as_of)
        return []
    signals = silent_signals(f, rule, usage_ok=usage_ok)
    usual = usual_events(f)
    z = error_rise_z(f["error_rows_28d"], f["rows_28d"], f["base_error_rows"], f["base_rows"])
    levels = np.column_stack(list(signals.values())) if signals else np.zeros((0, 0))
    n_strong = (levels == STRONG).sum(axis=1)
    n_any = (levels > 0).sum(axis=1)
    dissatisfied = (n_strong >= rule.min_strong) | (n_any >= rule.min_signals)
    since = f["days_since_last_ticket"]
    quiet = np.isnan(since) | (since >= rule.no_contact_days)
    fired = np.flatnonzero(dissatisfied & quiet & ~cancelled)
    names = list(signals)
    ids = f.text("account_id")
    last_ticket = f.text("support_last_at")
    out = []
    for i in fired:
        order = sorted((j for j in range(len(names)) if levels[i, j] > 0),
                       key=lambda j: -levels[i, j])
        words = [_signal_text(names[j], int(i), f) for j in order]
        seats, users = f["seats"][i], f["active_users_28d"][i]
        attributed = users > 0 or f["events_28d"][i] == 0  # else usage names nobody
        if not attributed:
            pass
        elif seats > 0 and users <= seats:
            words.append(f"{_count(users)} of {_plural(seats, 'seat')} active")
        elif seats > 0:
            words.append(f"{_plural(users, 'active user')} on {_plural(seats, 'seat')}")
        ticket = last_ticket[i]
        words.append(f"no ticket since {_day(ticket)}" if ticket is not None
                     and not pd.isna(ticket) else "no ticket on record")
        details = {
            "strong": [names[j] for j in order if levels[i, j] == STRONG],
            "weak": [names[j] for j in order if levels[i, j] == WEAK],
            "no_contact_days": rule.no_contact_days,
            "last_ticket_at": None if ticket is None or pd.isna(ticket)
            else pd.Timestamp(ticket).isoformat(),
        }
        for col in ("events_28d", "events_prev_28d", "usage_trend_28d_pct", "base_events",
                    "base_days", "active_users_28d", "active_users_prev_28d", "seats",
                    "error_rate_28d", "downgrades_90d", "mrr_change_90d_pct",
                    "open_failed_payments", "mentions_28d", "negative_mentions_28d", "score",
                    "change_30d"):
            details[col] = _num(f[col][i])
        details["usual_events_28d"] = _num(usual[i], 1)
        details["usual_error_rate"] = _num(
            f["base_errors"][i] / f["base_events"][i]) if f["base_events"][i] > 0 else None
        details["error_rise_z"] = _num(z[i], 2)
        details["band"] = f.text("band")[i]
        out.append({"account_id": ids[i], "flag": SILENT, "evidence": "; ".join(words),
                    "details": details})
    return out


def _payment(f: _Frame) -> list[dict[str, Any]]:
    fired = np.flatnonzero(f["open_failed_payments"] >= 1)
    ids = f.text("account_id")
    first, success = f.text("failed_first_failed_at"), f.text("failed_last_success_at")
    currency = f.text("failed_currency")
    out = []
    for i in fired:
        n, amount = f["open_failed_payments"][i], f["failed_amount"][i]
        text = _plural(n, "failed payment")
        if not np.isnan(amount) and amount > 0:
            text += f" ({amount:,.2f}" + (f" {currency[i]}" if currency[i] else "") + (
                " in all)" if n > 1 else ")")
        if first[i] is not None and not pd.isna(first[i]):
            text += f" since {_day(first[i])}"
        text += ", not recovered; " + (
            f"last successful payment {_day(success[i])}"
            if success[i] is not None and not pd.isna(success[i])
            else "no successful payment on record")
        out.append({"account_id": ids[i], "flag": PAYMENT, "evidence": text, "details": {
            "open_failed_payments": _num(n),
            "amount": _num(amount, 2),
            "currency": currency[i],
            "first_failed_at": None if first[i] is None or pd.isna(first[i])
            else pd.Timestamp(first[i]).isoformat(),
            "last_success_at": None if success[i] is None or pd.isna(success[i])
            else pd.Timestamp(success[i]).isoformat(),
        }})
    return out


def _renewal(f: _Frame, as_of: date, s: FlagSettings,
             cancelled: np.ndarray) -> list[dict[str, Any]]:
    days = f["days_to_renewal"]
    band = f.text("band")
    in_bands = np.isin(band.astype(str), list(s.renewal_bands)) & (band != None)  # noqa: E711
    c7, c30 = f["change_7d"], f["change_30d"]
    falling = (c7 <= -s.renewal_falling_points) | (c30 <= -s.renewal_falling_points)
    with np.errstate(invalid="ignore"):
        soon = (days >= 0) & (days <= s.renewal_days)
    fired = np.flatnonzero(soon & (in_bands | falling) & ~cancelled)
    ids, score = f.text("account_id"), f["score"]
    out = []
    for i in fired:
        renews = as_of + timedelta(days=int(days[i]))
        when = "today" if days[i] == 0 else f"in {_plural(days[i], 'day')}"
        parts = [f"renews {when} ({renews.isoformat()})"]
        if band[i] is not None and not np.isnan(score[i]):
            parts.append(f"health {_score(score[i])} ({band[i]})")
        for change, span in ((c30[i], 30), (c7[i], 7)):
            if change <= -s.renewal_falling_points:
                parts.append(f"down {abs(change):.0f} points in {span} days")
                break
        out.append({"account_id": ids[i], "flag": RENEWAL, "evidence": "; ".join(parts),
                    "details": {"renewal_date": renews.isoformat(),
                                "days_to_renewal": _num(days[i]), "score": _num(score[i]),
                                "band": band[i], "change_7d": _num(c7[i]),
                                "change_30d": _num(c30[i]),
                                "window_days": s.renewal_days}})
    return out


def _champion(f: _Frame, as_of: date, s: FlagSettings,
              cancelled: np.ndarray) -> list[dict[str, Any]]:
    end = pd.Timestamp(as_of + timedelta(days=1), tz="UTC")
    recent = end - pd.Timedelta(days=s.champion_gone_days)
    last = pd.to_datetime(pd.Series(f.text("champion_last_used_at")), utc=True)
    gone = (last < recent).to_numpy(dtype=bool)
    active = f["champion_prior_active_days"] >= s.champion_min_active_days
    fired = np.flatnonzero(gone & active & ~cancelled)
    ids = f.text("account_id")
    names, emails = f.text("champion_contact_name"), f.text("champion_contact_email")
    roles, contact = f.text("champion_contact_role"), f.text("champion_contact_id")
    prior_end = (recent - pd.Timedelta(days=1)).date().isoformat()
    out = []
    for i in fired:
        who = names[i] or emails[i] or contact[i]
        extra = [x for x in (emails[i] if names[i] else None, roles[i]) if x]
        if extra:
            who += f" ({', '.join(extra)})"
        others = f["champion_others_recent"][i]
        tail = (f"{_plural(others, 'other person', 'other people')} used it in the last "
                f"{s.champion_gone_days} days" if others > 0
                else f"nobody else used it in the last {s.champion_gone_days} days either")
        text = (f"{who}, the most active user in the {s.champion_prior_days} days to "
                f"{prior_end} ({_count(f['champion_prior_events'][i])} events on "
                f"{_plural(f['champion_prior_active_days'][i], 'day')}), has not used the "
                f"product since {_day(last.iloc[i])}; {tail}")
        out.append({"account_id": ids[i], "flag": CHAMPION, "evidence": text, "details": {
            "contact_id": contact[i], "name": names[i], "email": emails[i], "role": roles[i],
            "prior_events": _num(f["champion_prior_events"][i]),
            "prior_active_days": _num(f["champion_prior_active_days"][i]),
            "last_used_at": last.iloc[i].isoformat(),
            "others_active_recent": _num(others),
            "prior_days": s.champion_prior_days, "gone_days": s.champion_gone_days,
        }})
    return out


def _outage(f: _Frame, outages: pd.DataFrame | None, s: FlagSettings) -> list[dict[str, Any]]:
    """One flag per account hit lately; `outages` has one row per (account, incident), the
    latest first (models.outage.recent_hits)."""
    if outages is None or outages.empty:
        return []
    known = set(f.text("account_id"))
    out = []
    for account, hits in outages.groupby("account_id", sort=True):
        if account not in known:
            continue
        hits = hits.sort_values(["first_affected_at", "incident_id"],
                                ascending=[False, True], kind="stable")
        top = hits.iloc[0]
        failed, total = float(top["failed_requests"]), float(top["total_requests"])
        users = int(top["affected_users"])
        text = (f"hit by incident {top['incident_id']} ({top['title']}) on "
                f"{_day(top['first_affected_at'])}: {_count(failed)} of "
                f"{_plural(total, 'request')} failed")
        if users > 0:
            text += f" for {_plural(users, 'user')}"
        others = hits["incident_id"].iloc[1:].tolist()
        if others:
            text += (f"; also hit by {_plural(len(others), 'other incident')} in "
                     f"{s.outage_days} days ({', '.join(others)})")
        components = top["components"] if isinstance(top["components"], list) else []
        out.append({"account_id": account, "flag": OUTAGE, "evidence": text, "details": {
            "incident_id": top["incident_id"], "title": top["title"],
            "impact": top["impact"] if isinstance(top["impact"], str) else None,
            "failed_requests": _num(failed), "total_requests": _num(total),
            "failed_events": _num(top["failed_events"]), "affected_users": users,
            "components": list(components),
            "first_affected_at": pd.Timestamp(top["first_affected_at"]).isoformat(),
            "last_affected_at": pd.Timestamp(top["last_affected_at"]).isoformat(),
            "incidents": hits["incident_id"].tolist(), "window_days": s.outage_days,
        }})
    return out


FLAG_COLUMNS = ["account_id", "flag", "evidence", "details"]


def evaluate_flags(features: pd.DataFrame, as_of: date, *, health: pd.DataFrame | None = None,
                   baselines: pd.DataFrame | None = None,
                   champions: pd.DataFrame | None = None,
                   failures: pd.DataFrame | None = None,
                   outages: pd.DataFrame | None = None,
                   settings: FlagSettings | None = None,
                   stale_sources: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """Decide every flag for every account of a features frame; no database needed.

    Returns one row per (account, flag that fires): account_id, flag, evidence, details.
    `outages` is one row per (account, incident that hit it lately), as
    `models.outage.recent_hits` returns.
    """
    s = settings or FlagSettings()
    f = _Frame(_assemble(features, health, baselines, champions, failures))
    if not len(f.data):
        return pd.DataFrame(columns=FLAG_COLUMNS)
    cancelled = f.data["cancelled"].fillna(False).astype(bool).to_numpy() \
        if "cancelled" in f.data else np.zeros(len(f.data), dtype=bool)
    rows = (_silent(f, as_of, s.silent, usage_ok="usage" not in stale_sources,
                    support_ok="support" not in stale_sources, cancelled=cancelled)
            + _payment(f) + _renewal(f, as_of, s, cancelled) + _champion(f, as_of, s, cancelled)
            + _outage(f, outages, s))
    out = pd.DataFrame(rows, columns=FLAG_COLUMNS)
    return out.sort_values(["account_id", "flag"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- one date


def compute_flags(engine: Engine, as_of: date, *, settings: FlagSettings | None = None,
                  scorecard: Any = None,
                  on_stage: Callable[[str], None] | None = None) -> int:
    """Decide every flag as of `as_of` and replace that date's stored flags; returns the rows.

    Needs the date's features (and, for the health signals, its health): run
    `pulse score --as-of DATE` first. The extra inputs are read on the same basis as the
    features were computed ("known" or "occurred"). Idempotent: a re-run replaces the date.
    """
    from pulse.models.health import source_freshness
    from pulse.models.outage import recent_hits
    from pulse.models.scorecard import load_scorecard
    from pulse.sql.features import load_features
    from pulse.sql.flags import champions, open_failures, usage_baselines, write_flags
    from pulse.sql.health import load_health

    s = settings or FlagSettings()
    features = load_features(engine, as_of)
    if features.empty:
        raise NotScoredError(f"no features as of {as_of}: run `pulse score --as-of {as_of}` "
                             "first")
    basis = str(features["basis"].iloc[0])
    health = load_health(engine, as_of)
    if health.empty:
        log.warning("no health as of %s: the health signals are left out", as_of)
    card = scorecard or load_scorecard()
    stale = {x.source for x in source_freshness(features, as_of, card) if x.stale}
    if on_stage:
        on_stage(f"reading flag inputs as of {as_of}")
    base = usage_baselines(engine, as_of, basis=basis, baseline_days=s.silent.baseline_days)
    champs = champions(engine, as_of, basis=basis, prior_days=s.champion_prior_days,
                       gone_days=s.champion_gone_days)
    failures = open_failures(engine, as_of, basis=basis)
    outages = recent_hits(engine, as_of, basis=basis, days=s.outage_days)
    if on_stage:
        on_stage(f"deciding flags as of {as_of}")
    flags = evaluate_flags(features, as_of, health=health, baselines=base, champions=champs,
                           failures=failures, outages=outages, settings=s,
                           stale_sources=stale)
    written = write_flags(engine, as_of, flags)
    counts = flags["flag"].value_counts().to_dict()
    log.info("flags as of %s: %s", as_of, counts)
    return written

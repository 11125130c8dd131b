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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri
from sqlalchemy import Engine

from pulse.core.errors import NotScoredError, UnknownNameError
from pulse.models.flag_rules import (
    CHAMPION,
    OUTAGE,
    PAYMENT,
    RENEWAL,
    SILENT,
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


def _money(amount: float, currency: str | None) -> str:
    """An amount as the CSM reads it in their digest (the default locale): "$1,000.00"."""
    from pulse.core.locales import money, resolve
    from pulse.core.settings import get_settings

    return money(amount, currency, resolve(get_settings().default_locale))


def _count(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    """A share as a percentage: one decimal below 10 %, whole percents above."""
    return f"{100 * x:.1f}%" if abs(x) < 0.1 else f"{100 * x:.0f}%"


def _one_decimal(x: float) -> str:
    """A health score as stored, or the silent flag's evidence bar: one decimal, without a
    trailing .0."""
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
              downgrades: pd.DataFrame | None, champions: pd.DataFrame | None,
              failures: pd.DataFrame | None, churn: pd.DataFrame | None = None
              ) -> pd.DataFrame:
    frame = features.reset_index(drop=True)
    health_cols = ["score", "band", "change_7d", "change_30d"]
    if health is not None and len(health):
        frame = frame.merge(health[["account_id", *health_cols]], on="account_id", how="left")
    else:
        frame = frame.assign(**{c: None for c in health_cols})
    if downgrades is not None and len(downgrades):
        frame = frame.merge(downgrades[["account_id", "downgraded_at"]], on="account_id",
                            how="left")
    if champions is not None and len(champions):
        frame = frame.merge(champions.add_prefix("champion_").rename(
            columns={"champion_account_id": "account_id"}), on="account_id", how="left")
    if failures is not None and len(failures):
        frame = frame.merge(failures.add_prefix("failed_").rename(
            columns={"failed_account_id": "account_id"}), on="account_id", how="left")
    if churn is not None and len(churn):
        frame = frame.merge(churn[["account_id", "probability"]].rename(
            columns={"probability": "churn_probability"}), on="account_id", how="left")
    return frame


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


# --------------------------------------------------------------------------- silent

#: The trajectory signals (own past and peers) and the event signals (how rare among peers).
TRAJECTORY_SIGNALS: tuple[str, ...] = ("usage_drop", "error_rise", "users_drop")
EVENT_SIGNALS: tuple[str, ...] = ("contraction", "negative_voice")
#: The churn model's risk of the date (`churn_scores`), ranked among the live accounts.
MODEL_SIGNALS: tuple[str, ...] = ("modelled_risk",)
#: The smallest share the modelled risk's rank weighs as (z 2.58): however many accounts are
#: scored, the riskiest alone stays under `min_evidence` (3), never the flag on its own.
MODEL_SHARE_FLOOR = 0.005
#: The most a corroborating signal weighs (z 2.58, as rare as MODEL_SHARE_FLOOR): an error
#: rise and the modelled risk back a decline up, and neither fires the flag on its own.
CORROBORATING_Z = float(NormalDist().inv_cdf(1.0 - MODEL_SHARE_FLOOR))
CORROBORATING_SIGNALS: tuple[str, ...] = ("error_rise", "modelled_risk")
SILENT_SIGNALS: tuple[str, ...] = TRAJECTORY_SIGNALS + EVENT_SIGNALS + MODEL_SIGNALS

_SEP = "\x1f"  # between segment and plan in a peer group's name
_MAD = 1.4826  # scales a median absolute deviation to a standard deviation (normal data)


def _matrix(weekly: pd.DataFrame | None, ids: np.ndarray, column: str, weeks: int
            ) -> np.ndarray:
    """accounts x weeks of one weekly column (0 where an account had no usage that week)."""
    out = np.zeros((len(ids), weeks))
    if weekly is None or weekly.empty:
        return out
    pos = pd.Index(ids).get_indexer(weekly["account_id"])
    week = weekly["week"].to_numpy(dtype=np.int64)
    keep = (pos >= 0) & (week >= 0) & (week < weeks)
    out[pos[keep], week[keep]] = pd.to_numeric(weekly[column]).to_numpy(dtype="float64")[keep]
    return out


def _first_week(weekly: pd.DataFrame | None, ids: np.ndarray, weeks: int) -> np.ndarray:
    """The oldest week with usage of each account (-1 without any)."""
    out = np.full(len(ids), -1, dtype=np.int64)
    if weekly is None or weekly.empty:
        return out
    first = weekly.groupby("account_id")["week"].max()
    pos = pd.Index(ids).get_indexer(first.index)
    keep = pos >= 0
    out[pos[keep]] = np.minimum(first.to_numpy(dtype=np.int64)[keep], weeks - 1)
    return out


def _nan_median(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=1)


def _robust(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise median and robust spread (scaled MAD), ignoring NaN."""
    med = _nan_median(x)
    return med, _MAD * _nan_median(np.abs(x - med[:, None]))


def _quantile(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if x.size else np.nan


def peer_groups(ids: np.ndarray, peers: pd.DataFrame | None, eligible: np.ndarray,
                min_peers: int) -> np.ndarray:
    """Each account's peer group: its segment and plan when at least `min_peers` eligible
    accounts share them, else its segment, else every account ("all")."""
    n = len(ids)
    seg = np.full(n, "", dtype=object)
    plan = np.full(n, "", dtype=object)
    if peers is not None and len(peers):
        p = peers.drop_duplicates("account_id").set_index("account_id").reindex(ids)
        if "segment" in p:
            seg = p["segment"].fillna("").astype(str).to_numpy(dtype=object)
        if "plan" in p:
            plan = p["plan"].fillna("").astype(str).to_numpy(dtype=object)
    both = np.where((seg != "") & (plan != ""), seg + _SEP + plan, "")
    out = np.full(n, "all", dtype=object)
    for level in (seg, both):  # the finer level wins when it is big enough
        key = pd.Series(level)
        size = key.map(key[eligible].value_counts()).fillna(0).to_numpy()
        out = np.where((size >= min_peers) & (level != ""), level, out)
    return out


def _peer_z(value: np.ndarray, group: np.ndarray, eligible: np.ndarray,
            direction: float, *, min_peers: int, alone: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Robust z of `value` against the eligible accounts of the same peer group (positive in
    `direction`), and the share of those peers at least as extreme (a percentile). A group
    of fewer than `min_peers` is no yardstick: its accounts get `alone` (inf: the account's
    own past decides alone; 0: no evidence) and no share."""
    frame = pd.DataFrame({"g": group, "v": np.where(eligible, direction * value, np.nan)})
    g = frame.groupby("g")["v"]
    few = g.transform("count").to_numpy() < min_peers
    med = g.transform("median").to_numpy()
    dev = (frame["v"] - med).abs().groupby(frame["g"])
    # the scaled MAD; where half the group sits on one value, the scaled mean deviation
    mad = _MAD * dev.transform("median").to_numpy()
    scale = np.where(mad > 0, mad, 1.2533 * dev.transform("mean").to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = direction * value - med
        z = np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))
    share = 1.0 - g.rank(pct=True, method="min").to_numpy() + 1.0 / g.transform("count").to_numpy()
    z = np.where(few, alone, z)
    return np.where(eligible, z, np.nan), np.where(eligible & ~few, share, np.nan)


@dataclass
class SilentScores:
    """Per account (the features frame's order): each signal's strength (a z, 0 when absent)
    and the numbers behind it; `evidence` combines them (root of the sum of squares)."""

    strength: dict[str, np.ndarray]
    evidence: np.ndarray
    numbers: dict[str, np.ndarray]
    group: np.ndarray
    baseline_weeks: np.ndarray


def silent_scores(f: _Frame, weekly: pd.DataFrame | None, peers: pd.DataFrame | None,
                  rule: SilentRule, *, usage_ok: bool = True) -> SilentScores:
    """Every account's decline evidence, against its own past and its peers, vectorised.

    Trajectory signals (usage, error rate, active users) compare the last `recent_weeks`
    weeks with the median of the account's own baseline weeks, in units of its own weekly
    spread (robust z: median/MAD, the spread no lower than the `noise_floor_quantile` of the
    peers' spreads), and the same change with its peer group's changes (robust z against
    segment and plan); a signal's strength is the smaller of the two, so both the account's
    own past and its peers must find it unusual. Every z of a count is also held to chance
    (Poisson on the weekly observations; two-proportion on the error rows). The error share
    may instead be unusual against the peers' shares and their pooled share, for failures
    that set in before the baseline. A peer group smaller than `min_peers` is no yardstick:
    the account's own past decides alone. Event signals (a downgrade or MRR drop, a
    negative mention) weigh by how rare they are among the accounts of the date: a share p
    gives the normal quantile z with P(Z > z) = p.
    """
    ids = f.text("account_id")
    n = len(ids)
    weeks = rule.skip_weeks + rule.baseline_weeks
    R, S = rule.recent_weeks, rule.skip_weeks
    ev = _matrix(weekly, ids, "events", weeks)
    er = _matrix(weekly, ids, "errors", weeks)
    rows = _matrix(weekly, ids, "rows", weeks)
    erows = _matrix(weekly, ids, "error_rows", weeks)
    users = _matrix(weekly, ids, "users", weeks)
    first = _first_week(weekly, ids, weeks)
    wk = np.arange(weeks)
    # a week counts once the account existed: after its first week with usage, or every week
    # when usage reaches the window's start (the account is older than the window)
    alive = (wk[None, :] < first[:, None]) | (first[:, None] == weeks - 1)
    base = alive & (wk[None, :] >= S)
    nbase = base.sum(axis=1)
    cancelled = np.zeros(n, dtype=bool)
    if "cancelled" in f.data:
        cancelled = f.data["cancelled"].fillna(False).astype(bool).to_numpy()
    has_base = (nbase >= rule.min_baseline_weeks) & ~cancelled & usage_ok

    def drop(values: np.ndarray, unit: np.ndarray, name: str) -> np.ndarray:
        """A weekly count's drop on a log scale: the recent weeks' mean against the median
        of the baseline weeks, in units of the account's own spread of weekly logs (never
        below its peers' `noise_floor_quantile`, nor below chance: 1/sqrt of the weekly
        observations, `unit` being the quantity of one observation)."""
        med = _robust(np.where(base, values, np.nan))[0]
        offset = 0.5 * unit  # half an observation: a week without usage is finite
        logs, spread = _robust(np.where(base, np.log(values + offset[:, None]), np.nan))
        recent = values[:, :R].mean(axis=1)
        change = np.log(recent + offset) - logs
        ok = has_base & (med > 0)
        chance = np.sqrt(unit / np.where(med > 0, med, np.nan))
        floor = _quantile(spread[ok], rule.noise_floor_quantile)
        # a mean of R weeks wanders sqrt(R) times less than one week
        scale = np.fmax(np.fmax(spread, np.nan_to_num(floor, nan=0.0)), chance) / np.sqrt(R)
        own_z = np.where(ok, -change / scale, np.nan)
        group_z, share = _peer_z(change, group, ok, -1.0, min_peers=rule.min_peers,
                                 alone=np.inf)
        numbers.update({f"{name}_own_z": own_z, f"{name}_peer_z": group_z,
                        f"{name}_share": share, f"{name}_week": recent,
                        f"usual_{name}_week": med,
                        f"{name}_change": np.where(med > 0, recent / med - 1.0, np.nan)})
        return np.where(ok, np.fmin(own_z, group_z), 0.0)

    numbers: dict[str, np.ndarray] = {}
    strength: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        med_rows = _robust(np.where(base, rows, np.nan))[0]
        med_ev = _robust(np.where(base, ev, np.nan))[0]
        group = peer_groups(ids, peers, has_base & (med_ev > 0), rule.min_peers)
        # usage: events a week; one observation is a usage row's typical quantity
        unit = np.where(med_rows > 0, med_ev / np.where(med_rows > 0, med_rows, 1.0), 1.0)
        strength["usage_drop"] = drop(ev, unit, "events")
        # active users a week; one observation is one person
        strength["users_drop"] = drop(users, np.ones(n), "users")

        # error rate: the recent weeks' share of events that failed against the weekly
        # shares of the baseline (own spread, floored by the peers'), against the peers'
        # changes, and against chance (two-proportion z on the usage rows, with a
        # continuity correction): the smallest of the three
        rate_w = np.where(base & (ev > 0), er / np.where(ev > 0, ev, 1.0), np.nan)
        med_e, spread_e = _robust(rate_w)
        recent_events = ev[:, :R].sum(axis=1)
        rate_r = np.where(recent_events > 0, er[:, :R].sum(axis=1) / recent_events, np.nan)
        ok_e = has_base & np.isfinite(med_e) & np.isfinite(rate_r)
        floor_e = _quantile(spread_e[ok_e], rule.noise_floor_quantile)
        scale_e = np.fmax(spread_e, np.nan_to_num(floor_e, nan=0.0)) / np.sqrt(R)
        rise = rate_r - med_e
        own_e = np.where(scale_e > 0, rise / scale_e, np.where(rise > 0, np.inf, 0.0))
        peer_e, share_e = _peer_z(rise, group, ok_e, 1.0, min_peers=rule.min_peers,
                                  alone=np.inf)
        r_rows, b_rows = rows[:, :R].sum(axis=1), np.where(base, rows, 0).sum(axis=1)
        r_err, b_err = erows[:, :R].sum(axis=1), np.where(base, erows, 0).sum(axis=1)
        p1, p0 = r_err / r_rows, b_err / b_rows
        pooled = (r_err + b_err) / (r_rows + b_rows)
        se = np.sqrt(pooled * (1 - pooled) * (1 / r_rows + 1 / b_rows))
        chance_e = np.where(se > 0, (p1 - p0 - 0.5 / r_rows) / se, 0.0)
        # against the peers' error levels too: a share of failures few peers see, though
        # it came on before the baseline, is as telling as a rise
        ok_l = has_base & np.isfinite(rate_r)
        share_floor = 0.5 / np.maximum(recent_events, 1.0) * unit
        level_e, level_share = _peer_z(np.log(rate_r + share_floor), group, ok_l, 1.0,
                                       min_peers=rule.min_peers, alone=0.0)
        # ... and not chance: the recent rows' error share against the peers' pooled share
        pool = pd.DataFrame({"g": group, "e": np.where(ok_l, r_err, 0.0),
                             "r": np.where(ok_l, r_rows, 0.0)}).groupby("g")
        typical = pool["e"].transform("sum") / pool["r"].transform("sum")
        pg = np.clip(typical.to_numpy(dtype="float64"), 1e-6, 1 - 1e-6)
        chance_l = (p1 - pg - 0.5 / r_rows) / np.sqrt(pg * (1 - pg) / r_rows)
        rise_z = np.fmin(np.fmin(own_e, peer_e), chance_e)
        level_z = np.fmin(level_e, chance_l)
        strength["error_rise"] = np.where(ok_l, np.nan_to_num(np.fmax(rise_z, level_z), nan=0.0),
                                          0.0)
        numbers.update(error_own_z=own_e, error_peer_z=peer_e, error_chance_z=chance_e,
                       error_level_z=level_e, error_level_share=level_share,
                       error_level_chance_z=chance_l,
                       error_share=share_e, error_rate=rate_r, usual_error_rate=med_e)

        # events: how rare each is among the date's live accounts
        live = ~cancelled
        contraction = (f["downgrades_90d"] >= 1) | (f["mrr_change_90d_pct"] < 0)
        negative = f["negative_mentions_28d"] >= 1
        for name, fired in (("contraction", contraction), ("negative_voice", negative)):
            share = (np.sum(fired & live) + 1.0) / (np.sum(live) + 2.0)
            z = NormalDist().inv_cdf(1.0 - share)
            strength[name] = np.where(fired & live, max(z, 0.0), 0.0)
            numbers[f"{name}_share"] = np.full(n, share)

        # the churn model's risk of the date, as rare as its rank among the live accounts
        # it scored: the top share p weighs the z with P(Z > z) = p (top 5%: 1.6; top 1%:
        # 2.3; at most MODEL_SHARE_FLOOR's 2.58), the lower half nothing; never the flag on
        # its own
        if "churn_probability" in f.data:
            risk = f["churn_probability"]
            scored = live & np.isfinite(risk)
            m = int(scored.sum())
            if m >= rule.min_peers:
                # share of the scored accounts at least as risky (ties share the top rank)
                riskier = pd.Series(np.where(scored, risk, np.nan)).rank(
                    ascending=False, method="max").to_numpy()
                share = np.maximum((riskier + 1.0) / (m + 2.0), MODEL_SHARE_FLOOR)
                z = np.nan_to_num(ndtri(1.0 - share), nan=0.0)
                strength["modelled_risk"] = np.where(scored, np.clip(z, 0.0, None), 0.0)
                numbers["modelled_risk_share"] = np.where(scored, share, np.nan)
                numbers["churn_probability"] = np.where(scored, risk, np.nan)

    for name in TRAJECTORY_SIGNALS:
        strength[name] = np.clip(np.nan_to_num(strength[name], nan=0.0, posinf=rule.signal_cap),
                                 0.0, rule.signal_cap)
    # failures alone are a technical problem (the outage flag and the tickets show those),
    # not dissatisfaction: an error rise backs a decline up, as the modelled risk does
    # (below `min_evidence` whatever it is set to: a looser rule never lets one fire alone)
    cap = min(CORROBORATING_Z, float(np.nextafter(rule.min_evidence, 0.0)))
    for name in CORROBORATING_SIGNALS:
        if name in strength:
            strength[name] = np.minimum(strength[name], cap)
    evidence = np.sqrt(sum(s**2 for s in strength.values()))
    return SilentScores(strength, evidence, numbers, group, nbase)


def _share_words(share: float, group: str) -> str:
    pct = max(1, int(np.ceil(100 * share)))
    if group == "all":
        who = "accounts"
    elif _SEP in group:
        segment, plan = group.split(_SEP, 1)
        who = f"{segment} accounts on the {plan} plan"
    else:
        who = f"{group} accounts"
    return f"the lowest {pct}% of {who}"


#: The words of a signal name only signals at least this strong (a z); weaker ones stay in
#: `details`.
NAMED_Z = 1.0


def _signal_text(name: str, i: int, f: _Frame, sc: SilentScores, rule: SilentRule) -> str:
    x = {k: v[i] for k, v in sc.numbers.items()}
    base = f"its own {int(sc.baseline_weeks[i])}-week median"
    span = ("in the last week" if rule.recent_weeks == 1
            else f"over the last {rule.recent_weeks} weeks")
    if name == "usage_drop":
        text = (f"events down {_pct(-x['events_change'])} against {base} "
                f"({_count(x['events_week'])} a week {span} against "
                f"{_count(x['usual_events_week'])})")
        if x["events_share"] <= 0.5:
            text += ", " + _share_words(x["events_share"], str(sc.group[i]))
        return text
    if name == "users_drop":
        return (f"active users down to {x['users_week']:.1f}".removesuffix(".0")
                + f" a week {span}, from a usual {x['usual_users_week']:.1f}".removesuffix(".0"))
    if name == "error_rise":
        rate, usual = x["error_rate"], x["usual_error_rate"]
        rise_z = np.fmin(np.fmin(x["error_own_z"], x["error_peer_z"]), x["error_chance_z"])
        if not np.isfinite(usual) or np.fmin(x["error_level_z"],
                                              x["error_level_chance_z"]) > np.nan_to_num(rise_z):
            top = max(1, int(np.ceil(100 * x["error_level_share"])))
            who = _share_words(x["error_level_share"], str(sc.group[i])).split(" of ", 1)[1]
            return f"error rate {_pct(rate)} {span}, the highest {top}% of {who}"
        if usual > 0 and 1.5 <= rate / usual <= 20:
            return (f"error rate {rate / usual:.1f}× its usual ({_pct(rate)} {span} against "
                    f"{_pct(usual)})")
        return f"error rate {_pct(rate)} {span}, up from a usual {_pct(usual)}"
    if name == "contraction":
        parts = []
        when = f.text("downgraded_at")[i]
        if when is not None and not pd.isna(when):
            parts.append(f"downgraded on {_day(when)}")
        elif f["downgrades_90d"][i] >= 1:
            parts.append("downgraded in the last 90 days")
        change = f["mrr_change_90d_pct"][i]
        if change < 0:
            parts.append(f"MRR down {abs(change):.0f}% over 90 days")
        return "; ".join(parts)
    if name == "modelled_risk":
        top = max(1, int(np.ceil(100 * x["modelled_risk_share"])))
        return (f"modelled churn risk {_pct(x['churn_probability'])}, the highest {top}% of "
                "accounts")
    if name == "negative_voice":
        return (f"{_count(f['negative_mentions_28d'][i])} of "
                f"{_plural(f['mentions_28d'][i], 'social mention')} negative in 28 days")
    raise UnknownNameError(f"unknown silent signal {name!r}")


def _silent(f: _Frame, as_of: date, rule: SilentRule, *, usage_ok: bool, support_ok: bool,
            cancelled: np.ndarray, weekly: pd.DataFrame | None,
            peers: pd.DataFrame | None) -> list[dict[str, Any]]:
    if not support_ok:
        log.warning("support source stale as of %s: no account is called silent", as_of)
        return []
    sc = silent_scores(f, weekly, peers, rule, usage_ok=usage_ok)
    since = f["days_since_last_ticket"]
    bar = rule.evidence_bar(since)
    fired = np.flatnonzero(rule.fires(sc.evidence, since) & ~cancelled)
    names = list(sc.strength)
    levels = np.column_stack([sc.strength[k] for k in names])
    ids = f.text("account_id")
    last_ticket = f.text("support_last_at")
    out = []
    for i in fired:
        order = sorted((j for j in range(len(names)) if levels[i, j] > 0),
                       key=lambda j: -levels[i, j])
        words = [_signal_text(names[j], int(i), f, sc, rule) for j in order
                 if levels[i, j] >= NAMED_Z or j == order[0]]
        ticket = last_ticket[i]
        if not np.isfinite(since[i]):
            words.append("no ticket on record")
        elif bar[i] > rule.min_evidence:
            words.append(f"no ticket in {_count(since[i])} days (a ticket that recent raises "
                         f"the evidence needed from {_one_decimal(rule.min_evidence)} to "
                         f"{_one_decimal(bar[i])})")
        else:
            words.append(f"no ticket in {_count(since[i])} days")
        details: dict[str, Any] = {
            "evidence_z": _num(sc.evidence[i], 2),
            "evidence_bar": _num(bar[i], 2),
            "signals": {names[j]: _num(levels[i, j], 2) for j in order},
            # the risk list's next step reads the strongest signal from these two lists
            "strong": [names[j] for j in order if levels[i, j] >= rule.min_evidence],
            "weak": [names[j] for j in order if levels[i, j] < rule.min_evidence],
            "peer_group": str(sc.group[i]).replace(_SEP, " / "),
            "baseline_weeks": int(sc.baseline_weeks[i]),
            "recent_weeks": rule.recent_weeks,
            "no_contact_days": rule.no_contact_days,
            "last_ticket_at": None if ticket is None or pd.isna(ticket)
            else pd.Timestamp(ticket).isoformat(),
        }
        for key, values in sc.numbers.items():
            details[key] = _num(values[i])
        for col in ("events_28d", "events_prev_28d", "active_users_28d", "seats",
                    "downgrades_90d", "mrr_change_90d_pct", "mentions_28d",
                    "negative_mentions_28d"):
            details[col] = _num(f[col][i])
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
            text += f" ({_money(amount, currency[i])}" + (" in all)" if n > 1 else ")")
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


#: How a renewal date without one on record was estimated, in the renewal flag's evidence.
ESTIMATE_WORDS = {
    "billing": "estimated from its billing term: no renewal date on record",
    "anniversary": "estimated: its start's anniversary, with no renewal date on record and no "
                   "billing term",
}


#: The features `renewal_days` reads.
RENEWAL_INPUTS = ("days_to_renewal", "days_to_renewal_est", "billing_term_days", "is_annual")


def renewal_days(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Days to each account's next renewal, and how each was known (None: the stored renewal
    date; "billing" or "anniversary": estimated, `days_to_renewal_est`).

    The stored renewal date decides when there is one for the date (it is unknown on a past
    date loaded after the fact, and optional in the contract). Without it, an annual
    contract's next renewal is estimated from its billing term, or, with no billing term at
    all, from the anniversary of the account's start (the scorecard's renewal window reads
    the same estimate). A monthly term gets no estimate: it renews every month, so "renews
    soon" would say nothing.
    """
    stored = _col(frame, "days_to_renewal")
    est, term = _col(frame, "days_to_renewal_est"), _col(frame, "billing_term_days")
    annual = _col(frame, "is_annual") == 1
    no_term = np.isnan(term)
    use = np.isnan(stored) & np.isfinite(est) & (annual | no_term)
    how = np.full(len(stored), None, dtype=object)
    how[use & annual] = "billing"
    how[use & ~annual & no_term] = "anniversary"
    return np.where(use, est, stored), how


def _renewal(f: _Frame, as_of: date, s: FlagSettings,
             cancelled: np.ndarray) -> list[dict[str, Any]]:
    days, estimated = renewal_days(f.data)
    band = f.text("band")
    in_bands = np.isin(band.astype(str), list(s.renewal_bands)) & (band != None)  # noqa: E711
    c7, c30 = f["change_7d"], f["change_30d"]
    falling = (c7 <= -s.renewal_falling_points) | (c30 <= -s.renewal_falling_points)
    with np.errstate(invalid="ignore"):
        soon = (days >= 0) & (days <= s.renewal_days)
        # a contract worth nothing (a free plan, a full discount) has no renewal to save;
        # an MRR the feeds do not know (NaN) may be one
        worth = ~(f["mrr"] <= 0)
    fired = np.flatnonzero(soon & (in_bands | falling) & worth & ~cancelled)
    ids, score = f.text("account_id"), f["score"]
    out = []
    for i in fired:
        renews = as_of + timedelta(days=int(days[i]))
        when = "today" if days[i] == 0 else f"in {_plural(days[i], 'day')}"
        how = ESTIMATE_WORDS.get(estimated[i] or "")
        parts = [f"renews {when} ({renews.isoformat()}" + (f", {how})" if how else ")")]
        if band[i] is not None and not np.isnan(score[i]):
            parts.append(f"health {_one_decimal(score[i])} ({band[i]})")
        for change, span in ((c30[i], 30), (c7[i], 7)):
            if change <= -s.renewal_falling_points:
                parts.append(f"down {abs(change):.0f} points in {span} days")
                break
        out.append({"account_id": ids[i], "flag": RENEWAL, "evidence": "; ".join(parts),
                    "details": {"renewal_date": renews.isoformat(),
                                "days_to_renewal": _num(days[i]),
                                "renewal_estimated": estimated[i], "score": _num(score[i]),
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
                   weekly: pd.DataFrame | None = None,
                   peers: pd.DataFrame | None = None,
                   downgrades: pd.DataFrame | None = None,
                   champions: pd.DataFrame | None = None,
                   failures: pd.DataFrame | None = None,
                   outages: pd.DataFrame | None = None,
                   churn: pd.DataFrame | None = None,
                   settings: FlagSettings | None = None,
                   stale_sources: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """Decide every flag for every account of a features frame; no database needed.

    Returns one row per (account, flag that fires): account_id, flag, evidence, details.
    `weekly` is the accounts' weekly usage (`sql.flags.weekly_usage`), `peers` their segment
    and plan (account_id, segment, plan), `downgrades` their latest downgrade
    (`sql.flags.last_downgrades`); without `weekly` the silent flag reads only the events
    (contraction, negative voice).
    `outages` is one row per (account, incident that hit it lately), as
    `models.outage.recent_hits` returns. `churn` is the champion model's risk of the date
    (account_id, probability: the `churn_scores` rows); with it the silent flag also weighs
    the modelled risk (`modelled_risk`), ranked among the accounts it scored.
    """
    s = settings or FlagSettings()
    f = _Frame(_assemble(features, health, downgrades, champions, failures, churn))
    if not len(f.data):
        return pd.DataFrame(columns=FLAG_COLUMNS)
    cancelled = f.data["cancelled"].fillna(False).astype(bool).to_numpy() \
        if "cancelled" in f.data else np.zeros(len(f.data), dtype=bool)
    rows = (_silent(f, as_of, s.silent, usage_ok="usage" not in stale_sources,
                    support_ok="support" not in stale_sources, cancelled=cancelled,
                    weekly=weekly, peers=peers)
            + _payment(f) + _renewal(f, as_of, s, cancelled) + _champion(f, as_of, s, cancelled)
            + _outage(f, outages, s))
    out = pd.DataFrame(rows, columns=FLAG_COLUMNS)
    return out.sort_values(["account_id", "flag"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- one date


def flag_settings() -> FlagSettings:
    """The flags' settings for the product's runs: the defaults, with how long "no contact"
    lasts from PULSE_SILENT_NO_CONTACT_DAYS (`silent_no_contact_days`)."""
    from pulse.core.settings import get_settings

    days = get_settings().silent_no_contact_days
    s = FlagSettings()
    return s if days == s.silent.no_contact_days else replace(
        s, silent=replace(s.silent, no_contact_days=days))


@dataclass
class FlagInputs:
    """What the flags of one date read from the warehouse (see `evaluate_flags`)."""

    features: pd.DataFrame
    health: pd.DataFrame
    weekly: pd.DataFrame
    downgrades: pd.DataFrame
    peers: pd.DataFrame
    champions: pd.DataFrame
    failures: pd.DataFrame
    outages: pd.DataFrame
    churn: pd.DataFrame
    stale: set[str]


def flag_inputs(engine: Engine, as_of: date, *, settings: FlagSettings | None = None,
                scorecard: Any = None) -> FlagInputs:
    """Read the date's features, health and the flags' extra inputs, on the basis the
    features were computed on ("known" or "occurred"); the stale sources by the scorecard."""
    from pulse.models.health import source_freshness
    from pulse.models.outage import recent_hits
    from pulse.models.scorecard import load_scorecard
    from pulse.sql.features import load_features
    from pulse.sql.flags import (
        champions,
        last_downgrades,
        load_accounts,
        load_churn_scores,
        open_failures,
        weekly_usage,
    )
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
    return FlagInputs(
        features=features, health=health,
        weekly=weekly_usage(engine, as_of, basis=basis,
                            weeks=s.silent.skip_weeks + s.silent.baseline_weeks),
        downgrades=last_downgrades(engine, as_of, basis=basis),
        peers=load_accounts(engine)[["account_id", "segment", "plan"]],
        champions=champions(engine, as_of, basis=basis, prior_days=s.champion_prior_days,
                            gone_days=s.champion_gone_days),
        failures=open_failures(engine, as_of, basis=basis),
        outages=recent_hits(engine, as_of, basis=basis, days=s.outage_days),
        churn=load_churn_scores(engine, as_of, drivers=False)[["account_id", "probability"]],
        stale={x.source for x in source_freshness(features, as_of, card) if x.stale})


def compute_flags(engine: Engine, as_of: date, *, settings: FlagSettings | None = None,
                  scorecard: Any = None,
                  on_stage: Callable[[str], None] | None = None) -> int:
    """Decide every flag as of `as_of` and replace that date's stored flags; returns the rows.

    Needs the date's features (and, for the health signals, its health): run
    `pulse score --as-of DATE` first. The extra inputs are read on the same basis as the
    features were computed ("known" or "occurred"). Idempotent: a re-run replaces the date.
    """
    from pulse.sql.flags import write_flags

    s = settings or flag_settings()
    if on_stage:
        on_stage(f"reading flag inputs as of {as_of}")
    inp = flag_inputs(engine, as_of, settings=s, scorecard=scorecard)
    if on_stage:
        on_stage(f"deciding flags as of {as_of}")
    flags = evaluate_flags(inp.features, as_of, health=inp.health, weekly=inp.weekly,
                           peers=inp.peers, downgrades=inp.downgrades,
                           champions=inp.champions, failures=inp.failures,
                           outages=inp.outages, churn=inp.churn, settings=s,
                           stale_sources=inp.stale)
    written = write_flags(engine, as_of, flags)
    counts = flags["flag"].value_counts().to_dict()
    log.info("flags as of %s: %s", as_of, counts)
    return written


def silent_evidence(engine: Engine, as_of: date, *, settings: FlagSettings | None = None,
                    scorecard: Any = None) -> pd.DataFrame:
    """Every account's silent-dissatisfaction evidence as of `as_of`, the flag fired or not
    (for measuring the flag: `pulse bench models --rows`): account_id, evidence (the z the
    flag compares with the bar), each signal's strength, the peer group, the baseline weeks,
    the days since the last ticket and the bar itself (`SilentRule.evidence_bar`: the
    evidence needed, higher after a recent ticket). Reads what `compute_flags` reads."""
    s = settings or flag_settings()
    inp = flag_inputs(engine, as_of, settings=s, scorecard=scorecard)
    f = _Frame(_assemble(inp.features, inp.health, inp.downgrades, inp.champions,
                         inp.failures, inp.churn))
    sc = silent_scores(f, inp.weekly, inp.peers, s.silent, usage_ok="usage" not in inp.stale)
    return pd.DataFrame({
        "account_id": f.text("account_id"), "evidence": sc.evidence,
        **{name: values for name, values in sc.strength.items()},
        "peer_group": [str(g).replace(_SEP, " / ") for g in sc.group],
        "baseline_weeks": sc.baseline_weeks, "days_since_last_ticket": f["days_since_last_ticket"],
        "bar": s.silent.evidence_bar(f["days_since_last_ticket"])})

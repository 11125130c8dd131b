"""The CSM risk list, and one account's page.

`build_risk_list(engine, as_of)` ranks the accounts scored as of a date by revenue at risk:
churn probability x MRR. The probability is the churn model's (`churn_scores` of that date)
where it scored the account, else the churn rate that the account's health has meant in this
warehouse's own history (the scorecard's `calibration` curve, fitted by `pulse scorecard
calibrate`); without either there is no probability, and the row says why. Every row says
which in `risk_basis` ("churn_model v3", "scorecard" for the calibrated curve, "scorecard
(uncalibrated)", or "none"). Scorecard-based rows rank by band first (red, amber, watch, green),
then by revenue at risk. Each
row explains itself: health and its change, the flags with their evidence, the top drivers
in words, the renewal date, how fresh every source is, and what to do next.

Accounts whose subscription is cancelled are churned, not at risk, and are left out.
The JSON form `pulse risk-list --format json` prints is documented in docs/risk-list.md and
checked against docs/risk-list.schema.json.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from pulse.core.errors import NotScoredError, RiskListError
from pulse.models.flag_rules import CHAMPION, FLAG_NAMES, OUTAGE, PAYMENT, RENEWAL, SILENT
from pulse.models.flags import RENEWAL_INPUTS, renewal_days
from pulse.models.health import SKIP_WORDS
from pulse.models.scorecard import BANDS as SCORECARD_BANDS
from pulse.sql.features import FEATURES, FRESHNESS

BANDS = tuple(reversed(SCORECARD_BANDS))  # red, amber, watch, green: riskiest first
SCHEMA_VERSION = 2  # 2: `band` may be "watch"
TOP_DRIVERS = 3


# --------------------------------------------------------------------------- words


#: The risk basis of a row scored by a scorecard whose bands were never fitted: no probability.
UNCALIBRATED = "scorecard (uncalibrated)"


def format_value(feature: str, value: float | None) -> str:
    """A feature's value as a CSM reads it: percents, shares, hours, counts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    v = float(value)
    if feature.endswith("_pct"):
        return f"{v:+.0f}%"
    if feature in ("error_rate_28d", "negative_share_28d", "seat_utilisation_28d",
                   "first_response_late_share_90d"):
        return f"{100 * v:.1f}%" if abs(v) < 0.1 else f"{100 * v:.0f}%"
    if "hours" in feature:
        return f"{v * 60:.0f} min" if abs(v) < 1 else f"{v:,.0f} h"
    if feature.startswith("seat_use_vs_peak") or feature.endswith("_share_90d"):
        return f"{100 * v:.0f}%"
    if "_vs_" in feature:  # against the account's own past: 1 is steady
        return f"{v:.2f}×"
    if feature.endswith("_minus_180d"):  # a change of shares, in percentage points
        return f"{100 * v:+.1f} pts"
    if v == int(v):
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def measure_labels(scorecard: Any) -> dict[str, str]:
    """Each measure's label by its name, across the scorecard's cards (the first wins)."""
    out: dict[str, str] = {}
    if scorecard is None:
        return out
    for card in scorecard.cards():
        for m in card.measures:
            out.setdefault(m.name, m.label)
    return out


def measure_drivers(measures: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Every scored measure with the points it costs: `lost` = its share of the weights used
    x (100 - points), so an account's health is 100 minus the sum of its lost points. Rows
    carry `text`: "LABEL: VALUE (scores P/100, weight W)". Sorted by account, most lost first.
    """
    if measures.empty:
        return measures.assign(lost=[], text=[])
    m = measures.copy()
    for col in ("value", "points", "weight", "contribution"):
        m[col] = pd.to_numeric(m[col], errors="coerce").astype("float64")
    used = m["weight"].where(m["points"].notna(), 0.0)
    total = used.groupby(m["account_id"]).transform("sum")
    with np.errstate(invalid="ignore", divide="ignore"):
        m["lost"] = np.where(m["points"].notna() & (total > 0),
                             used / total * (100.0 - m["points"]), np.nan)
    m["text"] = [
        f"{labels.get(name, feature)}: {format_value(feature, value)} "
        + (f"(scores {points:.0f}/100, weight {weight:g})" if not math.isnan(points)
           else f"(left out: {skipped or 'no data'})")
        for name, feature, value, points, weight, skipped in zip(
            m["measure"], m["feature"], m["value"], m["points"], m["weight"], m["skipped"])
    ]
    return m.sort_values(["account_id", "lost"], ascending=[True, False], kind="stable",
                         na_position="last")


def churn_driver_texts(drivers: Any, top: int = TOP_DRIVERS) -> list[str]:
    """The churn model's stored drivers in words (their `text` when it has one)."""
    if not isinstance(drivers, list):
        return []
    out = []
    for d in drivers[:top]:
        if isinstance(d, str):
            out.append(d)
        elif isinstance(d, dict):
            text = d.get("text")
            if not text:
                feature = str(d.get("feature", "?"))
                value = d.get("value")
                shown = format_value(feature, value) if isinstance(value, int | float) \
                    else str(value)
                direction = d.get("direction", "moves")
                points = d.get("points")
                text = f"{feature} {shown} {direction} risk" + (
                    f" by {abs(float(points)):.1f} points" if isinstance(points, int | float)
                    else "")
            out.append(str(text))
    return out


#: Without a flag, a churn model's probability at least this many times history's base rate
#: asks for a review (as red means a churn rate twice the base rate in health's terms).
REVIEW_RISK_RATIO = 2.0


def next_action(flags: Sequence[str], details: dict[str, Any], band: str | None,
                change_30d: float | None, *, model_probability: float | None = None,
                base_rate: float | None = None) -> str:
    """A short suggestion of what to do next, from the flags (most urgent first). Without a
    flag: review the health drivers when red, the churn risk when the model puts it at
    `REVIEW_RISK_RATIO` times history's base rate or more (the calibrated scorecard's), watch
    a falling health, look again at a watch-band account at the next review, else nothing."""
    actions: list[str] = []
    if PAYMENT in flags:
        n = (details.get(PAYMENT) or {}).get("open_failed_payments") or 1
        actions.append("check the failed payment" if n == 1 else f"check the {n} failed payments")
    if OUTAGE in flags:
        incident = (details.get(OUTAGE) or {}).get("incident_id")
        actions.append("acknowledge the outage" + (f" ({incident})" if incident else "")
                       + ": say what failed for them and what was fixed")
    if CHAMPION in flags:
        who = (details.get(CHAMPION) or {}).get("name") or "the champion"
        actions.append(f"find and call {who}'s replacement" if who != "the champion"
                       else "call the champion's replacement")
    if RENEWAL in flags:
        when = (details.get(RENEWAL) or {}).get("renewal_date")
        actions.append("prepare the renewal" + (f" of {when}" if when else "")
                       + ": review the value with the sponsor")
    if SILENT in flags:
        d = details.get(SILENT) or {}
        first = (d.get("strong") or d.get("weak") or [""])[0]
        ask = {
            "usage_drop": "ask why usage dropped",
            "users_drop": "ask why fewer people use it",
            "error_rise": "ask about the errors they hit",
            "contraction": "ask what made them cut back",
            "failed_payment": "ask how things are going",
            "negative_voice": "answer what they said in public",
            "low_health": "ask how things are going",
        }.get(first, "ask how things are going")
        actions.append(f"check in before they leave: {ask}")
    if not actions:
        high_risk = (model_probability is not None and base_rate is not None and base_rate > 0
                     and model_probability >= REVIEW_RISK_RATIO * base_rate)
        if band == "red":
            actions.append("review the health drivers")
        if high_risk:
            actions.append(f"review the churn risk: the model gives {model_probability:.0%} "
                           f"against history's {base_rate:.0%}")
        falling = change_30d is not None and not math.isnan(change_30d) and change_30d <= -10
        if not actions:
            actions.append("watch: health is falling" if falling else
                           "look again at the next review: history's churners scored this "
                           "health too" if band == "watch" else "no action needed")
    return "; then ".join(actions[:2])


# --------------------------------------------------------------------------- building


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def _float(value: Any, digits: int | None = None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits) if digits is not None else x


def _freshness(features: pd.DataFrame, as_of: date, scorecard: Any
               ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per source: its latest row, its limit and whether it is stale (the same for every
    account); and the list of stale sources in words."""
    from pulse.models.health import source_freshness

    limits = {f.source: f for f in source_freshness(features, as_of, scorecard)}
    per_source: dict[str, dict[str, Any]] = {}
    stale: list[dict[str, Any]] = []
    for source, (_account_col, source_col) in FRESHNESS.items():
        f = limits.get(source)
        last = features[source_col].max() if source_col in features and len(features) else None
        per_source[source] = {
            "source_last_at": _iso(last),
            "stale_after_days": f.stale_after_days if f else None,
            "stale": bool(f.stale) if f else False,
        }
        if f and f.stale:
            stale.append({"source": source, "last_at": _iso(f.last_at),
                          "age_days": None if f.age_days is None else round(f.age_days, 2),
                          "stale_after_days": f.stale_after_days,
                          "message": "stale source " + f.describe()})
    return per_source, stale


class _Inputs:
    """Everything a date's risk list reads, one frame per source."""

    def __init__(self, engine: Engine, as_of: date, scorecard: Any,
                 account_ids: Sequence[str] | None = None) -> None:
        from pulse.sql.features import load_features
        from pulse.sql.flags import load_accounts, load_churn_scores, load_flags
        from pulse.sql.health import load_health, load_measures

        self.as_of = as_of
        self.features = load_features(engine, as_of, account_ids)
        self.health = load_health(engine, as_of, account_ids)
        if self.features.empty and self.health.empty:
            raise NotScoredError(f"nothing scored as of {as_of}: run `pulse score --as-of "
                                 f"{as_of}` first")
        self.accounts = load_accounts(engine, account_ids)
        self.flags = load_flags(engine, as_of, account_ids)
        self.churn = load_churn_scores(engine, as_of, account_ids)
        self.measures = load_measures(engine, as_of, account_ids)
        self.scorecard = scorecard
        self.source_freshness, self.stale_sources = _freshness(self.features, as_of,
                                                               scorecard)


def _frame(inp: _Inputs) -> pd.DataFrame:
    """One row per account scored as of the date, with the risk columns, not yet ranked."""
    ids = pd.Index(inp.features["account_id"]).union(pd.Index(inp.health["account_id"]))
    frame = pd.DataFrame({"account_id": ids.astype(object)})
    feat_cols = ["account_id", "mrr", "cancelled", *RENEWAL_INPUTS,
                 *[c for c, _s in FRESHNESS.values() if c]]
    frame = frame.merge(inp.features[[c for c in feat_cols if c in inp.features]],
                        on="account_id", how="left")
    frame = frame.merge(inp.health[["account_id", "score", "band", "change_7d", "change_30d"]],
                        on="account_id", how="left")
    frame = frame.merge(inp.accounts, on="account_id", how="left")
    churn = inp.churn.rename(columns={"probability": "churn_p", "drivers": "churn_drivers"})
    frame = frame.merge(churn, on="account_id", how="left")
    cancelled = frame["cancelled"].fillna(False).astype(bool)
    frame = frame.loc[~cancelled].reset_index(drop=True)
    # the renewal as of the date, as the renewal flag reads it: the stored date when it
    # describes the date, else an annual contract's estimate (the accounts' stored
    # renewal_date may lie past a later renewal when history was loaded after the fact)
    days, estimated = renewal_days(frame)
    frame["days_to_renewal"], frame["renewal_estimated"] = days, estimated
    frame = frame.drop(columns=["renewal_date"], errors="ignore")
    score = pd.to_numeric(frame["score"], errors="coerce").astype("float64")
    churn_p = pd.to_numeric(frame["churn_p"], errors="coerce").astype("float64")
    has_model = churn_p.notna()
    calibration = getattr(inp.scorecard, "calibration", None)
    # never (100 - health) / 100 dressed up as a probability: the churn rate health has meant
    # in this history, when the scorecard was calibrated; else none
    from_health = (calibration.probability(score.to_numpy()) if calibration is not None
                   else np.full(len(frame), np.nan))
    frame["probability"] = np.where(has_model, churn_p, from_health)
    frame["risk_basis"] = np.where(
        has_model, "churn_model v" + frame["model_version"].astype(str).str.replace(
            r"\.0$", "", regex=True),
        np.where(score.notna(), "scorecard" if calibration is not None
                 else UNCALIBRATED, "none"))
    mrr = pd.to_numeric(frame["mrr"], errors="coerce").astype("float64")
    frame["revenue_at_risk"] = np.round(frame["probability"] * mrr, 2)
    # flags as lists, in a fixed order
    order = {name: k for k, name in enumerate(FLAG_NAMES)}
    fl = inp.flags.assign(rank=inp.flags["flag"].map(order).fillna(len(order)))
    fl = fl.sort_values(["account_id", "rank", "flag"], kind="stable")
    grouped = fl.groupby("account_id", sort=False)
    names = grouped["flag"].agg(list)
    frame["flags"] = frame["account_id"].map(names)
    frame["flags"] = [x if isinstance(x, list) else [] for x in frame["flags"]]
    return frame


BAND_TIER = {b: i for i, b in enumerate(BANDS)}


def rank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Most revenue at risk first. The scorecard's stand-in probability is not calibrated,
    so where it is the basis, the band comes first: a big green account never outranks a
    small red one. Model-scored accounts rank with the red ones; unscored ones go last."""
    from pulse.core.fx import to_reporting

    model = frame["risk_basis"].astype(str).str.startswith("churn_model")
    tier = np.where(model, 0, frame["band"].map(BAND_TIER).fillna(len(BANDS)).to_numpy())
    currency = frame["currency"] if "currency" in frame else [None] * len(frame)
    # Accounts bill in their own currencies: compare money in the reporting currency.
    at_risk = to_reporting(frame["revenue_at_risk"], currency)
    mrr = to_reporting(frame["mrr"], currency)
    return (frame.assign(_tier=tier, _risk=at_risk, _mrr=mrr).sort_values(
        ["_tier", "_risk", "probability", "_mrr", "account_id"],
        ascending=[True, False, False, False, True], na_position="last", kind="stable",
    ).drop(columns=["_tier", "_risk", "_mrr"]).reset_index(drop=True))


def ranked_by(rows: Sequence[dict[str, Any]]) -> str:
    """How a list was ranked: by revenue at risk, or by band first where the scorecard's
    stand-in is the basis."""
    if any(str(r["risk_basis"]).startswith("scorecard") for r in rows):
        return "band_then_revenue_at_risk"
    return "revenue_at_risk"


def _rows(inp: _Inputs, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The risk-list rows of the (already ranked and filtered) frame."""
    ids = list(frame["account_id"])
    labels = measure_labels(inp.scorecard)
    drivers = measure_drivers(inp.measures[inp.measures["account_id"].isin(ids)], labels)
    top_health = (drivers[drivers["lost"] > 0.05].groupby("account_id", sort=False)["text"]
                  .agg(lambda s: list(s)[:TOP_DRIVERS]).to_dict()) if len(drivers) else {}
    flags = inp.flags[inp.flags["account_id"].isin(ids)]
    evidence: dict[str, dict[str, str]] = {}
    details: dict[str, dict[str, Any]] = {}
    for acc, flag, text, det in zip(flags["account_id"], flags["flag"], flags["evidence"],
                                    flags["details"]):
        evidence.setdefault(acc, {})[flag] = text
        details.setdefault(acc, {})[flag] = det if isinstance(det, dict) else {}
    account_cols = {source: col for source, (col, _s) in FRESHNESS.items()}
    calibration = getattr(inp.scorecard, "calibration", None)
    base_rate = calibration.base_rate if calibration is not None else None
    out = []
    for rank, r in enumerate(frame.itertuples(index=False), start=1):
        acc = r.account_id
        names = list(r.flags)
        health_drivers = top_health.get(acc, [])
        basis = str(r.risk_basis)
        # the model explains only its riskiest accounts: the others keep the scorecard's
        top = (churn_driver_texts(r.churn_drivers) if basis.startswith("churn_model")
               else []) or health_drivers
        freshness = {}
        for source, info in inp.source_freshness.items():
            col = account_cols[source]
            freshness[source] = {"last_at": _iso(getattr(r, col)) if col else None, **info}
        days = _float(r.days_to_renewal)
        out.append({
            "rank": rank,
            "account_id": acc,
            "name": None if pd.isna(r.name) else str(r.name),
            "csm_email": None if pd.isna(r.csm_email) else str(r.csm_email),
            "currency": None if pd.isna(r.currency) else str(r.currency),
            "mrr": _float(r.mrr, 2),
            "health": _float(r.score, 1),
            "band": None if pd.isna(r.band) else str(r.band),
            "change_7d": _float(r.change_7d, 1),
            "change_30d": _float(r.change_30d, 1),
            "churn_probability": _float(r.probability, 4),
            "revenue_at_risk": _float(r.revenue_at_risk, 2),
            "risk_basis": basis,
            "flags": names,
            "evidence": [evidence.get(acc, {}).get(n, "") for n in names],
            "drivers": top,
            "health_drivers": health_drivers,
            "renewal_date": None if days is None
            else (inp.as_of + timedelta(days=int(days))).isoformat(),
            "days_to_renewal": None if days is None else int(days),
            "renewal_estimated": None if pd.isna(r.renewal_estimated)
            else str(r.renewal_estimated),
            "freshness": freshness,
            "next_action": next_action(
                names, details.get(acc, {}), None if pd.isna(r.band) else str(r.band),
                _float(r.change_30d), base_rate=base_rate,
                model_probability=_float(r.probability) if basis.startswith("churn_model")
                else None),
        })
    return out


def _load_scorecard(scorecard: Any) -> Any:
    if scorecard is not None:
        return scorecard
    from pulse.models.scorecard import load_scorecard

    return load_scorecard()


def _check_filters(band: str | None, flag: str | None) -> None:
    if band is not None and band not in BANDS:
        raise RiskListError(f"unknown band {band!r}: expected one of {', '.join(BANDS)}")
    if flag is not None and flag not in FLAG_NAMES:
        raise RiskListError(f"unknown flag {flag!r}: expected one of "
                            f"{', '.join(FLAG_NAMES)}")


def _build(engine: Engine, as_of: date, *, csm: str | None, band: str | None,
           flag: str | None, limit: int | None, scorecard: Any
           ) -> tuple[_Inputs, list[dict[str, Any]]]:
    _check_filters(band, flag)
    if limit is not None and limit < 0:
        raise RiskListError(f"limit must be 0 or more (not {limit})")
    inp = _Inputs(engine, as_of, _load_scorecard(scorecard))
    frame = _frame(inp)
    if csm is not None:
        frame = frame[frame["csm_email"].fillna("").str.lower() == csm.strip().lower()]
    if band is not None:
        frame = frame[frame["band"] == band]
    if flag is not None:
        # a boolean array, not a list: an empty list would select no columns, not no rows
        frame = frame[np.array([flag in names for names in frame["flags"]], dtype=bool)]
    frame = rank_rows(frame)
    if limit is not None:
        frame = frame.head(limit)
    return inp, _rows(inp, frame)


def explain_accounts(engine: Engine, as_of: date, account_ids: Sequence[str],
                     scorecard: Any) -> dict[str, dict[str, Any]]:
    """The risk-list rows of these accounts only (flags, drivers, next action), by account:
    for a page that shows a few rows without building the whole list."""
    inp = _Inputs(engine, as_of, scorecard, list(account_ids))
    return {x["account_id"]: x for x in _rows(inp, _frame(inp))}


def build_risk_list(engine: Engine, as_of: date, *, csm: str | None = None,
                    band: str | None = None, flag: str | None = None,
                    limit: int | None = None, scorecard: Any = None) -> list[dict[str, Any]]:
    """The accounts scored as of `as_of`, ranked by revenue at risk, most first.

    Filters: `csm` (the CSM's e-mail, any case), `band` (red, amber, watch or green), `flag` (a
    flag name), `limit` (the first N after filtering). Each row is a dict as documented in
    docs/risk-list.md. Raises `NotScoredError` when nothing was scored that day.
    """
    return _build(engine, as_of, csm=csm, band=band, flag=flag, limit=limit,
                  scorecard=scorecard)[1]


def bands_in_use(inp: _Inputs) -> dict[str, Any]:
    """Where each band starts on the scorecard in use, when it was fitted to this warehouse's
    churners (None: its own cut points), and whether every account of the date was scored
    with it (else a stored band may follow other cut points until the date is scored again)."""
    card = inp.scorecard
    used = set(inp.health["scorecard_version"].dropna())
    return {"green": card.green, "watch": card.watch, "amber": card.amber,
            "calibrated_on": card.calibrated_on,
            "scored_with_it": used <= {card.label}}


def risk_list_document(engine: Engine, as_of: date, *, csm: str | None = None,
                       band: str | None = None, flag: str | None = None,
                       limit: int | None = None, scorecard: Any = None) -> dict[str, Any]:
    """The risk list as the JSON document `pulse risk-list --format json` prints."""
    inp, rows = _build(engine, as_of, csm=csm, band=band, flag=flag, limit=limit,
                       scorecard=scorecard)
    return {
        "schema_version": SCHEMA_VERSION,
        "as_of": as_of.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ranked_by": ranked_by(rows),
        "filters": {"csm": csm, "band": band, "flag": flag, "limit": limit},
        "stale_sources": inp.stale_sources,
        "bands": bands_in_use(inp),
        "count": len(rows),
        "accounts": rows,
    }


def latest_scored_date(engine: Engine, until: date | None = None) -> date:
    """The latest date with stored health (on or before `until`); `NotScoredError` if none."""
    from pulse.sql.flags import health_dates_until

    dates = health_dates_until(engine, until)
    if not dates:
        raise NotScoredError("no health stored" + (f" on or before {until}" if until else "")
                             + ": run `pulse score` first")
    return dates[-1]


# --------------------------------------------------------------------------- one account


def account_view(engine: Engine, account_id: str, as_of: date | None = None, *,
                 scorecard: Any = None) -> dict[str, Any]:
    """One account's page: health history, current drivers, flags, churn risk, its risk-list
    row (None when cancelled). `as_of` defaults to the latest date the account was scored."""
    from pulse.sql.flags import load_accounts, load_health_history

    facts = load_accounts(engine, [account_id])
    if facts.empty:
        raise RiskListError(f"unknown account {account_id!r}")
    history = load_health_history(engine, account_id, until=as_of)
    if history.empty:
        raise NotScoredError(f"account {account_id} has no stored health"
                             + (f" on or before {as_of}" if as_of else "")
                             + ": run `pulse score` first")
    day = history["as_of"].iloc[-1]
    card = _load_scorecard(scorecard)
    inp = _Inputs(engine, day, card, [account_id])
    frame = _frame(inp)
    row = _rows(inp, frame)[0] if len(frame) else None
    scores = pd.to_numeric(history["score"], errors="coerce").astype("float64")
    steps = scores.diff()
    hist = [{
        "as_of": d.isoformat(), "scorecard": sc, "score": _float(s, 1),
        "band": None if pd.isna(b) else b, "change": _float(step, 1),
        "change_7d": _float(c7, 1), "change_30d": _float(c30, 1),
    } for d, sc, s, b, step, c7, c30 in zip(history["as_of"], history["scorecard"], scores,
                                            history["band"], steps, history["change_7d"],
                                            history["change_30d"])]
    labels = measure_labels(card)
    drivers = measure_drivers(inp.measures, labels)
    measures = [{
        "measure": m, "label": labels.get(m, f), "feature": f,
        "value": _float(v, 4), "value_text": format_value(f, _float(v)),
        "points": _float(p, 1), "weight": _float(w), "contribution": _float(c, 2),
        "lost": _float(lost, 2), "skipped": None if sk is None or pd.isna(sk) else sk,
        "skipped_text": None if sk is None or pd.isna(sk) else SKIP_WORDS.get(
            sk, str(sk).replace("_", " ")),
        "meaning": FEATURES[f].description if f in FEATURES else None,
    } for m, f, v, p, w, c, lost, sk in zip(
        drivers.get("measure", []), drivers.get("feature", []), drivers.get("value", []),
        drivers.get("points", []), drivers.get("weight", []), drivers.get("contribution", []),
        drivers.get("lost", []), drivers.get("skipped", []))]
    flags = [{"flag": fl, "evidence": ev, "details": det}
             for fl, ev, det in zip(inp.flags["flag"], inp.flags["evidence"],
                                    inp.flags["details"])]
    churn = None
    if len(inp.churn):
        c = inp.churn.iloc[0]
        churn = {"probability": _float(c["probability"], 4),
                 "model_version": int(c["model_version"]),
                 "drivers": churn_driver_texts(c["drivers"], top=10)}
    a = facts.iloc[0]
    health_row = history.iloc[-1]
    cancelled = bool(inp.features["cancelled"].fillna(False).astype(bool).any()) \
        if "cancelled" in inp.features else False
    return {
        "account_id": account_id,
        "name": None if pd.isna(a["name"]) else a["name"],
        "csm_email": None if pd.isna(a["csm_email"]) else a["csm_email"],
        "as_of": day.isoformat(),
        "scorecard": health_row["scorecard"],
        "health": _float(health_row["score"], 1),
        "band": None if pd.isna(health_row["band"]) else health_row["band"],
        "cancelled": cancelled,
        "history": hist,
        "measures": measures,
        "flags": flags,
        "churn": churn,
        "risk": row,
    }

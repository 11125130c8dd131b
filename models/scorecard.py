"""The health scorecard: weighted measures a customer-success team can read and edit.

A scorecard is a YAML file (the default is `models/scorecard.yaml`, which documents the
format). `load_scorecard()` reads and checks it; a file that cannot be used raises
`ScorecardError` naming each problem and its line. `score_features()` scores every account
of a features frame at once (numpy over a matrix of accounts x measures), and
`score_accounts()` scores one as-of date of the warehouse: it reads the materialised features
(sql/features.py), leaves out measures of stale sources, compares with the scores of 7 and 30
days earlier and stores each account's health with every measure's value, points and
contribution (sql/health.py).

Health = sum over the measures used of points x weight / (sum of the weights used), rounded to
one decimal; the band follows from the rounded score. A measure is left out for an account
when its feature has no value (`no_data`), its value lies outside every band
(`out_of_bands`), or its source is stale (`stale_source`, unless the file says
`skip_stale_measures: false`); the account's `skipped` list names them. With every measure left out the
account has no score and no band. Accounts younger than the onboarding period (counted from
`created_at`) get the onboarding measures, when the file has them.
"""
from __future__ import annotations

import difflib
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import Engine

from pulse.core.errors import ScorecardError
from pulse.sql.features import FEATURES, FRESHNESS

log = logging.getLogger(__name__)

DEFAULT_SCORECARD = Path(__file__).resolve().with_name("scorecard.yaml")
SCORECARD_ENV = "PULSE_SCORECARD"
BANDS = ("green", "amber", "red")
SKIP_NO_DATA = "no_data"
SKIP_STALE = "stale_source"
SKIP_OUT_OF_BANDS = "out_of_bands"  # a value below the first band or above the last


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Band:
    """Points for values in [lower, upper)."""

    lower: float  # -inf when open
    upper: float  # +inf when open
    points: float


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    feature: str
    weight: float
    line: int
    low: float = math.nan  # linear
    high: float = math.nan
    better: str = "higher"
    bands: tuple[Band, ...] = ()

    @property
    def kind(self) -> str:
        return "bands" if self.bands else "linear"

    @property
    def source(self) -> str:
        return FEATURES[self.feature].source

    def points(self, values: np.ndarray) -> np.ndarray:
        """Points (0..100) of each value; NaN where the value is missing."""
        values = np.asarray(values, dtype="float64")
        if self.bands:
            conditions = [(values >= b.lower) & (values < b.upper) for b in self.bands]
            out = np.select(conditions, [b.points for b in self.bands], default=np.nan)
        else:
            share = np.clip((values - self.low) / (self.high - self.low), 0.0, 1.0)
            out = 100.0 * (share if self.better == "higher" else 1.0 - share)
        return np.where(np.isnan(values), np.nan, out)

    def describe(self) -> str:
        if self.bands:
            parts = []
            for b in self.bands:
                lo = "" if math.isinf(b.lower) else f"{_num(b.lower)} <= "
                hi = "" if math.isinf(b.upper) else f" < {_num(b.upper)}"
                parts.append(f"{lo}x{hi}: {_num(b.points)}")
            return "; ".join(parts)
        lo, hi = (0, 100) if self.better == "higher" else (100, 0)
        return f"{_num(self.low)} -> {lo}, {_num(self.high)} -> {hi} (linear)"


@dataclass(frozen=True)
class Card:
    name: str
    measures: tuple[Measure, ...]


@dataclass(frozen=True)
class Scorecard:
    source: str
    version: str
    digest: str
    green: float
    amber: float
    standard: Card
    onboarding: Card | None = None
    onboarding_days: int = 30
    stale_after_days: dict[str, float] = field(default_factory=dict)
    skip_stale_measures: bool = True

    @property
    def label(self) -> str:
        """What every stored score records about the scorecard that made it."""
        return f"{self.version[:40]}@{self.digest}"

    def band(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype="float64")
        out = np.select([scores >= self.green, scores >= self.amber, scores < self.amber],
                        list(BANDS), default="")
        return np.where(np.isnan(scores), None, out).astype(object)

    def cards(self) -> Iterator[Card]:
        yield self.standard
        if self.onboarding:
            yield self.onboarding


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- reading


def scorecard_path(path: Path | str | None = None) -> Path:
    """`path`, else $PULSE_SCORECARD, else the default scorecard."""
    if path:
        return Path(path)
    from pulse.core.settings import get_settings

    configured = get_settings().scorecard
    return configured.expanduser() if configured else DEFAULT_SCORECARD


def load_scorecard(path: Path | str | None = None) -> Scorecard:
    """Read and check a scorecard file; raises `ScorecardError` naming the line of each problem."""
    p = scorecard_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScorecardError(str(p), [(None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScorecardError(str(p), [(None, f"cannot be read: {exc}")]) from None
    return parse_scorecard(text, source=str(p))


def parse_scorecard(text: str, *, source: str = "<scorecard>") -> Scorecard:
    """Check a scorecard's YAML text and build it; raises `ScorecardError`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ScorecardError(source, [(mark.line + 1 if mark else None,
                                       f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ScorecardError(source, [(None, f"not valid YAML: {exc}")]) from None
    checker = _Checker()
    card = checker.scorecard(root, source, hashlib.sha256(text.encode()).hexdigest()[:12])
    if checker.problems or card is None:
        raise ScorecardError(source, checker.problems or [(None, "empty scorecard")])
    return card


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOP_KEYS = ("version", "bands", "stale_after_days", "skip_stale_measures", "standard",
             "onboarding")


class _Checker:
    """Walks the YAML node tree, keeping each problem with the line it is on."""

    def __init__(self) -> None:
        self.problems: list[tuple[int | None, str]] = []
        self._ctor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node | None, message: str) -> None:
        self.problems.append((node.start_mark.line + 1 if node is not None else None, message))

    # ----- shapes

    def mapping(self, node: yaml.Node, where: str, *, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{where}: expected a mapping of {', '.join(allowed)}")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key is None:
                self.fail(knode, f"{where}: keys must be plain words")
            elif key in out:
                self.fail(knode, f"{where}: {key!r} is given twice")
            elif key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                self.fail(knode, f"{where}: unknown key {key!r} (expected "
                          + (f"{hint[0]!r}?)" if hint else f"one of {', '.join(allowed)})"))
            else:
                out[key] = (knode, vnode)
        for key in required:
            if key not in out:
                self.fail(node, f"{where}: {key!r} is missing")
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _NOT_SCALAR
        try:
            return self._ctor.construct_object(node, deep=True)
        except yaml.YAMLError:
            return _NOT_SCALAR

    def number(self, node: yaml.Node, where: str) -> float | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            shown = node.value if isinstance(node, yaml.ScalarNode) else "a " + node.id
            self.fail(node, f"{where}: expected a number (not {shown!r})")
            return None
        return float(value)

    def text(self, node: yaml.Node, where: str) -> str | None:
        value = self.scalar(node)
        if value is _NOT_SCALAR or value is None or isinstance(value, bool):
            self.fail(node, f"{where}: expected text")
            return None
        return str(value)

    # ----- parts

    def scorecard(self, root: yaml.Node | None, source: str, digest: str) -> Scorecard | None:
        if root is None:
            self.problems.append((None, "the file is empty"))
            return None
        top = self.mapping(root, "scorecard", allowed=_TOP_KEYS, required=("standard",))
        if top is None:
            return None
        version = "1"
        if "version" in top:
            version = self.text(top["version"][1], "version") or version
        green, amber = 70.0, 40.0
        if "bands" in top:
            green, amber = self.bands(top["bands"][1])
        stale: dict[str, float] = {}
        if "stale_after_days" in top:
            stale = self.stale_after(top["stale_after_days"][1])
        skip = True
        if "skip_stale_measures" in top:
            vnode = top["skip_stale_measures"][1]
            value = self.scalar(vnode)
            if not isinstance(value, bool):
                self.fail(vnode, "skip_stale_measures: expected true or false")
            else:
                skip = value
        standard = self.card(top["standard"][1], "standard") if "standard" in top else None
        onboarding, days = None, 30
        if "onboarding" in top:
            onboarding, days = self.onboarding(top["onboarding"][1])
        if standard is None:
            return None
        return Scorecard(source=source, version=version, digest=digest, green=green,
                         amber=amber, standard=standard, onboarding=onboarding,
                         onboarding_days=days, stale_after_days=stale,
                         skip_stale_measures=skip)

    def bands(self, node: yaml.Node) -> tuple[float, float]:
        m = self.mapping(node, "bands", allowed=("green", "amber"), required=("green", "amber"))
        if m is None or "green" not in m or "amber" not in m:
            return 70.0, 40.0
        green = self.number(m["green"][1], "bands.green")
        amber = self.number(m["amber"][1], "bands.amber")
        for name, value in (("green", green), ("amber", amber)):
            if value is not None and not 0 < value <= 100:
                self.fail(m[name][1], f"bands.{name}: expected a score above 0 and at most 100 "
                          f"(not {_num(value)})")
        if green is not None and amber is not None and green <= amber:
            self.fail(m["green"][1], f"bands: thresholds out of order: green ({_num(green)}) "
                      f"must be above amber ({_num(amber)})")
        return green or 70.0, amber or 40.0

    def stale_after(self, node: yaml.Node) -> dict[str, float]:
        sources = tuple(FRESHNESS)
        m = self.mapping(node, "stale_after_days", allowed=sources)
        out: dict[str, float] = {}
        for key, (_k, vnode) in (m or {}).items():
            value = self.number(vnode, f"stale_after_days.{key}")
            if value is not None and value <= 0:
                self.fail(vnode, f"stale_after_days.{key}: expected a number of days above 0 "
                          f"(not {_num(value)})")
            elif value is not None:
                out[key] = value
        return out

    def onboarding(self, node: yaml.Node) -> tuple[Card | None, int]:
        m = self.mapping(node, "onboarding", allowed=("days", "measures"),
                         required=("measures",))
        days = 30
        if m and "days" in m:
            value = self.number(m["days"][1], "onboarding.days")
            if value is not None and (value < 1 or value != int(value)):
                self.fail(m["days"][1], f"onboarding.days: expected a whole number of days, "
                          f"at least 1 (not {_num(value)})")
            elif value is not None:
                days = int(value)
        if not m or "measures" not in m:
            return None, days
        return self.measures(m["measures"][1], "onboarding"), days

    def card(self, node: yaml.Node, name: str) -> Card | None:
        m = self.mapping(node, name, allowed=("measures",), required=("measures",))
        if not m or "measures" not in m:
            return None
        return self.measures(m["measures"][1], name)

    def measures(self, node: yaml.Node, card: str) -> Card | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, f"{card}.measures: expected a list of at least one measure")
            return None
        out: list[Measure] = []
        seen: dict[str, int] = {}
        for item in node.value:
            measure = self.measure(item, card)
            if measure is None:
                continue
            if measure.name in seen:
                self.fail(item, f"{card}: measure name {measure.name!r} is used twice "
                          f"(first on line {seen[measure.name]})")
                continue
            seen[measure.name] = measure.line
            out.append(measure)
        return Card(card, tuple(out)) if out else None

    def measure(self, node: yaml.Node, card: str) -> Measure | None:
        m = self.mapping(node, f"{card} measure",
                         allowed=("name", "label", "feature", "weight", "linear", "bands"),
                         required=("name", "feature", "weight"))
        if m is None:
            return None
        name = self.text(m["name"][1], f"{card} measure name") if "name" in m else None
        if name is not None and not _NAME.match(name):
            self.fail(m["name"][1], f"{card} measure name {name!r}: expected lower-case letters, "
                      "digits and _ (at most 64, starting with a letter)")
            name = None
        where = f"measure {name!r}" if name else f"{card} measure"
        feature = self.text(m["feature"][1], f"{where}: feature") if "feature" in m else None
        if feature is not None and feature not in FEATURES:
            hint = difflib.get_close_matches(feature, list(FEATURES), n=1, cutoff=0.5)
            self.fail(m["feature"][1], f"{where}: unknown feature {feature!r} ("
                      + (f"did you mean {hint[0]!r}? " if hint else "")
                      + "`pulse scorecard features` lists them)")
            feature = None
        weight = self.number(m["weight"][1], f"{where}: weight") if "weight" in m else None
        if weight is not None and weight <= 0:
            self.fail(m["weight"][1], f"{where}: weight must be above 0 (not {_num(weight)})")
            weight = None
        label = name or ""
        if "label" in m:
            label = self.text(m["label"][1], f"{where}: label") or label
        kinds = [k for k in ("linear", "bands") if k in m]
        if len(kinds) != 1:
            self.fail(node, f"{where}: give exactly one of 'linear' or 'bands'"
                      + (" (not both)" if kinds else ""))
            return None
        line = node.start_mark.line + 1
        if kinds[0] == "linear":
            linear = self.linear(m["linear"][1], where)
            if linear is None or None in (name, feature, weight):
                return None
            low, high, better = linear
            return Measure(name=name, label=label, feature=feature, weight=weight,  # type: ignore[arg-type]
                           line=line, low=low, high=high, better=better)
        bands = self.point_bands(m["bands"][1], where)
        if bands is None or None in (name, feature, weight):
            return None
        return Measure(name=name, label=label, feature=feature, weight=weight,  # type: ignore[arg-type]
                       line=line, bands=bands)

    def linear(self, node: yaml.Node, where: str) -> tuple[float, float, str] | None:
        m = self.mapping(node, f"{where}: linear", allowed=("low", "high", "better"),
                         required=("low", "high"))
        if m is None or "low" not in m or "high" not in m:
            return None
        low = self.number(m["low"][1], f"{where}: linear.low")
        high = self.number(m["high"][1], f"{where}: linear.high")
        better = "higher"
        if "better" in m:
            value = self.scalar(m["better"][1])
            if value not in ("higher", "lower"):
                self.fail(m["better"][1], f"{where}: linear.better: expected 'higher' or "
                          f"'lower' (not {value!r})")
                return None
            better = value
        if low is None or high is None:
            return None
        if low >= high:
            self.fail(m["low"][1], f"{where}: linear.low ({_num(low)}) must be below linear.high "
                      f"({_num(high)}); use 'better: lower' to reverse the direction")
            return None
        return low, high, better

    def point_bands(self, node: yaml.Node, where: str) -> tuple[Band, ...] | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, f"{where}: bands: expected a list of {{from, below, points}}")
            return None
        bands: list[tuple[Band, yaml.Node]] = []
        ok = True
        for item in node.value:
            m = self.mapping(item, f"{where}: band", allowed=("from", "below", "points"),
                             required=("points",))
            if m is None or "points" not in m:
                ok = False
                continue
            lower = self.number(m["from"][1], f"{where}: band from") if "from" in m else -math.inf
            upper = self.number(m["below"][1], f"{where}: band below") if "below" in m else math.inf
            points = self.number(m["points"][1], f"{where}: band points")
            if points is not None and not 0 <= points <= 100:
                self.fail(m["points"][1], f"{where}: band points must be within 0..100 "
                          f"(not {_num(points)})")
                points = None
            if lower is None or upper is None or points is None:
                ok = False
                continue
            if lower >= upper:
                self.fail(item, f"{where}: band from ({_num(lower)}) must be below its 'below' "
                          f"({_num(upper)})")
                ok = False
                continue
            bands.append((Band(lower, upper, points), item))
        if not ok:
            return None
        bands.sort(key=lambda bn: (bn[0].lower, bn[0].upper))
        for (prev, _pn), (band, bnode) in zip(bands, bands[1:]):
            if band.lower < prev.upper:
                self.fail(bnode, f"{where}: overlapping bands: [{_bound(band.lower)}, "
                          f"{_bound(band.upper)}) overlaps [{_bound(prev.lower)}, "
                          f"{_bound(prev.upper)})")
                ok = False
            elif band.lower > prev.upper:
                self.fail(bnode, f"{where}: the bands leave a gap between {_num(prev.upper)} "
                          f"and {_num(band.lower)}")
                ok = False
        return tuple(b for b, _n in bands) if ok else None


_NOT_SCALAR = object()


def _bound(x: float) -> str:
    return "-inf" if x == -math.inf else "inf" if x == math.inf else _num(x)


# --------------------------------------------------------------------------- freshness


@dataclass(frozen=True)
class SourceFreshness:
    source: str
    last_at: datetime | None  # the source's latest row as of the date (any account)
    age_days: float | None
    stale_after_days: float | None
    stale: bool

    def describe(self) -> str:
        if self.last_at is None:
            return f"{self.source}: no rows at all"
        return (f"{self.source}: latest row {self.last_at:%Y-%m-%d %H:%M} UTC, "
                f"{self.age_days:.1f} days old (stale after {_num(self.stale_after_days or 0)})")


def source_freshness(features: pd.DataFrame, as_of: date,
                     scorecard: Scorecard) -> list[SourceFreshness]:
    """The freshness of every source the scorecard gives a staleness limit."""
    end = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC)
    out = []
    for source, limit in scorecard.stale_after_days.items():
        column = FRESHNESS[source][1]
        last = features[column].max() if column in features and len(features) else None
        if last is None or pd.isna(last):
            out.append(SourceFreshness(source, None, None, limit, True))
            continue
        last_dt = pd.Timestamp(last).to_pydatetime()
        age = (end - last_dt).total_seconds() / 86400.0
        out.append(SourceFreshness(source, last_dt, age, limit, age > limit))
    return out


# --------------------------------------------------------------------------- scoring


def score_features(features: pd.DataFrame, scorecard: Scorecard, *,
                   stale_sources: frozenset[str] | set[str] = frozenset(),
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every account of a features frame (see `sql.features.load_features`).

    Returns `(health, measures)`: one row per account (account_id, scorecard, score, band,
    skipped) and one per account and measure (account_id, measure, feature, value, points,
    weight, contribution, skipped). Vectorised: one matrix of accounts x measures per card.
    """
    n = len(features)
    age = (features["account_age_days"].to_numpy(dtype="float64") if n
           else np.empty(0))
    onboarding = np.zeros(n, dtype=bool)
    if scorecard.onboarding is not None:
        onboarding = ~np.isnan(age) & (age < scorecard.onboarding_days)
    skip_stale = set(stale_sources) if scorecard.skip_stale_measures else set()
    health_parts: list[pd.DataFrame] = []
    measure_parts: list[pd.DataFrame] = []
    for card, rows in ((scorecard.standard, ~onboarding), (scorecard.onboarding, onboarding)):
        if card is None or not rows.any():
            continue
        sub = features.loc[rows]
        ids = sub["account_id"].to_numpy(dtype=object)
        h, m = _score_card(card, sub, ids, skip_stale)
        h["scorecard"] = card.name
        health_parts.append(h)
        measure_parts.append(m)
    if not health_parts:
        return (pd.DataFrame(columns=["account_id", "scorecard", "score", "band", "skipped"]),
                pd.DataFrame(columns=["account_id", "measure", "feature", "value", "points",
                                      "weight", "contribution", "skipped"]))
    health = pd.concat(health_parts, ignore_index=True)
    health["band"] = scorecard.band(health["score"].to_numpy(dtype="float64"))
    health = health.sort_values("account_id", kind="stable").reset_index(drop=True)
    measures = pd.concat(measure_parts, ignore_index=True)
    return health[["account_id", "scorecard", "score", "band", "skipped"]], measures


def _score_card(card: Card, sub: pd.DataFrame, ids: np.ndarray,
                skip_stale: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    n, k = len(sub), len(card.measures)
    values = np.column_stack([sub[m.feature].to_numpy(dtype="float64") for m in card.measures])
    points = np.column_stack([m.points(values[:, j]) for j, m in enumerate(card.measures)])
    reason = np.full((n, k), None, dtype=object)
    reason[np.isnan(points)] = SKIP_OUT_OF_BANDS
    reason[np.isnan(values)] = SKIP_NO_DATA
    for j, m in enumerate(card.measures):
        if m.source in skip_stale:
            reason[:, j] = SKIP_STALE
            points[:, j] = np.nan
    weights = np.array([m.weight for m in card.measures], dtype="float64")
    used = np.where(np.isnan(points), 0.0, weights[None, :])
    total = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        contribution = np.where(used > 0, points * used / total[:, None], np.nan)
    score = np.where(total > 0, np.round(np.nansum(np.nan_to_num(contribution), axis=1), 1),
                     np.nan)
    names = np.array([m.name for m in card.measures], dtype=object)
    left_out = reason != None  # noqa: E711 (elementwise over an object array)
    skipped = [names[row].tolist() for row in left_out]
    health = pd.DataFrame({"account_id": ids, "score": score, "skipped": skipped})
    measures = pd.DataFrame({
        "account_id": np.repeat(ids, k),
        "measure": np.tile(names, n),
        "feature": np.tile(np.array([m.feature for m in card.measures], dtype=object), n),
        "value": values.ravel(),
        "points": points.ravel(),
        "weight": np.tile(weights, n),
        "contribution": contribution.ravel(),
        "skipped": reason.ravel(),
    })
    return health, measures


# --------------------------------------------------------------------------- one date


@dataclass
class ScoreSummary:
    as_of: date
    accounts: int
    scorecard: str
    by_scorecard: dict[str, int]
    bands: dict[str, int]  # green, amber, red, unscored
    freshness: list[SourceFreshness]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def stale(self) -> list[SourceFreshness]:
        return [f for f in self.freshness if f.stale]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "accounts": self.accounts,
            "scorecard": self.scorecard,
            "by_scorecard": self.by_scorecard,
            "bands": self.bands,
            "stale_sources": [
                {"source": f.source, "last_at": f.last_at.isoformat() if f.last_at else None,
                 "age_days": None if f.age_days is None else round(f.age_days, 2),
                 "stale_after_days": f.stale_after_days}
                for f in self.stale],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def score_accounts(engine: Engine, as_of: date, *, scorecard: Scorecard | None = None,
                   ) -> ScoreSummary:
    """Score the materialised features of `as_of` and store health and measures.

    Re-scoring a date replaces that date's health rows and nothing else. The change against
    7 and 30 days earlier reads the scores stored for those dates (none when not scored then).
    """
    from pulse.sql.features import load_features
    from pulse.sql.health import load_scores, write_health

    card = scorecard or load_scorecard()
    features = load_features(engine, as_of)
    if features.empty:
        log.warning("no features as of %s: run compute_features first", as_of)
    freshness = source_freshness(features, as_of, card)
    stale = {f.source for f in freshness if f.stale}
    health, measures = score_features(features, card, stale_sources=stale)
    for days in (7, 30):
        before = load_scores(engine, as_of - timedelta(days=days)).rename(
            columns={"score": "before"})
        merged = health[["account_id"]].merge(before, on="account_id", how="left")
        health[f"change_{days}d"] = np.round(
            health["score"].to_numpy(dtype="float64") - merged["before"].to_numpy(
                dtype="float64"), 1)
    health["scorecard_version"] = card.label
    write_health(engine, as_of, health, measures)
    bands = {b: int((health["band"] == b).sum()) for b in BANDS}
    bands["unscored"] = int(health["band"].isna().sum())
    by_card = {str(k): int(v) for k, v in health["scorecard"].value_counts().items()}
    log.info("health as of %s: %d accounts (%s)", as_of, len(health), bands)
    return ScoreSummary(as_of=as_of, accounts=len(health), scorecard=card.label,
                        by_scorecard=by_card, bands=bands, freshness=freshness)


def score_date(engine: Engine, as_of: date, *, scorecard: Scorecard | None = None,
               basis: str = "known", on_stage: Callable[[str], None] | None = None,
               ) -> ScoreSummary:
    """Features then health for one date: what `pulse score` and the health DAG run."""
    import time as _time

    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import compute_features

    card = scorecard or load_scorecard()
    t0 = _time.perf_counter()
    if on_stage:
        on_stage(f"computing features as of {as_of}")
    compute_features(engine, as_of, basis=basis,  # type: ignore[arg-type]
                     negative_terms=NEGATIVE_TERMS)
    t1 = _time.perf_counter()
    if on_stage:
        on_stage(f"scoring health as of {as_of}")
    summary = score_accounts(engine, as_of, scorecard=card)
    summary.seconds = {"features": t1 - t0, "health": _time.perf_counter() - t1}
    return summary

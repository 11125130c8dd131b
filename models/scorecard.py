"""The health scorecard: weighted measures a customer-success team can read and edit.

A scorecard is a YAML file (the default is `models/scorecard.yaml`, which documents the
format). `load_scorecard()` reads and checks it; a file that cannot be used raises
`ScorecardError` naming each problem and its line. This module holds the scorecard itself
(`Scorecard`, its cards, measures and bands) and the reading and checking of its YAML;
models/health.py scores accounts with it.
"""
from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pulse.core.errors import ScorecardError
from pulse.sql.features import FEATURES, FRESHNESS

DEFAULT_SCORECARD = Path(__file__).resolve().with_name("scorecard.yaml")
#: Healthiest first. `watch` sits between green and the at-risk bands: not healthy enough to
#: call green (history's churners reached it), not low enough for a CS team's work list. A
#: scorecard without a `watch` cut point has no such band.
BANDS = ("green", "watch", "amber", "red")


def assign_bands(scores: Any, green: float, watch: float | None, amber: float) -> np.ndarray:
    """Each score's band by the cut points (where green, watch and amber start; `watch`
    None: no watch band); None where a score is missing."""
    scores = np.asarray(scores, dtype="float64")
    at_risk = green if watch is None else watch
    out = np.select([scores >= green, scores >= at_risk, scores >= amber, scores < amber],
                    list(BANDS), default="")
    # None as a 0-d object array (what np.where makes of it): numpy's stubs reject bare None
    return np.where(np.isnan(scores), np.array(None, dtype=object), out).astype(object)


def band_cuts(green: float, watch: float | None, amber: float) -> dict[str, str]:
    """Where each band starts, in words per band ("-" for an empty watch band)."""
    return {"green": f">= {green:g}", "watch": "-" if watch is None else f">= {watch:g}",
            "amber": f">= {amber:g}", "red": f"< {amber:g}"}


def describe_bands(green: float, watch: float | None, amber: float) -> str:
    """"green >= 70, watch >= 55, amber >= 40, red below" (no watch without its cut)."""
    return ", ".join(f"{b} {c}" for b, c in band_cuts(green, watch, amber).items()
                     if b != "red" and c != "-") + ", red below"


def band_legend(green: float, watch: float | None, amber: float,
                calibrated_on: str | None, *, other_card_on: str | None = None) -> str:
    """What the bands mean, for a CSM: "Bands: green >= 70, amber >= 40, red below (the
    scorecard's own cut points, not fitted to this warehouse's churners)."; with
    `other_card_on` (a date some accounts were scored on with another scorecard), that
    their stored bands follow other cut points until the date is scored again."""
    origin = (f"fitted to this warehouse's churners on {calibrated_on}" if calibrated_on else
              "the scorecard's own cut points, not fitted to this warehouse's churners")
    words = f"Bands: {describe_bands(green, watch, amber)} ({origin})"
    if other_card_on:
        words += (f"; some accounts of {other_card_on} were scored with another scorecard, "
                  f"whose bands they keep until `pulse score --as-of {other_card_on}` scores "
                  "them again")
    return words + "."


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
        at_low, at_high = (0, 100) if self.better == "higher" else (100, 0)
        return f"{_num(self.low)} -> {at_low}, {_num(self.high)} -> {at_high} (linear)"


@dataclass(frozen=True)
class Card:
    name: str
    measures: tuple[Measure, ...]


@dataclass(frozen=True)
class Calibration:
    """What health has meant in this customer's own history: the observed share of accounts
    that cancelled within `horizon_days` after a date, against their health on that date
    (an isotonic fit: never higher for a higher health). Written by `pulse scorecard
    calibrate` (models/calibration.py) and read back as a probability."""

    fitted_on: str
    horizon_days: int
    base_rate: float
    rows: int
    health: tuple[float, ...]  # ascending
    rate: tuple[float, ...]  # non-increasing

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """The observed churn rate at each health score (NaN where the score is)."""
        scores = np.asarray(scores, dtype="float64")
        out = np.interp(scores, np.asarray(self.health), np.asarray(self.rate))
        return np.where(np.isnan(scores), np.nan, out)


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
    calibration: Calibration | None = None
    #: where the watch band starts (None: no watch band, amber runs up to green)
    watch: float | None = None

    @property
    def label(self) -> str:
        """What every stored score records about the scorecard that made it."""
        return f"{self.version[:40]}@{self.digest}"

    @property
    def calibrated_on(self) -> str | None:
        """The date its cut points were fitted to this warehouse's churners (None: its own)."""
        return self.calibration.fitted_on if self.calibration is not None else None

    def band(self, scores: Any) -> np.ndarray:
        return assign_bands(scores, self.green, self.watch, self.amber)

    def describe_bands(self) -> str:
        return describe_bands(self.green, self.watch, self.amber)

    def cards(self) -> Iterator[Card]:
        yield self.standard
        if self.onboarding:
            yield self.onboarding


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- reading


#: The file name of the calibrated scorecard in $PULSE_HOME (`pulse scorecard calibrate --apply`)
APPLIED_NAME = "scorecard.yaml"


def applied_scorecard_path() -> Path:
    """Where `pulse scorecard calibrate --apply` keeps the calibrated scorecard."""
    from pulse.core.settings import get_settings

    return get_settings().resolved_home() / APPLIED_NAME


def scorecard_path(path: Path | str | None = None) -> Path:
    """`path`, else $PULSE_SCORECARD, else the calibrated scorecard in $PULSE_HOME (when one
    was applied), else the default scorecard."""
    if path:
        return Path(path)
    from pulse.core.settings import get_settings

    configured = get_settings().scorecard
    if configured:
        return configured.expanduser()
    applied = applied_scorecard_path()
    return applied if applied.is_file() else DEFAULT_SCORECARD


def load_scorecard(path: Path | str | None = None) -> Scorecard:
    """Read and check a scorecard file; raises `ScorecardError` naming the line of each problem."""
    p = scorecard_path(path)
    return parse_scorecard(read_checked_file(p), source=str(p))


def read_checked_file(path: Path, error: type[ScorecardError] = ScorecardError) -> str:
    """The text of a checked YAML file (scorecard, playbooks); `error` names a missing or
    unreadable file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(str(path), [(None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), [(None, f"cannot be read: {exc}")]) from None


def compose_checked_yaml(text: str, source: str,
                         error: type[ScorecardError] = ScorecardError) -> Any:
    """The YAML node tree of `text` (line numbers kept for the checkers); `error` names the
    line of a syntax error."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise error(source, [(mark.line + 1 if mark else None,
                              f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise error(source, [(None, f"not valid YAML: {exc}")]) from None


def parse_scorecard(text: str, *, source: str = "<scorecard>") -> Scorecard:
    """Check a scorecard's YAML text and build it; raises `ScorecardError`."""
    root = compose_checked_yaml(text, source)
    checker = _Checker()
    card = checker.scorecard(root, source, hashlib.sha256(text.encode()).hexdigest()[:12])
    if checker.problems or card is None:
        raise ScorecardError(source, checker.problems or [(None, "empty scorecard")])
    return card


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TOP_KEYS = ("version", "bands", "stale_after_days", "skip_stale_measures", "standard",
             "onboarding", "calibration")


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
        green, watch, amber = 70.0, None, 40.0
        if "bands" in top:
            green, watch, amber = self.bands(top["bands"][1])
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
        calibration = None
        if "calibration" in top:
            calibration = self.calibration(top["calibration"][1])
        if standard is None:
            return None
        return Scorecard(source=source, version=version, digest=digest, green=green,
                         amber=amber, standard=standard, onboarding=onboarding,
                         onboarding_days=days, stale_after_days=stale,
                         skip_stale_measures=skip, calibration=calibration, watch=watch)

    def calibration(self, node: yaml.Node) -> Calibration | None:
        keys = ("fitted_on", "horizon_days", "base_rate", "rows", "curve")
        m = self.mapping(node, "calibration", allowed=keys, required=keys)
        if m is None or any(k not in m for k in keys):
            return None
        fitted_on = self.text(m["fitted_on"][1], "calibration.fitted_on")
        horizon = self.number(m["horizon_days"][1], "calibration.horizon_days")
        base = self.number(m["base_rate"][1], "calibration.base_rate")
        rows = self.number(m["rows"][1], "calibration.rows")
        cnode = m["curve"][1]
        points: list[tuple[float, float]] = []
        if not isinstance(cnode, yaml.SequenceNode) or len(cnode.value) < 1:
            self.fail(cnode, "calibration.curve: expected a list of [health, churn rate] pairs")
            return None
        for item in cnode.value:
            if not isinstance(item, yaml.SequenceNode) or len(item.value) != 2:
                self.fail(item, "calibration.curve: expected a [health, churn rate] pair")
                return None
            h = self.number(item.value[0], "calibration.curve health")
            r = self.number(item.value[1], "calibration.curve churn rate")
            if h is None or r is None:
                return None
            if not 0 <= h <= 100 or not 0 <= r <= 1:
                self.fail(item, f"calibration.curve: health must be within 0..100 and the rate "
                          f"within 0..1 (not [{_num(h)}, {_num(r)}])")
                return None
            if points and (h <= points[-1][0] or r > points[-1][1]):
                self.fail(item, "calibration.curve: health must rise and the churn rate never "
                          "rise with it")
                return None
            points.append((h, r))
        if None in (fitted_on, horizon, base, rows):
            return None
        return Calibration(fitted_on=str(fitted_on), horizon_days=int(horizon or 0),
                           base_rate=float(base or 0.0), rows=int(rows or 0),
                           health=tuple(p[0] for p in points),
                           rate=tuple(p[1] for p in points))

    def bands(self, node: yaml.Node) -> tuple[float, float | None, float]:
        m = self.mapping(node, "bands", allowed=("green", "watch", "amber"),
                         required=("green", "amber"))
        if m is None or "green" not in m or "amber" not in m:
            return 70.0, None, 40.0
        green = self.number(m["green"][1], "bands.green")
        amber = self.number(m["amber"][1], "bands.amber")
        watch = self.number(m["watch"][1], "bands.watch") if "watch" in m else None
        for name, value in (("green", green), ("watch", watch), ("amber", amber)):
            if value is not None and not 0 < value <= 100:
                self.fail(m[name][1], f"bands.{name}: expected a score above 0 and at most 100 "
                          f"(not {_num(value)})")
        if green is not None and amber is not None and green <= amber:
            self.fail(m["green"][1], f"bands: thresholds out of order: green ({_num(green)}) "
                      f"must be above amber ({_num(amber)})")
        elif watch is not None and green is not None and amber is not None \
                and not amber < watch <= green:
            self.fail(m["watch"][1], f"bands: thresholds out of order: watch ({_num(watch)}) "
                      f"must be above amber ({_num(amber)}) and at most green ({_num(green)})")
        return green or 70.0, watch, amber or 40.0

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

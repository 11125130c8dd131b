"""Routing text to the team that owns it: the taxonomy (YAML), the learned router, `route`.

A taxonomy of teams, components and keywords (`models/taxonomy.yaml`) is read by
`load_taxonomy`. `route` answers with a `Router` learned from labelled examples when there are
any: the examples passed in, else the user's router (`pulse text train routing FILE.csv`),
else the seed examples shipped for the taxonomy's components (`models/text_seed/routing.csv`);
the taxonomy's keywords join every training set as hints, never as test items. The router
measures its precision at each confidence threshold on held-out examples (stratified k-fold)
and routes automatically only at or above the lowest threshold where that precision is at
least `TARGET_PRECISION`; the rest goes to team "triage" with the suggested team kept. Without
any examples the keyword scores answer, with a fixed bar of 0.5 (nothing measured).
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from pulse.core.errors import TaxonomyError, TextError
from pulse.models.text_classifier import (
    TextClassifier,
    out_of_fold_scores,
    read_text_csv,
    softmax,
)
from pulse.models.text_lexicon import _as_list, _lexicon_text, _terms_regex
from pulse.models.text_store import SEED_DIR, _memo, models_dir

log = logging.getLogger(__name__)

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
TRIAGE = "triage"
#: Precision the auto-routed share must reach on held-out examples (Mozilla's bug auto-triage
#: routes only above such a bar).
TARGET_PRECISION = 0.9
#: The bar of the keyword router, which has no examples to measure itself on.
KEYWORD_MIN_CONFIDENCE = 0.5
USER_ROUTER_MODEL = "text-routing.joblib"
#: Above this many examples a Router cross-validates with 3 folds.
LARGE = 3000
#: Part of the cache key of the seed router: bump it when the way a Router learns changes.
ROUTER_VERSION = "4"


# --------------------------------------------------------------------------- taxonomy


@dataclass(frozen=True)
class Component:
    name: str
    team: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """Teams, their components and keywords, as read from a taxonomy YAML file."""

    teams: dict[str, str]  # team -> description
    components: tuple[Component, ...]
    source: str = "<memory>"
    team_keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def first_component(self, team: str) -> str:
        return next((c.name for c in self.components if c.team == team), "")


def _fail(source: str, node: Any, what: str) -> TaxonomyError:
    return TaxonomyError(f"{source}, line {node.start_mark.line + 1}: {what}")


def _keywords(source: str, node: Any, where: str) -> tuple[str, ...]:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise _fail(source, node, f"keywords of {where} must be a list of words "
                                  f"(not {node.tag.rsplit(':', 1)[-1]})")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise _fail(source, item, f"a keyword of {where} must be a non-empty word or phrase")
        out.append(str(item.value).strip().lower())
    return tuple(out)


def _mapping(source: str, node: Any, what: str) -> list[tuple[str, Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise _fail(source, node, f"{what} must be a mapping of names to settings")
    out, seen = [], set()
    for key, value in node.value:
        name = str(key.value).strip()
        if not name:
            raise _fail(source, key, f"an empty name in {what}")
        if name in seen:
            raise _fail(source, key, f"{name!r} appears twice in {what}")
        seen.add(name)
        out.append((name, key, value))
    return out


def parse_taxonomy(text: str, *, source: str = "<string>") -> Taxonomy:
    """A Taxonomy from YAML text; errors name the line of the offending entry."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TaxonomyError(f"{source}{line}: not valid YAML ({problem})") from None
    if root is None:
        raise TaxonomyError(f"{source}: the taxonomy is empty; expected a `teams:` mapping")
    top = dict((name, (k, v)) for name, k, v in _mapping(source, root, "the taxonomy"))
    for name, (key, _) in top.items():
        if name != "teams":
            raise _fail(source, key, f"unknown top-level key {name!r}: expected only `teams`")
    if "teams" not in top:
        raise _fail(source, root, "expected a `teams:` mapping at the top")
    teams: dict[str, str] = {}
    team_keywords: dict[str, tuple[str, ...]] = {}
    components: list[Component] = []
    seen_components: dict[str, str] = {}
    for team, tkey, tnode in _mapping(source, top["teams"][1], "teams"):
        if team == TRIAGE:
            raise _fail(source, tkey, f"{TRIAGE!r} is reserved for the low-confidence queue")
        settings = dict((n, (k, v)) for n, k, v in _mapping(source, tnode, f"team {team!r}"))
        for name, (key, _) in settings.items():
            if name not in ("description", "components", "keywords"):
                raise _fail(source, key, f"unknown key {name!r} in team {team!r}: expected "
                                         "description, components or keywords")
        if "components" not in settings:
            raise _fail(source, tkey, f"team {team!r} has no `components:`")
        teams[team] = str(settings["description"][1].value) if "description" in settings \
            else ""
        if "keywords" in settings:
            team_keywords[team] = _keywords(source, settings["keywords"][1], f"team {team!r}")
        for comp, ckey, cnode in _mapping(source, settings["components"][1],
                                          f"components of team {team!r}"):
            if comp in seen_components:
                raise _fail(source, ckey, f"component {comp!r} of team {team!r} already "
                                          f"belongs to team {seen_components[comp]!r}")
            seen_components[comp] = team
            csettings = dict((n, (k, v)) for n, k, v in
                             _mapping(source, cnode, f"component {comp!r}"))
            for name, (key, _) in csettings.items():
                if name != "keywords":
                    raise _fail(source, key, f"unknown key {name!r} in component {comp!r}: "
                                             "expected keywords")
            if "keywords" not in csettings:
                raise _fail(source, ckey, f"component {comp!r} has no `keywords:`")
            components.append(Component(comp, team, _keywords(
                source, csettings["keywords"][1], f"component {comp!r}")))
    if not components:
        raise _fail(source, root, "the taxonomy names no components")
    return Taxonomy(teams=teams, components=tuple(components), source=source,
                    team_keywords=team_keywords)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read a taxonomy YAML file (default: the one shipped in `models/taxonomy.yaml`)."""
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaxonomyError(f"no taxonomy file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read the taxonomy {path}: {exc}") from None
    return parse_taxonomy(text, source=str(path))


# --------------------------------------------------------------------------- routing


def keyword_scores(texts: Iterable[Any], taxonomy: Taxonomy) -> np.ndarray:
    """(n_samples, n_components) counts of distinct keywords of each component found."""
    norm = _lexicon_text(_as_list(texts))
    out = np.zeros((len(norm), len(taxonomy.components)))
    for j, comp in enumerate(taxonomy.components):
        for word in _component_keywords(taxonomy, comp):
            out[:, j] += norm.str.contains(_terms_regex((word,))).to_numpy(dtype=bool)
    return out


def _component_keywords(tax: Taxonomy, comp: Component) -> tuple[str, ...]:
    """A component's keywords, plus its team's own for the team's first component."""
    if comp.name == tax.first_component(comp.team):
        return comp.keywords + tax.team_keywords.get(comp.team, ())
    return comp.keywords


def _keyword_route(texts: list[str], tax: Taxonomy) -> pd.DataFrame:
    scores = keyword_scores(texts, tax)
    teams = list(tax.teams)
    comp_team = np.array([teams.index(c.team) for c in tax.components])
    team_scores = np.zeros((len(texts), len(teams)))
    np.add.at(team_scores.T, comp_team, scores.T)
    best_team = team_scores.argmax(axis=1)
    # confidence: the best team's share of all evidence, shrunk when evidence is thin
    conf = team_scores.max(axis=1) / (team_scores.sum(axis=1) + 0.5)
    masked = np.where(comp_team[None, :] == best_team[:, None], scores, -1.0)
    best_comp = masked.argmax(axis=1)
    return pd.DataFrame({
        "team": np.asarray(teams, dtype=object)[best_team],
        "component": np.asarray([c.name for c in tax.components], dtype=object)[best_comp],
        "confidence": conf, "method": "keywords",
    })


def _best_component_of(teams: np.ndarray, texts: list[str], tax: Taxonomy) -> np.ndarray:
    """For each text, the component of its team with the most keywords found (ties: the first
    listed), for a router that learned teams only."""
    scores = keyword_scores(texts, tax)
    names = np.asarray([c.name for c in tax.components], dtype=object)
    owner = np.asarray([c.team for c in tax.components], dtype=object)
    masked = np.where(owner[None, :] == np.asarray(teams, dtype=object)[:, None], scores, -1.0)
    return names[masked.argmax(axis=1)] if len(names) else np.full(len(texts), "", dtype=object)


# --------------------------------------------------------------------------- precision


def precision_coverage(correct: Sequence[bool] | np.ndarray,
                       confidence: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """Precision and coverage of the items routed at each confidence threshold.

    One row per distinct confidence, highest first: `threshold` (route at or above it),
    `routed` (items at or above), `coverage` (their share) and `precision` (the share of them
    routed right).
    """
    ok = np.asarray(correct, dtype=bool)
    conf = np.asarray(confidence, dtype=float)
    if ok.shape != conf.shape:
        raise TextError(f"got {len(ok)} outcomes but {len(conf)} confidences")
    if not len(conf):
        return pd.DataFrame({"threshold": pd.Series(dtype=float),
                             "routed": pd.Series(dtype=int), "coverage": pd.Series(dtype=float),
                             "precision": pd.Series(dtype=float)})
    order = np.argsort(-conf, kind="stable")
    c, hits = conf[order], np.cumsum(ok[order])
    last = np.r_[np.flatnonzero(np.diff(c) != 0), len(c) - 1]  # the last of each tie
    routed = last + 1
    return pd.DataFrame({"threshold": c[last], "routed": routed,
                         "coverage": routed / len(c), "precision": hits[last] / routed})


def wilson_lower(precision: np.ndarray | float, n: np.ndarray | float,
                 z: float = 1.0) -> np.ndarray:
    """The lower end of the Wilson score interval of a precision measured on `n` items."""
    p = np.asarray(precision, dtype=float)
    m = np.maximum(np.asarray(n, dtype=float), 1.0)
    centre = p + z * z / (2 * m)
    spread = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    return np.asarray((centre - spread) / (1 + z * z / m))


def choose_threshold(curve: pd.DataFrame, *, target: float = TARGET_PRECISION,
                     min_routed: int = 5, z: float = 1.0) -> float:
    """Where to route automatically: halfway between the lowest confidence whose routed items
    reach `target` precision and the next confidence below it; 0 when every item can be
    routed, infinity when no threshold reaches the target.

    "Reach" means the lower end of the precision's Wilson interval (`z` standard errors; 0
    for the point estimate) is at least `target`, with at least `min_routed` items: the
    lowest threshold of many is the luckiest, and a few held-out items prove little.
    """
    low = wilson_lower(curve["precision"].to_numpy(), curve["routed"].to_numpy(), z)
    ok = np.flatnonzero((low >= target - 1e-12) & (curve["routed"].to_numpy() >= min_routed))
    if not len(ok):
        return float("inf")
    at = int(ok.max())
    if at == len(curve) - 1:
        return 0.0
    values = curve["threshold"].to_numpy(dtype=float)
    return float((values[at] + values[at + 1]) / 2.0)


def precision_at_coverage(curve: pd.DataFrame, coverage: float) -> float:
    """Precision of the most confident `coverage` share (the first row reaching it)."""
    if curve.empty:
        return float("nan")
    at = curve[curve["coverage"] >= coverage - 1e-12]
    return float(at["precision"].iloc[0]) if len(at) else float(curve["precision"].iloc[-1])


def coverage_at_precision(curve: pd.DataFrame, target: float = TARGET_PRECISION) -> float:
    """The largest share that can be routed with at least `target` precision (0 when none)."""
    ok = curve[curve["precision"] >= target]
    return float(ok["coverage"].max()) if len(ok) else 0.0


def curve_at(curve: pd.DataFrame, thresholds: Sequence[float]) -> pd.DataFrame:
    """The curve read at chosen thresholds: routed share and precision at or above each."""
    rows = []
    for t in thresholds:
        at = curve[curve["threshold"] >= t]
        rows.append({"threshold": float(t), "routed": int(at["routed"].max()) if len(at) else 0,
                     "coverage": float(at["coverage"].max()) if len(at) else 0.0,
                     "precision": float(at["precision"].iloc[-1]) if len(at) else float("nan")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the router


class Router(BaseEstimator):
    """Learns teams (and components) from labelled texts and measures where it may route alone.

    A `TextClassifier` (its linear SVM on word and character n-grams) is trained on the
    examples plus `prior_texts` (hints such as the taxonomy's keywords, never scored).
    Stratified k-fold gives every example a held-out prediction; from those the SVM strength
    `C` and the softmax `temperature` are chosen (the pair that routes the largest share at
    `target_precision`, then the most accurate), and the confidence threshold is set where the
    held-out precision still reaches the target (`choose_threshold`). Confidence is the
    probability of the team (the sum over its components), a softmax of the raw SVM decision
    values: unlike the TextClassifier's per-text standardised scores, their level keeps how
    much evidence a text holds, so a text of unknown words ("hmm") is not confidently routed.

    Parameters
    ----------
    target_precision : float, default=0.9
        Precision the automatically routed share must reach on held-out examples.
    folds : int, default=5
        Cross-validation folds: fewer when the rarest label has fewer examples, and 3 above
        `LARGE` examples (each held-out fold still holds 1,000 and more; it halves the time).
    Cs : tuple of float, default=(0.1, 1.0)
        SVM strengths tried; above `LARGE` examples only the first (a looser fit never won on
        the large public sets and takes twice as long).
    temperatures : tuple of float, default=(2.0, 4.0, 8.0)
        Sharpness of the softmax of the SVM scores tried.
    min_routed : int, default=5
        Held-out items a threshold must route before its precision counts.
    random_state : int, default=0
        Seed of the folds and the solver.
    """

    def __init__(self, *, target_precision: float = TARGET_PRECISION, folds: int = 5,
                 Cs: tuple[float, ...] = (0.1, 1.0),
                 temperatures: tuple[float, ...] = (2.0, 4.0, 8.0), min_routed: int = 5,
                 random_state: int = 0) -> None:
        self.target_precision = target_precision
        self.folds = folds
        self.Cs = Cs
        self.temperatures = temperatures
        self.min_routed = min_routed
        self.random_state = random_state

    def fit(self, texts: Iterable[Any], labels: Iterable[Any], *,
            teams: Mapping[str, str] | None = None, prior_texts: Sequence[str] = (),
            prior_labels: Sequence[str] = ()) -> Router:
        """Learn from texts and their labels (components or teams); `teams` maps each label
        to its team (a label is its own team when missing)."""
        X = _as_list(texts)
        y = np.asarray([str(v) for v in labels], dtype=object)
        if len(X) != len(y):
            raise TextError(f"got {len(X)} texts but {len(y)} labels")
        if len(set(y)) < 2:
            raise TextError(f"routing needs examples of at least two teams (got "
                            f"{sorted(set(y))!r})")
        mapping = dict(teams or {})
        self.team_of_ = {str(k): str(mapping.get(str(k), k))
                         for k in sorted(set(y) | {str(v) for v in prior_labels})}
        large = len(y) > LARGE
        folds = min(self.folds, 3) if large else self.folds
        Cs = tuple(self.Cs[:1]) if large else tuple(self.Cs)
        classes, svm, scored = out_of_fold_scores(
            X, y, Cs=Cs, folds=folds, random_state=self.random_state,
            prior_texts=prior_texts, prior_labels=prior_labels)
        self.labels_ = classes
        self.teams_ = np.asarray(sorted(set(self.team_of_.values())), dtype=object)
        truth = np.asarray([self.team_of_[v] for v in y[scored]], dtype=object)
        best: tuple[float, float] | None = None
        tried = []
        for c in Cs:
            for t in self.temperatures:
                team, conf = self._teams(softmax(svm[float(c)][scored], float(t)))
                curve = precision_coverage(team == truth, conf)
                key = (coverage_at_precision(curve, self.target_precision),
                       float(np.mean(team == truth)))
                tried.append({"C": float(c), "temperature": float(t), "coverage": key[0],
                              "accuracy": key[1]})
                if best is None or key > best:
                    best = key
                    self.curve_, self.cv_accuracy_ = curve, key[1]
                    self.C_, self.temperature_ = float(c), float(t)
        self.settings_ = pd.DataFrame(tried)
        self.threshold_ = choose_threshold(self.curve_, target=self.target_precision,
                                           min_routed=self.min_routed)
        at = self.curve_[self.curve_["threshold"] >= self.threshold_]
        self.coverage_ = float(at["coverage"].max()) if len(at) else 0.0
        self.precision_ = float(at["precision"].iloc[-1]) if len(at) else float("nan")
        self.n_examples_ = len(y)
        self.n_held_out_ = int(scored.sum())
        self.model_ = TextClassifier(C=self.C_, nb_weight=0.0, temperature=self.temperature_,
                                     random_state=self.random_state).fit(
            list(X) + list(prior_texts), list(y) + [str(v) for v in prior_labels])
        return self

    def _teams(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The best team of each row of label probabilities, and its summed probability."""
        column = np.searchsorted(self.teams_, [self.team_of_[str(v)] for v in self.labels_])
        team_p = np.zeros((len(proba), len(self.teams_)))
        np.add.at(team_p.T, column, proba.T)
        best = team_p.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
        return self.teams_[best], team_p.max(axis=1) if len(proba) else np.zeros(0)

    def route(self, texts: Iterable[Any]) -> pd.DataFrame:
        """team, label (the most probable label of that team), confidence, routed (at or
        above the measured threshold) for each text; index 0..n-1."""
        check_is_fitted(self, "model_")
        items = _as_list(texts)
        if not items:
            return pd.DataFrame({"team": pd.Series(dtype=object),
                                 "label": pd.Series(dtype=object),
                                 "confidence": pd.Series(dtype=float),
                                 "routed": pd.Series(dtype=bool)})
        proba = softmax(self.model_.svm_scores(items), self.temperature_)
        labels = np.asarray(self.model_.classes_, dtype=object)
        team, conf = self._teams(proba)
        own = np.asarray([[self.team_of_[str(v)] for v in labels]], dtype=object) == \
            team[:, None]
        label = labels[np.where(own, proba, -1.0).argmax(axis=1)]
        return pd.DataFrame({"team": team, "label": label, "confidence": conf,
                             "routed": conf >= self.threshold_})

    def summary(self) -> dict[str, Any]:
        """What was measured: examples, held-out accuracy, threshold, coverage, precision."""
        check_is_fitted(self, "model_")
        return {"examples": self.n_examples_, "held_out": self.n_held_out_,
                "target_precision": self.target_precision,
                "cv_accuracy": round(self.cv_accuracy_, 4),
                "threshold": None if not np.isfinite(self.threshold_)
                else round(self.threshold_, 4),
                "coverage": round(self.coverage_, 4),
                "precision": None if np.isnan(self.precision_) else round(self.precision_, 4),
                "C": self.C_, "temperature": self.temperature_}


# --------------------------------------------------------------------------- examples


def keyword_hints(tax: Taxonomy, *, by: str = "component") -> tuple[list[str], list[str]]:
    """The taxonomy's keywords as tiny labelled texts ("sync*" becomes "sync"), labelled with
    their component (or team, `by="team"`): hints that join every router's training set."""
    texts, labels = [], []
    for comp in tax.components:
        for word in _component_keywords(tax, comp):
            texts.append(word.rstrip("*"))
            labels.append(comp.name if by == "component" else comp.team)
    return texts, labels


def read_routing_examples(path: str | Path, *, text_column: str = "text",
                          team_column: str = "team",
                          component_column: str = "component") -> pd.DataFrame:
    """Labelled routing examples from a CSV: columns text, team and component ("" when the
    file has no component column); rows without text or team are left out."""
    path = Path(path)
    frame = read_text_csv(path, (text_column, team_column))
    out = pd.DataFrame({
        "text": frame[text_column].str.strip(), "team": frame[team_column].str.strip(),
        "component": frame[component_column].str.strip()
        if component_column in frame.columns else ""})
    return out[(out["text"] != "") & (out["team"] != "")].reset_index(drop=True)


def _examples_frame(examples: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(examples, (str, Path)):
        return read_routing_examples(examples)
    if not {"text", "team"} <= set(examples.columns):
        raise TextError("routing examples need columns text and team (got "
                        f"{', '.join(map(str, examples.columns))})")
    frame = examples.copy()
    if "component" not in frame.columns:
        frame["component"] = ""
    frame = frame[["text", "team", "component"]].fillna("").astype(str)
    return frame[(frame["text"].str.strip() != "") & (frame["team"].str.strip() != "")
                 ].reset_index(drop=True)


def _taxonomy_digest(tax: Taxonomy) -> str:
    return hashlib.sha256(repr((sorted(tax.teams), tax.components,
                                sorted(tax.team_keywords.items()))).encode()).hexdigest()[:12]


def fit_router(examples: pd.DataFrame | str | Path, taxonomy: Taxonomy | None = None, *,
               random_state: int = 0) -> Router:
    """A Router learned from labelled examples (columns text, team, optional component) and the
    taxonomy's keywords. Components are learned when every example names one of the
    taxonomy's; else teams. Examples of a team the taxonomy does not have are refused."""
    tax = taxonomy or load_taxonomy()
    ex = _examples_frame(examples)
    unknown = sorted(set(ex["team"]) - set(tax.teams))
    if unknown:
        raise TextError(f"routing examples name teams the taxonomy {tax.source} does not have: "
                        f"{', '.join(map(repr, unknown[:5]))} (teams: {', '.join(tax.teams)})")
    owner = {c.name: c.team for c in tax.components}
    by_component = bool(len(ex)) and ex["component"].map(owner).eq(ex["team"]).all()
    by = "component" if by_component else "team"
    hints, hint_labels = keyword_hints(tax, by=by)
    labels = ex["component"] if by_component else ex["team"]
    router = Router(random_state=random_state).fit(
        ex["text"], labels, teams=owner if by_component else None,
        prior_texts=hints, prior_labels=hint_labels)
    router.taxonomy_digest_ = _taxonomy_digest(tax)
    router.by_ = by
    return router


def seed_examples(tax: Taxonomy) -> pd.DataFrame:
    """The shipped examples (`models/text_seed/routing.csv`) of the taxonomy's components."""
    seed = SEED_DIR / "routing.csv"
    if not seed.is_file():
        return pd.DataFrame(columns=["text", "team", "component"])
    frame = read_routing_examples(seed)
    owner = {c.name: c.team for c in tax.components}
    frame = frame[frame["component"].map(owner).eq(frame["team"])]
    return frame.reset_index(drop=True)


def _seed_router(tax: Taxonomy) -> Router | None:
    """The router learned from the seed examples, cached in memory and under PULSE_HOME."""
    import joblib
    import sklearn

    ex = seed_examples(tax)
    counts = ex["component"].value_counts()
    if (counts >= 2).sum() < 2:
        return None
    digest = hashlib.sha256(pd.util.hash_pandas_object(ex, index=False).to_numpy().tobytes()
                            + _taxonomy_digest(tax).encode() + sklearn.__version__.encode()
                            + ROUTER_VERSION.encode()
                            ).hexdigest()[:12]
    # The digest covers everything the router learns from: one process learns it once,
    # whatever PULSE_HOME says; each home still gets its cached copy.
    key = ("router-seed", digest)
    cached = models_dir() / f"text-routing-seed-{digest}.joblib"
    if key in _memo:
        if not cached.is_file():
            _save_router(_memo[key], cached)
        return _memo[key]
    router: Router | None = None
    if cached.is_file():
        try:
            router = joblib.load(cached)
            check_is_fitted(router, "model_")
        except Exception as exc:  # an older or damaged file: learn again
            log.warning("retraining the routing seed model: %s", exc)
            router = None
    if not isinstance(router, Router):
        router = fit_router(ex, tax)
        _save_router(router, cached)
    _memo[key] = router
    return router


def _save_router(router: Router, cached: Path) -> None:
    """Write the seed router's cache file (a read-only home still gets the in-memory model)."""
    import joblib

    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        joblib.dump(router, tmp)
        tmp.replace(cached)
    except OSError as exc:
        log.warning("cannot cache the routing seed model at %s: %s", cached, exc)


def user_router_path() -> Path:
    return models_dir() / USER_ROUTER_MODEL


def train_router(examples: pd.DataFrame | str | Path, taxonomy: Taxonomy | None = None, *,
                 path: Path | None = None) -> tuple[Router, Path]:
    """Learn a router from the user's examples and save it where `route` looks first."""
    import joblib

    router = fit_router(examples, taxonomy)
    path = path or user_router_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(router, tmp)
    tmp.replace(path)
    return router, path


def _user_router(tax: Taxonomy) -> Router | None:
    import joblib

    path = user_router_path()
    if not path.is_file():
        return None
    stat = path.stat()
    key = ("router-user", str(path), str(stat.st_mtime_ns), str(stat.st_size))
    if key not in _memo:
        try:
            router = joblib.load(path)
        except Exception as exc:  # joblib raises many kinds; callers catch ours
            raise TextError(f"cannot read the routing model {path}: {exc}") from exc
        if not isinstance(router, Router):
            raise TextError(f"{path} holds a {type(router).__name__}, not a Router")
        _memo[key] = router
    router = _memo[key]
    if getattr(router, "taxonomy_digest_", None) != _taxonomy_digest(tax):
        log.warning("the routing model %s was trained for another taxonomy; not used", path)
        return None
    return router


def routing_model(taxonomy: Taxonomy | str | Path | None = None,
                  examples: pd.DataFrame | str | Path | None = None,
                  ) -> tuple[Router | None, str]:
    """The router `route` uses and its method: "examples" (learned from `examples`),
    "user-model", "seed-model", or (None, "keywords") when there are no examples at all."""
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    if examples is not None:
        ex = _examples_frame(examples)
        digest = hashlib.sha256(pd.util.hash_pandas_object(ex, index=False).to_numpy().tobytes()
                                ).hexdigest()
        key = ("router-examples", digest, _taxonomy_digest(tax))
        if key not in _memo:
            _memo[key] = fit_router(ex, tax)
        return _memo[key], "examples"
    user = _user_router(tax)
    if user is not None:
        return user, "user-model"
    seed = _seed_router(tax)
    if seed is not None:
        return seed, "seed-model"
    return None, "keywords"


def route(texts: Iterable[Any] | str, *, taxonomy: Taxonomy | str | Path | None = None,
          examples: pd.DataFrame | str | Path | None = None,
          min_confidence: float | None = None) -> pd.DataFrame:
    """Team and component for each text: columns team, component, confidence, method,
    suggested_team; index 0..n-1.

    The router of `routing_model` answers (learned from `examples`, the user's router or the
    seed examples, each with the taxonomy's keywords as hints); below its measured threshold
    (`min_confidence` overrides it) an item goes to team "triage", its best guess kept in
    `suggested_team`, `component` and `confidence`, so the queue can be sorted. Without any
    examples the taxonomy's keywords answer, with a bar of 0.5.
    """
    items = _as_list(texts)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    router, method = routing_model(tax, examples)
    if router is None or not items:
        out = _keyword_route(items, tax)
        bar = KEYWORD_MIN_CONFIDENCE if min_confidence is None else min_confidence
    else:
        got = router.route(items)
        team = got["team"].to_numpy(dtype=object)
        component = got["label"].to_numpy(dtype=object) if router.by_ == "component" \
            else _best_component_of(team, items, tax)
        out = pd.DataFrame({"team": team, "component": component,
                            "confidence": got["confidence"].to_numpy(dtype=float),
                            "method": method})
        bar = router.threshold_ if min_confidence is None else min_confidence
    low = out["confidence"].to_numpy() < bar
    out["suggested_team"] = out["team"]
    out.loc[low, "team"] = TRIAGE
    out["confidence"] = out["confidence"].astype(float).round(4)
    return out[["team", "component", "confidence", "method", "suggested_team"]]

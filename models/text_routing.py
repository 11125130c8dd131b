"""Routing text to the team that owns it: the taxonomy (YAML) and the router.

A taxonomy of teams, components and keywords (`models/taxonomy.yaml`) is read by
`load_taxonomy`; `route` answers with a classifier trained on labelled examples when they are
given and keyword scores otherwise, sending low-confidence items to the "triage" team.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pulse.core.errors import TaxonomyError, TextError
from pulse.models.text_classifier import TextClassifier, read_labelled_csv
from pulse.models.text_lexicon import _as_list, _lexicon_text, _terms_regex
from pulse.models.text_store import _memo

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
TRIAGE = "triage"


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
        words = comp.keywords
        if comp.name == taxonomy.first_component(comp.team):
            words = words + taxonomy.team_keywords.get(comp.team, ())
        for word in words:
            out[:, j] += norm.str.contains(_terms_regex((word,))).to_numpy(dtype=bool)
    return out


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


def _examples_frame(examples: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(examples, (str, Path)):
        frame = read_labelled_csv(examples, label_column="team")
        extra = pd.read_csv(examples, dtype=str, keep_default_na=False)
        frame = frame.rename(columns={"label": "team"})
        if "component" in extra.columns:
            mask = (extra["text"].str.strip() != "") & (extra["team"].str.strip() != "")
            frame["component"] = extra.loc[mask, "component"].str.strip().to_numpy()
        return frame
    if not {"text", "team"} <= set(examples.columns):
        raise TextError("routing examples need columns text and team (got "
                        f"{', '.join(map(str, examples.columns))})")
    return examples


def _router(examples: pd.DataFrame) -> TextClassifier:
    digest = hashlib.sha256(pd.util.hash_pandas_object(
        examples[["text", "team"]].astype(str), index=False).to_numpy().tobytes()).hexdigest()
    key = ("router", digest)
    if key not in _memo:
        _memo[key] = TextClassifier().fit(examples["text"], examples["team"])
    return _memo[key]


def route(texts: Iterable[Any] | str, *, taxonomy: Taxonomy | str | Path | None = None,
          examples: pd.DataFrame | str | Path | None = None,
          min_confidence: float = 0.5) -> pd.DataFrame:
    """Team and component for each text: columns team, component, confidence, method.

    With labelled `examples` (a DataFrame or CSV with columns text, team and optionally
    component) a classifier trained on them answers, and the taxonomy's keywords answer the
    texts the classifier is unsure of; without examples the keywords alone answer. Items whose
    confidence is below `min_confidence` go to team "triage"; their confidence is kept and the
    best guess stays in `suggested_team` and `component`, so the queue can be sorted.
    """
    items = _as_list(texts)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    out = _keyword_route(items, tax)
    if examples is not None and items:
        ex = _examples_frame(examples)
        model = _router(ex)
        proba = model.predict_proba(items)
        team = np.asarray(model.classes_, dtype=object)[proba.argmax(axis=1)]
        conf = proba.max(axis=1)
        if "component" in ex.columns:
            usual = ex.groupby("team")["component"].agg(
                lambda s: s[s != ""].mode().iat[0] if (s != "").any() else "")
            comp = pd.Series(team).map(usual).fillna("").to_numpy()
        else:
            comp = np.asarray([tax.first_component(str(t)) for t in team], dtype=object)
        take = (conf >= min_confidence) | (out["confidence"].to_numpy() < conf)
        out["team"] = np.where(take, team, out["team"])
        out["component"] = np.where(take, comp, out["component"])
        out["confidence"] = np.where(take, conf, out["confidence"])
        out["method"] = np.where(take, "model", "keywords")
    low = out["confidence"].to_numpy() < min_confidence
    out["suggested_team"] = out["team"]
    out.loc[low, "team"] = TRIAGE
    out["confidence"] = out["confidence"].astype(float).round(4)
    return out[["team", "component", "confidence", "method", "suggested_team"]]

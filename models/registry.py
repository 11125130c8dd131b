"""The churn model registry: train, judge against the champion, promote, and score.

`train_and_register` builds labelled snapshots from history (models/training.py), chooses a
configuration by time-series cross-validation (models/selection.py), fits it on the training
window and evaluates it on the later validation window (ROC AUC, PR AUC, Brier score, lift in
the top decile) beside two plain baselines (`metrics["baselines"]`; the better one replaces
the model when it ranks better by more than the model's standard error there), refits the winner on every labelled snapshot, saves that as
`$PULSE_HOME/models/churn-vN.joblib` and records it in `model_registry`. It becomes the
champion only when it beats the current champion *on the same validation window*: the
champion's configuration is fitted on the new training window and measured on the new
validation rows (its artifact was refitted on rows that overlap them), the higher ROC AUC wins
and a tie (within 0.0001) goes to the lower Brier score; the same configuration refitted on
newer history replaces its older self. A model that does not win stays a challenger, and its note says why; the champion it
replaces is retired. Exactly one churn model is champion at a time.

Before any of that, a model must clear a minimum bar on its validation window (the first
model too): ROC AUC of at least `min_roc_auc` (default 0.60) and no worse than the
scorecard's own ranking of the same snapshots (risk = 100 - health) by more than two of the
scorecard's standard errors there (`SCORECARD_MARGIN_SE`). Within that margin one window
cannot tell the two apart, and the tie goes to the model: it was fitted to the outcomes and
ranks with every input, where the scorecard's ranking stands in for it (on the demo variants,
models kept out by a window the scorecard won by less than two standard errors ranked the
next 90 days better than the health the list fell back to, by 0.03 to 0.12 ROC AUC). A
model clearly worse than the explainable scorecard would only add noise to the risk list, so
it stays a challenger and the risk list keeps ranking on health. The scorecard scores the
validation snapshots as the calibration scores history: without the measures the warehouse
keeps only in their latest state (`valid_health`).

`score_churn` scores every account that is still a customer as of a date with the champion,
explains the riskiest ones (the top 3 drivers in words) and replaces that date's rows of
`churn_scores`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sqlalchemy import Engine, delete, insert, select, update

from pulse.core.errors import (
    ModelArtifactError,
    ModelInputError,
    RegistryError,
    TrainingDataError,
)
from pulse.models.churn import ChurnModel
from pulse.models.churn_artifact import load_model, save_model
from pulse.models.drivers import drivers_in_words, explain
from pulse.models.metrics import calibration_table, evaluate
from pulse.models.selection import (
    BASELINES,
    Config,
    auc_se_in_groups,
    baseline_figures,
    baseline_to_replace,
    candidates_for,
    select_config,
)
from pulse.models.training import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_STEP_DAYS,
    DEFAULT_VALID_DAYS,
    DEFAULT_WARMUP_DAYS,
    DRIVER_LABELS,
    LABEL,
    TrainingData,
    account_attributes,
    build_training_data,
    model_frame,
)
from pulse.sql.schema import ChurnScore, ModelVersion
from pulse.sql.shards import Shard

if TYPE_CHECKING:
    from pulse.models.scorecard import Scorecard

log = logging.getLogger(__name__)

KIND = "churn"
CHAMPION, CHALLENGER, RETIRED = "champion", "challenger", "retired"
REGISTRY = ModelVersion.__table__
SCORES = ChurnScore.__table__
#: ROC AUC differences smaller than this are a tie (broken by the Brier score).
AUC_TIE = 1e-4
MIN_ROC_AUC = 0.60
#: A model stays out of the risk list only when the scorecard ranks its validation window
#: better by more than this many of the scorecard's standard errors there: clearly worse.
#: One window of 15 to 40 churners is noisy, and a one-error gap comes by chance one time in
#: six (on 2 of 14 demo-variant worlds such gaps kept out models that then ranked the next 90
#: days better than the health the list fell back to, by 0.03 and 0.09: docs/demo-variants.md).
SCORECARD_MARGIN_SE = 2.0
#: Drivers are worked out for the accounts above the median risk, at most this many.
EXPLAIN_LIMIT = 2000
TOP_DRIVERS = 3
SCALAR_METRICS = ("n", "positives", "base_rate", "mean_predicted", "roc_auc", "pr_auc",
                  "brier", "lift_top_decile")


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ModelRecord:
    """One row of the registry."""

    version: int
    kind: str
    status: str
    trained_at: datetime
    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    horizon_days: int
    features: list[str]
    metrics: dict[str, Any]
    artifact_path: str
    promoted_at: datetime | None
    note: str | None

    def load(self) -> ChurnModel:
        """The fitted model from its artifact (`ModelArtifactError` when unusable)."""
        return load_model(self.artifact_path)

    def to_dict(self, *, curves: bool = False) -> dict[str, Any]:
        metrics = self.metrics if curves else {
            k: v for k, v in self.metrics.items() if k not in ("calibration", "gains")}
        return {
            "version": self.version, "kind": self.kind, "status": self.status,
            "trained_at": self.trained_at.isoformat(),
            "train_start": self.train_start.isoformat(), "train_end": self.train_end.isoformat(),
            "valid_start": self.valid_start.isoformat(), "valid_end": self.valid_end.isoformat(),
            "horizon_days": self.horizon_days, "features": self.features, "metrics": metrics,
            "artifact_path": self.artifact_path,
            "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None,
            "note": self.note,
        }


def _record(row: Any) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        version=int(m["version"]), kind=m["kind"], status=m["status"],
        trained_at=m["trained_at"], train_start=m["train_start"], train_end=m["train_end"],
        valid_start=m["valid_start"], valid_end=m["valid_end"],
        horizon_days=int(m["horizon_days"]), features=list(m["features"] or []),
        metrics=dict(m["metrics"] or {}), artifact_path=m["artifact_path"],
        promoted_at=m["promoted_at"], note=m["note"])


def list_models(engine: Engine, *, kind: str = KIND) -> list[ModelRecord]:
    """Every registered model of `kind`, newest first."""
    query = select(REGISTRY).where(REGISTRY.c.kind == kind).order_by(REGISTRY.c.version.desc())
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(query)]


def champion(engine: Engine, *, kind: str = KIND) -> ModelRecord | None:
    """The current champion of `kind`, or None."""
    query = (select(REGISTRY).where(REGISTRY.c.kind == kind, REGISTRY.c.status == CHAMPION)
             .order_by(REGISTRY.c.version.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _record(row) if row is not None else None


def get_model(engine: Engine, version: int | None = None, *, kind: str = KIND) -> ModelRecord:
    """One version; without a version, the champion (else the newest model)."""
    if version is None:
        found = champion(engine, kind=kind)
        if found is None:
            models = list_models(engine, kind=kind)
            if not models:
                raise RegistryError("no churn model is registered yet: run `pulse model train`")
            found = models[0]
        return found
    with engine.connect() as conn:
        row = conn.execute(select(REGISTRY).where(REGISTRY.c.version == version,
                                                  REGISTRY.c.kind == kind)).first()
    if row is None:
        known = [m.version for m in list_models(engine, kind=kind)]
        raise RegistryError(f"no churn model version {version}: expected one of {known}"
                            if known else f"no churn model version {version}: none is "
                            "registered yet (run `pulse model train`)")
    return _record(row)


# --------------------------------------------------------------------------- metrics


def gains_table(y_true: Any, p: Any, *, points: int = 50) -> pd.DataFrame:
    """Cumulative gains: the share of churners among the riskiest x% of accounts.

    Returns ``share_targeted`` (0..1, `points` + 1 steps), ``share_captured`` (0..1) and
    ``lift`` (captured over targeted).
    """
    y = np.asarray(y_true).astype(int)
    prob = np.asarray(p, dtype=float)
    order = np.argsort(-prob, kind="stable")
    hits = np.concatenate([[0], np.cumsum(y[order])])
    targeted = np.linspace(0.0, 1.0, points + 1)
    k = np.rint(targeted * len(y)).astype(int)
    captured = hits[k] / max(int(y.sum()), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(targeted > 0, captured / targeted, np.nan)
    return pd.DataFrame({"share_targeted": targeted, "share_captured": captured,
                         "lift": lift})


def window_metrics(y_true: Any, p: Any) -> dict[str, Any]:
    """`evaluate` plus the curves the report charts (calibration bins and gains)."""
    metrics: dict[str, Any] = dict(evaluate(y_true, p))
    table = calibration_table(y_true, p, n_bins=10)
    metrics["calibration"] = [
        {"bin": int(r.bin), "n": int(r.n), "mean_predicted": float(r.mean_predicted),
         "observed": float(r.observed)} for r in table.itertuples()]
    gains = gains_table(y_true, p)
    metrics["gains"] = [[round(float(t), 4), round(float(c), 6)]
                        for t, c in zip(gains["share_targeted"], gains["share_captured"])]
    return metrics


def _better(new: dict[str, Any], old: dict[str, Any]) -> tuple[bool, str]:
    """Whether `new` beats `old` on one window, and why (in words)."""
    na, oa = new.get("roc_auc"), old.get("roc_auc")
    nb, ob = float(new["brier"]), float(old["brier"])
    if oa is None or na is None:
        return False, "ROC AUC is undefined on this validation window"
    if na - oa >= AUC_TIE:
        return True, f"ROC AUC {na:.4f} beats the champion's {oa:.4f}"
    if oa - na >= AUC_TIE:
        return False, f"ROC AUC {na:.4f} is below the champion's {oa:.4f}"
    if nb < ob:
        return True, (f"ROC AUC ties the champion's ({na:.4f} vs {oa:.4f}) and the Brier "
                      f"score {nb:.5f} beats its {ob:.5f}")
    return False, (f"ROC AUC ties the champion's ({na:.4f} vs {oa:.4f}) and the Brier score "
                   f"{nb:.5f} does not beat its {ob:.5f}")


def valid_health(valid: pd.DataFrame, card: Scorecard | None = None) -> pd.DataFrame:
    """The scorecard's health score and band of each labelled snapshot, in row order.

    Past snapshots are scored without the measures whose feature the warehouse keeps only
    in its latest state (`calibration.blind_latest_state`: a cancelled account's MRR is 0
    now), as the calibration scores them: with them the scorecard would read the outcome,
    and out-rank any model on the bar. `card`: the scorecard in use, when already read."""
    from pulse.models.calibration import blind_latest_state
    from pulse.models.health import score_features
    from pulse.models.scorecard import load_scorecard

    card = card or load_scorecard()
    frame = blind_latest_state(valid.reset_index(drop=True), card)[0]
    frame["account_id"] = np.arange(len(frame)).astype(str).astype(object)
    health, _ = score_features(frame, card)
    health = (health.assign(_i=health["account_id"].astype(int)).set_index("_i")
              .reindex(np.arange(len(frame))))
    return health[["score", "band"]].reset_index(drop=True)


def scorecard_auc(valid: pd.DataFrame, health: pd.DataFrame | None = None) -> float | None:
    """ROC AUC of the scorecard's ranking (risk = 100 - health) on labelled snapshots."""
    from sklearn.metrics import roc_auc_score

    y = valid[LABEL].to_numpy(dtype=bool)
    if y.all() or not y.any():
        return None
    health = valid_health(valid) if health is None else health
    score = health["score"].to_numpy(dtype="float64")
    if len(score) != len(y):
        return None
    score = np.where(np.isnan(score), 50.0, score)
    return float(roc_auc_score(y, 100.0 - score))


def churners_by_band(valid: pd.DataFrame, health: pd.DataFrame | None = None
                     ) -> list[dict[str, Any]]:
    """Snapshots and churners of the validation window in each health band (green, watch,
    amber, red, then unscored), with the churn rate and the share of all churners."""
    from pulse.models.scorecard import BANDS

    health = valid_health(valid) if health is None else health
    y = valid[LABEL].to_numpy(dtype=bool)
    band = health["band"].astype(object).to_numpy()
    band = np.where(np.isin(band, list(BANDS)), band, "unscored")
    total = max(int(y.sum()), 1)
    out = []
    for name in (*BANDS, "unscored"):
        rows = band == name
        n, k = int(rows.sum()), int(y[rows].sum())
        if name in ("watch", "unscored") and n == 0:  # no watch band without its cut point
            continue
        out.append({"band": name, "snapshots": n, "accounts": int(
            valid.loc[rows, "account_id"].nunique()) if n else 0, "churners": k,
            "churn_rate": k / n if n else None, "share_of_churners": k / total,
            "share_of_snapshots": n / max(len(y), 1)})
    return out


def clears_bar(metrics: dict[str, Any], *, min_roc_auc: float = MIN_ROC_AUC,
               scorecard_roc_auc: float | None = None, scorecard_margin: float = 0.0
               ) -> tuple[bool, str]:
    """Whether a model is good enough to rank the risk list at all, and why (in words).

    Against the scorecard, a model fails only when the scorecard ranks the window better by
    more than `scorecard_margin` (`register_fitted` gives `SCORECARD_MARGIN_SE` of the
    scorecard's standard errors on the window: within them the two are a tie, and the tie goes
    to the model, which was fitted to the outcomes and gives a probability).
    """
    auc = metrics.get("roc_auc")
    if auc is None:
        return False, "ROC AUC is undefined on the validation window"
    if auc < min_roc_auc:
        return False, (f"ROC AUC {auc:.4f} is below the minimum bar of {min_roc_auc:.2f}")
    within = f" ± {scorecard_margin:.4f}" if scorecard_margin > 0 else ""
    if scorecard_roc_auc is not None and auc - scorecard_roc_auc < AUC_TIE - scorecard_margin:
        return False, (f"ROC AUC {auc:.4f} does not beat the scorecard's own ranking "
                       f"({scorecard_roc_auc:.4f}{within})")
    return True, (f"ROC AUC {auc:.4f} clears the bar ({min_roc_auc:.2f}"
                  + (f"; scorecard {scorecard_roc_auc:.4f}{within}"
                     if scorecard_roc_auc is not None else "") + ")")


def window_auc_se(valid: pd.DataFrame, roc_auc: float | None) -> float:
    """The standard error of a ROC AUC measured on the validation window (Hanley and McNeil,
    churners and retained counted in accounts, since an account's snapshots are not
    independent); 0 when it is undefined. The margin of both ties: a model against the
    scorecard, and a baseline against the chosen configuration."""
    if roc_auc is None:
        return 0.0
    se = auc_se_in_groups(roc_auc, valid[LABEL].to_numpy(dtype=bool),
                          valid["account_id"].to_numpy())
    return se if math.isfinite(se) else 0.0


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What `train_and_register` did."""

    record: ModelRecord
    promoted: bool
    previous_champion: int | None
    champion_metrics: dict[str, Any] | None  # the old champion on the new validation window
    data: TrainingData | None = field(default=None, repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        auc = self.record.metrics.get("roc_auc")
        return (f"churn model v{self.version}: {self.record.status}"
                + (f" (validation ROC AUC {auc:.4f})" if isinstance(auc, float) else "")
                + f": {self.record.note or ''}")

    def to_dict(self) -> dict[str, Any]:
        """The registry row (without curves) and what happened, JSON-ready."""
        return {**self.record.to_dict(), "promoted": self.promoted,
                "previous_champion": self.previous_champion,
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics


def models_dir() -> Path:
    from pulse.core.settings import get_settings

    return get_settings().resolved_home() / "models"


def train_and_register(engine: Engine, *, as_of: date | None = None,
                       horizon_days: int = DEFAULT_HORIZON_DAYS, basis: str = "occurred",
                       step_days: int = DEFAULT_STEP_DAYS, valid_days: int = DEFAULT_VALID_DAYS,
                       warmup_days: int = DEFAULT_WARMUP_DAYS, classifier: str = "auto",
                       numeric: list[str] | None = None, random_state: int = 0,
                       artifact_dir: Path | None = None,
                       min_roc_auc: float = MIN_ROC_AUC, must_beat_scorecard: bool = True,
                       shorten_horizon: bool = True,
                       snapshots: dict[Any, pd.DataFrame] | None = None,
                       on_stage: Callable[[str], None] | None = None) -> TrainResult:
    """Train a churn model on history as of `as_of`, evaluate it, register it, maybe promote.

    The artifact goes to `artifact_dir` (default `$PULSE_HOME/models`). When the history is
    too short for `horizon_days`, the longest horizon that fits is used and the model's note
    and metrics say so (`shorten_horizon=False` refuses instead). Raises `TrainingDataError`
    when the history cannot give both windows with churners and non-churners in each.
    """
    import time as _time

    t0 = _time.perf_counter()
    data = build_training_data(engine, as_of=as_of, horizon_days=horizon_days, basis=basis,
                               step_days=step_days, valid_days=valid_days,
                               warmup_days=warmup_days, numeric=numeric,
                               shorten_horizon=shorten_horizon, snapshots=snapshots,
                               on_stage=on_stage)
    t1 = _time.perf_counter()
    fitted = fit_and_evaluate(data, classifier=classifier, random_state=random_state,
                              on_stage=on_stage)
    t2 = _time.perf_counter()
    result = register_fitted(engine, fitted, artifact_dir=artifact_dir,
                             min_roc_auc=min_roc_auc, must_beat_scorecard=must_beat_scorecard,
                             on_stage=on_stage)
    result.seconds = {"training data": t1 - t0, "fit": t2 - t1,
                      "compare and register": _time.perf_counter() - t2}
    return result


@dataclass
class Fitted:
    """A configuration chosen on a training window, measured on its validation window, and
    refitted on every labelled snapshot (`model`, the one registered)."""

    model: ChurnModel  # refitted on every labelled snapshot: the artifact
    data: TrainingData
    valid: pd.DataFrame
    metrics: dict[str, Any]
    train: pd.DataFrame | None = None
    valid_model: ChurnModel | None = None  # fitted on the training window only
    config: Config | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the artifact's metadata


def _check_classes(data: TrainingData, train: pd.DataFrame, valid: pd.DataFrame) -> None:
    w = data.windows
    for name, part, span in (("training", train, f"{w.train_start} to {w.train_end}"),
                             ("validation", valid, f"{w.valid_start} to {w.valid_end}")):
        churned = int(part[LABEL].sum())
        least = 3 if name == "training" else 1
        if churned < least or len(part) - churned < least:
            raise TrainingDataError(
                f"the {name} snapshots ({span}, {len(part):,} rows) hold {churned} churned "
                f"and {len(part) - churned:,} retained: need at least {least} of each "
                f"(cancellations within {w.horizon_days} days of a snapshot); use another "
                "horizon or more history")


def fit_and_evaluate(data: TrainingData, *, classifier: str = "auto", random_state: int = 0,
                     n_folds: int = 3, on_stage: Callable[[str], None] | None = None
                     ) -> Fitted:
    """Choose a configuration on time, measure it and the baselines on the validation
    window, then refit the winner on every labelled snapshot.

    1. The candidates (`models.selection.CANDIDATES`, or those of one `classifier`) are
       ranked by mean ROC AUC over up to `n_folds` rolling-origin time folds.
    2. The chosen one is fitted (calibrated, folds grouped by account) on the training
       window and measured on the validation window: those are the reported metrics.
    3. The plain baselines are fitted and measured on the same rows
       (``metrics["baselines"]``); when the better one ranks better than the chosen model
       by more than the chosen model's standard error on the window, it takes its place
       (within it the two tie, and the configuration the time folds chose stays).
    4. The winner is refitted on every labelled snapshot up to the training date: that
       model is the artifact.
    """
    train, valid = data.split()
    _check_classes(data, train, valid)
    w = data.windows
    y_all = data.frame[LABEL].to_numpy(dtype=int)
    try:
        candidates = candidates_for(classifier)
    except ModelInputError as exc:
        raise TrainingDataError(str(exc)) from None
    folds = data.folds(n_folds)
    selection = select_config(data.frame, y_all, folds, numeric=data.numeric,
                              categorical=data.categorical, candidates=candidates,
                              random_state=random_state, groups=data.frame["account_id"],
                              on_stage=on_stage)
    config = selection.chosen
    if on_stage:
        on_stage(f"fitting {config.name} on {len(train):,} snapshots "
                 f"({int(train[LABEL].sum())} churned)")
    y_train, y_valid = train[LABEL].to_numpy(dtype=int), valid[LABEL].to_numpy(dtype=int)
    model = config.build(data.numeric, data.categorical, random_state=random_state)
    try:
        model.fit(train, y_train, groups=train["account_id"])
    except ModelInputError as exc:
        raise TrainingDataError(f"cannot fit the churn model on the training window: {exc}"
                                ) from exc
    if on_stage:
        on_stage(f"evaluating on {len(valid):,} validation snapshots, beside the baselines")
    risk = model.predict_risk(valid)
    metrics = window_metrics(y_valid.astype(bool), risk)
    baselines, fitted_baselines = baseline_figures(
        train, y_train, valid, y_valid, numeric=data.numeric, categorical=data.categorical,
        random_state=random_state)
    chosen_auc = metrics.get("roc_auc")
    margin = window_auc_se(valid, chosen_auc)
    replaced_by = baseline_to_replace(baselines, chosen_auc, margin)
    if replaced_by is not None:  # only with a measured chosen_auc
        note = (f"the {replaced_by} baseline (ROC AUC {baselines[replaced_by]['roc_auc']:.4f})"
                f" ranks better than {config.name} ({chosen_auc:.4f} ± {margin:.4f}) on the "
                "validation window: the baseline is the model")
        log.info("%s", note)
        config, model = BASELINES[replaced_by], fitted_baselines[replaced_by]
        risk = model.predict_risk(valid)
        metrics = window_metrics(y_valid.astype(bool), risk)
    rows = data.refit_frame
    y_refit = rows[LABEL].to_numpy(dtype=int)
    if on_stage:
        on_stage(f"refitting {config.name} on all {len(rows):,} labelled snapshots"
                 + (f" ({data.refit_horizon_days}-day horizon)" if data.refit is not None
                    else ""))
    final = config.build(data.numeric, data.categorical, random_state=random_state)
    try:
        final.fit(rows, y_refit, groups=rows["account_id"])
    except ModelInputError as exc:
        raise TrainingDataError(f"cannot refit the churn model on every labelled snapshot: "
                                f"{exc}") from exc
    dates = rows["as_of"].dt.date
    refit = {"rows": len(rows), "positives": int(y_refit.sum()),
             "accounts": int(rows["account_id"].nunique()),
             "snapshots": int(dates.nunique()),
             "span": [dates.min().isoformat(), dates.max().isoformat()],
             "horizon_days": data.refit_horizon_days}
    metrics.update({
        "train_rows": len(train), "train_positives": int(y_train.sum()),
        "train_accounts": int(train["account_id"].nunique()),
        "valid_accounts": int(valid["account_id"].nunique()),
        "basis": data.basis, "step_days": w.step_days, "classifier": config.classifier,
        "model": config.name, "params": _json_safe(config.params),
        "as_of": w.as_of.isoformat(), "last_data": w.last_data.isoformat(),
        "requested_horizon_days": w.requested_horizon_days or w.horizon_days,
        "horizon_note": w.note, "selection": selection.to_dict(), "baselines": baselines,
        "baseline_replaced": replaced_by, "baseline_margin": margin, "refit": refit, "unused_features": final.unused_,
    })
    meta = {"horizon_days": data.refit_horizon_days, "basis": data.basis, "as_of": w.as_of.isoformat(),
            "model": config.name, "fit_rows": refit["rows"], "fit_positives": refit["positives"],
            "fit_snapshots": refit["snapshots"], "fit_span": refit["span"],
            "valid_window": [w.valid_start.isoformat(), w.valid_end.isoformat()]}
    return Fitted(final, data, valid, metrics, train=train, valid_model=model, config=config,
                  meta=meta)


def _champion_on_window(current: ModelRecord, fitted: Fitted) -> dict[str, Any]:
    """The champion's configuration, fitted on the new training window and measured on the
    new validation window: its artifact was refitted on snapshots that overlap the new
    validation window, so scoring the artifact there would flatter it."""
    old = current.load()
    train, valid = fitted.train, fitted.valid
    if train is None:
        train, valid = fitted.data.split()
    try:
        again = clone(old)
    except (AttributeError, TypeError):  # an artifact from before the model had its params
        return dict(evaluate(valid[LABEL], old.predict_risk(valid)))
    again.fit(train, train[LABEL].to_numpy(dtype=int),
              **({"groups": train["account_id"]} if old.calibration != "none" else {}))
    return dict(evaluate(valid[LABEL], again.predict_risk(valid)))


def _same_config(a: ChurnModel, b: ChurnModel) -> bool:
    try:
        pa, pb = a.get_params(), b.get_params()
    except AttributeError:  # an artifact from before the model had its params
        return False
    pa.pop("random_state", None)
    pb.pop("random_state", None)
    return bool(pa == pb)


def register_fitted(engine: Engine, fitted: Fitted, *, artifact_dir: Path | None = None,
                    min_roc_auc: float = MIN_ROC_AUC, must_beat_scorecard: bool = True,
                    on_stage: Callable[[str], None] | None = None) -> TrainResult:
    """Judge a fitted model against the bar and the champion on its validation window,
    then register it."""
    w = fitted.data.windows
    valid, metrics = fitted.valid, dict(fitted.metrics)
    current = champion(engine)
    champ_metrics: dict[str, Any] | None = None
    card_auc: float | None = None
    margin = 0.0
    from pulse.models.scorecard import load_scorecard

    card = load_scorecard()
    health = valid_health(valid, card)
    metrics["by_band"] = churners_by_band(valid, health)
    metrics["by_band_scorecard"] = card.label
    if must_beat_scorecard:
        if on_stage:
            on_stage("ranking the validation snapshots with the scorecard")
        card_auc = scorecard_auc(valid, health)
        se = window_auc_se(valid, card_auc)
        margin = SCORECARD_MARGIN_SE * se
        metrics.update(scorecard_roc_auc=card_auc, scorecard_roc_auc_se=se,
                       scorecard_margin=margin)
    ok, bar = clears_bar(metrics, min_roc_auc=min_roc_auc, scorecard_roc_auc=card_auc,
                         scorecard_margin=margin)
    if not ok:
        promote = False
        note = (f"{bar} on the validation window {w.valid_start} to {w.valid_end}: stays "
                "challenger; "
                + (f"v{current.version} remains champion" if current else
                   "no champion, the risk list ranks on health"))
    elif current is None:
        promote, note = True, f"first churn model to clear the bar: champion ({bar})"
    else:
        if on_stage:
            on_stage(f"fitting champion v{current.version}'s configuration on the same window")
        try:
            champ_metrics = _champion_on_window(current, fitted)
        except (ModelArtifactError, ModelInputError, ValueError) as exc:
            promote = True
            note = (f"champion v{current.version} cannot be measured on this window ({exc}); "
                    "promoted in its place")
        else:
            promote, why = _better(metrics, champ_metrics)
            fresher = w.as_of > date.fromisoformat(
                str(current.metrics.get("as_of", w.as_of.isoformat())))
            if not promote and fresher and _same_config(fitted.model, current.load()):
                promote, why = True, (f"same configuration as v{current.version}, refitted "
                                      f"on history up to {w.as_of}")
            note = (f"{why} on the validation window {w.valid_start} to {w.valid_end}: "
                    + (f"promoted, v{current.version} retired" if promote
                       else f"stays challenger; v{current.version} remains champion"))
            metrics["champion_on_window"] = {
                "version": current.version,
                **{k: champ_metrics[k] for k in SCALAR_METRICS if k in champ_metrics}}
    extras = [f"model: {metrics.get('model')}"] if metrics.get("model") else []
    if metrics.get("baseline_replaced"):
        extras.append(f"the {metrics['baseline_replaced']} baseline ranked better than the "
                      f"chosen configuration, so it is the model")
    if w.note:
        extras.append(w.note)
    if extras:
        note = f"{note} ({'; '.join(extras)})"
    record = _register(engine, fitted.model, fitted.data, metrics, promote=promote, note=note,
                       expected_champion=current.version if current else None,
                       folder=artifact_dir or models_dir(), meta=fitted.meta)
    log.info("churn model v%d (%s): %s", record.version, record.status, note)
    return TrainResult(record, promote, current.version if current else None, champ_metrics,
                       fitted.data)


def _register(engine: Engine, model: ChurnModel, data: TrainingData, metrics: dict[str, Any],
              *, promote: bool, note: str, expected_champion: int | None,
              folder: Path, meta: dict[str, Any] | None = None) -> ModelRecord:
    """Insert the registry row, save the artifact under its version, settle the champion."""
    w = data.windows
    now = datetime.now(UTC)
    saved: Path | None = None
    try:
        with engine.begin() as conn:
            current = conn.execute(
                select(REGISTRY.c.version).where(REGISTRY.c.kind == KIND,
                                                 REGISTRY.c.status == CHAMPION)).scalars().all()
            if sorted(current) != ([expected_champion] if expected_champion else []):
                raise RegistryError(
                    "the champion changed while this model was training (now "
                    f"{', '.join(f'v{v}' for v in current) or 'none'}, was "
                    f"{f'v{expected_champion}' if expected_champion else 'none'}): train again")
            version = conn.execute(insert(REGISTRY).values(
                kind=KIND, trained_at=now, train_start=w.train_start, train_end=w.train_end,
                valid_start=w.valid_start, valid_end=w.valid_end, horizon_days=data.refit_horizon_days,
                features=data.features, metrics=_json_safe(metrics), artifact_path="",
                status=CHAMPION if promote else CHALLENGER,
                promoted_at=now if promote else None, note=note,
            ).returning(REGISTRY.c.version)).scalar_one()
            saved = save_model(model, folder / f"churn-v{version}.joblib",
                               metadata=_json_safe({**(meta or {}), "version": version}))
            conn.execute(update(REGISTRY).where(REGISTRY.c.version == version)
                         .values(artifact_path=str(saved)))
            if promote and expected_champion is not None:
                old_note = conn.execute(select(REGISTRY.c.note).where(
                    REGISTRY.c.version == expected_champion)).scalar()
                conn.execute(update(REGISTRY).where(REGISTRY.c.version == expected_champion)
                             .values(status=RETIRED, note=(
                                 (old_note + "; " if old_note else "")
                                 + f"retired {now.date()}: v{version} beat it")))
            row = conn.execute(select(REGISTRY).where(REGISTRY.c.version == version)).one()
    except BaseException:
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise
    return _record(row)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- scoring


@dataclass
class ChurnScoreSummary:
    as_of: date
    model_version: int | None
    scored: int
    explained: int
    skipped_cancelled: int = 0
    message: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "model_version": self.model_version,
                "scored": self.scored, "explained": self.explained,
                "skipped_cancelled": self.skipped_cancelled, "message": self.message,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def driver_records(model: ChurnModel, rows: pd.DataFrame, top: int = TOP_DRIVERS
                   ) -> list[list[dict[str, Any]]]:
    """Each row's top drivers as JSON-ready dicts: feature, value, reference, direction,
    points, text."""
    out = []
    for drivers in explain(model, rows, top=top):
        texts = drivers_in_words(drivers, DRIVER_LABELS)
        out.append([{
            "feature": d.feature, "value": _json_safe(d.value),
            "reference": _json_safe(d.reference), "direction": d.direction,
            "points": round(d.points, 2), "text": t,
        } for d, t in zip(drivers, texts)])
    return out


def score_churn_summary(engine: Engine, as_of: date, *, basis: str = "known",
                        explain_limit: int = EXPLAIN_LIMIT,
                        on_stage: Callable[[str], None] | None = None,
                        shard: Shard | None = None) -> ChurnScoreSummary:
    """`score_churn`, returning what it did (`scored` is the rows written).

    With `shard`: only that shard's accounts are scored (their rows replaced) and none is
    explained: which accounts get drivers is decided over the whole book, by
    `explain_churn`, once every shard is scored (dags/pulse_health.py).
    """
    import time as _time

    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import compute_features, load_features
    from pulse.sql.health import bulk_insert
    from pulse.sql.shards import shard_of

    record = champion(engine)
    if record is None:
        msg = (f"no champion churn model: nothing scored as of {as_of} "
               "(train one with `pulse model train`)")
        log.warning(msg)
        return ChurnScoreSummary(as_of, None, 0, 0, message=msg)
    t0 = _time.perf_counter()
    model = record.load()
    features = load_features(engine, as_of, shard=shard)
    if features.empty and shard is None:
        if on_stage:
            on_stage(f"computing features as of {as_of}")
        compute_features(engine, as_of, basis=basis,  # type: ignore[arg-type]
                         negative_terms=NEGATIVE_TERMS)
        features = load_features(engine, as_of)
    cancelled = features["cancelled"].fillna(False).astype(bool).to_numpy()
    features = features[~cancelled].reset_index(drop=True)
    frame = model_frame(features, account_attributes(engine))
    t1 = _time.perf_counter()
    if on_stage:
        on_stage(f"scoring {len(frame):,} accounts with churn model v{record.version}")
    risk = model.predict_risk(frame) if len(frame) else np.zeros(0)
    t2 = _time.perf_counter()
    rows = pd.DataFrame({
        "as_of": as_of, "account_id": frame["account_id"].to_numpy(),
        "model_version": record.version, "probability": risk.astype("float64"),
        "drivers": [[] for _ in range(len(frame))], "computed_at": datetime.now(UTC)})
    in_shard = shard_of(SCORES.c.account_id, shard)
    with engine.begin() as conn:
        stale = delete(SCORES).where(SCORES.c.as_of == as_of)
        conn.execute(stale if in_shard is None else stale.where(in_shard))
        bulk_insert(conn, SCORES, rows)
    t3 = _time.perf_counter()
    n_explain = 0
    if shard is None:
        if on_stage:
            on_stage("explaining the riskiest accounts")
        n_explain = explain_churn(engine, as_of, model=model, explain_limit=explain_limit)
    t4 = _time.perf_counter()
    log.info("churn scores as of %s%s: %d accounts with v%d (%d explained, %d cancelled left "
             "out)", as_of, f" (shard {shard})" if shard else "", len(rows), record.version,
             n_explain, int(cancelled.sum()))
    return ChurnScoreSummary(
        as_of, record.version, len(rows), n_explain, int(cancelled.sum()),
        message=f"scored {len(rows):,} accounts as of {as_of} with churn model "
                f"v{record.version} ({n_explain:,} explained)",
        seconds={"features": t1 - t0, "predict": t2 - t1, "write": t3 - t2,
                 "explain": t4 - t3})


def explain_churn(engine: Engine, as_of: date, *, model: ChurnModel | None = None,
                  explain_limit: int = EXPLAIN_LIMIT) -> int:
    """Give the riskiest accounts of the date their top drivers; returns how many.

    Over every account scored as of `as_of` (all shards): those above the median risk, at
    most `explain_limit`, riskiest first (ties in account order). The others keep an empty
    list. Runs once per date, after the scores are written; repeating it writes the same.
    """
    from sqlalchemy import bindparam

    from pulse.sql.features import load_features

    with engine.connect() as conn:
        scored = conn.execute(select(SCORES.c.account_id, SCORES.c.probability, SCORES.c.model_version)
                              .where(SCORES.c.as_of == as_of)
                              .order_by(SCORES.c.account_id)).all()
    if not scored:
        return 0
    if model is None:
        versions = {r.model_version for r in scored}
        record = next((m for m in list_models(engine) if m.version in versions), None)
        if record is None:
            return 0
        model = record.load()
    ids = np.array([r.account_id for r in scored], dtype=object)
    risk = np.array([r.probability for r in scored], dtype="float64")
    median = float(np.median(risk))
    n_explain = min(int((risk > median).sum()), max(int(explain_limit), 0))
    chosen = ids[np.argsort(-risk, kind="stable")[:n_explain]]
    records: list[list[dict[str, Any]]] = []
    if n_explain:
        features = load_features(engine, as_of, list(chosen)).set_index("account_id")
        features = features.loc[chosen].reset_index()
        records = driver_records(model, model_frame(features, account_attributes(engine, list(chosen))))
    with engine.begin() as conn:
        conn.execute(update(SCORES).where(SCORES.c.as_of == as_of).values(drivers=[]))
        if n_explain:
            conn.execute(
                update(SCORES).where(SCORES.c.as_of == as_of,
                                     SCORES.c.account_id == bindparam("aid"))
                .values(drivers=bindparam("drv")),
                [{"aid": a, "drv": d} for a, d in zip(chosen, records)])
    return n_explain


def score_churn(engine: Engine, as_of: date, *, basis: str = "known") -> int:
    """Score every account that is still a customer as of `as_of` with the champion.

    Uses the date's materialised features (computing them on `basis` when the date has
    none). The riskiest accounts, those above the median risk but at most 2,000, get their
    top 3 drivers in words; the others an empty list. Replaces the date's `churn_scores`
    rows and returns how many were written; without a champion it writes nothing, logs
    why, and returns 0. Cancelled accounts are churned, not at risk, and get no row.
    """
    return score_churn_summary(engine, as_of, basis=basis).scored

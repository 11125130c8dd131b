"""`pulse bench models --variant`: the training and the calibration share one cache of feature
snapshots, as `pulse model train` does, so that no snapshot date is computed twice."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pulse.models.metrics import roc_auc


@pytest.mark.slow
def test_variant_bench_computes_each_snapshot_date_once_and_reports_every_figure(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One variant world measured end to end (the CLI's plumbing of --variant is tested with
    --only silent in tests/test_variants.py, in seconds)."""
    from rich.console import Console

    import pulse.models.training as training
    from pulse.devkit.bench.models import (
        TARGETS,
        _print_variant_tables,
        draw_chart,
        run_variant_bench,
    )

    real = training.snapshot_features
    calls: Counter[tuple[date, str]] = Counter()

    def counted(engine: Any, as_of: date, *, basis: str = "occurred") -> Any:
        calls[(as_of, basis)] += 1
        return real(engine, as_of, basis=basis)

    monkeypatch.setattr(training, "snapshot_features", counted)
    fig = run_variant_bench("quiet", seed=1, accounts=120, end=date(2026, 9, 30),
                            rows_dir=tmp_path / "rows")
    assert "train" not in fig.errors and "calibrate" not in fig.errors, fig.errors
    assert fig.champion_auc is not None and fig.health_auc is not None
    assert len(calls) > 5  # the training dates, then today's accounts for the calibration
    twice = {d: n for d, n in calls.items() if n > 1}
    assert not twice, f"snapshot dates computed more than once: {twice}"

    # Every figure is either measured or its stage's failure is reported, as the CLI prints.
    world = asdict(fig)
    assert world["variant"] == "quiet" and world["accounts"] == 120
    assert world["horizon_days"] == 30 and world["scored"] > 50 and world["churned"] > 0
    for t in TARGETS:
        assert t.key in world
        assert world[t.key] is not None or world["errors"], t.key
    assert world["health_auc"] is not None and 0.0 <= world["health_auc"] <= 1.0
    # what the CSM sees: the risk list's probability, the champion's or the calibrated card's
    assert world["risk_list_auc"] is not None and 0.0 <= world["risk_list_auc"] <= 1.0
    if fig.model and fig.model.endswith(" champion"):
        # a promoted model ranks the list: the list's figure is the champion's (the list
        # rounds probabilities to 4 digits, which may tie a few rows)
        assert world["risk_list_auc"] == pytest.approx(world["champion_auc"], abs=0.005)
    else:
        assert any("no champion" in n for n in fig.notes), fig.notes
    assert world["red_amber"] is not None and world["silent_truth"] > 0
    # --rows: the figures can be recomputed from the accounts written out
    rows = pd.read_csv(tmp_path / "rows" / "quiet-seed1.csv")
    assert len(rows) == fig.scored and rows["churned"].sum() == fig.churned
    assert roc_auc(rows["churned"], rows["model_probability"]) == pytest.approx(
        fig.champion_auc)
    assert roc_auc(rows["churned"], -rows["health"]) == pytest.approx(fig.health_auc)
    # ... beside the date's stored features, the model's inputs, one per account
    assert rows["feature_events_28d"].notna().all() and rows["feature_active_days_28d"].gt(0).any()
    # (scored 90 days before the world's end: the stored seats describe a later day, unknown)
    assert rows["feature_seats"].isna().all()
    assert "feature_as_of" not in rows  # the date is the world's, not a feature
    chart = draw_chart([fig], tmp_path / "models.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = Console(record=True, width=210)
    _print_variant_tables([fig], console, chart)
    text = console.export_text()
    for t in TARGETS:
        assert t.label in text
    assert "horizon 30 days" in text


def test_the_risk_list_figure_ranks_rows_without_a_probability_last() -> None:
    import numpy as np

    from pulse.devkit.bench.models import risk_list_auc

    y = np.array([1, 1, 0, 0, 0])
    shown = np.array([0.9, np.nan, 0.2, 0.1, np.nan])
    # churner 2 has no probability: it sorts with the unscored retained row, below the rest
    # pairs (churner, retained): (0.9 > all) 3 wins; (nan vs 0.2, 0.1) 2 losses, (nan, nan) tie
    assert risk_list_auc(y, shown) == pytest.approx(3.5 / 6)
    assert risk_list_auc(y, np.array([0.9, 0.8, 0.2, 0.1, 0.3])) == 1.0
    assert risk_list_auc(y, np.full(5, np.nan)) is None

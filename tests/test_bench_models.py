"""`pulse bench models --variant`: the training and the calibration share one cache of feature
snapshots, as `pulse model train` does, so that no snapshot date is computed twice."""
from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest


@pytest.mark.slow
def test_variant_bench_computes_each_snapshot_date_once(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    import pulse.models.training as training
    from pulse.devkit.bench.models import run_variant_bench

    real = training.snapshot_features
    calls: Counter[tuple[date, str]] = Counter()

    def counted(engine: Any, as_of: date, *, basis: str = "occurred") -> Any:
        calls[(as_of, basis)] += 1
        return real(engine, as_of, basis=basis)

    monkeypatch.setattr(training, "snapshot_features", counted)
    fig = run_variant_bench("quiet", seed=1, accounts=120, end=date(2026, 9, 30))
    assert "train" not in fig.errors and "calibrate" not in fig.errors, fig.errors
    assert fig.champion_auc is not None and fig.health_auc is not None
    assert len(calls) > 5  # the training dates, then today's accounts for the calibration
    twice = {d: n for d, n in calls.items() if n > 1}
    assert not twice, f"snapshot dates computed more than once: {twice}"

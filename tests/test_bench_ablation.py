"""`pulse bench features --ablate`: the churn model's ROC AUC without each group of its inputs,
and which groups earn their place over the worlds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pulse_cli import run_pulse


def test_every_model_input_is_in_exactly_one_group() -> None:
    """A new catalogue feature must be given a group, or the ablation would never judge it."""
    from pulse.devkit.bench.ablation import GROUPS
    from pulse.models.training import CATEGORICAL, NUMERIC

    members = [c for cols in GROUPS.values() for c in cols]
    assert len(members) == len(set(members)), "an input in two groups"
    assert set(members) == set(NUMERIC) | set(CATEGORICAL)


def _world(rng: np.random.Generator, n: int = 900) -> tuple[pd.DataFrame, pd.DataFrame,
                                                             np.ndarray]:
    """Snapshots where a decline (two trend features) drives churn and CSAT is noise."""
    def frame(rows: int, accounts: int) -> tuple[pd.DataFrame, np.ndarray]:
        decline = rng.normal(0.0, 1.0, rows)
        y = (rng.random(rows) < 1 / (1 + np.exp(-(-2.2 - 1.6 * decline)))).astype(int)
        f = pd.DataFrame({
            "account_id": [f"a{i % accounts}" for i in range(rows)],
            "events_28d_vs_90d": np.exp(0.3 * decline),
            "events_slope_12w": 0.1 * decline + rng.normal(0, 0.05, rows),
            "csat_90d": rng.uniform(1, 5, rows),
            "incident_minutes_28d": np.zeros(rows),  # no incidents in this world
            "churned": y,
        })
        return f, y

    train, _ = frame(n, n // 3)
    test, y = frame(n // 2, n // 2)
    return train, test, y


def test_a_group_that_carries_the_signal_earns_its_place_and_noise_does_not() -> None:
    from pulse.devkit.bench.ablation import WorldAblation, ablate_frames, verdicts

    groups = {"trends": ("events_28d_vs_90d", "events_slope_12w"), "CSAT": ("csat_90d",),
              "incidents": ("incident_minutes_28d",)}
    worlds = []
    for seed in range(4):
        train, test, y = _world(np.random.default_rng(seed))
        fig = ablate_frames(train, test, y, WorldAblation(f"w{seed}", "synthetic", seed),
                            groups=groups)
        assert fig.auc_all is not None and fig.auc_all > 0.7
        # without the trends only CSAT (noise) is left: the ranking falls to chance
        assert fig.auc_without["trends"] is not None and fig.auc_without["trends"] < 0.62
        assert fig.gain("trends") == pytest.approx(fig.auc_all - fig.auc_without["trends"])
        assert abs(fig.gain("CSAT") or 0.0) < 0.03
        worlds.append(fig)
    by_group = {v.group: v for v in verdicts(worlds, groups)}
    assert by_group["trends"].verdict == "earns its place"
    assert by_group["trends"].worlds_gained == 4
    assert by_group["CSAT"].verdict != "earns its place"
    assert by_group["CSAT"].worlds_with_data == 4
    assert by_group["incidents"].verdict == "no data in these worlds"
    assert by_group["incidents"].mean_gain == 0.0
    assert [v.group for v in verdicts(worlds, groups)][0] == "trends"  # largest gain first


def test_a_verdict_needs_two_worlds_and_reads_the_spread() -> None:
    from pulse.devkit.bench.ablation import WorldAblation, verdicts

    def world(all_: float, without: float) -> WorldAblation:
        return WorldAblation("w", "v", 1, auc_all=all_, auc_without={"g": without})

    groups = {"g": ("x",)}
    assert verdicts([world(0.8, 0.7)], groups)[0].verdict == "too few worlds"
    steady = verdicts([world(0.8, 0.7), world(0.8, 0.71), world(0.8, 0.69)], groups)[0]
    assert steady.verdict == "earns its place" and steady.mean_gain == pytest.approx(0.1)
    hurts = verdicts([world(0.7, 0.8), world(0.7, 0.81), world(0.7, 0.79)], groups)[0]
    assert hurts.verdict == "hurts"
    mixed = verdicts([world(0.8, 0.7), world(0.7, 0.8), world(0.8, 0.79)], groups)[0]
    assert mixed.verdict == "not measurable" and mixed.worlds_gained == 2


@pytest.mark.slow
def test_the_command_ablates_a_variant_world_from_the_command_line(tmp_path: Path) -> None:
    """Two groups (`--group`) keep it to three fits; every group is the default."""
    chart = tmp_path / "ablation.png"
    done = run_pulse("bench", "features", "--ablate", "--variant", "steady", "--seed", "1",
                     "--accounts", "120", "--months", "9", "--end", "2026-06-30",
                     "--group", "trends against its own past (7, 28, 90 days)",
                     "--group", "CSAT", "--chart", str(chart), "--format", "json",
                     env={**os.environ, "PULSE_HOME": str(tmp_path / "home")}, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    from pulse.devkit.bench.ablation import GROUPS

    chosen = ["trends against its own past (7, 28, 90 days)", "CSAT"]
    assert list(doc["groups"]) == chosen
    assert doc["groups"]["CSAT"] == list(GROUPS["CSAT"])
    (world,) = doc["worlds"]
    assert world["error"] is None
    assert world["as_of"] == "2026-04-01"  # 90 days before the end, as the model bench
    assert world["training_churned"] > 0 and 0 < world["churners"] < world["scored"]
    assert list(world["auc_without"]) == chosen
    assert 0.5 < world["auc_all"] <= 1.0
    # the worlds carry no survey answers: CSAT has no data, and leaving it out changes nothing
    assert world["varies"] == {chosen[0]: True, "CSAT": False}
    assert world["auc_without"]["CSAT"] == world["auc_all"]
    # one world: no standard error, so no group is judged, but one without values is named
    verdicts = {v["group"]: v["verdict"] for v in doc["verdicts"]}
    assert verdicts == {chosen[0]: "too few worlds", "CSAT": "no data in these worlds"}
    assert chart.is_file() and chart.stat().st_size > 10_000
    assert "steady seed 1: without CSAT" in done.stderr  # progress, on stderr with JSON


def test_an_unknown_group_is_refused_before_any_world_is_made(tmp_path: Path) -> None:
    from pulse.devkit.bench.ablation import GROUPS, chosen_groups

    assert chosen_groups(None) == GROUPS and chosen_groups([]) == GROUPS
    done = run_pulse("bench", "features", "--ablate", "--variant", "steady",
                     "--group", "seat use", "--group", "seats", "--chart", "none",
                     env={**os.environ, "PULSE_HOME": str(tmp_path)}, timeout=120)
    assert done.returncode != 0
    assert "unknown group 'seats'" in done.stderr and "'seat use'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bench").exists()


@pytest.mark.slow
def test_the_univariate_mode_measures_every_feature_on_each_seed(tmp_path: Path) -> None:
    """Without --ablate: each catalogue feature's own ROC AUC, one entry per world."""
    done = run_pulse("bench", "features", "--variant", "quiet", "--seed", "1", "--seed", "2",
                     "--accounts", "100", "--end", "2026-06-30", "--format", "json",
                     env={**os.environ, "PULSE_HOME": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr
    worlds = json.loads(done.stdout)
    assert [w["world"] for w in worlds] == ["quiet seed 1", "quiet seed 2"]
    for w in worlds:
        assert w["error"] is None and 0 < w["positives"] < w["rows"]
        by_name = {f["feature"]: f for f in w["features"]}
        # a decline against the account's own past tells churners apart on this world
        assert by_name["events_28d_vs_90d"]["signal"] > 0.2
        assert by_name["events_28d_vs_90d"]["direction"] == "-"
        assert by_name["csat_90d"]["coverage"] == 0.0 and by_name["csat_90d"]["auc"] is None
        signals = [f["signal"] for f in w["features"] if f["signal"] is not None]
        assert signals == sorted(signals, reverse=True)  # the strongest first

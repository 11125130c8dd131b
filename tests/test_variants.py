"""Tests of the demo world's structural variants (pulse.devkit.demo.variants) and of
`pulse bench models --variant`: variants differ in shape, churn happens throughout the
history, truth.json agrees with the files, and the bench prints every figure.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pulse.core.errors import InvalidArgumentError, UnknownNameError
from pulse.devkit.demo.variants import VARIANTS, generate_variant
from pulse.devkit.demo.world import DemoSummary
from pulse.models.flag_rules import SilentRule
from tests.pulse_cli import run_pulse

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 9, 30)
N = 150


def _pulse(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return run_pulse(*args, env=env, cwd=ROOT, timeout=600)


def _ts(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


class World:
    def __init__(self, out: Path, summary: DemoSummary) -> None:
        self.out = out
        self.summary = summary
        self.truth: dict[str, Any] = json.loads(summary.truth_path.read_text(encoding="utf-8"))
        self.ids = set(self.truth["groups"])
        self.start = date.fromisoformat(self.truth["generated_with"]["start"])
        self.days = int(self.truth["generated_with"]["days"])

    def csv(self, source: str) -> list[dict[str, str]]:
        """The rows of a source that belong to a real account (malformed copies may not)."""
        return [r for r in _rows(self.out / f"{source}.csv") if r.get("account_id") in self.ids]


@pytest.fixture(scope="module")
def make_world(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., World]:
    cache: dict[tuple[str, int, int | None], World] = {}

    def make(name: str, seed: int = 1, months: int | None = 6) -> World:
        key = (name, seed, months)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}-{seed}")
            cache[key] = World(out, generate_variant(out, name, accounts=N, months=months,
                                                     seed=seed, end=END))
        return cache[key]
    return make


# -- shape statistics --------------------------------------------------------------------------


def weekend_ratio(w: World) -> float:
    """Usage rows per weekend day over rows per weekday (1: no weekly cycle)."""
    counts = np.zeros(7)
    for r in w.csv("usage"):
        t = _ts(r["occurred_at"])
        if t is not None:
            counts[t.astimezone(UTC).weekday()] += 1
    return float(counts[5:].mean() / counts[:5].mean())


def annual_share(w: World) -> float:
    """Share of accounts whose renewal date lies more than 40 days after the end."""
    end = date.fromisoformat(w.truth["generated_with"]["end"])
    later = [(date.fromisoformat(r["renewal_date"]) - end).days for r in w.csv("accounts")
             if r["renewal_date"][:4].isdigit() and len(r["renewal_date"]) == 10]
    return float(np.mean(np.array(later) > 40))


def gini(values: list[float]) -> float:
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def seats_gini(w: World) -> float:
    return gini([float(r["seats"]) for r in w.csv("accounts") if r["seats"].isdigit()])


def cancel_days(w: World) -> list[int]:
    return [(date.fromisoformat(d[:10]) - w.start).days for d in w.truth["churn"].values()]


# -- tests -------------------------------------------------------------------------------------


def test_every_variant_is_listed_with_a_description() -> None:
    run = _pulse("demo", "variants")
    assert run.returncode == 0, run.stderr
    for name, v in VARIANTS.items():
        assert name in run.stdout
        assert v.summary.split()[0] in run.stdout
    assert {v.months for v in VARIANTS.values()} >= {6, 9, 12, 24}
    assert {v.engine for v in VARIANTS.values()} == {"scripted", "latent"}


def test_variants_differ_in_shape(make_world: Callable[..., World]) -> None:
    seasonal, steady = make_world("seasonal"), make_world("steady")
    whales, long_ = make_world("whales"), make_world("long")
    # weekly cycle: the seasonal world's weekends are far quieter than the steady one's
    assert weekend_ratio(seasonal) < 0.6 * weekend_ratio(steady)
    # plan mix: whales are mostly annual, the long world mostly monthly
    assert annual_share(whales) > annual_share(long_) + 0.35
    # account sizes: Pareto whales are more unequal than the long world's small accounts
    assert seats_gini(whales) > seats_gini(long_) + 0.08
    # noisy error rates
    noisy, quiet = make_world("noisy"), make_world("quiet")

    def error_share(w: World) -> float:
        rows = w.csv("usage")
        return sum(r["outcome"] == "error" for r in rows) / len(rows)
    assert error_share(noisy) > 2 * error_share(quiet)
    # events per seat: whales are busier per account than the quiet world
    assert len(whales.csv("usage")) > 2 * len(quiet.csv("usage"))


def test_churn_happens_throughout_the_history(make_world: Callable[..., World]) -> None:
    for name in ("steady", "reference"):
        w = make_world(name, months=None)
        days = np.array(cancel_days(w))
        thirds = np.histogram(days, bins=[0, w.days // 3, 2 * w.days // 3, w.days])[0]
        # a steady hazard: every third of the history holds a good share of cancellations
        assert thirds.min() >= 0.15 * thirds.sum(), (name, thirds)
        # about 12% of the active accounts cancel within 90 days (loosely: a small world)
        active = N - int((days < w.days // 2).sum())
        within = int(((days >= w.days // 2) & (days < w.days // 2 + 90)).sum())
        assert 0.04 <= within / active <= 0.3, (name, within, active)


def test_truth_agrees_with_the_files(make_world: Callable[..., World]) -> None:
    for name in ("quiet", "reference"):
        w = make_world(name)
        truth = w.truth
        assert truth["variant"]["name"] == name
        cancelled = {r["account_id"]: _ts(r["occurred_at"]) for r in w.csv("purchases")
                     if r["kind"] == "cancelled" and _ts(r["occurred_at"])}
        assert set(truth["churn"]) == set(cancelled)
        for acc, when in truth["churn"].items():
            t = cancelled[acc]
            assert t is not None and t.astimezone(UTC).date().isoformat() == when[:10]
        last_use: dict[str, datetime] = {}
        for r in w.csv("usage"):
            t = _ts(r["occurred_at"])
            if t is not None and (r["account_id"] not in last_use or t > last_use[r["account_id"]]):
                last_use[r["account_id"]] = t
        for acc in truth["churn"]:
            t = cancelled[acc]
            assert acc not in last_use or t is None or last_use[acc] <= t
        # silent spells: no ticket opened while silent, and silent_since is the first spell
        assert truth["silent_periods"], name
        opened: dict[str, list[date]] = {}
        for r in w.csv("tickets"):
            t = _ts(r["opened_at"])
            if t is not None:
                opened.setdefault(r["account_id"], []).append(t.astimezone(UTC).date())
        for acc, spans in truth["silent_periods"].items():
            assert truth["silent_since"][acc] == spans[0][0]
            assert truth["groups"][acc] == "silent_fade"
            for a, b in spans:
                lo = date.fromisoformat(a) + timedelta(days=1)  # a day's slack at each end
                hi = date.fromisoformat(b) - timedelta(days=1) if b else date.max
                assert not [d for d in opened.get(acc, []) if lo <= d < hi], (acc, a, b)
        for acc in truth["silent_dissatisfied"]:
            assert truth["silent_periods"][acc][-1][1] is None and acc not in truth["churn"]
        assert truth["malformed"] == w.summary.malformed
        total = sum(w.summary.rows.values())
        assert 0.003 * total <= sum(truth["malformed"].values()) <= 0.02 * total


def test_some_silent_accounts_churn_and_some_churners_give_little_warning(
        make_world: Callable[..., World]) -> None:
    w = make_world("quiet")
    silent = set(w.truth["silent_periods"])
    churned = set(w.truth["churn"])
    assert silent & churned and silent - churned
    assert churned - silent  # churners that were never silent


def test_same_arguments_give_identical_bytes(tmp_path: Path,
                                             make_world: Callable[..., World]) -> None:
    w = make_world("reference")
    again = generate_variant(tmp_path, "reference", accounts=N, months=6, seed=1, end=END)
    for source, path in again.files.items():
        assert path.read_bytes() == w.summary.files[source].read_bytes(), source
    assert again.truth_path.read_bytes() == w.summary.truth_path.read_bytes()


def test_a_variant_in_days_with_a_live_incident(tmp_path: Path) -> None:
    """The main job's world (`pulse demo run`): a variant's history given in days, ending
    with an open incident whose hit accounts truth.json names."""
    made = generate_variant(tmp_path, "reference", accounts=40, days=21, seed=1, end=END,
                            live_incident=True, malformed_rate=0.0)
    truth = json.loads(made.truth_path.read_text(encoding="utf-8"))
    assert truth["generated_with"]["days"] == 21
    live = truth["live_incident"]
    assert live and truth["incident_hits"].get(live)
    incidents = [json.loads(line) for line in made.files["incidents"].read_text(
        encoding="utf-8").splitlines() if line.startswith("{")]
    assert any(i.get("incident_id") == live and not i.get("resolved_at") for i in incidents)
    with pytest.raises(InvalidArgumentError, match="in months or in days, not both"):
        generate_variant(tmp_path / "x", "reference", months=3, days=21)


def test_unknown_variant_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="expected one of reference"):
        generate_variant(tmp_path, "nope")
    run = _pulse("demo", "generate", "--variant", "nope", "--out", str(tmp_path / "x"))
    assert run.returncode == 1 and "unknown demo variant 'nope'" in run.stderr
    # the main job refuses the name before it wipes the last run's warehouse
    home = Path(os.environ["PULSE_HOME"])
    (home / "pulse.db").write_bytes(b"the last run's warehouse")
    run = _pulse("demo", "run", "--variant", "nope")
    assert run.returncode == 1 and "unknown demo variant 'nope'" in run.stderr
    assert (home / "pulse.db").read_bytes() == b"the last run's warehouse"


def test_a_bad_end_day_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    for args in (("demo", "generate", "--variant", "whales", "--end", "2026-13-01", "--out",
                  str(tmp_path / "x")),
                 ("demo", "screenshots", "--end", "yesterday", "--out", str(tmp_path / "y")),
                 ("bench", "models", "--variant", "whales", "--end", "2026-02-30")):
        run = _pulse(*args)
        assert run.returncode == 2, (args, run.stderr[-500:])
        assert "expected a date YYYY-MM-DD" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_generates_a_variant(tmp_path: Path) -> None:
    run = _pulse("demo", "generate", "--variant", "whales", "--accounts", "40", "--months",
                 "3", "--end", END.isoformat(), "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "variant 'whales'" in run.stdout
    truth = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))
    assert truth["generated_with"]["accounts"] == 40
    assert truth["variant"]["name"] == "whales" and truth["generated_with"]["days"] == 91


def test_truth_leaves_out_silent_accounts_once_they_cancelled() -> None:
    """truth.json keeps a silent spell open after the account cancelled ("silent until it
    left"); the bench asks who is silent on a date among the accounts still there."""
    from pulse.devkit.bench.models import truth_outcomes

    truth = {"churn": {"acc-a": "2026-06-10"},
             "silent_periods": {"acc-a": [["2026-05-01", None]],
                                "acc-b": [["2026-05-01", "2026-06-01"]],
                                "acc-c": [["2026-06-05", None]]}}
    cancels, before = truth_outcomes(truth, date(2026, 6, 9), 30)
    assert before == {"acc-a", "acc-c"} and cancels == {"acc-a": date(2026, 6, 10)}
    _, on_the_day = truth_outcomes(truth, date(2026, 6, 10), 30)
    assert on_the_day == {"acc-c"}  # cancelled that day: gone, not silent
    _, later = truth_outcomes(truth, date(2026, 7, 1), 30)
    assert later == {"acc-c"}


def test_silent_figures_count_only_the_accounts_still_there() -> None:
    import pandas as pd

    from pulse.devkit.bench.models import WorldFigure, silent_figures

    rows = pd.DataFrame({"account_id": ["a", "b", "c", "d"],
                         "flags": [["silent_dissatisfied"], ["silent_dissatisfied",
                                                             "payment_risk"], [], None]})
    fig = WorldFigure("w", "reference", 1)
    silent_figures(fig, rows, {"a", "c", "gone"})  # "gone" cancelled: not in rows
    assert (fig.silent_flagged, fig.silent_truth) == (2, 2)
    assert fig.silent_precision == 0.5 and fig.silent_recall == 0.5
    assert fig.silent_f1 == pytest.approx(0.5)
    nobody = WorldFigure("w", "reference", 1)
    silent_figures(nobody, rows.assign(flags=[[]] * 4), {"a"})
    assert nobody.silent_precision is None and nobody.silent_f1 == 0.0


def test_silent_pooled_weighs_every_account_alike() -> None:
    from pulse.devkit.bench.models import WorldFigure, silent_pooled

    def world(variant: str, seed: int, hits: int, flagged: int, truth: int) -> WorldFigure:
        return WorldFigure(f"{variant} {seed}", variant, seed, silent_hits=hits,
                           silent_flagged=flagged, silent_truth=truth)

    figures = [world("quiet", 1, 1, 2, 2), world("quiet", 2, 9, 10, 30),
               world("steady", 1, 0, 0, 4), WorldFigure("telco", "telco", None)]
    pooled = silent_pooled(figures)
    assert set(pooled) == {"quiet", "steady", "all"}  # Telco has no silent accounts
    # quiet: 10 of 12 flagged are silent, of 32 silent; F1 = 2 x 10 / (12 + 32)
    quiet = {k: v for k, v in pooled["quiet"].items() if k not in ("at_bars", "hindsight")}
    assert quiet == pytest.approx({
        "worlds": 2, "hits": 10, "flagged": 12, "truth": 32, "precision": 10 / 12,
        "recall": 10 / 32, "f1": 20 / 44})
    # no world counted at other bars here
    assert pooled["quiet"]["at_bars"] == {} and pooled["quiet"]["hindsight"]["worlds"] == 0
    # flagging nobody: no precision, recall and F1 0
    assert pooled["steady"]["precision"] is None and pooled["steady"]["f1"] == 0.0
    every = pooled["all"]
    assert (every["worlds"], every["hits"], every["flagged"], every["truth"]) == (3, 10, 12, 36)
    assert every["f1"] == pytest.approx(20 / 48)
    # the per-world mean weighs the small world alike: F1 0.5, 0.45 and 0 average 0.317
    assert every["f1"] != pytest.approx((0.5 + 18 / 40 + 0.0) / 3)


def test_silent_bars_count_the_flag_at_other_bars_through_its_own_rule() -> None:
    from pulse.devkit.bench.models import WorldFigure, silent_bars, silent_pooled

    rule = SilentRule()
    # evidence and days since the last ticket: e is quiet, but its ticket 40 days ago raises
    # its bar to 3 + 2 x (90 - 40) / 60 = 4.67; f wrote in 10 days ago
    evidence = pd.DataFrame({
        "account_id": ["a", "b", "c", "d", "e", "f"],
        "evidence": [5.0, 3.1, 2.8, 2.6, 4.0, 9.0],
        "days_since_last_ticket": [np.nan, 200.0, np.nan, 31.0 + 59, 40.0, 10.0]})
    fired = rule.fires(evidence["evidence"], evidence["days_since_last_ticket"])
    assert fired.tolist() == [True, True, False, False, False, False]
    rows = pd.DataFrame({"account_id": ["f", "e", "d", "c", "b", "a"],  # another order
                         "flags": [[], [], ["payment_risk"], [], ["silent_dissatisfied"],
                                   ["silent_dissatisfied"]]})
    fig = WorldFigure("w", "quiet", 1)
    silent_bars(fig, rows, {"a", "c", "d"}, evidence, rule)
    assert fig.notes == []
    # [hits, flagged]: at 2.5 a, b, c, d fire (d's ticket 90 days ago no longer raises its
    # bar); at 2.75 a, b, c; at 3.25 only a
    assert fig.silent_at_bars == {"2.50": [3, 4], "2.75": [2, 3], "3.00": [1, 2],
                                  "3.25": [1, 1], "3.50": [1, 1]}
    # with hindsight, a bar from 2.35 to 2.6 flags a, b, c, d: F1 2 x 3 / (4 + 3) = 0.857
    # (lower, e joins them); the nearest of those to today's bar is taken
    assert fig.silent_hindsight == pytest.approx(
        {"bar": 2.6, "hits": 3, "flagged": 4, "f1": 6 / 7})
    # pooled with a world flagging 1 of 2 at 3.00 (and best at its own bar)
    other = WorldFigure("v", "quiet", 2, silent_hits=1, silent_flagged=2, silent_truth=4,
                        silent_at_bars={"3.00": [1, 2]},
                        silent_hindsight={"bar": 3.0, "hits": 1, "flagged": 2, "f1": 1 / 3})
    fig.silent_hits, fig.silent_flagged, fig.silent_truth = 1, 2, 3
    pooled = silent_pooled([fig, other])["all"]
    assert pooled["at_bars"]["3.00"] == pytest.approx(
        {"hits": 2, "flagged": 4, "truth": 7, "precision": 0.5, "recall": 2 / 7,
         "f1": 4 / 11})
    assert pooled["at_bars"]["2.50"]["truth"] == 3  # only the world counted there
    assert pooled["hindsight"] == pytest.approx(
        {"worlds": 2, "hits": 4, "flagged": 6, "truth": 7, "precision": 4 / 6,
         "recall": 4 / 7, "f1": 8 / 13})
    # flags the evidence does not reproduce (another rule fired them): nothing is counted
    odd = WorldFigure("w", "quiet", 1)
    silent_bars(odd, rows.assign(flags=[["silent_dissatisfied"]] * 6), {"a"}, evidence, rule)
    assert odd.silent_at_bars == {} and odd.silent_hindsight is None
    assert "does not reproduce the flag" in odd.notes[0]


def test_bench_models_only_silent_skips_training(tmp_path: Path) -> None:
    run = _pulse("bench", "models", "--variant", "quiet", "--accounts", "120", "--seed", "1",
                 "--end", END.isoformat(), "--only", "silent", "--format", "json",
                 "--chart", "none", "--rows", str(tmp_path / "rows"))
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    (world,) = report["worlds"]
    assert world["errors"] == {}
    assert report["silent_pooled"]["all"]["hits"] == world["silent_hits"]
    assert report["silent_pooled"]["all"]["f1"] == pytest.approx(world["silent_f1"])
    # the same accounts at other bars: today's is the flag itself
    assert world["silent_at_bars"]["3.00"] == [world["silent_hits"], world["silent_flagged"]]
    assert set(world["silent_at_bars"]) == {"2.50", "2.75", "3.00", "3.25", "3.50"}
    assert world["silent_hindsight"]["f1"] >= world["silent_f1"]
    # --rows: the accounts measured, each with what happened and the silent flag's evidence
    rows = pd.read_csv(tmp_path / "rows" / "quiet-seed1.csv")
    assert len(rows) == world["scored"] and rows["churned"].sum() == world["churned"]
    assert rows["silent_truth"].sum() == world["silent_truth"]
    fired = rows["flags"].fillna("").str.contains("silent_dissatisfied")
    assert fired.sum() == world["silent_flagged"] > 0
    # the evidence and the bar are what the flag compared: quiet for 30 days and the evidence
    # at the bar (higher after a ticket 30 to 90 days ago) is exactly who it fired on
    rule = SilentRule()
    since = rows["silent_days_since_last_ticket"]
    assert np.allclose(rows["silent_bar"], rule.evidence_bar(since))
    assert (rule.fires(rows["silent_evidence"], since) == fired.to_numpy()).all()
    assert ((since.isna() | (since >= 30)) & (rows["silent_evidence"] >= rows["silent_bar"])
            == fired).all()
    assert rows["silent_evidence"].notna().all() and rows["silent_peer_group"].notna().all()
    # the product's one scoring step, without a champion: no churn scores, no modelled risk
    assert {"score: features", "score: health", "score: flags"} <= set(world["seconds"])
    assert "train" not in world["seconds"] and "score: churn" not in world["seconds"]
    assert "no champion: the silent flag read no modelled risk" in world["notes"]
    assert world["champion_auc"] is None and world["train_rows"] is None
    assert world["silent_truth"] > 0 and world["silent_f1"] is not None
    assert world["scored"] > 50
    # the stages' progress goes to stderr, beside the JSON
    assert "score date" in run.stderr, run.stderr[-500:]
    table = _pulse("bench", "models", "--variant", "quiet", "--accounts", "120", "--seed", "1",
                   "--end", END.isoformat(), "--only", "silent", "--chart", "none")
    assert table.returncode == 0, table.stderr
    assert "horizon 30 days" in table.stdout and "silent" in table.stdout.lower()
    assert (f"{world['silent_hits']} of {world['silent_flagged']} flagged truly silent, of "
            f"{world['silent_truth']} silent") in " ".join(table.stdout.split())
    assert "the same accounts at other plain bars" in table.stdout
    assert "chosen with hindsight" in " ".join(table.stdout.split())
    refused = _pulse("bench", "models", "--only", "silent")  # no --variant
    assert refused.returncode != 0 and "--only" in (refused.stderr + refused.stdout)
    wrong = _pulse("bench", "models", "--variant", "quiet", "--only", "churn")
    assert wrong.returncode != 0

"""`pulse score`, `pulse scorecard ...`, `pulse flags`, `pulse risk-list` and `pulse account`:
features, health, flags and the CSM risk list."""
from __future__ import annotations

import json
import sys
from datetime import date
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Basis, Format, ListFormat, parse_day

if TYPE_CHECKING:
    from sqlalchemy import Engine


out = Console()
err = Console(stderr=True)

scorecard_app = typer.Typer(help="Check the health scorecard and list what it can measure.",
                            no_args_is_help=True)





def score(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date to score, YYYY-MM-DD (default: today, UTC).")] = None,
    scorecard: Annotated[Path | None, typer.Option(
        help="Scorecard YAML (default: $PULSE_SCORECARD, else the built-in one).")] = None,
    basis: Annotated[Basis, typer.Option(
        help="'auto': rows landed in a backfill count from when they happened, other rows "
        "from when they landed; 'known': rows that had landed by the date (a re-run gives "
        "that day's answer); 'occurred': rows that had happened by then.")]
    = Basis.auto,
    text: Annotated[bool, typer.Option(
        "--text/--no-text", help="Classify the tickets and mentions of the 90 days before "
        "the date that the sentiment model has not read yet (text_insights) first, so that "
        "support tone reads the model; texts it has not read count by the word list.")] = True,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Compute every account's features, health, churn risk and flags as of a date.

    Features, then health, then the champion churn model's risk (when there is a champion),
    then the flags, which weigh that risk: the health DAG's order. Re-running a date
    replaces that date's rows and nothing else. The impact of open or changed incidents is
    refreshed first. A date with nothing to score is an error.
    """
    from pulse.models.flag_rules import flag_words
    from pulse.models.scorecard import load_scorecard
    from pulse.models.scoring import score_day
    from pulse.sql.db import make_engine
    from pulse.sql.features import (
        basis_report,
        ensure_features_schema,
        stored_attributes_count,
        stored_attributes_day,
    )

    day = parse_day(as_of)
    card = load_scorecard(scorecard)  # a bad file stops here, before any work
    engine = make_engine()
    ensure_features_schema(engine)
    tone = refresh_inputs_in_words(engine, day, text=text)
    # features, health, the champion's churn scores, then the flags (which weigh them): the
    # same step as the health DAG and the history backfill (models/scoring.py)
    if fmt is Format.table and sys.stderr.isatty():
        with err.status(f"scoring as of {day}") as status:
            done = score_day(engine, day, scorecard=card, basis=basis.value,
                             on_stage=lambda msg: status.update(msg))
    else:
        done = score_day(engine, day, scorecard=card, basis=basis.value)
    summary, flags = done.health, done.flags or {}
    used = basis_report(engine, day, basis.value)
    attrs_day = stored_attributes_day(engine, day, basis.value)
    attrs_counted = stored_attributes_count(day, attrs_day)
    if fmt is Format.json:
        print(json.dumps({**done.to_dict(), "basis": used.to_dict(), "text_insights": tone,
                          "stored_attributes": {
                              "describe": None if attrs_day is None else attrs_day.isoformat(),
                              "counted": attrs_counted}}, indent=2))
        return
    # the bands of the accounts a CS team works, as the risk list has them
    b = summary.active_bands
    by_card = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.by_scorecard.items()))
    out.print(Text.assemble(
        (f"Scored {summary.accounts:,} accounts as of {day}", "bold"),
        f" ({by_card or 'none'}; {used.describe()}; scorecard {summary.scorecard})"))
    active = summary.accounts - summary.cancelled
    at_risk = (b["red"] + b["amber"]) / active if active else 0.0
    out.print(Text.assemble(
        ("green ", "green"), f"{b['green']:,}  ",
        *((("watch ", _BAND_STYLE["watch"]), f"{b['watch']:,}  ") if b.get("watch") else ()),
        ("amber ", "yellow"), f"{b['amber']:,}  ",
        ("red ", "red"), f"{b['red']:,}", f"  unscored {b['unscored']:,}" if b["unscored"]
        else "", f" among {active:,} active accounts ({at_risk:.0%} red or amber); "
        f"{summary.cancelled:,} cancelled" if summary.cancelled else ""))
    if card.calibration is None:
        from pulse.models.scorecard import band_legend

        out.print(Text.assemble(
            ("uncalibrated ", "yellow"), band_legend(card.green, card.watch, card.amber, None),
            " `pulse model train` or `pulse scorecard calibrate --apply` fits them to its "
            "churners."), soft_wrap=True)
    for f in summary.stale:
        out.print(Text.assemble(("stale source ", "yellow"), f.describe(),
                                "; its measures were left out" if card.skip_stale_measures
                                else ""), soft_wrap=True)
    if not summary.stale:
        out.print("Every source is fresh.")
    if not attrs_counted:
        out.print(Text.assemble(
            ("stored attributes ", "yellow"),
            f"the accounts' seats, renewal dates and stored MRR describe {attrs_day}, not "
            f"{day}: they were unknown then, so the measures that read them (seat use, days "
            "to renewal) have no data, and the MRR comes from billing events alone"),
            soft_wrap=True)
    out.print(f"Support tone: text insights {tone}.", soft_wrap=True)
    out.print(f"Churn risk: {done.churn_message}.", soft_wrap=True)
    out.print("Flags: " + (", ".join(f"{flag_words(k)} {v:,}" for k, v in flags.items())
                           or "none"))
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
    out.print(f"Took {secs}.")


def refresh_inputs_in_words(engine: Engine, day: date, *, text: bool = True) -> str:
    """Refresh the incidents' impacts and (unless `text` is False) let the sentiment model
    read the texts of the 90 days before `day` that it has not read yet (`text_insights`,
    `models.scoring.refresh_inputs`); the features' support tone falls back to the word list
    for any text it could not read. Returns what happened to the tone, in words."""
    from pulse.models.scoring import refresh_inputs

    done = refresh_inputs(engine, day, tone=text)
    if done is None:
        return "not refreshed (--no-text)"
    if done.error is not None:
        err.print(Text.assemble(("warning: ", "yellow"), "support tone falls back to the word "
                                f"list: the sentiment model could not run ({done.error})"))
    return done.words


@scorecard_app.command("check")
def scorecard_check(
    path: Annotated[Path | None, typer.Argument(
        help="Scorecard YAML (default: $PULSE_SCORECARD, else the built-in one).")] = None,
) -> None:
    """Check a scorecard file; name each problem with its line."""
    from pulse.core.errors import ScorecardError
    from pulse.models.scorecard import load_scorecard

    try:
        card = load_scorecard(path)
    except ScorecardError as exc:
        for line in exc.lines():
            err.print(Text(f"error: {line}"), soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(Text.assemble((f"{card.source}", "bold"), f": ok (version {card.version}; "
                            f"{card.describe_bands()})"))
    for c in card.cards():
        title = c.name + (f" (first {card.onboarding_days} days)" if c.name == "onboarding"
                          else "")
        table = Table(title=title, title_justify="left")
        for col in ("measure", "feature", "weight", "points"):
            table.add_column(col, justify="right" if col == "weight" else "left")
        total = sum(m.weight for m in c.measures)
        for m in c.measures:
            table.add_row(Text(m.name), Text(m.feature),
                          f"{m.weight:g} ({100 * m.weight / total:.0f}%)", Text(m.describe()))
        out.print(table)
    if card.stale_after_days:
        out.print("stale after: " + ", ".join(
            f"{k} {v:g} days" for k, v in card.stale_after_days.items())
            + ("; measures of a stale source are left out" if card.skip_stale_measures else ""))


@scorecard_app.command("calibrate")
def scorecard_calibrate(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Fit on history known by this date, YYYY-MM-DD (default: today).")]
    = None,
    horizon: Annotated[int, typer.Option(
        min=1, help="Churn horizon in days: 'churned' = cancelled within it.")] = 90,
    fit_weights: Annotated[bool, typer.Option(
        "--fit-weights/--no-fit-weights",
        help="Also fit the measures' weights (kept only when they rank later history "
        "better), as `pulse model train` does; --no-fit-weights keeps the card's.")] = True,
    scorecard: Annotated[Path | None, typer.Option(
        help="Scorecard to calibrate (default: the active one).")] = None,
    basis: Annotated[Basis, typer.Option(
        help="Which rows each past date sees (see `pulse score --help`).")] = Basis.occurred,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the proposed YAML (default: "
        "$PULSE_HOME/calibration/scorecard-proposed.yaml).")] = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Make the calibrated scorecard the active one "
        "($PULSE_HOME/scorecard.yaml, used when PULSE_SCORECARD is not set).")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Fit the bands' cut points (and the weights, unless --no-fit-weights) to this
    warehouse's own outcomes: write a proposed scorecard, the churn rate per band and a
    chart."""
    from pulse.models.calibration import calibrate_and_apply
    from pulse.models.scorecard import load_scorecard
    from pulse.sql.db import make_engine

    day = parse_day(as_of)
    card = load_scorecard(scorecard)
    result, target, applied = calibrate_and_apply(
        make_engine(), as_of=day, horizon_days=horizon, basis=basis.value,
        fit_weights_=fit_weights, scorecard=card, out=out_path, apply=apply)
    chart = target.with_suffix(".png")
    if fmt is Format.json:
        print(json.dumps({**result.to_dict(), "proposal": str(target), "chart": str(chart),
                          "applied": str(applied) if applied else None}, indent=2))
        return
    print_calibration(result)
    out.print(f"Proposed scorecard: {target}")
    out.print(f"Chart: {chart}")
    if applied:
        out.print(f"Applied: {applied} is now the active scorecard.")
    elif apply:
        out.print("Nothing applied: " + ("the defaults stay." if not result.fitted else
                                         "PULSE_SCORECARD names your own scorecard; review the "
                                         "proposal and copy it there yourself."))


def print_calibration(result: Any) -> None:
    """The evidence of a calibration, as tables (also used by `pulse model train`)."""
    from pulse.models.scorecard import band_cuts

    if not result.fitted:
        out.print(Text.assemble(("Not calibrated: ", "yellow"), str(result.fallback),
                                "; the default cut points stay."), soft_wrap=True)
        return
    d = result.to_dict()
    out.print(Text.assemble(
        ("Calibrated ", "bold"),
        f"on {result.rows:,} labelled snapshots up to {d['as_of']}: {result.churners:,} "
        f"cancelled within {result.horizon_days} days (base rate {result.base_rate:.1%})"))
    # each cell reads "before → after", so that the table fits an 80-column log
    table = Table(title="Churn rate per band, before → after (history's snapshots)",
                  title_justify="left")
    for col in ("band", "cut", "accounts", "churned", "churn rate"):
        table.add_column(col, justify="left" if col == "band" else "right")
    cuts_before = band_cuts(result.default_green, result.default_watch, result.default_amber)
    cuts_after = band_cuts(result.green, result.watch, result.amber)

    def rate(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    for b, a in zip(result.before, result.after):
        table.add_row(b.band, f"{cuts_before[b.band]} → {cuts_after[a.band]}",
                      f"{b.accounts:,} → {a.accounts:,}", f"{b.churners:,} → {a.churners:,}",
                      f"{rate(b.rate)} → {rate(a.rate)}")
    out.print(table)
    out.print(f"Churners banded green: {d['churners_green_before']:.0%} before, "
              f"{d['churners_green_after']:.0%} after; accounts in red or amber: "
              f"{d['at_risk_share_before']:.0%} before, {d['at_risk_share_after']:.0%} after.")
    if result.today:
        t = result.today
        out.print(f"Today's {sum(t.values()):,} active accounts with the fitted cut points: "
                  f"{', '.join(f'{b} {n:,}' for b, n in t.items())} "
                  f"({d['today_at_risk_share']:.0%} in red or amber).")
    if result.auc_before is not None and result.auc_after is not None:
        out.print(f"Health ROC AUC: {result.auc_before:.3f} before, {result.auc_after:.3f} "
                  "after.")
    for note in [*result.notes, result.weights_note]:
        if note:
            out.print(f"- {note}", soft_wrap=True)


@scorecard_app.command("features")
def scorecard_features() -> None:
    """The features a scorecard measure may use, and what each one means."""
    from pulse.sql.features import FEATURES

    table = Table(title="Features (per account, as of a date)", title_justify="left")
    table.add_column("feature")
    table.add_column("source")
    table.add_column("meaning", overflow="fold")
    for f in FEATURES.values():
        table.add_row(f.name, f.source, Text(f.description))
    out.print(table)


# --------------------------------------------------------------------------- flags, risk list


class BandChoice(str, Enum):
    red = "red"
    amber = "amber"
    watch = "watch"
    green = "green"


_BAND_STYLE = {"red": "red", "amber": "yellow", "watch": "cyan", "green": "green"}


def flags(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date, YYYY-MM-DD (default: today, UTC); it must have been "
        "scored (`pulse score`).")] = None,
    scorecard: Annotated[Path | None, typer.Option(
        help="Scorecard YAML, for its staleness limits (default: as `pulse score`).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Decide every account's flags as of a date from its stored features and health.

    silent_dissatisfied, payment_risk, renewal_soon_at_risk, champion_gone and outage_affected, each with its
    evidence in words. Re-running a date replaces that date's flags and nothing else.
    (`pulse score` runs this too.)
    """
    from pulse.models.flag_rules import COMPUTED_FLAGS, FLAG_NAMES
    from pulse.models.flags import compute_flags
    from pulse.models.scorecard import load_scorecard
    from pulse.sql.db import make_engine
    from pulse.sql.features import ensure_features_schema
    from pulse.sql.flags import flag_counts

    day = parse_day(as_of)
    card = load_scorecard(scorecard)
    engine = make_engine()
    ensure_features_schema(engine)
    written = compute_flags(engine, day, scorecard=card)
    counts = flag_counts(engine, day)
    if fmt is Format.json:
        print(json.dumps({"as_of": day.isoformat(), "rows": written,
                          "flags": {n: counts.get(n, 0) for n in COMPUTED_FLAGS}}, indent=2))
        return
    table = Table(title=f"Flags as of {day}: {written:,} on "
                  f"{len(_flagged_accounts(engine, day)):,} accounts", title_justify="left")
    table.add_column("flag")
    table.add_column("accounts", justify="right")
    table.add_column("meaning", overflow="fold")
    for name in COMPUTED_FLAGS:
        table.add_row(name, f"{counts.get(name, 0):,}", Text(FLAG_NAMES[name]))
    out.print(table)


def _flagged_accounts(engine: Engine, day: date) -> set[str]:
    from pulse.sql.flags import load_flags

    return set(load_flags(engine, day)["account_id"])


def _risk_day(engine: Engine, as_of: str | None) -> date:
    from pulse.models.risklist import latest_scored_date

    if as_of:
        return parse_day(as_of)
    return latest_scored_date(engine)


def risk_list(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date, YYYY-MM-DD (default: the latest scored date).")] = None,
    csm: Annotated[str | None, typer.Option(
        "--csm", help="Only this CSM's accounts (e-mail, any case).")] = None,
    band: Annotated[BandChoice | None, typer.Option(help="Only this health band.")] = None,
    flag: Annotated[str | None, typer.Option(
        "--flag", help="Only accounts with this flag (silent_dissatisfied, payment_risk, "
        "renewal_soon_at_risk, champion_gone, outage_affected).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=0, help="At most this many accounts.")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="Output format (json: see "
                                            "docs/risk-list.md).")] = ListFormat.table,
) -> None:
    """Accounts ranked by revenue at risk (churn probability x MRR), with the reasons.

    The probability is the churn model's where it scored the account that day, else the
    churn rate the account's health has meant in this history (a calibrated scorecard,
    `pulse scorecard calibrate`), else none; each row says which (risk basis).
    """
    from pulse.models.risklist import risk_list_document
    from pulse.sql.db import make_engine
    from pulse.sql.features import ensure_features_schema

    engine = make_engine()
    ensure_features_schema(engine)
    day = _risk_day(engine, as_of)
    doc = risk_list_document(engine, day, csm=csm, band=band.value if band else None,
                             flag=flag, limit=limit)
    if fmt is ListFormat.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    if fmt is ListFormat.csv:
        _risk_csv(doc["accounts"])
        return
    _risk_table(doc)


_CSV_COLUMNS = ("rank", "account_id", "name", "csm_email", "currency", "mrr", "health", "band",
                "change_7d", "change_30d", "churn_probability", "revenue_at_risk",
                "risk_basis", "flags", "evidence", "drivers", "renewal_date",
                "days_to_renewal", "renewal_estimated", "stale_sources", "next_action")


def _risk_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for r in rows:
        flat = {**r, "flags": ";".join(r["flags"]), "evidence": " | ".join(r["evidence"]),
                "drivers": " | ".join(r["drivers"]),
                "stale_sources": ";".join(k for k, v in r["freshness"].items() if v["stale"])}
        writer.writerow(["" if flat[c] is None else flat[c] for c in _CSV_COLUMNS])


def _money(value: float | None, currency: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" + (f" {currency}" if currency else "")


def _change(value: float | None) -> str:
    return "" if value is None else f"{value:+.0f}"


def _risk_table(doc: dict[str, Any]) -> None:
    from pulse.models.flag_rules import flag_words
    from pulse.models.risklist import UNCALIBRATED

    for s in doc["stale_sources"]:
        out.print(Text.assemble(("warning: ", "yellow"), s["message"]), soft_wrap=True)
    from pulse.models.scorecard import band_legend

    b = doc["bands"]
    out.print(band_legend(b["green"], b["watch"], b["amber"], b["calibrated_on"],
                          other_card_on=None if b["scored_with_it"] else doc["as_of"]),
              soft_wrap=True)
    rows = doc["accounts"]
    filters = ", ".join(f"{k} {v}" for k, v in doc["filters"].items() if v is not None)
    noun = "account" if doc["count"] == 1 else "accounts"
    table = Table(title=f"Risk list as of {doc['as_of']}: {doc['count']:,} {noun}, ranked by "
                  "revenue at risk" + (f" ({filters})" if filters else ""),
                  title_justify="left", show_lines=True, expand=True)
    table.add_column("#", justify="right")
    table.add_column("account", overflow="fold", ratio=2, min_width=14)
    table.add_column("health", justify="right")
    table.add_column("risk", justify="right")
    table.add_column("at risk", justify="right")
    table.add_column("why, and what next", overflow="fold", ratio=5)
    for r in rows:
        account = Text.assemble((r["name"] or r["account_id"], "bold"), f"\n{r['account_id']}")
        if r["csm_email"]:
            account.append(f"\n{r['csm_email']}", style="dim")
        if r["renewal_date"]:
            account.append(f"\nrenews {r['renewal_date']}"
                           + (" (estimated)" if r["renewal_estimated"] else ""), style="dim")
        if r["health"] is None:
            health = Text("unscored", style="dim")
        else:
            health = Text.assemble((f"{r['health']:.1f} {r['band']}",
                                    _BAND_STYLE.get(r["band"] or "", "")))
            for key, span in (("change_7d", "7d"), ("change_30d", "30d")):
                if r[key] is not None:
                    health.append(f"\n{_change(r[key])} {span}")
        p = r["churn_probability"]
        risk = Text(("-" if p is None else f"{100 * p:.0f}%") + "\n"
                    + r["risk_basis"].replace("churn_model ", "model ")
                    .replace(UNCALIBRATED, "scorecard"))
        money = Text(f"{_money(r['revenue_at_risk'], r['currency'])}\n"
                     f"of {_money(r['mrr'], r['currency'])}")
        why = Text()
        for name, evidence in zip(r["flags"], r["evidence"], strict=True):
            why.append(f"{flag_words(name)}: ", style="bold")
            why.append(f"{evidence}\n")
        for driver in r["drivers"][:3]:
            why.append(f"- {driver}\n", style="dim")
        stale = [k for k, v in r["freshness"].items() if v["stale"]]
        if stale:
            why.append(f"stale data: {', '.join(stale)}\n", style="yellow")
        why.append("next: ", style="bold")
        why.append(r["next_action"])
        table.add_row(str(r["rank"]), account, health, risk, money, why)
    out.print(table)
    if not rows:
        out.print("No account matches.")


def account(
    account_id: Annotated[str, typer.Argument(help="The account's id.")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date, YYYY-MM-DD (default: the latest date it was scored).")]
    = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """One account: its health history, what drives its health, its flags and churn risk."""
    from pulse.models.flag_rules import flag_words
    from pulse.models.health import SKIP_NO_DATA
    from pulse.models.risklist import account_view
    from pulse.sql.db import make_engine
    from pulse.sql.features import ensure_features_schema

    engine = make_engine()
    ensure_features_schema(engine)
    view = account_view(engine, account_id, parse_day(as_of) if as_of else None)
    if fmt is Format.json:
        print(json.dumps(view, indent=2, ensure_ascii=False, default=str))
        return
    head = Text.assemble((f"{view['name'] or account_id}", "bold"), f" ({account_id})")
    if view["csm_email"]:
        head.append(f"  CSM {view['csm_email']}")
    out.print(head)
    risk = view["risk"]
    if view["health"] is None:
        out.print(f"As of {view['as_of']}: unscored ({view['scorecard']} scorecard)")
    else:
        out.print(Text.assemble(
            f"As of {view['as_of']}: health ",
            (f"{view['health']:.1f} {view['band']}", _BAND_STYLE.get(view["band"] or "", "")),
            f" ({view['scorecard']} scorecard)"))
    if risk:
        p = risk["churn_probability"]
        out.print(Text(
            f"MRR {_money(risk['mrr'], risk['currency'])}; churn risk "
            + ("-" if p is None else f"{100 * p:.0f}%") + f" ({risk['risk_basis']}); revenue "
            f"at risk {_money(risk['revenue_at_risk'], risk['currency'])}"
            + (f"; renews {risk['renewal_date']}" if risk["renewal_date"] else "")))
        out.print(Text(f"Next: {risk['next_action']}"))
    elif view["cancelled"]:
        out.print(Text("Cancelled as of this date: churned, so not on the risk list",
                       style="bold"))
    history = Table(title="Health history", title_justify="left")
    for col in ("as of", "score", "band", "change", "7d", "30d"):
        history.add_column(col, justify="left" if col in ("as of", "band") else "right")
    for h in view["history"]:
        history.add_row(h["as_of"], "-" if h["score"] is None else f"{h['score']:.1f}",
                        Text(h["band"] or "", style=_BAND_STYLE.get(h["band"] or "", "")),
                        _change(h["change"]), _change(h["change_7d"]), _change(h["change_30d"]))
    out.print(history)
    measures = Table(title=f"What drives its health as of {view['as_of']} (most points lost "
                     "first)", title_justify="left")
    for col in ("measure", "value", "points", "weight", "contribution", "lost"):
        measures.add_column(col, justify="left" if col == "measure" else "right",
                            overflow="fold")
    for m in view["measures"]:
        measures.add_row(Text(m["label"]), m["value_text"],
                         "-" if m["points"] is None else f"{m['points']:.0f}",
                         f"{m['weight']:g}",
                         "-" if m["contribution"] is None else f"{m['contribution']:.1f}",
                         "-" if m["lost"] is None else f"{m['lost']:.1f}")
    out.print(measures)
    # why a measure scored nothing, once per reason ("no data" already reads as the value)
    left_out: dict[str, list[str]] = {}
    for m in view["measures"]:
        if m["skipped"] not in (None, SKIP_NO_DATA):
            left_out.setdefault(m["skipped_text"], []).append(m["label"])
    for why, labels in left_out.items():
        out.print(Text(f"Left out ({why}): {'; '.join(labels)}"), soft_wrap=True)
    if view["flags"]:
        out.print(Text("Flags", style="bold"))
        for f in view["flags"]:
            out.print(Text.assemble(f"  {flag_words(f['flag'])}: ", (f["evidence"], "")),
                      soft_wrap=True)
    else:
        out.print("Flags: none")
    churn = view["churn"]
    if churn:
        out.print(Text(f"Churn model v{churn['model_version']}: "
                       f"{100 * churn['probability']:.0f}% risk"))
        for d in churn["drivers"]:
            out.print(Text(f"  - {d}"))
    else:
        out.print("Churn model: no score for this date (the risk uses the scorecard)")


def register(app: typer.Typer) -> None:
    """Add `score`, `scorecard`, `flags`, `risk-list` and `account` to the command line."""
    app.command("score")(score)
    app.add_typer(scorecard_app, name="scorecard")
    app.command("flags")(flags)
    app.command("risk-list")(risk_list)
    app.command("account")(account)

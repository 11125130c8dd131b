"""The main job on the embedded default (`make demo`): a demo world through the real DAGs."""
from __future__ import annotations

import io
import re
import shutil
import time
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, func, select

from pulse.core.settings import get_settings
from pulse.sql.db import ensure_schema
from pulse.sql.schema import ENTITY_TABLES, IngestRun, QuarantineRow

if TYPE_CHECKING:
    from pulse.devkit.airflow_runner import DagSession


def warehouse_summary(engine: Engine) -> dict[str, Any]:
    """Rows per table, open quarantine reasons, and the ingest run log's totals."""
    from pulse.listeners.quarantine import summarise

    ensure_schema(engine)
    with engine.connect() as conn:
        tables = {
            name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for name, t in ENTITY_TABLES.items()
        }
        q = QuarantineRow.__table__
        by_source: dict[str, int] = dict(conn.execute(
            select(q.c.source, func.count()).where(q.c.status == "open").group_by(q.c.source)
        ).all())
        runs: dict[str, int] = dict(conn.execute(
            select(IngestRun.status, func.count()).group_by(IngestRun.status)).all())
    return {
        "tables": tables,
        "quarantine_by_source": by_source,
        "quarantine": summarise(engine, status="open"),
        "ingest_runs": runs,
    }


def print_summary(data: dict[str, Any], console: Console) -> None:
    t = Table(title="Warehouse", title_justify="left")
    t.add_column("source")
    t.add_column("rows landed", justify="right")
    t.add_column("rows in quarantine", justify="right")
    for name, n in data["tables"].items():
        t.add_row(name, f"{n:,}", f"{data['quarantine_by_source'].get(name, 0):,}")
    console.print(t)
    reasons = data["quarantine"]["by_reason"]
    if reasons:
        r = Table(title="Open quarantine reasons", title_justify="left")
        r.add_column("source")
        r.add_column("reason")
        r.add_column("rows", justify="right")
        for row in reasons[:25]:
            r.add_row(row["source"], row["reason"], f"{row['rows']:,}")
        console.print(r)
    runs = ", ".join(f"{n} {s}" for s, n in sorted(data["ingest_runs"].items()))
    console.print(f"ingest runs: {runs or 'none'}")


def _logged_run(dags: DagSession, console: Console, step: str, dag_id: str, what: str, *,
                logical_date: str | None = None, conf: dict[str, Any] | None = None) -> None:
    """Run one DAG in the session: say so on the step's line, keep Airflow's whole output in
    `$AIRFLOW_HOME/logs/<dag_id>-demo.log`, and echo a line per finished task."""
    log_path = Path(dags.env["AIRFLOW_HOME"]) / "logs" / f"{dag_id}-demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]{step}.[/] running the Airflow DAG {dag_id} {what}; log in {log_path}")
    with open(log_path, "w", encoding="utf-8") as log_file:
        dags.run(dag_id, logical_date=logical_date, conf=conf,
                 output=_TaskEcho(log_file, console))


def _health_step(engine: Engine, dags: DagSession, console: Console) -> None:
    """Run pulse_health for today through Airflow and print the top of the risk list."""
    from datetime import UTC, datetime

    from pulse.models.risklist import UNCALIBRATED, build_risk_list, ranked_by

    today = datetime.now(UTC).date()
    _logged_run(dags, console, "7", "pulse_health",
                f"for {today} (features, scorecard and churn risk per shard of accounts, then "
                "flags, publish, risk list)", logical_date=today.isoformat())
    everyone = build_risk_list(engine, today)
    rows = [r for r in everyone if r["band"] in ("red", "amber") or r["flags"]][:10]
    ranking = ("band, then revenue at risk" if ranked_by(rows) == "band_then_revenue_at_risk"
               else "revenue at risk")
    table = Table(title=f"Risk list {today}: the top 10 flagged, red or amber accounts by "
                  f"{ranking} (of {len(everyone):,})", title_justify="left")
    for col in ("account", "MRR", "health", "band", "churn risk", "at risk", "flags", "why"):
        table.add_column(col, overflow="fold")
    for r in rows:
        # the flags' evidence, else what drives the risk (the model's drivers or health's)
        why = "; ".join(r["evidence"] or r["drivers"][:3])[:160]
        p, at_risk = r["churn_probability"], r["revenue_at_risk"]
        table.add_row(
            Text(f"{r['name']} ({r['account_id']})"), f"{float(r['mrr'] or 0):,.0f}",
            "" if r["health"] is None else f"{r['health']:.0f}", r["band"] or "",
            "-" if p is None else f"{100 * p:.0f}%",
            "-" if at_risk is None else f"{float(at_risk):,.0f}",
            Text(", ".join(r["flags"])), Text(why),
        )
    console.print(table)
    basis = ", ".join(sorted({str(r["risk_basis"]) for r in rows})) or "none"
    why = (" (no probability without a churn model or fitted bands)"
           if UNCALIBRATED in basis else "")
    console.print(f"risk basis: {basis}{why}. See everything with `pulse risk-list`, one "
                  "account with `pulse account ID`.")


def _outage_step(engine: Engine, dags: DagSession, console: Console,
                 truth_path: Path) -> None:
    """Run pulse_outage through Airflow: impact of the live incident, notices, sending."""
    import json

    from pulse.sql.schema import Incident, IncidentImpact, OutboxMessage

    _logged_run(dags, console, "6", "pulse_outage", "(incident impact, notices to the "
                "accounts it hit, sending through the file outbox)")
    live = json.loads(truth_path.read_text(encoding="utf-8")).get("live_incident")
    truth = set(json.loads(truth_path.read_text(encoding="utf-8"))["incident_hits"].get(
        live, [])) if live else set()
    o, im, i = OutboxMessage.__table__, IncidentImpact.__table__, Incident.__table__
    with engine.connect() as conn:
        if live is None:
            console.print("no live incident in the demo world")
            return
        title, landed = conn.execute(select(i.c.title, i.c.landed_at)
                                     .where(i.c.incident_id == live)).one()
        hit = set(conn.execute(select(im.c.account_id).where(
            im.c.incident_id == live, im.c.status == "hit")).scalars())
        exposed = conn.execute(select(func.count()).select_from(im).where(
            im.c.incident_id == live, im.c.status == "exposed")).scalar_one()
        rows = conn.execute(select(o.c.status, o.c.rule, o.c.account_id, o.c.queued_at)
                            .where(o.c.incident_id == live)).all()
    sent_accounts = {r.account_id for r in rows if r.status == "sent"}
    statuses: dict[str, int] = {}
    for r in rows:
        key = r.status + (f" ({r.rule})" if r.rule else "")
        statuses[key] = statuses.get(key, 0) + 1
    first = min((r.queued_at for r in rows), default=None)
    latency = (first - landed).total_seconds() if first is not None else None
    console.print(
        f"live incident {live} ({title}): {len(hit)} accounts hit, {exposed} exposed "
        f"(demo truth: {len(truth)} hit; matching {len(hit & truth)}); notices: "
        + (", ".join(f"{n} {k}" for k, n in sorted(statuses.items())) or "none")
        + f"; accounts told: {len(sent_accounts)}"
        + (f"; incident landed -> first notice queued in {latency:.1f} s" if latency is not None
           else ""))


def _outreach_step(engine: Engine, dags: DagSession, console: Console) -> None:
    """Run pulse_outreach through Airflow: check-ins and CSM digests, then the outbox."""
    from pulse.sql.schema import OutboxMessage

    _logged_run(dags, console, "8", "pulse_outreach", "(check-ins, CSM digests, sending)")
    o = OutboxMessage.__table__
    with engine.connect() as conn:
        counts = conn.execute(select(o.c.kind, o.c.status, o.c.rule, func.count())
                              .group_by(o.c.kind, o.c.status, o.c.rule)
                              .order_by(o.c.kind, o.c.status, o.c.rule)).all()
    table = Table(title="Outbox (queued with rule quiet_hours: waiting for the contact's "
                  "morning)", title_justify="left")
    for col in ("kind", "status", "rule", "messages"):
        table.add_column(col, justify="right" if col == "messages" else "left")
    for kind, status, rule, n in counts:
        table.add_row(kind, status, rule or "", f"{n:,}")
    console.print(table)
    index = get_settings().resolved_home() / "outbox" / "index.html"
    console.print(f"every message sent is in {index} (open it in a browser); "
                  "`pulse outbox list` lists them all with the rule that stopped any.")


def _survey_step(engine: Engine, dags: DagSession, console: Console) -> None:
    """Run pulse_surveys through Airflow: CSAT surveys for tickets solved a day ago."""
    from pulse.sql.schema import Survey

    _logged_run(dags, console, "9", "pulse_surveys", "(CSAT surveys after solved tickets, "
                "fatigue rules, sending)")
    sv = Survey.__table__
    with engine.connect() as conn:
        counts = conn.execute(select(sv.c.status, sv.c.skip_reason, func.count())
                              .group_by(sv.c.status, sv.c.skip_reason)).all()
    queued = sum(n for status, _, n in counts if status == "queued")
    skipped = ", ".join(f"{n} {reason}" for status, reason, n in sorted(
        counts, key=lambda c: -c[2]) if status == "skipped")
    console.print(f"surveys: {queued} queued" + (f"; skipped: {skipped}" if skipped else "")
                  + ". Answer one: `pulse serve`, then open a rating link from an e-mail in "
                  "the outbox; `pulse csat report` shows the figures.")


def _feedback_step(engine: Engine, dags: DagSession, console: Console) -> None:
    """pulse_social (replayed mentions, outage chatter), then pulse_feedback (classification,
    routing, this week's digest per team), and the digests it wrote."""
    from pulse.sql.schema import SuspectedIncident, TextInsight

    home = get_settings().resolved_home()
    for step, dag_id, conf, what in (
            ("10", "pulse_social", None, "X listener replaying the demo's mentions, outage "
             "chatter"),
            ("11", "pulse_feedback", {"force_digest": True}, "sentiment, feedback kind, "
             "routing, themes, one digest per team")):
        _logged_run(dags, console, step, dag_id, f"({what})", conf=conf)
    si, ti = SuspectedIncident.__table__, TextInsight.__table__
    with engine.connect() as conn:
        chatter: dict[str, int] = dict(conn.execute(select(si.c.status, func.count()).group_by(si.c.status))
                       .all())
        teams = conn.execute(select(ti.c.team, func.count()).group_by(ti.c.team)
                             .order_by(func.count().desc())).all()
    console.print("outage chatter: " + (", ".join(f"{n} {s}" for s, n in sorted(
        chatter.items())) or "no spikes") + "; feedback routed: "
        + ", ".join(f"{team} {n:,}" for team, n in teams))
    digests = sorted((home / "digests").glob("*/*.html"))
    table = Table(title="Feedback digests written (one per team per week; the .md beside "
                  "each)", title_justify="left")
    table.add_column("week")
    table.add_column("team")
    table.add_column("file", overflow="fold")
    for path in digests:
        table.add_row(path.parent.name, path.stem, str(path))
    console.print(table)


def _training_step(engine: Engine, console: Console, as_of: date | None = None) -> None:
    """What the weekly DAG pulse_train does, in this process: train and register a churn
    model on the landed history up to `as_of` (default today; the champion when it clears
    its bars), then fit the scorecard's bands and weights to the same history's outcomes. A
    history too short for either is said, and the defaults stay: the risk list then has no
    probability."""
    from datetime import UTC, datetime

    from pulse.core.errors import PulseError
    from pulse.models.calibration import calibrate_and_apply
    from pulse.models.registry import train_and_register
    from pulse.models.scorecard import describe_bands
    from pulse.models.training import DEFAULT_HORIZON_DAYS

    day = as_of or datetime.now(UTC).date()
    console.print(f"[bold]7a.[/] training the churn model on the history up to {day} and "
                  "fitting the health bands to its outcomes (the weekly DAG pulse_train's two "
                  "tasks, run here)")
    snapshots: dict[Any, Any] = {}  # shared by the training and the calibration
    t0 = time.perf_counter()
    try:
        with console.status("training the churn model") as status:
            trained = train_and_register(
                engine, as_of=day, horizon_days=DEFAULT_HORIZON_DAYS, basis="auto",
                snapshots=snapshots, on_stage=lambda stage: status.update(
                    f"training the churn model: {stage}"))
    except PulseError as exc:
        console.print(Text(f"   no churn model: {exc}", style="yellow"))
    else:
        r, m = trained.record, trained.record.metrics
        figures = [f"validation ROC AUC {m['roc_auc']:.3f}"] if m.get("roc_auc") else []
        figures += [f"{name} baseline {b['roc_auc']:.3f}"
                    for name, b in (m.get("baselines") or {}).items() if b.get("roc_auc")]
        if m.get("lift_top_decile"):
            figures.append(f"lift in the top decile {m['lift_top_decile']:.1f}")
        console.print(Text(f"   churn model v{r.version} ({m.get('model') or 'model'}): "
                           f"{r.status}; " + ", ".join(figures)
                           + f" (trained in {time.perf_counter() - t0:.0f} s)"))
        if r.note:
            console.print(Text(f"   {r.note}", style="dim"))
    with console.status("fitting the health bands"):
        cal, proposal, applied = calibrate_and_apply(engine, as_of=day,
                                                     horizon_days=DEFAULT_HORIZON_DAYS,
                                                     basis="auto", snapshots=snapshots)
    if cal.fitted:
        console.print(Text(f"   health bands fitted to history: "
                           f"{describe_bands(cal.green, cal.watch, cal.amber)}"
                           + ("; active" if applied else "")
                           + f" (evidence and chart: {proposal.parent})"))
    else:
        console.print(Text(f"   health bands: the defaults stay ({cal.fallback})",
                           style="yellow"))


def _history_step(engine: Engine, console: Console, days: int) -> None:
    """Score the backfilled history daily for the `days` days before today (features, health,
    flags per date; models/history.py), so today's run has 7- and 30-day changes, trends and
    sparklines to show. Prints a progress count."""
    import os
    from datetime import UTC, datetime

    from pulse.models.history import score_history

    workers = max(1, min(4, os.cpu_count() or 1))
    today = datetime.now(UTC).date()
    console.print(f"[bold]7b.[/] scoring the backfilled history daily for the {days} days "
                  f"before {today} (basis auto: the landed history counts from when it "
                  "happened)")
    if days <= 0:
        console.print("   skipped (--history-days 0)")
        return
    def progress(i: int, n: int, day: Any) -> None:
        status.update(f"scoring history: {i}/{n} dates ({day})")
        if i % 10 == 0 or i == n:
            console.print(f"   history: {i}/{n} dates ({day})", highlight=False)

    with console.status(f"scoring history: 0/{days} dates") as status:
        run = score_history(engine, end=today, days=days, flag_days=HISTORY_FLAG_DAYS,
                            workers=workers, on_progress=progress)
    console.print(f"   history: {run.describe()}; features read by {workers} process"
                  f"{'es' if workers != 1 else ''}", highlight=False)


def _demo_user(engine: Engine, console: Console) -> None:
    """Add the demo's console user with a generated password, printed once (only its argon2
    hash is stored), and say how to sign in."""
    import secrets

    from pulse.web.auth import add_user, list_users

    settings = get_settings()
    password = ""
    if all(u["email"] != DEMO_USER for u in list_users(engine)):  # (a rerun keeps it)
        password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
        add_user(engine, DEMO_USER, "admin", password, actor="cli:demo",
                 reason="the demo's console user")
    host = f"[{settings.web_host}]" if ":" in settings.web_host else settings.web_host
    url = f"http://{host}:{settings.web_port}/"
    console.print(f"[bold]12.[/] the CSM console: {url} (risk list; /tasks, /feedback, /csat "
                  "from its menu)", soft_wrap=True)
    if password:
        console.print(f"   sign in as [bold]{DEMO_USER}[/] with the password "
                      f"[bold]{password}[/] (admin; shown this once: only its hash is "
                      "stored)", highlight=False, soft_wrap=True)
    else:
        console.print(f"   {DEMO_USER} exists already (its password is unchanged); add "
                      "another user with `pulse user add EMAIL --role admin`", soft_wrap=True)
    console.print("   next, run: [bold]pulse serve[/]  (then open the URL above)",
                  soft_wrap=True)


DEMO_USER = "demo@pulse.local"
HISTORY_FLAG_DAYS = 14  # flags for the latest history dates (snoozes, playbooks look back)


class _TaskEcho(io.TextIOBase):
    """Keeps Airflow's whole output in a file and echoes one line per finished task."""

    _END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")

    def __init__(self, sink: IO[str], console: Console) -> None:
        self.sink, self.console = sink, console

    def write(self, s: str) -> int:
        self.sink.write(s)
        for m in self._END.finditer(s):
            index = "" if m[2] == "-1" else f"[{m[2]}]"
            self.console.print(f"   task {m[1]}{index} done", highlight=False)
        return len(s)

    def flush(self) -> None:
        self.sink.flush()


def run_demo(*, accounts: int | None, days: int | None, seed: int, fresh: bool,
             console: Console, history_days: int = 90, variant: str | None = "reference"
             ) -> None:
    """`make demo`: the variant world `variant` (None: the default world of `pulse demo
    generate`, 2,000 accounts over 180 days unless told) through the DAGs, the training and
    the history backfill, as the steps it prints say."""
    import json

    from pulse.devkit.airflow_runner import DagSession, airflow_environ
    from pulse.devkit.demo import generate
    from pulse.devkit.demo.variants import generate_variant
    from pulse.devkit.demo.variants import variant as variant_named
    from pulse.models.scorecard import applied_scorecard_path
    from pulse.sql.db import make_engine, upgrade

    if variant is not None:
        variant_named(variant)  # an unknown name fails here, before anything is wiped
    settings = get_settings()
    home = settings.resolved_home()
    home.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    t0 = time.perf_counter()

    if fresh and url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        for folder in ("landing", "landed", "rejected", "models", "reports", "outbox",
                       "digests", "calibration"):
            shutil.rmtree(home / folder, ignore_errors=True)
        # bands fitted to an earlier run's world would be this one's until it fits its own
        applied_scorecard_path().unlink(missing_ok=True)
        console.print(f"[bold]1.[/] fresh warehouse at {db}")
    engine = make_engine(url)
    rev = upgrade(engine)
    console.print(f"[bold]2.[/] schema at revision {rev}")

    demo_dir = home / "demo"
    with console.status("generating the demo world") as status:
        def progress(stage: str, n: int) -> None:
            status.update(f"generating the demo world: {stage} {n:,}")

        if variant is None:
            summary = generate(demo_dir, accounts=accounts or 2000, days=days or 180,
                               seed=seed, live_incident=True, progress=progress)
        else:
            summary = generate_variant(demo_dir, variant, accounts=accounts, days=days,
                                       seed=seed, live_incident=True, progress=progress)
    made = json.loads(summary.truth_path.read_text(encoding="utf-8"))["generated_with"]
    accounts, days = int(made["accounts"]), int(made["days"])
    total = sum(summary.rows.values())
    world = "the default world" if variant is None else f"variant {variant!r}"
    console.print(
        f"[bold]3.[/] demo world ({world}): {accounts:,} accounts over {days} days, {total:,} "
        f"rows in {len(summary.files)} files ({sum(summary.malformed.values()):,} "
        f"deliberately malformed) in {demo_dir}"
    )

    landing = settings.landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    for path in summary.files.values():
        shutil.copy2(path, landing / path.name)
    console.print(f"[bold]4.[/] dropped {len(summary.files)} files into {landing}")

    # One Airflow process runs the seven DAGs one after the other (DagSession): Airflow and
    # the tasks' imports are loaded once, not seven times.
    with DagSession(airflow_environ(settings)) as dags:
        with console.status("migrating Airflow's metadata database"):
            dags.start()
        _logged_run(dags, console, "5", "pulse_ingest", "for real (airflow dags test)")

        data = warehouse_summary(engine)
        print_summary(data, console)
        _outage_step(engine, dags, console, summary.truth_path)
        _training_step(engine, console)
        _history_step(engine, console, min(history_days, days - 1))
        _health_step(engine, dags, console)
        _outreach_step(engine, dags, console)
        _survey_step(engine, dags, console)
        _feedback_step(engine, dags, console)
    expected = summary.malformed
    quarantined = data["quarantine_by_source"]
    console.print(
        "malformed rows in the demo world vs rows quarantined: "
        + ", ".join(f"{s} {expected.get(s, 0)}/{quarantined.get(s, 0)}" for s in summary.files)
    )
    console.print(f"done in {time.perf_counter() - t0:.1f} s. Warehouse: "
                  f"{engine.url.render_as_string(hide_password=True)}")
    _demo_user(engine, console)

"""`pulse bench survey`: the survey response endpoint under concurrent clients, against
`pulse serve` with its production settings.

One run: a fresh warehouse (SQLite in a temporary PULSE_HOME, or a temporary schema on
PostgreSQL with `--postgres-url`) with N accounts' worth of contacts and N open surveys
(Core inserts); `pulse serve` started as a subprocess (its own workers, uvloop/httptools,
access log on); C concurrent asyncio clients (httpx) that answer every survey by posting its
rating link (`POST /s/{token}`, what the page's Confirm button sends), a share of them with
a double click (the same link posted twice at once) and a share changing their mind later
(another rating's link). Figures: requests/s and latency percentiles, client side. Then the
warehouse is checked: exactly one response per survey (nothing lost, nothing duplicated),
each with the last rating sent and the right count of changes. All clients come from one
address, so the per-client rate limit is raised for the run.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pulse.core.formats import Format

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Plan:
    """What one survey's client sends: `first` (twice at once if `double`), then `then`."""

    survey_id: int
    contact_id: str
    first: int
    double: bool
    then: int | None

    @property
    def final(self) -> int:
        return self.then if self.then is not None else self.first

    @property
    def requests(self) -> int:
        return 1 + self.double + (self.then is not None)


@dataclass
class SurveyFigure:
    database: str
    workers: int
    clients: int
    surveys: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    double_clicks: int
    rating_changes: int
    responses: int
    lost: int
    duplicated: int
    wrong: int
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def _seed_warehouse(engine: Any, surveys: int, now: datetime) -> list[tuple[int, str]]:
    """N contacts (four per account) and one open survey each; returns (survey id, contact)."""
    from sqlalchemy import insert, select

    from pulse.sql.schema import Account, Contact, Survey

    accounts = max(1, surveys // 4)
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__), [
            {"account_id": f"ACC{a:06d}", "name": f"Account {a}", "mrr": 100, "currency": "USD",
             "landed_at": now, "updated_at": now} for a in range(accounts)])
        conn.execute(insert(Contact.__table__), [
            {"contact_id": f"C{i:07d}", "account_id": f"ACC{i % accounts:06d}",
             "email": f"c{i}@bench.example", "name": f"Contact {i}", "timezone": "UTC",
             "opted_out": False, "landed_at": now, "updated_at": now} for i in range(surveys)])
        conn.execute(insert(Survey.__table__), [
            {"survey_key": f"ticket:B{i:07d}", "trigger": "ticket", "ticket_id": f"B{i:07d}",
             "account_id": f"ACC{i % accounts:06d}", "contact_id": f"C{i:07d}",
             "channel": "email", "question": "How satisfied were you with our help?",
             "status": "queued", "due_at": now, "created_at": now,
             "expires_at": now + timedelta(days=14)} for i in range(surveys)])
        s = Survey.__table__
        return [(int(r.survey_id), str(r.contact_id)) for r in conn.execute(
            select(s.c.survey_id, s.c.contact_id).order_by(s.c.survey_id))]


def _plans(rows: list[tuple[int, str]], *, double_share: float, change_share: float,
           seed: int) -> list[Plan]:
    rnd = random.Random(seed)
    plans = []
    for survey_id, contact in rows:
        first = rnd.randint(1, 5)
        then = rnd.choice([r for r in range(1, 6) if r != first]) \
            if rnd.random() < change_share else None
        plans.append(Plan(survey_id, contact, first, rnd.random() < double_share, then))
    return plans


def _start_server(env: dict[str, str], port: int, workers: int | None, log: Path) -> Any:
    cmd = [sys.executable, "-m", "pulse.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    fh = log.open("wb")
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_ready(proc: Any, base: str, log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`pulse serve` exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"`pulse serve` did not answer within {timeout:.0f} s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _stop_server(proc: Any) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts its workers down gracefully
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _load(base: str, plans: list[Plan], clients: int, progress: Any
                ) -> tuple[list[float], Counter[str], float]:
    import httpx

    from pulse.outreach.tokens import sign

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    queue: asyncio.Queue[Plan] = asyncio.Queue()
    for p in plans:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        async def post(plan: Plan, rating: int) -> None:
            path = "/s/" + sign("survey", {"s": plan.survey_id, "c": plan.contact_id,
                                           "r": rating})
            t = time.perf_counter()
            try:
                res = await http.post(path)
                statuses[str(res.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - t)
            progress(1)

        async def client() -> None:
            while True:
                try:
                    plan = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if plan.double:  # two clicks on the same link at once
                    await asyncio.gather(post(plan, plan.first), post(plan, plan.first))
                else:
                    await post(plan, plan.first)
                if plan.then is not None:  # later, another rating in the same email
                    await post(plan, plan.then)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, statuses, wall


def _check(engine: Any, plans: list[Plan]) -> tuple[int, int, int, int]:
    """(responses, lost, duplicated, wrong) against the plans."""
    from sqlalchemy import func, select

    from pulse.sql.schema import SurveyResponse

    r = SurveyResponse.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(r.c.survey_id, r.c.rating, r.c.rating_changes)).all()
        distinct = conn.execute(select(func.count(func.distinct(r.c.survey_id)))).scalar_one()
    got = {int(s): (int(rating), int(changes)) for s, rating, changes in rows}
    lost = sum(1 for p in plans if p.survey_id not in got)
    wrong = sum(1 for p in plans if p.survey_id in got and
                got[p.survey_id] != (p.final, int(p.then is not None)))
    return len(rows), lost, len(rows) - int(distinct), wrong


def run_survey_bench(*, surveys: int, clients: int, workers: int | None,
                     postgres_url: str | None, double_share: float, change_share: float,
                     seed: int, fmt: str, console: Console) -> SurveyFigure:
    from rich.progress import Progress

    from pulse.core.settings import get_settings
    from pulse.sql.db import create_schema, drop_schema, make_engine, schema_url, upgrade

    keys = ("PULSE_HOME", "PULSE_DATABASE_URL", "PULSE_SECRET_KEY", "PULSE_PUBLIC_BASE_URL",
            "PULSE_RATE_LIMIT_PER_MINUTE")
    saved = {k: os.environ.get(k) for k in keys}
    schema = None
    try:
        with tempfile.TemporaryDirectory(prefix="pulse-bench-survey-") as tmp:
            home = Path(tmp)
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            if postgres_url:
                schema = f"pulse_bench_{uuid.uuid4().hex[:10]}"
                create_schema(postgres_url, schema).dispose()
                url = schema_url(postgres_url, schema)
            else:
                url = f"sqlite:///{home / 'pulse.db'}"
            os.environ.update({
                "PULSE_HOME": str(home), "PULSE_DATABASE_URL": url,
                "PULSE_SECRET_KEY": secrets.token_urlsafe(32), "PULSE_PUBLIC_BASE_URL": base,
                # every client is 127.0.0.1: raise the per-client limit (it still runs)
                "PULSE_RATE_LIMIT_PER_MINUTE": "100000000",
            })
            get_settings(fresh=True)
            engine = make_engine(url)
            upgrade(engine)
            now = datetime.now(UTC)
            console.print(f"seeding {surveys:,} contacts and open surveys ...")
            rows = _seed_warehouse(engine, surveys, now)
            plans = _plans(rows, double_share=double_share, change_share=change_share,
                           seed=seed)
            total = sum(p.requests for p in plans)
            log = home / "serve.log"
            proc = _start_server(dict(os.environ), port, workers, log)
            try:
                _wait_ready(proc, base, log)
                banner = log.read_text(errors="replace")
                shown = next((ln for ln in banner.splitlines() if "worker" in ln), "")
                n_workers = workers or (1 if url.startswith("sqlite") else
                                        min(4, os.cpu_count() or 1))
                console.print(f"`pulse serve` up: {shown.strip()}")
                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task(f"{clients} clients posting", total=total)
                    latencies, statuses, wall = asyncio.run(_load(
                        base, plans, clients, lambda n: bar.advance(task, n)))
            finally:
                _stop_server(proc)
            responses, lost, duplicated, wrong = _check(engine, plans)
            engine.dispose()
    finally:
        if schema and postgres_url:
            drop_schema(postgres_url, schema)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings(fresh=True)

    ms = [x * 1000 for x in latencies]
    figure = SurveyFigure(
        database="postgresql" if postgres_url else "sqlite", workers=n_workers,
        clients=clients, surveys=surveys, requests=len(latencies), seconds=round(wall, 2),
        requests_per_second=round(len(latencies) / wall, 1) if wall else 0.0,
        p50_ms=round(_percentile(ms, 0.50), 1), p90_ms=round(_percentile(ms, 0.90), 1),
        p99_ms=round(_percentile(ms, 0.99), 1), max_ms=round(max(ms), 1),
        statuses=dict(statuses), double_clicks=sum(p.double for p in plans),
        rating_changes=sum(p.then is not None for p in plans), responses=responses,
        lost=lost, duplicated=duplicated, wrong=wrong)
    _report(figure, fmt, console)
    problems = []
    if statuses.get("200", 0) != total:
        problems.append(f"not every request was answered 200: {dict(statuses)}")
    if lost or duplicated or wrong or responses != surveys:
        problems.append(f"{responses} responses for {surveys} surveys: {lost} lost, "
                        f"{duplicated} duplicated, {wrong} with the wrong rating or changes")
    if problems:
        raise AssertionError("; ".join(problems))
    return figure


def _report(f: SurveyFigure, fmt: str, console: Console) -> None:
    if fmt == "json":
        print(json.dumps(f.to_dict(), indent=2))
        return
    table = Table(title=f"pulse bench survey: POST /s/{{token}} on {f.database}, "
                  f"{f.workers} worker(s), {f.clients} concurrent clients, {f.cpus} CPUs",
                  title_justify="left")
    for col in ("requests", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(f"{f.requests:,}", f"{f.requests_per_second:,.0f}", f"{f.p50_ms:.1f}",
                  f"{f.p90_ms:.1f}", f"{f.p99_ms:.1f}", f"{f.max_ms:.1f}", f"{f.seconds:.1f}")
    console.print(table)
    console.print(
        f"{f.surveys:,} surveys: {f.double_clicks:,} double clicks (two posts at once), "
        f"{f.rating_changes:,} changed ratings; statuses {f.statuses}. Warehouse: "
        f"{f.responses:,} responses, {f.lost} lost, {f.duplicated} duplicated, {f.wrong} "
        "with a wrong rating or change count.")
    console.print("Client-side latencies from one asyncio/httpx process on the same machine "
                  "(it competes with the server for the CPUs).")


def bench_survey(
    surveys: Annotated[int, typer.Option(help="Open surveys (one contact each).", min=1)]
    = 3000,
    clients: Annotated[int, typer.Option(help="Concurrent clients.", min=1)] = 32,
    workers: Annotated[int | None, typer.Option(
        help="`pulse serve --workers` (default: its own default).", min=1)] = None,
    postgres_url: Annotated[str | None, typer.Option(
        help="Run on PostgreSQL in a temporary schema of this database (e.g. "
             f"{DEFAULT_PG}) instead of SQLite.")] = None,
    double_clicks: Annotated[float, typer.Option(
        help="Share of surveys answered with a double click.", min=0, max=1)] = 0.25,
    changes: Annotated[float, typer.Option(
        help="Share of surveys whose rating is changed afterwards.", min=0, max=1)] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the plan.")] = 7,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The survey response endpoint under concurrent clients against `pulse serve`:
    requests/s, p50/p99 latency, and zero lost or duplicated responses."""
    console = Console(stderr=fmt is Format.json)  # JSON alone on stdout
    try:
        run_survey_bench(surveys=surveys, clients=clients, workers=workers,
                         postgres_url=postgres_url, double_share=double_clicks,
                         change_share=changes, seed=seed, fmt=fmt.value, console=console)
    except (AssertionError, RuntimeError) as exc:
        Console(stderr=True).print(f"[red]bench survey failed:[/] {exc}")
        raise typer.Exit(1) from None

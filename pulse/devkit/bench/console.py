"""`pulse bench console`: how fast the console's risk list (`/`) answers with N accounts,
and the account page (`/accounts/{id}`) of its top account.

It synthesises N accounts (the generator of `pulse bench score`, a short history), lands
them on a temporary SQLite warehouse (and PostgreSQL, when reachable), computes features and
health for the last day and for a few earlier days (the rows' trend lines), adds churn
scores (a stand-in from health: this bench times the page, not the model) and flags, signs a
CSM in through the real app and asks for a page of `/` R times (in process, through
FastAPI's TestClient, so the figure is the server's work without a network). It prints the
median and 95th percentile per query: measured, not asserted.
"""
from __future__ import annotations

import re
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

QUERIES = {
    "all books, by revenue at risk": "csm=all",
    "own book (default)": "",
    "all, red, by churn probability": "csm=all&band=red&sort=churn",
    "all, search by name, page 3": "csm=all&q=a&page=3",
    "all, renewing within 60 days, by renewal": "csm=all&renewal=60&sort=renewal",
}
#: the account page of the risk list's top account; its "rows" are its timeline's items
ACCOUNT_PAGE = "account page (/accounts/{id}) of the top account"
PASSWORD = "bench password long enough"


class _NoLimit:
    """A limiter that never limits: the bench asks faster than a person would."""

    blocking = False

    def take(self, key: str, rule: Any, now: float) -> float:
        return 0.0


def _fill(engine: Engine, folder: Path, end: date, trend_days: int,
          console: Console | None) -> str:
    """Land, score `end` and the `trend_days` before it, add churn scores and flags; the
    e-mail of the CSM with the biggest book."""
    from sqlalchemy import func, insert, literal_column, select, text, update

    from pulse.listeners.landing import land_files
    from pulse.models.health import score_accounts
    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.db import upgrade
    from pulse.sql.features import compute_features
    from pulse.sql.schema import Account, AccountHealth, ChurnScore

    upgrade(engine)
    t = time.perf_counter()
    land_files(engine, sorted(p for p in folder.iterdir() if p.suffix == ".csv"))
    for k in range(trend_days, -1, -1):
        day = end - timedelta(days=k)
        compute_features(engine, day, basis="occurred", negative_terms=NEGATIVE_TERMS)
        score_accounts(engine, day)
    h = AccountHealth.__table__
    with engine.begin() as conn:  # a stand-in probability: this bench times the page
        conn.execute(insert(ChurnScore.__table__).from_select(
            ["as_of", "account_id", "model_version", "probability", "drivers", "computed_at"],
            select(h.c.as_of, h.c.account_id, literal_column("1"),
                   (100.0 - func.coalesce(h.c.score, 50.0)) / 100.0, literal_column("'[]'"),
                   h.c.computed_at)
            .where(h.c.as_of == end)))
    try:
        from pulse.models.flags import compute_flags

        compute_flags(engine, end)
    except ImportError:  # pragma: no cover - flags always exist today
        pass
    a = Account.__table__
    with engine.begin() as conn:  # ten CSMs, by the last digit of the id
        conn.execute(update(a).where(a.c.csm_email.is_(None)).values(
            csm_email="csm" + func.substr(a.c.account_id, func.length(a.c.account_id), 1)
            + "@bench.example"))
        if engine.dialect.name == "postgresql":  # what autovacuum does after a bulk load
            conn.execute(text("ANALYZE"))
        csm = conn.execute(select(a.c.csm_email).where(a.c.csm_email.is_not(None))
                           .group_by(a.c.csm_email).order_by(func.count().desc())
                           .limit(1)).scalar()
    if console:
        console.print(f"  filled in {time.perf_counter() - t:.0f} s")
    return str(csm or "csm@bench.example").lower()


def _measure(engine: Engine, csm: str, requests: int) -> dict[str, tuple[float, float, int]]:
    from fastapi.testclient import TestClient

    from pulse.web import auth
    from pulse.web.app import create_app

    auth.add_user(engine, csm, "csm", PASSWORD, actor="cli:bench")
    app = create_app(engine, limiter=_NoLimit())  # type: ignore[arg-type]
    out: dict[str, tuple[float, float, int]] = {}
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, "no sign-in form"
        signed = client.post("/login", data={"email": csm, "password": PASSWORD,
                                             "csrf_token": token.group(1)})
        assert signed.status_code == 303, signed.text[:200]
        top = re.search(r'<th scope="row"><a href="(/accounts/[^"]+)"', client.get(
            "/?csm=all").text)
        assert top, "no account on the risk list"
        paths = {label: f"/?{query}" for label, query in QUERIES.items()}
        paths[ACCOUNT_PAGE] = top.group(1)
        for label, path in paths.items():
            client.get(path)  # warm: templates, the scorecard, the query plan
            times = []
            rows = 0
            for _ in range(requests):
                t = time.perf_counter()
                got = client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert got.status_code == 200, got.text[:200]
                rows = (got.text.count('<th scope="row">') if label != ACCOUNT_PAGE
                        else got.text.count('<li class="item"'))
            times.sort()
            p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
            out[label] = (statistics.median(times), p95, rows)
    return out


def run_console_bench(*, accounts: int, days: int, trend_days: int, requests: int, seed: int,
                      postgres_url: str | None, console: Console | None
                      ) -> dict[str, dict[str, tuple[float, float, int]]]:
    from pulse.devkit.bench.models import synthesise
    from pulse.devkit.bench.warehouses import on_each_warehouse

    with tempfile.TemporaryDirectory(prefix="pulse-bench-console-") as tmp:
        root = Path(tmp)
        data = root / "data"
        end = datetime.now(UTC).date() - timedelta(days=1)
        synthesise(data, accounts=accounts, days=days, seed=seed, end=end,
                   rows_per_account_day=0.3)

        def measure(dialect: str, engine: Engine) -> dict[str, tuple[float, float, int]]:
            if console:
                console.print(f"{dialect}: filling {accounts:,} accounts ...")
            return _measure(engine, _fill(engine, data, end, trend_days, console), requests)

        figures = on_each_warehouse(root, "pulse_bench_console", postgres_url, console, measure)
    return figures


def bench_console(
    accounts: Annotated[int, typer.Option(help="Accounts to synthesise.", min=10)] = 10_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=30)] = 35,
    trend_days: Annotated[int, typer.Option(
        help="Earlier days scored too, for the trend lines.", min=0)] = 2,
    requests: Annotated[int, typer.Option(help="Requests per query.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL to measure too (default PULSE_TEST_POSTGRES_URL or the local test "
        "database); 'none' to skip.")] = None,
) -> None:
    """Response time of a page of the risk list (`/`) with N accounts (figures, not a
    pass/fail test)."""
    from rich.table import Table

    from pulse.devkit.bench.models import _console

    console = _console()
    figures = run_console_bench(accounts=accounts, days=days, trend_days=trend_days,
                                requests=requests, seed=seed, postgres_url=postgres_url,
                                console=console)
    table = Table(title=f"pulse bench console: a page of / with {accounts:,} accounts, "
                  f"{requests} requests each", title_justify="left")
    table.add_column("query")
    for db in figures:
        table.add_column(f"{db} median ms", justify="right")
        table.add_column(f"{db} p95 ms", justify="right")
    table.add_column("rows")
    for label in [*QUERIES, ACCOUNT_PAGE]:
        cells: list[str] = []
        rows = 0
        for f in figures.values():
            median, p95, rows = f[label]
            cells += [f"{median:.0f}", f"{p95:.0f}"]
        table.add_row(label, *cells, str(rows))
    console.print(table)
    console.print("Through the real app in process (TestClient): sign-in cookie, SQL filter, "
                  "sort and page, the page's reasons and trend lines, the HTML.")

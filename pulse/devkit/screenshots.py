"""`pulse demo screenshots`: pictures of the console's main pages for the README.

A small demo world (the `reference` variant, as `make demo` runs: churn throughout its
history) is landed in a temporary SQLite warehouse; a churn model is trained on it and the
scorecard's bands and weights are fitted to its outcomes, as `make demo` does, so the pages
show a churn probability and the revenue at risk. It is then scored for real every few days
over the last month (so the rows have trend lines), with flags and the playbooks' tasks on
each of those days. `pulse serve` serves it on a
free localhost port; headless Chromium (pulse/devkit/browser.py) signs in as the CSM with
the most open tasks (a person, not the team queue) and saves the sign-in page, the risk list of
their book, the page of its first account and their tasks as PNG files.
"""
from __future__ import annotations

import logging
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ViewportSize
    from sqlalchemy import Engine

PAGES = ("signin", "risk-list", "account", "tasks")
VIEWPORT: ViewportSize = {"width": 1440, "height": 1000}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shots:
    """The PNG files written, by page name, and the CSM whose pages they show."""

    files: dict[str, Path]
    csm: str


def fill_world(engine: Engine, folder: Path, home: Path, *, accounts: int, days: int,
               trend_days: int, every: int, seed: int, end: date) -> str:
    """Generate and land a demo world ending on `end`; train a churn model on it and fit the
    bands to its outcomes (the model's file and the fitted scorecard go to `home`, the
    console's PULSE_HOME); score it, with flags and playbooks on each scored date. Returns
    the e-mail of the CSM (a person) with the most open tasks, then the most red and amber
    accounts, then the most accounts, among those still customers."""
    from sqlalchemy import case, func, select

    from pulse.core.errors import PulseError
    from pulse.devkit.demo import FILE_NAMES
    from pulse.devkit.demo.variants import generate_variant
    from pulse.listeners.landing import land_files
    from pulse.models.calibration import calibrate_and_apply
    from pulse.models.playbooks import run_playbooks
    from pulse.models.registry import train_and_register
    from pulse.models.scorecard import load_scorecard
    from pulse.models.scoring import score_day
    from pulse.sql.db import upgrade
    from pulse.sql.schema import Account, AccountFeatures, AccountHealth, PlaybookTask

    generate_variant(folder, "reference", accounts=accounts, days=days, seed=seed, end=end,
                     malformed_rate=0.0)
    upgrade(engine)
    land_files(engine, [folder / name for name in FILE_NAMES.values()])
    # it all landed at once: every step reads it by event time ("occurred")
    snapshots: dict[Any, Any] = {}  # shared by the training and the calibration
    try:
        train_and_register(engine, as_of=end, basis="occurred", artifact_dir=home / "models",
                           snapshots=snapshots)
    except PulseError as exc:  # a world too small to learn from: pictures without a model
        log.warning("no churn model for the screenshots: %s", exc)
    applied = calibrate_and_apply(engine, as_of=end, basis="occurred", snapshots=snapshots,
                                  home=home)[2]
    card = load_scorecard(applied) if applied else None
    for k in range(trend_days - trend_days % every, -1, -every):
        day = end - timedelta(days=k)
        score_day(engine, day, scorecard=card, basis="occurred")
        run_playbooks(engine, day)  # tasks open over the month, some of them overdue
    a, h, t = Account.__table__, AccountHealth.__table__, PlaybookTask.__table__
    f = AccountFeatures.__table__
    with engine.connect() as conn:
        tasks = (select(func.lower(t.c.owner).label("csm"), func.count().label("n"))
                 .where(t.c.state == "open").group_by(func.lower(t.c.owner)).subquery())
        # the accounts still customers (the risk list leaves cancelled ones out), and how
        # many of them are red or amber
        book = (select(func.lower(a.c.csm_email).label("csm"), func.count().label("n"),
                       func.sum(case((h.c.band.in_(["red", "amber"]), 1), else_=0))
                       .label("at_risk"))
                .join(h, (h.c.account_id == a.c.account_id) & (h.c.as_of == end))
                .join(f, (f.c.account_id == a.c.account_id) & (f.c.as_of == end))
                .where(f.c.cancelled.is_not(True))
                .group_by(func.lower(a.c.csm_email)).subquery())
        csm = conn.execute(
            select(book.c.csm).join(tasks, tasks.c.csm == book.c.csm, isouter=True)
            .where(book.c.csm.like("%@%"), ~book.c.csm.like("cs-team@%"))  # a person
            .order_by(func.coalesce(tasks.c.n, 0).desc(), book.c.at_risk.desc(),
                      book.c.n.desc(), book.c.csm)
            .limit(1)).scalar()
    if csm is None:
        raise RuntimeError("no CSM has an account that is still a customer: generate more "
                           "accounts")
    return str(csm)


def shoot(browser: Browser, base_url: str, email: str, password: str, out_dir: Path
          ) -> dict[str, Path]:
    """Sign in as `email` and save the sign-in page, `/`, its first account's page and
    `/tasks` under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / f"console-{name}.png" for name in PAGES}
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT, locale="en-GB",
                                  device_scale_factor=1)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.locator("main").screenshot(path=str(files["signin"]))  # the form, not the margin
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base_url}/")
        page.screenshot(path=str(files["risk-list"]))  # the top of the list
        page.locator("tbody th[scope=row] a").first.click()  # the riskiest account's page
        page.wait_for_url(f"{base_url}/accounts/**")
        page.screenshot(path=str(files["account"]))  # its charts and what to do
        page.goto("/tasks")
        page.locator("main").screenshot(path=str(files["tasks"]))
    finally:
        context.close()
    return files


def take_screenshots(out_dir: Path, *, accounts: int = 300, days: int = 274,
                     trend_days: int = 30, every: int = 3, seed: int = 7,
                     end: date | None = None, browser: Browser | None = None) -> Shots:
    """Build a demo world ending on `end` (default yesterday), serve it, and save the
    console's main pages under `out_dir`. With `browser`, use that one; else launch the
    system Chromium."""
    from pulse.devkit.browser import launch_chromium, served
    from pulse.sql.db import make_engine
    from pulse.web import auth

    end = end or datetime.now(UTC).date() - timedelta(days=1)
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="pulse-screenshots-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'warehouse.db'}"
        engine = make_engine(url)
        try:
            csm = fill_world(engine, root / "world", root / "home", accounts=accounts,
                             days=days, trend_days=trend_days, every=every, seed=seed, end=end)
            auth.add_user(engine, csm, "csm", password, actor="cli:screenshots")
        finally:
            engine.dispose()
        with served(url, root / "home") as base_url:
            if browser is not None:
                files = shoot(browser, base_url, csm, password, out_dir)
            else:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as pw:
                    chromium = launch_chromium(pw)
                    try:
                        files = shoot(chromium, base_url, csm, password, out_dir)
                    finally:
                        chromium.close()
    return Shots(files, csm)

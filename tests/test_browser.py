"""The console in a real browser: Debian's Chromium, driven by Playwright, against the app
served by `pulse serve` on a free localhost port, on SQLite and on PostgreSQL.

A CSM signs in, filters the risk list to one CSM's red accounts, snoozes an account and sees
it leave the list, logs a call, and completes a playbook's task on /tasks; an account name
holding `<script>` shows as text and runs nothing; a viewer sees no action controls and is
refused when a form is slipped into the page; a tampered CSRF token is refused.

One browser per test session, one served app (and warehouse) per dialect, one signed-in
browser context per user (sign-ins are rate-limited). Every page a test opens is watched:
a JavaScript dialog, an uncaught error or a Content-Security-Policy violation fails the test.

To add a check: write `def test_...(console: Console, open_page: Opener)`, open a page with
`open_page(ANA)` (signed in as that user; `open_page()` for a fresh, signed-out one), drive it
with Playwright, and check the warehouse through `console.engine`. Tests share one world
(`build_world`), so a test that changes something changes accounts no other test reads.
"""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Locator, Page, sync_playwright
from sqlalchemy import Engine, select, update

from pulse.core.settings import get_settings
from pulse.devkit.browser import CHROMIUM, chromium_missing, launch_chromium, served
from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.models.playbooks import list_tasks, run_playbooks
from pulse.models.risklist import build_risk_list
from pulse.sql.audit import entries
from pulse.sql.db import create_schema, drop_schema, make_engine, schema_url, upgrade
from pulse.sql.schema import Account, AccountActivity, AccountHealth, AccountSnooze
from pulse.web import auth
from tests.conftest import CI, PG_URL, need_postgres
from tests.pulse_cli import piped_env
from tests.test_console_auth import PASSWORD
from tests.test_flags import D, land_world
from tests.test_risklist import WEEK_AGO

pytestmark = pytest.mark.xdist_group("browser")  # one worker: one browser, one app a dialect

ANA = "ana.csm@pulse.example"  # a CSM
BO = "bo.csm@pulse.example"  # another CSM
VIC = "vic@pulse.example"  # a viewer
RED = {"acc-silent": 38.0, "acc-loud": 44.0, "acc-dipdown": 31.0, "acc-pay": 40.0}
EVIL_ID = "acc-errors"
EVIL = "<script>window.pulseOwned = 1; alert('owned')</script> Errors & Co"
FUTURE = (datetime.now(UTC).date() + timedelta(days=14)).isoformat()


# --------------------------------------------------------------------------- the world


def build_world(engine: Engine, folder: Path) -> None:
    """test_flags's hand-made world, landed and scored for real (a week before D and on D,
    with flags); four accounts turned red on D by hand (its usage makes none red), two of
    Ana's and two of Bo's; a name holding a script; the playbooks run on D (Ana gets "call
    the executive sponsor" for red acc-silent, renewing within 60 days, and "find the new
    champion" for acc-champ); a CSM each, and a viewer."""
    land_world(engine, folder)
    score_date(engine, WEEK_AGO, basis="occurred")  # it all landed on D: read by event time
    score_date(engine, D)
    compute_flags(engine, D)
    h, a = AccountHealth.__table__, Account.__table__
    with engine.begin() as conn:
        for account_id, value in RED.items():
            conn.execute(update(h).where(h.c.as_of == D, h.c.account_id == account_id)
                         .values(score=value, band="red"))
        conn.execute(update(a).where(a.c.account_id == EVIL_ID).values(name=EVIL))
    run_playbooks(engine, D)
    for email, role in ((ANA, "csm"), (BO, "csm"), (VIC, "viewer")):
        auth.add_user(engine, email, role, PASSWORD, actor="cli:test")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from /usr/bin/chromium, for this module's tests only: Playwright's
    sync API keeps an event loop running in this thread while it lives, and a later test on
    the same worker that calls asyncio.run() (the survey load bench) would fail."""
    why = chromium_missing()
    if why:
        if CI:
            pytest.fail(f"{why} (required under CI=true)")
        pytest.skip(why)
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@dataclass
class Console:
    """The app served on one dialect's warehouse, and a browser context per signed-in user."""

    base_url: str
    engine: Engine
    dialect: str
    browser: Browser
    contexts: dict[str, BrowserContext] = field(default_factory=dict)

    def new_context(self) -> BrowserContext:
        return self.browser.new_context(base_url=self.base_url, locale="en-GB",
                                        viewport={"width": 1400, "height": 900})

    def context_of(self, email: str) -> BrowserContext:
        """`email` signed in through the sign-in form, once per module (the cookie is kept)."""
        if email not in self.contexts:
            context = self.new_context()
            page = context.new_page()
            sign_in(page, email)
            assert page.url == f"{self.base_url}/", page.content()[:500]
            page.close()
            self.contexts[email] = context
        return self.contexts[email]

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def console(request: pytest.FixtureRequest, browser: Browser,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The world on a fresh warehouse, served by `pulse serve` for this module's tests."""
    root = tmp_path_factory.mktemp(f"browser-{request.param}")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'warehouse.db'}"
    else:
        need_postgres()
        schema = f"pulse_b_{uuid.uuid4().hex[:12]}"
        create_schema(PG_URL, schema).dispose()
        url = schema_url(PG_URL, schema)
    home = root / "home"
    home.mkdir()
    engine = make_engine(url)
    try:
        with pytest.MonkeyPatch.context() as mp:  # the world's own home, not this test's
            mp.setenv("PULSE_HOME", str(home))
            mp.setenv("PULSE_DATABASE_URL", url)
            get_settings(fresh=True)
            upgrade(engine)
            build_world(engine, root)
        get_settings(fresh=True)
        with served(url, home) as base_url:
            console = Console(base_url, engine, request.param, browser)
            try:
                yield console
            finally:
                console.close()
    finally:
        engine.dispose()
        if schema:
            drop_schema(PG_URL, schema)


Opener = Callable[..., Page]


@pytest.fixture
def open_page(console: Console) -> Iterator[Opener]:
    """`open_page(email)`: a new tab signed in as `email` (`open_page()`: signed out). Each
    tab is watched; a dialog, a page error or a CSP violation fails the test."""
    pages: list[Page] = []
    fresh: list[BrowserContext] = []
    trouble: list[str] = []

    def opener(email: str | None = None) -> Page:
        if email is None:
            fresh.append(console.new_context())
            page = fresh[-1].new_page()
        else:
            page = console.context_of(email).new_page()

        def on_dialog(dialog: Dialog) -> None:
            trouble.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: trouble.append(f"page error: {exc}"))
        page.on("console", lambda msg: trouble.append(f"console: {msg.text}")
                if "Content Security Policy" in msg.text else None)
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
    for context in fresh:
        context.close()
    assert not trouble, trouble


# --------------------------------------------------------------------------- helpers


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def row_ids(page: Page) -> list[str]:
    """The account ids of the risk list's rows, in order."""
    return [re.match(r"acc-[\w-]+", t).group(0)  # type: ignore[union-attr]
            for t in page.locator("tbody th[scope=row] small").all_inner_texts()]


def row_of(page: Page, account_id: str) -> Locator:
    return page.locator("tbody tr").filter(
        has=page.locator("small", has_text=re.compile(rf"^{re.escape(account_id)}\b")))


def snoozed_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(AccountSnooze.account_id)).scalars())


def submit(page: Page, button: Locator) -> int:
    """Click a form's submit button; the status of the page it leads to (after redirects)."""
    with page.expect_navigation() as nav:
        button.click()
    response = nav.value
    assert response is not None
    return response.status


# --------------------------------------------------------------------------- tests


def test_the_browser_is_the_systems_chromium(browser: Browser) -> None:
    """Debian's /usr/bin/chromium, not a browser Playwright downloaded."""
    shown = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True,
                           timeout=60, check=True).stdout
    assert browser.version and browser.version in shown and "Chromium" in shown


def test_sign_in_with_the_form(console: Console, open_page: Opener) -> None:
    page = open_page()
    page.goto("/")
    assert page.url == f"{console.base_url}/login"  # sign in first
    page.get_by_label("Email").fill(ANA)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == (
        "That email and password do not match an active user.")
    page.get_by_label("Password").fill(PASSWORD)
    assert submit(page, page.get_by_role("button", name="Sign in")) == 200
    assert page.url == f"{console.base_url}/"
    assert page.get_by_role("heading", level=1).inner_text() == "Risk list"
    assert f"Signed in as {ANA} (csm)" in page.locator("main").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == auth.SESSION_COOKIE)
    assert cookie["value"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http here; Secure over https
    assert set(row_ids(page)) == {r["account_id"] for r in build_risk_list(
        console.engine, D, csm=ANA)} - snoozed_ids(console.engine)  # her own book


def test_filter_to_the_red_accounts_of_one_csm(console: Console, open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto("/?csm=all")
    everyone = row_ids(page)
    page.get_by_label("CSM").select_option(BO)
    page.get_by_label("Band").select_option("red")
    submit(page, page.get_by_role("button", name="Show"))
    assert "band=red" in page.url
    expected = [r["account_id"] for r in build_risk_list(console.engine, D, csm=BO,
                                                         band="red")]
    assert len(expected) == 2 and row_ids(page) == expected  # in risk order
    assert len(everyone) > len(expected) and set(expected) < set(everyone)
    assert all(b == "red" for b in page.locator("tbody .band").all_inner_texts())
    assert page.get_by_label("Band").input_value() == "red"  # the form keeps the filter


def test_snooze_an_account_and_see_it_leave_the_list(console: Console,
                                                     open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto("/")
    assert "acc-champ" in row_ids(page)
    row = row_of(page, "acc-champ")
    row.get_by_text("Act on Champ Co").click()  # opens the row's actions
    row.get_by_label("Snooze until").fill(FUTURE)
    row.get_by_label("Reason").fill("waiting for their budget")
    assert submit(page, row.get_by_role("button", name="Snooze")) == 200
    assert page.get_by_role("status").inner_text() == "Snoozed acc-champ."
    assert "acc-champ" not in row_ids(page) and row_ids(page)  # gone; the rest stay
    page.get_by_label("Snoozed").select_option("yes")
    submit(page, page.get_by_role("button", name="Show"))
    assert row_ids(page) == ["acc-champ"]
    assert f"snoozed until {FUTURE}" in row_of(page, "acc-champ").inner_text()
    assert [(e["actor"], e["action"], e["reason"]) for e in
            entries(console.engine, target="acc-champ")] == [
        (ANA, "snooze", "waiting for their budget")]


def test_log_a_call(console: Console, open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto("/")
    row = row_of(page, "acc-loud")
    assert "never" in row.locator("td").nth(7).inner_text()
    row.get_by_text("Act on Loud Co").click()
    row.get_by_label("Log a").select_option("call")
    row.get_by_label("Note").fill("spoke to their CTO, budget is safe")
    assert submit(page, row.get_by_role("button", name="Log", exact=True)) == 200
    assert "acc-loud" in page.get_by_role("status").inner_text()
    touched = row_of(page, "acc-loud").locator("td").nth(7).inner_text()
    assert touched.startswith(f"call logged by {ANA}")
    with console.engine.connect() as conn:
        logged = conn.execute(select(AccountActivity.kind, AccountActivity.note,
                                     AccountActivity.actor)
                              .where(AccountActivity.account_id == "acc-loud")).all()
    assert [tuple(r) for r in logged] == [("call", "spoke to their CTO, budget is safe", ANA)]


def test_open_an_account_and_read_its_chart_and_timeline(console: Console,
                                                         open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto("/?csm=all")
    link = row_of(page, "acc-dipdown").locator("th a")
    name = link.inner_text()
    assert submit(page, link) == 200
    assert page.url == f"{console.base_url}/accounts/acc-dipdown"
    assert page.locator("#account-name").inner_text().startswith(name)
    chart = page.locator("#health-chart")
    assert chart.is_visible() and chart.evaluate("e => e.tagName") == "svg"
    assert chart.get_attribute("role") == "img" and chart.get_attribute("aria-labelledby")
    assert page.locator("#health-chart-title").text_content()  # the chart says what it shows
    assert page.locator("#health-table").count() == 1  # and its figures as a table
    assert page.locator("#drivers").inner_text().strip()
    everything = page.locator("#timeline-items li.item")
    kinds = set(everything.evaluate_all("items => items.map(i => i.dataset.kind)"))
    assert {"usage", "billing"} <= kinds  # its usage and billing landed
    times = everything.locator("time").evaluate_all(
        "ts => ts.map(t => t.getAttribute('datetime'))")
    assert times == sorted(times, reverse=True)  # newest first
    filters = page.locator("#timeline-filter")
    filters.get_by_label("Billing").check()
    assert submit(page, filters.get_by_role("button", name="Filter")) == 200
    assert "kind=billing" in page.url
    shown = page.locator("#timeline-items li.item")
    assert shown.count() >= 1 and set(shown.evaluate_all(
        "items => items.map(i => i.dataset.kind)")) == {"billing"}
    # log a meeting on the page: it lands in the warehouse and heads the timeline
    form = page.locator("#log-form")
    form.get_by_label("Kind").select_option("meeting")
    form.get_by_label("Note").fill("QBR booked <b>for Tuesday</b>")
    assert submit(page, form.get_by_role("button", name="Log", exact=True)) == 200
    page.goto("/accounts/acc-dipdown?kind=notes")
    first = page.locator("#timeline-items li.item").first
    assert first.get_attribute("data-kind") == "notes"
    assert "QBR booked <b>for Tuesday</b>" in first.inner_text()  # text, not markup
    with console.engine.connect() as conn:
        logged = conn.execute(select(AccountActivity.kind, AccountActivity.note,
                                     AccountActivity.actor)
                              .where(AccountActivity.account_id == "acc-dipdown")).all()
    assert [tuple(r) for r in logged] == [("meeting", "QBR booked <b>for Tuesday</b>", ANA)]


def test_the_console_works_by_keyboard(console: Console, open_page: Opener) -> None:
    """Search and open an account with the keyboard alone: Tab to the search box, type,
    Enter; Tab to the account's link, Enter."""
    page = open_page(ANA)
    page.goto("/?csm=all")

    def tab_to(selector: str, limit: int = 60) -> None:
        target = page.locator(selector).first
        for _ in range(limit):
            page.keyboard.press("Tab")
            if target.evaluate("e => e === document.activeElement"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#f-q")
    page.keyboard.type("Loud")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "q=Loud" in page.url and row_ids(page) == ["acc-loud"]
    tab_to("tbody th[scope=row] a")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{console.base_url}/accounts/acc-loud"


def test_complete_a_task_from_a_playbook(console: Console, open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto("/")
    page.get_by_role("link", name="Tasks").click()
    assert page.url == f"{console.base_url}/tasks"
    mine = list_tasks(console.engine, owner=ANA)
    task = next(t for t in mine if t["rule"] == "red_renewal_sponsor")  # red, renewing soon
    assert task["state"] == "open" and task["account_id"] == "acc-silent"
    section = page.locator("section").filter(has=page.locator(f"#task-{task['task_id']}"))
    assert section.get_by_role("heading").inner_text() == f"{task['title']}: Silent Co"
    assert len(page.locator("section").all()) == len(mine)
    section.get_by_label("Outcome").fill("sponsor met, renewal on track")
    assert submit(page, section.get_by_role("button", name="Mark done")) == 200
    assert page.url == f"{console.base_url}/tasks"
    section = page.locator("section").filter(has=page.locator(f"#task-{task['task_id']}"))
    assert "Outcome: sponsor met, renewal on track" in section.inner_text()
    assert section.get_by_role("button", name="Mark done").count() == 0
    after = {t["task_id"]: t for t in list_tasks(console.engine, owner=ANA)}
    assert (after[task["task_id"]]["state"], after[task["task_id"]]["closed_by"]) == (
        "done", ANA)


def test_a_name_holding_a_script_shows_as_text(console: Console, open_page: Opener) -> None:
    page = open_page(ANA)
    page.goto(f"/?csm=all&q={EVIL_ID}")
    assert row_ids(page) == [EVIL_ID]
    header = row_of(page, EVIL_ID).locator("th")
    assert header.inner_text().splitlines()[0] == EVIL  # the markup, as text
    assert row_of(page, EVIL_ID).locator("summary").inner_text() == f"Act on {EVIL}"
    assert page.locator("script").count() == 0  # no element was made of it
    assert page.evaluate("typeof window.pulseOwned") == "undefined"  # nothing ran
    # (and `open_page` fails the test on any dialog or CSP violation)


def test_a_viewer_cannot_act(console: Console, open_page: Opener) -> None:
    page = open_page(VIC)
    page.goto("/")
    everyone = row_ids(page)
    assert set(everyone) == {r["account_id"] for r in build_risk_list(console.engine, D)
                             } - snoozed_ids(console.engine)  # sees every book
    assert page.locator("form[action^='/accounts/']").count() == 0  # no action controls
    assert page.get_by_role("columnheader", name="Act", exact=True).count() == 0
    assert page.get_by_text("Act on", exact=False).count() == 0
    page.goto("/tasks?who=all")
    assert page.locator("section").count() == len(list_tasks(console.engine, owner=None))
    assert page.get_by_role("button", name="Mark done").count() == 0
    # Slip an action form into the page, with the viewer's own valid token: refused.
    token = page.locator("form[action='/logout'] input[name=csrf_token]").input_value()
    page.evaluate("""([token, target]) => {
        const form = document.createElement('form');
        form.method = 'post'; form.action = '/accounts/' + target + '/log';
        for (const [name, value] of [['csrf_token', token], ['kind', 'call'],
                                     ['reason', 'a viewer acting']]) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value;
            form.appendChild(input);
        }
        const button = document.createElement('button');
        button.id = 'slipped'; button.type = 'submit'; button.textContent = 'Go';
        form.appendChild(button);
        document.querySelector('main').appendChild(form);
    }""", [token, "acc-dip"])
    assert submit(page, page.locator("#slipped")) == 403
    assert "Viewers can look but not act" in page.locator("main").inner_text()
    assert entries(console.engine, target="acc-dip") == []


def test_a_forged_csrf_token_is_refused(console: Console, open_page: Opener) -> None:
    other = open_page(VIC)  # another session's real token is no better than a made-up one
    other.goto("/")
    foreign = other.locator("form[action='/logout'] input[name=csrf_token]").input_value()
    page = open_page(ANA)
    for forged in ("forged-token", foreign):
        page.goto("/?csm=all&q=acc-dip")
        row = row_of(page, "acc-dip")
        row.get_by_text("Act on Dip Co").click()
        field_ = row.locator("form[action$='/snooze'] input[name=csrf_token]")
        assert field_.input_value() not in ("", forged)
        field_.evaluate("(el, value) => { el.value = value; }", forged)  # tamper with it
        row.get_by_label("Snooze until").fill(FUTURE)
        row.get_by_label("Reason").fill("forged")
        assert submit(page, row.get_by_role("button", name="Snooze")) == 403
        assert "did not come from Pulse" in page.locator("main").inner_text()
    assert "acc-dip" not in snoozed_ids(console.engine)
    assert entries(console.engine, target="acc-dip") == []
    page.goto("/?csm=all")
    assert "acc-dip" in row_ids(page)  # still on the list


@pytest.mark.slow  # about 15 s: a demo world, `pulse serve` and Chromium of its own
def test_pulse_demo_screenshots_saves_the_main_pages(browser: Browser, tmp_path: Path) -> None:
    """`pulse demo screenshots` (README's pictures), on a small world: four PNGs, each with
    something drawn on it (the risk list and the account page: the browser's viewport; the
    others: the page's main box). The world ends on a fixed day, so it is the same every day
    the test runs."""
    from PIL import Image

    env = piped_env()
    proc = subprocess.run([sys.executable, "-m", "pulse.cli", "demo", "screenshots", "--out",
                           str(tmp_path / "img"), "--accounts", "40", "--trend-days", "3",
                           "--end", "2026-11-30"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    csm = re.search(r"signed in as (\S+@\S+),", proc.stdout)
    assert csm and not csm.group(1).startswith("cs-team@")
    for name in ("signin", "risk-list", "account", "tasks"):
        path = tmp_path / "img" / f"console-{name}.png"
        assert f"{name}: {path}\n" in proc.stdout
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            if name in ("risk-list", "account"):
                assert (width, height) == (1440, 1000)
            else:
                assert 300 < width < 1440 and height > 150
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 20  # text and controls, not a blank page

"""The console's risk list (`/`) through the real app: a CSM's own book by default, filters,
sorts and pages that match the risk list of models/risklist.py, the CSV export of the same
view (defused against formulas), snooze / handled / log a call with their audit entries and
"last touched", a viewer and a forged CSRF token refused, and names shown as text.
SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import Engine, func, insert, select, update

from pulse.models.risklist import build_risk_list
from pulse.sql import console as sqlc
from pulse.sql.audit import entries
from pulse.sql.schema import (
    Account,
    AccountActivity,
    AccountFeatures,
    AccountFlag,
    AccountHealth,
    AccountSnooze,
    ChurnScore,
)
from pulse.web import auth
from tests.pulse_cli import piped_env
from tests.test_console_auth import PASSWORD, make_app, sign_in
from tests.test_flags import D
from tests.test_risklist import LIVE, calibrated_card, world  # noqa: F401  (world: a fixture)

ANA = "ana.csm@pulse.example"
ANA_BOOK = {"acc-silent", "acc-loud", "acc-champ"}  # acc-gone is hers too, but cancelled
FUTURE = (datetime.now(UTC).date() + timedelta(days=14)).isoformat()


@pytest.fixture
def scored(world: Engine) -> Engine:  # noqa: F811
    """The world with churn scores for two accounts, a segment and plan on some, users."""
    now = datetime.now(UTC)
    with world.begin() as conn:
        conn.execute(insert(ChurnScore), [
            {"as_of": D, "account_id": "acc-steady", "model_version": 3, "probability": 0.9,
             "drivers": [], "computed_at": now},
            {"as_of": D, "account_id": "acc-pay", "model_version": 3, "probability": 0.05,
             "drivers": [], "computed_at": now}])
        a = Account.__table__
        conn.execute(update(a).where(a.c.account_id.in_(["acc-dip", "acc-champ"]))
                     .values(segment="enterprise", plan="scale"))
    for email, role in ((ANA, "csm"), ("vic@pulse.example", "viewer"),
                        ("ada@pulse.example", "admin")):
        auth.add_user(world, email, role, PASSWORD, actor="cli:test")
    return world


@pytest.fixture
def client(scored: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(scored), base_url="http://127.0.0.1",
                    follow_redirects=False) as c:
        yield c


def ids_on(html: str) -> list[str]:
    """The account ids of a page's rows, in order."""
    return re.findall(r'<th scope="row">.*?<br><small>(acc-[\w-]+)', html, flags=re.S)


def page(client: TestClient, query: str = "") -> str:
    got = client.get("/" + (f"?{query}" if query else ""))
    assert got.status_code == 200, got.text
    return got.text


def csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page(client))
    assert found
    return found.group(1)


def csv_rows(client: TestClient, query: str = "") -> list[dict[str, str]]:
    got = client.get("/export.csv" + (f"?{query}" if query else ""))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(got.text)))


def test_a_csm_sees_their_own_book_by_default_ranked_like_the_risk_list(
        scored: Engine, client: TestClient) -> None:
    assert client.get("/").status_code == 303  # sign in first
    assert sign_in(client, ANA).status_code == 303
    assert set(ids_on(page(client))) == ANA_BOOK
    everyone = ids_on(page(client, "csm=all"))
    ranked = [r["account_id"] for r in build_risk_list(scored, D)]
    assert set(everyone) == LIVE and everyone == ranked  # the same ranking, in SQL
    assert ids_on(page(client, "csm=bo.csm%40pulse.example")) == [
        i for i in ranked if i not in ANA_BOOK]


def test_filters_and_sorts_give_the_expected_rows(scored: Engine, client: TestClient) -> None:
    sign_in(client, "ada@pulse.example")  # an admin: every book by default
    ranked = build_risk_list(scored, D)
    assert set(ids_on(page(client))) == LIVE
    amber = [r["account_id"] for r in ranked if r["band"] == "amber"]
    assert amber and ids_on(page(client, "band=amber")) == amber
    champ = [r["account_id"] for r in ranked if "champion_gone" in r["flags"]]
    assert champ and ids_on(page(client, "flag=champion_gone")) == champ
    assert set(ids_on(page(client, "q=DIP"))) == {"acc-dip", "acc-dipdown"}
    assert ids_on(page(client, "q=errors+co")) == ["acc-errors"]  # by name
    assert ids_on(page(client, "q=100%25")) == []  # a wildcard in the search is a character
    assert set(ids_on(page(client, "segment=enterprise&plan=scale"))) == {"acc-dip",
                                                                         "acc-champ"}
    soon = {r["account_id"] for r in ranked
            if r["days_to_renewal"] is not None and 0 <= r["days_to_renewal"] <= 30}
    assert soon and set(ids_on(page(client, "renewal=30"))) == soon
    assert ids_on(page(client, "sort=churn"))[:2] == ["acc-steady", "acc-pay"]
    h = AccountHealth.__table__
    with scored.connect() as conn:
        change = dict(conn.execute(select(h.c.account_id, h.c.change_7d)
                                   .where(h.c.as_of == D)).all())
    shown = ids_on(page(client, "sort=change_7d"))
    values = [change[i] for i in shown]
    known = [v for v in values if v is not None]
    assert known and known == sorted(known) and values[:len(known)] == known
    renewals = {r["account_id"]: r["renewal_date"] for r in ranked}
    by_renewal = [renewals[i] for i in ids_on(page(client, "sort=renewal"))]
    dated = [d for d in by_renewal if d]
    assert dated == sorted(dated) and by_renewal[:len(dated)] == dated


def test_rows_show_words_trend_money_and_next_action(scored: Engine,
                                                     client: TestClient) -> None:
    sign_in(client, ANA)
    html = page(client, "flag=champion_gone&csm=all")
    assert "champion gone" in html and "champion_gone</td>" not in html
    row = build_risk_list(scored, D, flag="champion_gone")[0]
    assert str(escape(row["next_action"])) in html  # "find and call Ana Ruiz&#39;s ..."
    assert f'{row["band"]}</span>' in html  # the band in words, not only a colour
    assert '<svg width="90"' in html and 'aria-label="health from' in html
    assert "Money in USD" in html
    # what the bands mean: the default card's own cut points, said to be unfitted
    assert ('<p id="band-legend"><small>Bands: green &gt;= 70, amber &gt;= 40, red below (the '
            "scorecard&#39;s own cut points, not fitted to this warehouse&#39;s churners)."
            "</small></p>") in html


def test_the_band_legend_says_when_the_date_was_scored_with_another_scorecard(
        scored: Engine, client: TestClient) -> None:
    sign_in(client, ANA)
    assert "another scorecard" not in page(client, "csm=all")
    with scored.begin() as conn:  # one account scored with a scorecard no longer in use
        conn.execute(update(AccountHealth).where(AccountHealth.as_of == D,
                                                 AccountHealth.account_id == "acc-silent")
                     .values(scorecard_version="2025.1@0123456789ab"))
    legend = page(client, "csm=all").split('<p id="band-legend"><small>')[1].split("</small>")[0]
    assert legend.endswith(f"; some accounts of {D} were scored with another scorecard, whose "
                           f"bands they keep until `pulse score --as-of {D}` scores them "
                           "again.")


def test_pages_cover_the_list_once(scored: Engine, client: TestClient,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlc, "PAGE_SIZE", 4)
    sign_in(client, "ada@pulse.example")
    pages = [ids_on(page(client, f"page={n}")) for n in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [4, 4, 1, 0]
    assert pages[0] + pages[1] + pages[2] == [r["account_id"] for r in build_risk_list(
        scored, D)]
    assert "Page 2 of 3" in page(client, "page=2") and 'rel="next"' in page(client, "page=2")


def test_csv_export_is_the_filtered_view_and_defused(scored: Engine,
                                                     client: TestClient) -> None:
    a = Account.__table__
    with scored.begin() as conn:
        conn.execute(update(a).where(a.c.account_id == "acc-loud")
                     .values(name='=HYPERLINK("http://evil.example","x")'))
    sign_in(client, ANA)
    rows = csv_rows(client)  # her book, like the page
    assert [r["account_id"] for r in rows] == ids_on(page(client))
    loud = next(r for r in rows if r["account_id"] == "acc-loud")
    assert loud["name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert float(loud["change_7d"]) < 0  # a negative number stays a number
    red = csv_rows(client, "csm=all&band=amber&sort=churn")
    assert [r["account_id"] for r in red] == ids_on(page(client, "csm=all&band=amber&sort=churn"))
    assert red and all(r["band"] == "amber" for r in red)
    champ = csv_rows(client, "csm=all&flag=champion_gone")
    assert champ and all("champion gone" in r["flags"] for r in champ)


def test_a_name_with_script_shows_as_text(scored: Engine, client: TestClient) -> None:
    a = Account.__table__
    with scored.begin() as conn:
        conn.execute(update(a).where(a.c.account_id == "acc-silent")
                     .values(name="<script>alert(1)</script> Co"))
    sign_in(client, ANA)
    html = page(client)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Co" in html


def test_snooze_leaves_the_list_and_the_snoozed_filter_shows_it(
        scored: Engine, client: TestClient) -> None:
    sign_in(client, ANA)
    token = csrf(client)
    assert "acc-champ" in ids_on(page(client))
    done = client.post("/accounts/acc-champ/snooze", data={
        "csrf_token": token, "until": FUTURE, "reason": "waiting for their budget",
        "back": "/?csm=all"})
    assert done.status_code == 303
    assert done.headers["location"] == "/?csm=all&done=snooze&account=acc-champ"
    assert "Snoozed acc-champ." in page(client, "csm=all&done=snooze&account=acc-champ")
    assert "evil" not in page(client, "done=evil+words")  # a link cannot make it say more
    assert "acc-champ" not in ids_on(page(client))
    assert ids_on(page(client, "snoozed=yes")) == ["acc-champ"]
    html = page(client, "snoozed=yes")
    assert f"snoozed until {FUTURE}" in html and f"snoozed by {ANA}" in html
    assert "acc-champ" in ids_on(page(client, "snoozed=all"))
    assert [(e["actor"], e["action"], e["reason"], e["detail"]) for e in
            entries(scored, target="acc-champ")] == [
        (ANA, "snooze", "waiting for their budget", {"until": FUTURE})]
    # a date already past is refused, and a snooze needs a reason
    assert client.post("/accounts/acc-loud/snooze", data={
        "csrf_token": token, "until": "2020-01-01", "reason": "x"}).status_code == 400
    assert client.post("/accounts/acc-loud/snooze", data={
        "csrf_token": token, "until": FUTURE, "reason": " "}).status_code == 400
    with scored.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AccountSnooze)).scalar() == 1


def test_a_logged_call_and_handled_show_as_last_touched(scored: Engine,
                                                        client: TestClient) -> None:
    sign_in(client, ANA)
    token = csrf(client)
    assert "never" in page(client)
    got = client.post("/accounts/acc-silent/log", data={
        "csrf_token": token, "kind": "call", "reason": "spoke to their CTO"})
    assert got.status_code == 303
    html = page(client, "q=acc-silent")
    assert f"call logged by {ANA}" in html
    assert client.post("/accounts/acc-silent/handled", data={
        "csrf_token": token, "reason": "renewal saved"}).status_code == 303
    assert f"marked handled by {ANA}" in page(client, "q=acc-silent")
    assert [(e["action"], e["reason"]) for e in entries(scored, target="acc-silent")] == [
        ("handled", "renewal saved"), ("log_call", "spoke to their CTO")]
    last = next(r for r in csv_rows(client) if r["account_id"] == "acc-silent")
    assert (last["touched_kind"], last["touched_by"]) == ("handled", ANA)
    assert client.post("/accounts/acc-nobody/log", data={
        "csrf_token": token, "kind": "call", "reason": "x"}).status_code == 404


def test_a_viewer_cannot_act_and_a_forged_token_is_refused(scored: Engine,
                                                           client: TestClient) -> None:
    sign_in(client, "vic@pulse.example")
    token = csrf(client)
    html = page(client)
    assert set(ids_on(html)) == LIVE and "Mark handled" not in html  # sees, cannot act
    for path, data in (("/accounts/acc-loud/snooze", {"until": FUTURE, "reason": "x"}),
                       ("/accounts/acc-loud/handled", {"reason": "x"}),
                       ("/accounts/acc-loud/log", {"kind": "call", "reason": "x"})):
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, ANA)
    assert client.post("/accounts/acc-loud/log", data={
        "csrf_token": "forged", "kind": "call", "reason": "x"}).status_code == 403
    assert client.post("/accounts/acc-loud/log", data={
        "kind": "call", "reason": "x"}).status_code == 403
    with scored.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AccountActivity)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(AccountSnooze)).scalar() == 0


def test_a_snooze_ends_early_when_something_new_happens(scored: Engine,
                                                        client: TestClient) -> None:
    sign_in(client, ANA)
    token = csrf(client)
    for acc in ("acc-champ", "acc-loud", "acc-silent"):
        assert client.post(f"/accounts/{acc}/snooze", data={
            "csrf_token": token, "until": FUTURE, "reason": "quiet month"}).status_code == 303
    assert ids_on(page(client)) == []
    # the next day is scored: acc-champ's health falls 15 points, acc-loud gets a flag,
    # acc-silent keeps its flags and health, and stays snoozed
    h, fl, ft = AccountHealth.__table__, AccountFlag.__table__, AccountFeatures.__table__
    nxt = D + timedelta(days=1)
    with scored.begin() as conn:
        conn.execute(insert(ft), [{**dict(r), "as_of": nxt} for r in conn.execute(
            select(ft).where(ft.c.as_of == D)).mappings()])
        rows = [dict(r) for r in conn.execute(select(h).where(h.c.as_of == D)).mappings()]
        for r in rows:
            r["as_of"] = nxt
            if r["account_id"] == "acc-champ":
                r["score"] = r["score"] - 15
        conn.execute(insert(h), rows)
        flags = [dict(r) for r in conn.execute(select(fl).where(fl.c.as_of == D)).mappings()]
        conn.execute(insert(fl), [{**f, "as_of": nxt} for f in flags] + [
            {"as_of": nxt, "account_id": "acc-loud", "flag": "payment_risk",
             "evidence": "2 failed payments", "details": {}, "computed_at": datetime.now(UTC)}])
    html = page(client)
    assert set(ids_on(html)) == {"acc-champ", "acc-loud"}
    assert "snooze ended early: health fell 10 points or more" in html
    assert "snooze ended early: a new flag" in html
    assert ids_on(page(client, "snoozed=yes")) == ["acc-silent"]


def test_the_calibrated_probability_in_sql_is_the_scorecards(scored: Engine,
                                                             tmp_path: Path) -> None:
    card = calibrated_card(tmp_path)
    expected = build_risk_list(scored, D, scorecard=card)
    total, rows = sqlc.risk_page(scored, D, sqlc.Filters(), size=None, scorecard=card)
    assert total == len(expected) == len(rows)
    assert [r["account_id"] for r in rows] == [r["account_id"] for r in expected]
    assert [round(r["churn_probability"], 4) for r in rows] == [
        r["churn_probability"] for r in expected]
    assert any(r["model_probability"] is None for r in rows)  # the curve answered for some


def test_pulse_bench_console_prints_its_figures(tmp_path: Path) -> None:
    import subprocess
    import sys

    pulse = Path(sys.executable).with_name("pulse")
    env = piped_env()
    proc = subprocess.run([str(pulse), "bench", "console", "--accounts", "200", "--days", "30",
                           "--trend-days", "1", "--requests", "2", "--postgres-url", "none"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "200 accounts" in proc.stdout and "sqlite median ms" in proc.stdout
    assert re.search(r"all books, by revenue at risk\s*│\s*\d+\s*│\s*\d+\s*│\s*50", proc.stdout)


def test_every_page_counts_every_match_and_a_second_snooze_replaces_the_first(
        scored: Engine) -> None:
    total, everyone = sqlc.risk_page(scored, D, sqlc.Filters(), size=None)
    assert total == len(everyone) > 4
    for n in (1, 2, 99):  # past the end: no rows, and still the count of every match
        got, rows = sqlc.risk_page(scored, D, sqlc.Filters(), page=n, size=4)
        assert got == total and rows == everyone[(n - 1) * 4:n * 4]
    assert "_matches" not in everyone[0]
    a, h = Account.__table__, AccountHealth.__table__
    with scored.connect() as conn:
        accounts = conn.execute(select(a).where(a.c.account_id.in_(
            select(h.c.account_id).where(h.c.as_of == D)))).mappings().all()
    assert sqlc.choices(scored, D) == {
        key: sorted({r[col] for r in accounts if r[col] is not None})
        for key, col in (("csm", "csm_email"), ("segment", "segment"), ("plan", "plan"))}
    later = datetime.now(UTC).date() + timedelta(days=30)
    for until, reason in ((FUTURE, "first"), (later.isoformat(), "second")):
        sqlc.snooze(scored, "acc-loud", datetime.fromisoformat(until).date(), actor=ANA,
                    reason=reason)
    with scored.connect() as conn:
        snoozes = conn.execute(select(AccountSnooze.__table__)).mappings().all()
    assert [(s["account_id"], s["until"], s["reason"]) for s in snoozes] == [
        ("acc-loud", later, "second")]

"""The SendGrid transport: the real `sendgrid` client against the local double of the API.

The double validates request bodies against SendGrid's published OpenAPI schema of
`/v3/mail/send` plus the rules the API enforces beyond it; under CI=true a missing spec fails
these tests instead of quietly checking less.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sendgrid
from python_http_client import exceptions as http_errors

from pulse.core.errors import ConfigError, TransportAuthError
from pulse.core.settings import env_flag, get_settings
from pulse.devkit.sendgrid_double import (
    SendGridDouble,
    fake_api_key,
    load_request_validator,
    spec_path,
)
from pulse.outreach.message import Outgoing
from pulse.outreach.transports.sendgrid import SendGridTransport, resolve_api_key


def msg(i: int, *, email: str | None = None, body: str = "b1", subs: dict[str, str] | None = None,
        kind: str = "checkin") -> Outgoing:
    return Outgoing(
        message_id=i, kind=kind, template="checkin", to_email=email or f"user{i}@example.com",
        to_name=f"User {i}", from_email="care@pulse-demo.example", from_name="Pulse Care",
        reply_to="csm@pulse-demo.example", subject=f"Checking in, User {i}",
        html=f"<p>Hello -p1h-</p><p>{body}</p>", text=f"Hello -p1t-\n{body}", body_key=body,
        substitutions=subs if subs is not None else {"-p1h-": f"<b>U{i}</b>", "-p1t-": f"U{i}"},
        headers={"List-Unsubscribe": f"<https://pulse.example/u/{i}>"}, categories=(kind,),
        custom_args={"outbox_id": str(i), "kind": kind},
    )


@pytest.fixture
def api() -> Iterator[SendGridDouble]:
    with SendGridDouble() as double:
        yield double


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def transport(api: SendGridDouble, **kw: object) -> SendGridTransport:
    kw.setdefault("sleep", Sleeps())
    return SendGridTransport(api_key=api.api_key, host=api.url, **kw)  # type: ignore[arg-type]


def by_request(api: SendGridDouble) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for a in api.accepted:
        out[a.x_message_id].append(a.email)
    return out


# ---------------------------------------------------------------------- the double's schema


def test_the_published_schema_is_enforced() -> None:
    """The spec must be there (under CI a missing spec is an error, not a skip)."""
    if not spec_path().is_file() and not env_flag("CI"):
        pytest.skip(f"SendGrid OpenAPI spec missing at {spec_path()}")
    assert load_request_validator() is not None
    with SendGridDouble() as double:
        assert double.schema_checked


def test_missing_spec_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_SPECS", str(tmp_path))
    get_settings(fresh=True)
    monkeypatch.setenv("CI", "true")
    get_settings(fresh=True)  # PULSE_SPECS is a setting, read when settings are
    with pytest.raises(ConfigError, match="required under CI=true"):
        SendGridDouble()
    monkeypatch.setenv("CI", "false")
    with pytest.warns(UserWarning, match="checks only its own rules"):
        double = SendGridDouble()
    assert not double.schema_checked


# ---------------------------------------------------------------------- batching


def test_batches_1000_per_request_each_address_once(api: SendGridDouble) -> None:
    messages = [msg(i) for i in range(1, 2501)]
    messages += [msg(3000 + i, email=f"user{i}@example.com") for i in range(1, 6)]  # repeats
    messages += [msg(4000 + i, body="other") for i in range(1, 11)]  # another body
    t = transport(api)
    results = t.send(messages)
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok for r in results), {r.error for r in results if not r.ok}
    # b1: 2,500 in 3 requests, plus the 5 repeated addresses in a fourth; "other": 1
    assert t.requests == api.mail_requests == 5
    sizes = sorted(len(v) for v in by_request(api).values())
    assert sizes == [5, 10, 500, 1000, 1000]
    for emails in by_request(api).values():
        assert len(emails) == len({e.lower() for e in emails}), "an address twice in a request"
    assert api.accepted_counts() == Counter({str(m.message_id): 1 for m in messages})
    assert api.rejected == []


def test_request_carries_personal_and_shared_parts(api: SendGridDouble) -> None:
    t = transport(api)
    plan = t.plan([msg(1), msg(2)])
    assert len(plan) == 1
    body = plan[0].body
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["from"] == {"email": "care@pulse-demo.example", "name": "Pulse Care"}
    assert body["categories"] == ["checkin"]
    p = body["personalizations"][1]
    assert p["to"] == [{"email": "user2@example.com", "name": "User 2"}]
    assert p["subject"] == "Checking in, User 2"
    assert p["substitutions"] == {"-p1h-": "<b>U2</b>", "-p1t-": "U2"}
    assert p["custom_args"] == {"outbox_id": "2", "kind": "checkin"}
    assert p["headers"] == {"List-Unsubscribe": "<https://pulse.example/u/2>"}
    assert all(r.ok for r in t.send([msg(1), msg(2)]))
    assert {a.outbox_id: a.subject for a in api.accepted} == {
        "1": "Checking in, User 1", "2": "Checking in, User 2"}


def test_oversized_substitutions_go_alone_with_the_body_filled_in(api: SendGridDouble) -> None:
    big = {"-p1h-": "x" * 6000, "-p1t-": "y" * 6000}  # over 10,000 bytes together
    t = transport(api)
    plan = t.plan([msg(1), msg(2, subs=big)])
    assert len(plan) == 2
    alone = next(c for c in plan if c.messages[0].message_id == 2).body
    assert "substitutions" not in alone["personalizations"][0]
    assert "x" * 6000 in alone["content"][1]["value"]
    assert all(r.ok for r in t.send([msg(1), msg(2, subs=big)]))


def test_unbatched_sends_one_request_per_message(api: SendGridDouble) -> None:
    t = transport(api, batch=False)
    assert all(r.ok for r in t.send([msg(i) for i in range(1, 26)]))
    assert t.requests == 25 and len(by_request(api)) == 25


def test_x_message_id_is_recorded_per_message(api: SendGridDouble) -> None:
    results = transport(api).send([msg(1), msg(2), msg(3, body="other")])
    expected = {int(a.outbox_id or 0): a.x_message_id for a in api.accepted}
    assert {r.message_id: r.provider_message_id for r in results} == expected
    assert len(set(expected.values())) == 2


# ---------------------------------------------------------------------- what the API rejects


def raw_client(api: SendGridDouble, key: str | None = None) -> sendgrid.SendGridAPIClient:
    return sendgrid.SendGridAPIClient(key if key is not None else api.api_key, host=api.url)


def good_body(n: int = 1) -> dict[str, object]:
    return {
        "personalizations": [{"to": [{"email": f"a{i}@example.com"}], "subject": "Hi",
                              "custom_args": {"outbox_id": str(i)}} for i in range(n)],
        "from": {"email": "care@pulse-demo.example"},
        "content": [{"type": "text/plain", "value": "Hello"},
                    {"type": "text/html", "value": "<p>Hello</p>"}],
    }


def post_error(api: SendGridDouble, body: dict[str, object]) -> tuple[int, list[dict[str, str]]]:
    with pytest.raises(http_errors.HTTPError) as info:
        raw_client(api).client.mail.send.post(request_body=body)
    errors = info.value.to_dict["errors"]
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    return info.value.status_code, errors


def test_a_valid_raw_body_is_accepted(api: SendGridDouble) -> None:
    resp = raw_client(api).client.mail.send.post(request_body=good_body(3))
    assert resp.status_code == 202 and resp.headers["X-Message-Id"]
    assert len(api.accepted) == 3


@pytest.mark.parametrize("case", [
    "custom_arg_not_string", "1001_personalizations", "duplicate_address", "html_before_text",
    "no_subject", "empty_content", "11_categories", "long_category", "duplicate_categories",
    "substitutions_too_big", "custom_args_too_big", "reserved_header", "no_personalizations",
])
def test_invalid_bodies_are_rejected_like_the_api(api: SendGridDouble, case: str) -> None:
    body = good_body(2)
    people = body["personalizations"]
    assert isinstance(people, list)
    field = None
    if case == "custom_arg_not_string":
        people[0]["custom_args"]["outbox_id"] = 17
        field = "personalizations.0.custom_args.outbox_id"
    elif case == "1001_personalizations":
        body = good_body(1001)
        field = "personalizations"
    elif case == "duplicate_address":
        people[1]["to"] = [{"email": "A0@example.com"}]
        field = "personalizations.1.to"
    elif case == "html_before_text":
        body["content"] = list(reversed(body["content"]))  # type: ignore[call-overload]
        field = "content.0.type"
    elif case == "no_subject":
        del people[1]["subject"]
        field = "subject"
    elif case == "empty_content":
        body["content"] = [{"type": "text/plain", "value": ""}]
        field = "content.0.value"
    elif case == "11_categories":
        body["categories"] = [f"c{i}" for i in range(11)]
        field = "categories"
    elif case == "long_category":
        body["categories"] = ["x" * 256]
        field = "categories.0"
    elif case == "duplicate_categories":
        body["categories"] = ["a", "a"]
        field = "categories"
    elif case == "substitutions_too_big":
        people[0]["substitutions"] = {"-x-": "y" * 10_001}
        field = "personalizations.0.substitutions"
    elif case == "custom_args_too_big":
        people[0]["custom_args"] = {"outbox_id": "1", "blob": "z" * 10_001}
        field = "personalizations.0.custom_args"
    elif case == "reserved_header":
        people[0]["headers"] = {"Subject": "sneaky"}
        field = "personalizations.0.headers"
    elif case == "no_personalizations":
        body["personalizations"] = []
        field = "personalizations"
    status, errors = post_error(api, body)
    assert status == 400
    assert field in {e["field"] for e in errors}, errors
    assert api.accepted == []


def test_schema_errors_name_the_field(api: SendGridDouble) -> None:
    if not api.schema_checked:
        pytest.skip("SendGrid OpenAPI spec missing (outside CI)")
    body = good_body(1)
    del body["from"]
    status, errors = post_error(api, body)
    assert status == 400 and any("'from' is a required property" in e["message"]
                                 for e in errors)
    body = good_body(1)
    body["personalizations"][0]["to"] = [{"email": "not-an-address"}]  # type: ignore[index]
    status, errors = post_error(api, body)
    assert status == 400 and "personalizations.0.to.0.email" in {e["field"] for e in errors}


def test_transport_reports_a_400_as_permanent_with_the_api_message(api: SendGridDouble) -> None:
    bad = msg(1, email="a@example.com")
    t = transport(api)
    plan = t.plan([bad])
    plan[0].body["content"] = []  # force a rejection through the transport's own path
    results = t._send_chunk(plan[0])
    assert results is not None and len(results) == 1
    assert not results[0].ok and not results[0].retryable
    assert "SendGrid rejected the request (400)" in (results[0].error or "")
    assert "content" in (results[0].error or "")


def test_401_without_or_with_a_wrong_key(api: SendGridDouble) -> None:
    with pytest.raises(http_errors.UnauthorizedError):
        raw_client(api, key="SG.wrong").client.mail.send.post(request_body=good_body())
    client = raw_client(api)
    client.client.request_headers.pop("Authorization")
    with pytest.raises(http_errors.UnauthorizedError) as info:
        client.client.mail.send.post(request_body=good_body())
    assert info.value.to_dict["errors"][0]["message"] == "authorization required"
    wrong = fake_api_key("wrong")
    with pytest.raises(TransportAuthError) as refused:
        SendGridTransport(api_key=wrong, host=api.url, sleep=Sleeps()).send([msg(1)])
    assert (refused.value.transport, refused.value.status, refused.value.results) == (
        "sendgrid", 401, [])
    assert "SendGrid refused the API key (HTTP 401" in str(refused.value)
    assert wrong not in str(refused.value) and "SG.wrong" not in str(refused.value)
    assert api.accepted == []


def test_a_403_stops_the_call_and_is_not_retried(api: SendGridDouble) -> None:
    api.fail_next(403, 1)
    sleeps = Sleeps()
    t = transport(api, sleep=sleeps)
    with pytest.raises(TransportAuthError) as refused:
        t.send([msg(1), msg(2, body="b2")])  # two requests: the second is never tried
    assert (refused.value.status, refused.value.results) == (403, [])
    assert "refused the API key's permissions (HTTP 403" in str(refused.value)
    assert (api.mail_requests, api.accepted, t.requests) == (1, [], 1)


# ---------------------------------------------------------------------- retries


def test_429_honours_retry_after_then_succeeds(api: SendGridDouble) -> None:
    api.fail_next(429, 2, retry_after=7)
    sleeps = Sleeps()
    t = transport(api, sleep=sleeps)
    results = t.send([msg(1), msg(2)])
    assert all(r.ok for r in results)
    assert sleeps == [7.0, 7.0]
    assert t.requests == 3 and api.mail_requests == 3
    assert api.accepted_counts() == Counter({"1": 1, "2": 1})


def test_500s_back_off_until_attempts_run_out(api: SendGridDouble) -> None:
    api.fail_next(500, 10)
    sleeps = Sleeps()
    t = transport(api, sleep=sleeps, max_attempts=4, backoff_base=1.0)
    results = t.send([msg(1), msg(2)])
    assert all(not r.ok and r.retryable for r in results)
    assert "SendGrid 500 after 4 attempt(s)" in (results[0].error or "")
    assert t.requests == 4 and len(sleeps) == 3
    for n, wait in enumerate(sleeps, start=1):  # equal jitter: [base*2^(n-1)/2, base*2^(n-1)]
        assert 2 ** (n - 1) / 2 <= wait <= 2 ** (n - 1)
    assert api.accepted == []


def test_429_asking_too_long_gives_up_for_this_run(api: SendGridDouble) -> None:
    api.fail_next(429, 1, retry_after=3600)
    sleeps = Sleeps()
    results = transport(api, sleep=sleeps, max_retry_after=300).send([msg(1)])
    assert not results[0].ok and results[0].retryable and sleeps == []


# ---------------------------------------------------------------------- in doubt


def test_a_hang_leaves_the_request_in_doubt_and_stops_the_run(api: SendGridDouble) -> None:
    api.hang()
    t = transport(api, timeout=0.5)
    messages = [msg(1), msg(2), msg(3, body="other")]
    results = t.send(messages)
    # the first request (1, 2) got no answer: no result, so the outbox keeps it `sending`;
    # the second was never attempted: retryable
    assert [(r.message_id, r.ok, r.retryable) for r in results] == [(3, False, True)]
    assert t.in_doubt == 2 and t.requests == 1
    api.normal()
    assert t.reconcile(messages) == {1: None, 2: None, 3: None}


def test_accept_then_hang_is_found_by_reconcile(api: SendGridDouble) -> None:
    api.accept_then_hang(after=1)
    t = transport(api, timeout=0.5)
    first = t.send([msg(1), msg(2)])
    assert all(r.ok for r in first)
    assert t.send([msg(3), msg(4, email="user1@example.com")]) == []  # accepted, unanswered
    api.normal()
    everything = [msg(1), msg(2), msg(3), msg(4, email="user1@example.com"), msg(5)]
    answer = t.reconcile(everything)
    xids = {int(a.outbox_id or 0): a.x_message_id for a in api.accepted}
    assert answer == {1: xids[1], 2: xids[2], 3: xids[3], 4: xids[4], 5: None}
    assert api.activity_requests >= 1


# ---------------------------------------------------------------------- the key


def test_api_key_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("PULSE_SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SENDGRID_DEFAULT", raising=False)
    get_settings(fresh=True)
    with pytest.raises(ConfigError, match="no SendGrid API key: set PULSE_SENDGRID_API_KEY"):
        resolve_api_key()
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT",
                       '{"conn_type": "sendgrid", "password": "SG.from-connection"}')
    assert resolve_api_key() == "SG.from-connection"
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-env")  # the alias, read by Settings
    get_settings(fresh=True)
    assert resolve_api_key() == "SG.from-env"
    monkeypatch.setenv("PULSE_SENDGRID_API_KEY", "SG.from-settings")
    get_settings(fresh=True)
    assert resolve_api_key() == "SG.from-settings"
    with pytest.raises(ConfigError):
        monkeypatch.delenv("PULSE_SENDGRID_API_KEY")
        monkeypatch.delenv("SENDGRID_API_KEY")
        monkeypatch.delenv("AIRFLOW_CONN_SENDGRID_DEFAULT")
        get_settings(fresh=True)
        SendGridTransport()


def test_the_key_is_never_logged_nor_shown(api: SendGridDouble,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    t = transport(api)
    api.fail_next(429, 1, retry_after=0)
    t.send([msg(1)])
    t.reconcile([msg(1)])
    assert api.api_key not in caplog.text
    assert api.api_key not in repr(t)


def test_bench_send_prints_both_modes_and_their_ratio(pulse_home: Path) -> None:
    """`pulse bench send` as a user runs it: every message accepted once in both modes, far
    fewer requests when batched (1,000 recipients per request at most)."""
    import json as _json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "pulse.cli", "bench", "send", "--messages",
                          "1200", "--format", "json"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = _json.loads(run.stdout)
    batched, single = figures["runs"]
    assert (batched["mode"], single["mode"]) == ("batched", "one per message")
    for r in (batched, single):
        assert r["sent"] == r["accepted"] == 1200 and r["messages_per_second"] > 0
    assert (batched["http_requests"], single["http_requests"]) == (2, 1200)
    assert figures["ratio"]["requests"] == 600.0

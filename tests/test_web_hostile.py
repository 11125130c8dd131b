"""Hostile requests against `pulse serve` as users run it (a subprocess, production settings):
chunked bodies past the cap get 413 while the server's memory stays flat, a huge header gets
431 while other requests still answer, non-ASCII tokens get 400, the access log never shows
a link token, rate limits cover /accounts and /webhooks and hold across workers (SQLite and
PostgreSQL), and the Host check, HSTS, the CSP of /u/ and the API docs switch."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import Engine

from pulse.outreach.links import CONSOLE
from pulse.outreach.render import UNSUBSCRIBE
from pulse.outreach.tokens import sign

pytestmark = pytest.mark.slow
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def pulse_serve(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Callable[..., Served]]:
    """`pulse_serve(*args, **env)`: `pulse serve` on the test's warehouse, stopped after."""
    started: list[Served] = []

    def start(*args: str, **env: str) -> Served:
        port = _free_port()
        monkeypatch.setenv("PULSE_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pulse.cli", "serve", "--host", "127.0.0.1", "--port",
                 str(port), *args], env={**os.environ, **env}, stdout=fh,
                stderr=subprocess.STDOUT, start_new_session=True)
        served = Served(port, proc, log)
        started.append(served)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"pulse serve exited:\n{served.log_text()[-3000:]}"
            assert time.monotonic() < deadline, f"pulse serve never answered:\n{served.log_text()}"
            try:
                if httpx.get(f"{served.base}/healthz", timeout=1).status_code == 200:
                    return served
            except httpx.HTTPError:
                time.sleep(0.1)

    yield start
    for served in started:
        stop(served)


def stop(served: Served) -> None:
    if served.proc.poll() is not None:
        return
    served.proc.send_signal(signal.SIGINT)
    try:
        served.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(timeout=10)


def _status(answer: bytes) -> int | None:
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(found.group(1)) if found else None


def _stream(port: int, head: bytes, pieces: Iterator[bytes]) -> tuple[int | None, int]:
    """Send `head`, then `pieces` while the server reads them; stop when it answers.
    Returns (status of the answer or None, bytes of `pieces` sent)."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head)
        try:
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered (or closed): stop sending
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass
        try:
            while len(answer) < 12:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return _status(answer), sent


def _rss_peak(pid: int, stop_flag: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop_flag.is_set():
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss
                                               for c in proc.children(recursive=True))
        except psutil.Error:
            return
        peak[0] = max(peak[0], rss)
        time.sleep(0.02)


# --------------------------------------------------------------------------- bodies


@sqlite_only
def test_a_chunked_body_past_the_cap_gets_413_with_memory_flat(
        pulse_serve: Callable[..., Served]) -> None:
    served = pulse_serve()
    before = psutil.Process(served.proc.pid).memory_info().rss
    flag, peak = threading.Event(), [before]
    watcher = threading.Thread(target=_rss_peak, args=(served.proc.pid, flag, peak))
    watcher.start()
    chunk = 64 * 1024
    total = 96 * 1024 * 1024  # 96 MiB, six times the webhook cap, without a signature
    block = b"%x\r\n" % chunk + b" " * chunk + b"\r\n"
    head = (b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        status, sent = _stream(served.port, head, iter([block] * (total // chunk)))
    finally:
        flag.set()
        watcher.join()
    assert status == 413
    assert sent < total  # refused as it streamed in, not after
    grown = (peak[0] - before) / 2**20
    assert grown < 48, f"the server grew by {grown:.0f} MiB on a refused body"
    # a declared length over the cap is refused before a byte of the body is sent
    status, _ = _stream(served.port, b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: %d\r\n\r\n" % (17 * 2**20), iter([]))
    assert status == 413
    assert httpx.get(f"{served.base}/healthz", timeout=5).status_code == 200


# --------------------------------------------------------------------------- headers


@sqlite_only
def test_a_huge_header_gets_431_and_others_still_answer(
        pulse_serve: Callable[..., Served]) -> None:
    served = pulse_serve()
    total = 16 * 1024 * 1024
    answers: list[float] = []

    def others() -> None:  # healthz keeps answering while the big header streams in
        with httpx.Client(base_url=served.base, timeout=5) as http:
            for _ in range(10):
                t0 = time.monotonic()
                assert http.get("/healthz").status_code == 200
                answers.append(time.monotonic() - t0)
                time.sleep(0.05)

    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(others)
        status, sent = _stream(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"X-Big: ", iter([b"a" * 65536] * (total // 65536)
                                                + [b"\r\n\r\n"]))
        job.result()
    assert status in (431, None) and sent < total, (status, sent)
    assert status == 431 or sent < 8 * 1024 * 1024
    assert len(answers) == 10 and max(answers) < 2
    # many small headers add up too
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(1000))
    status, _ = _stream(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many
                        + b"\r\n", iter([]))
    assert status == 431
    # a normal request with ordinary headers is fine
    assert httpx.get(f"{served.base}/healthz", headers={"X-Ok": "y" * 4000},
                     timeout=5).status_code == 200


# --------------------------------------------------------------------------- tokens


@sqlite_only
def test_non_ascii_tokens_get_400(pulse_serve: Callable[..., Served]) -> None:
    served = pulse_serve()
    bad = "%C3%A9t%C3%A9.%E2%80%8Bmac"  # "été.\u200bmac", percent-encoded as browsers do
    with httpx.Client(base_url=served.base, timeout=10) as http:
        for path in (f"/s/{bad}", f"/u/{bad}", f"/accounts/acc-1?t={bad}"):
            assert http.get(path).status_code == 400, path
        for path in (f"/s/{bad}", f"/u/{bad}"):
            res = http.post(path, data={"rating": "4"},
                            headers={"Sec-Fetch-Site": "same-origin"})
            assert res.status_code == 400, path


@sqlite_only
def test_the_access_log_never_records_a_link_token(pulse_serve: Callable[..., Served]) -> None:
    served = pulse_serve()
    survey = sign("survey", {"s": 1, "c": "con-a", "r": 4})
    unsubscribe = sign(UNSUBSCRIBE, {"c": "con-a"})
    account = sign(CONSOLE, {"a": "acc-1"})
    with httpx.Client(base_url=served.base, timeout=10) as http:
        assert http.get(f"/s/{survey}").status_code == 404  # no such survey: still logged
        http.post(f"/s/{survey}/comment", data={"comment": "x"})
        assert http.get(f"/u/{unsubscribe}").status_code == 404
        http.get(f"/accounts/acc-1?t={account}&x=1")
        http.get(f"/accounts/acc-1?x=1&t={account}")
    stop(served)
    log = served.log_text()
    for token in (survey, unsubscribe, account):
        assert token not in log and token.split(".")[1] not in log
    assert '"GET /s/*** HTTP/1.1" 404' in log
    assert '"POST /s/***/comment HTTP/1.1"' in log
    assert '"GET /u/*** HTTP/1.1" 404' in log
    assert '"GET /accounts/acc-1?t=***&x=1 HTTP/1.1"' in log
    assert '"GET /accounts/acc-1?x=1&t=*** HTTP/1.1"' in log


# --------------------------------------------------------------------------- rate limits


def test_rate_limits_cover_accounts_and_webhooks_and_hold_across_workers(
        pulse_serve: Callable[..., Served]) -> None:
    served = pulse_serve("--workers", "2", "--rate-limit", "6",
                         PULSE_RATE_LIMIT_BURST="3", PULSE_RATE_LIMIT_WEBHOOKS_PER_MINUTE="4")
    assert "(2 workers" in served.log_text()

    def hit(method: str, path: str) -> int:
        with httpx.Client(base_url=served.base, timeout=10) as http:  # a new connection each
            return http.request(method, path, content=b"[]" if method == "POST" else None).status_code

    def statuses(method: str, path: str, n: int) -> list[int]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: hit(method, path), range(n)))

    public = statuses("GET", "/u/not-a-token", 16)
    assert public.count(429) == 13 and public.count(400) == 3, public  # burst 3, both workers
    console = statuses("GET", "/accounts/acc-1?t=x", 12)
    assert console.count(429) == 9 and console.count(400) == 3, console
    hooks = statuses("POST", "/webhooks/sendgrid", 12)  # unsigned: 403 when let through
    assert hooks.count(429) == 10 and hooks.count(403) == 2, hooks
    with httpx.Client(base_url=served.base, timeout=10) as http:
        limited = http.get("/accounts/acc-1?t=x")
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 10
        assert http.get("/healthz").status_code == 200  # not limited


# --------------------------------------------------------------------------- headers, routes


@sqlite_only
def test_hosts_hsts_csp_and_api_docs(pulse_serve: Callable[..., Served]) -> None:
    plain = pulse_serve()
    with httpx.Client(base_url=plain.base, timeout=10, follow_redirects=False) as http:
        evil = http.get("/s/abc/", headers={"Host": "evil.example"})
        assert evil.status_code == 400 and "location" not in evil.headers
        ours = http.get("/s/abc/")
        assert ours.status_code == 307
        assert ours.headers["location"].startswith(f"http://127.0.0.1:{plain.port}/")
        # no proxy trusted: a forwarded scheme is ignored, no HSTS over plain http
        res = http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in res.headers
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert http.get(path).status_code == 404, path
        page = http.get("/u/" + sign(UNSUBSCRIBE, {"c": "nobody"}))
    assert page.status_code == 404
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "script-src" not in csp
    assert "style=" not in page.text
    styles = re.findall(r"<style>(.*?)</style>", page.text, flags=re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp

    proxied = pulse_serve("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
                          PULSE_WEB_API_DOCS="true")
    with httpx.Client(base_url=proxied.base, timeout=10) as http:
        res = http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert res.headers["strict-transport-security"] == "max-age=31536000"
        assert "strict-transport-security" not in http.get("/healthz").headers
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/docs").status_code == 200

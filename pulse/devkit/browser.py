"""The console in a real browser: Debian's Chromium driven by Playwright, and the web app
served for real (`pulse serve` in a process of its own) on a free localhost port.

Playwright's Python wheel carries its driver; the browser is the system's `/usr/bin/chromium`
(installed by `make test`), never one that Playwright downloads. Used by tests/test_browser.py
and by `pulse demo screenshots` (pulse/devkit/screenshots.py).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (we run as root in CI), and nothing that reaches out on its own.
LAUNCH_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync")
STARTUP_SECONDS = 60.0


def chromium_missing() -> str | None:
    """None when the system Chromium is there, else why not."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                "(apt-get install chromium)")
    return None


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from /usr/bin/chromium (no browser download)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=list(LAUNCH_ARGS))


def free_port() -> int:
    """A TCP port nobody listens on at the moment (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeError(RuntimeError):
    """`pulse serve` did not come up."""


@contextmanager
def served(database_url: str, home: Path, *, extra_env: dict[str, str] | None = None,
           tries: int = 3) -> Iterator[str]:
    """Run `pulse serve` (one worker, uvicorn, the production code path) on a free port of
    127.0.0.1 against `database_url`, with `home` as PULSE_HOME; yield its base URL once
    `/healthz` answers, and stop it afterwards. Its log is `home`/serve.log.

    The console's request limit is off (`--rate-limit 0`): a test asks faster than a person;
    the sign-in limits stay as configured."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update({"PULSE_HOME": str(home), "PULSE_DATABASE_URL": database_url,
                **(extra_env or {})})
    log_path = home / "serve.log"
    for attempt in range(tries):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pulse.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1", "--rate-limit", "0",
                 "--no-access-log"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            if _wait_up(proc, base):
                yield base
                return
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            if "address already in use" in tail.lower() and attempt + 1 < tries:
                continue  # another process took the port between our look and its bind
            raise ServeError(f"pulse serve did not start on {base}:\n{tail}")
        finally:
            _stop(proc)
    raise ServeError(f"pulse serve did not start after {tries} tries")  # pragma: no cover


def _wait_up(proc: subprocess.Popen[bytes], base: str) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


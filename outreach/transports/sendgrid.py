"""The SendGrid transport: the official `sendgrid` client, batched by shared body.

Messages that share a body (same `body_key`, sender, reply-to and categories) travel in one
`POST /v3/mail/send` with one personalization per recipient (at most 1,000, each address at
most once per request), the recipient's own subject, substitutions, headers and
`custom_args` (always `outbox_id`). 429 and 5xx answers are retried with exponential backoff
and jitter, honouring `Retry-After`; a timeout is *not* retried in the same run, because the
provider may have accepted the request: the outbox leaves such rows in doubt and the next run
asks the Email Activity API (`reconcile`) which of them SendGrid already has.

The API key comes from `PULSE_SENDGRID_API_KEY`, else `SENDGRID_API_KEY`, else the password of
the Airflow Connection `sendgrid_default`. It is never logged, never part of `repr()`.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import time
import urllib.error
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pulse.core.errors import ConfigError, SendGridError, TransportAuthError
from pulse.core.secrets import check_secret_shape, redact, remember_secret, resolve_secret
from pulse.core.settings import get_settings
from pulse.outreach.message import Outgoing, SendResult

log = logging.getLogger(__name__)

# python_http_client logs every request's headers (the Authorization header among them) at
# DEBUG: keep that logger above DEBUG whatever the application's root level is.
logging.getLogger("python_http_client").setLevel(logging.INFO)

MAX_PERSONALIZATIONS = 1000  # per request (Mail Send API limit)
MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_BODY_BYTES = 20 * 1024 * 1024  # the whole request
_BODY_HEADROOM = 512 * 1024  # we stop filling a request well before the limit
RECONCILE_IDS_PER_QUERY = 50  # outbox ids OR-ed into one Email Activity query
CONNECTION_ID = "sendgrid_default"


def resolve_api_key() -> str:
    """The API key: settings (`PULSE_SENDGRID_API_KEY` or `SENDGRID_API_KEY`), then the Airflow
    Connection `sendgrid_default` (its password). Raises ConfigError when none is set."""
    key = resolve_secret(get_settings().sendgrid_api_key, CONNECTION_ID)
    if key:
        return check_secret_shape(key, what="the SendGrid API key")
    raise ConfigError(
        "no SendGrid API key: set PULSE_SENDGRID_API_KEY or SENDGRID_API_KEY, or define the "
        f"Airflow Connection {CONNECTION_ID!r} with the key as its password"
    )



@dataclass(frozen=True)
class _Chunk:
    """One request's worth of messages and its body."""

    messages: list[Outgoing]
    body: dict[str, Any]


class SendGridTransport:
    """Delivers outbox messages through SendGrid's v3 Mail Send API.

    Parameters
    ----------
    api_key, host
        Default: `resolve_api_key()` and `PULSE_SENDGRID_HOST`.
    timeout
        Seconds to wait for one HTTP answer.
    max_attempts
        Attempts per request for 429 and 5xx answers (and refused connections).
    batch
        False sends one request per message (the benchmark's baseline).
    sleep
        Called with the seconds to wait between attempts (tests pass a recorder).
    """

    name = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        batch: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 300.0,
    ) -> None:
        import sendgrid

        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1 (not {max_attempts})")
        self.host = (host or get_settings().sendgrid_host).rstrip("/")
        key = (check_secret_shape(api_key, what="the SendGrid API key") if api_key
               else resolve_api_key())
        remember_secret(key)
        self._client = sendgrid.SendGridAPIClient(key, host=self.host)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.batch = batch
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.requests = 0  # HTTP requests made (every attempt counts)
        self.in_doubt = 0  # messages whose request got no answer
        self._random = random.Random()

    def __repr__(self) -> str:  # never the key
        return f"SendGridTransport(host={self.host!r}, batch={self.batch})"

    # ------------------------------------------------------------------ send

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        """Results in the order given, except for messages left *in doubt*: a request that
        timed out or lost its connection may have been accepted, so its messages get no
        result at all. The outbox keeps them `sending` and the next run reconciles them
        (`reconcile`) instead of sending them again. After such a failure the rest of this
        call is not attempted (retryable: nothing of it reached SendGrid)."""
        results: dict[int, SendResult] = {}
        broken: str | None = None
        for chunk in self.plan(messages):
            if broken is not None:
                for m in chunk.messages:
                    results[m.message_id] = SendResult(
                        m.message_id, ok=False, retryable=True,
                        error=f"not attempted: an earlier request {broken}")
                continue
            try:
                answers = self._send_chunk(chunk)
            except TransportAuthError as exc:  # hand back what earlier requests achieved
                exc.results = [results[m.message_id] for m in messages
                               if m.message_id in results]
                raise
            if answers is None:
                broken = "to SendGrid in this run was left in doubt"
                self.in_doubt += len(chunk.messages)
                continue
            for r in answers:
                results[r.message_id] = r
        return [results[m.message_id] for m in messages if m.message_id in results]

    def plan(self, messages: Sequence[Outgoing]) -> list[_Chunk]:
        """The requests `send` would make: grouped by shared part, at most 1,000
        personalizations each, every address at most once per request."""
        if not self.batch:
            return [_Chunk([m], _request_body([m])) for m in messages]
        groups: dict[tuple[Any, ...], list[Outgoing]] = defaultdict(list)
        singles: list[Outgoing] = []
        for m in messages:
            if _substitution_bytes(m) > MAX_SUBSTITUTION_BYTES:
                singles.append(m)  # sent alone, substitutions applied here
            else:
                groups[_shared_key(m)].append(m)
        chunks: list[_Chunk] = []
        for group in groups.values():
            chunks.extend(_split_group(group))
        chunks.extend(_Chunk([m], _request_body([m], inline=True)) for m in singles)
        return chunks

    def _send_chunk(self, chunk: _Chunk) -> list[SendResult] | None:
        """The chunk's results; None when the request is in doubt (maybe accepted)."""
        from python_http_client import exceptions as http_errors

        ids = [m.message_id for m in chunk.messages]
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                resp = self._client.client.mail.send.post(
                    request_body=chunk.body, timeout=self.timeout)
            except http_errors.HTTPError as exc:
                status = int(exc.status_code)
                detail = _api_error(exc)
                if status in (401, 403):
                    raise _key_refused(status, detail, "Mail Send") from None
                if status == 429 or status >= 500:
                    wait = self._wait_for(exc, attempt)
                    if attempt < self.max_attempts and wait is not None:
                        log.warning("SendGrid answered %d (%s); retrying in %.1f s "
                                    "(attempt %d of %d)", status, detail, wait, attempt,
                                    self.max_attempts)
                        self.sleep(wait)
                        continue
                    return _fail(ids, f"SendGrid {status} after {attempt} attempt(s): {detail}",
                                 retryable=True)
                return _fail(ids, f"SendGrid rejected the request ({status}): {detail}",
                             retryable=False)
            except TimeoutError as exc:
                log.warning(_in_doubt(exc, self.timeout, len(ids)))
                return None
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, TimeoutError):
                    log.warning(_in_doubt(reason, self.timeout, len(ids)))
                    return None
                if isinstance(reason, ConnectionRefusedError) and attempt < self.max_attempts:
                    # Nothing reached the server: safe to try again now.
                    wait = self._backoff(attempt)
                    log.warning("SendGrid at %s refused the connection; retrying in %.1f s",
                                self.host, wait)
                    self.sleep(wait)
                    continue
                if isinstance(reason, ConnectionRefusedError):
                    return _fail(ids, f"cannot reach SendGrid at {self.host}: {reason}",
                                 retryable=True)
                log.warning(_in_doubt(reason, self.timeout, len(ids)))
                return None
            except (ConnectionError, OSError) as exc:  # reset mid-request: in doubt
                log.warning(_in_doubt(exc, self.timeout, len(ids)))
                return None
            provider_id = resp.headers.get("X-Message-Id")
            if resp.status_code != 202 or not provider_id:
                return _fail(ids, f"unexpected SendGrid answer {resp.status_code} without "
                             "X-Message-Id", retryable=True)
            return [SendResult(i, ok=True, provider_message_id=provider_id) for i in ids]

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)  # "equal jitter"

    def _wait_for(self, exc: Any, attempt: int) -> float | None:
        """Seconds to wait before the next attempt; None when the server asks for longer than
        we are willing to wait in this run."""
        headers = getattr(exc, "headers", None)
        asked = _retry_after(headers)
        if asked is None:
            return self._backoff(attempt)
        if asked > self.max_retry_after:
            return None
        return asked

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        """Ask the Email Activity API which of these outbox ids SendGrid accepted.

        Query: `(unique_args['outbox_id']="17") OR (unique_args['outbox_id']="18") ...`
        (custom args of v3 sends are the Activity Feed's `unique_args`). A hit is matched back
        to its outbox id by recipient when that is unambiguous, else by reading the message's
        details (`GET /v3/messages/{msg_id}`). Raises SendGridError when the provider cannot
        be asked: the caller must not resend what it cannot rule out."""
        answer: dict[int, str | None] = {m.message_id: None for m in messages}
        todo = list(messages)
        for start in range(0, len(todo), RECONCILE_IDS_PER_QUERY):
            part = todo[start:start + RECONCILE_IDS_PER_QUERY]
            query = " OR ".join(f"(unique_args['outbox_id']=\"{m.message_id}\")" for m in part)
            found = self._activity_get(None, {"query": query, "limit": 1000})
            by_email: dict[str, list[int]] = defaultdict(list)
            for m in part:
                by_email[m.to_email.strip().lower()].append(m.message_id)
            for hit in found.get("messages") or []:
                msg_id = str(hit.get("msg_id") or "")
                provider_id = msg_id.split(".", 1)[0] or None
                candidates = by_email.get(str(hit.get("to_email", "")).strip().lower(), [])
                if len(candidates) == 1:
                    answer[candidates[0]] = provider_id
                    continue
                detail = self._activity_get(msg_id, None)
                outbox_id = _unique_arg(detail.get("unique_args"), "outbox_id")
                if outbox_id is not None and outbox_id in answer:
                    answer[outbox_id] = provider_id
        accepted = sum(v is not None for v in answer.values())
        log.info("reconciled %d in-doubt message(s) with SendGrid: %d accepted, %d never seen",
                 len(answer), accepted, len(answer) - accepted)
        return answer

    def _activity_get(self, msg_id: str | None, params: dict[str, Any] | None) -> dict[str, Any]:
        from python_http_client import exceptions as http_errors

        endpoint = self._client.client.messages
        if msg_id is not None:
            endpoint = endpoint._(msg_id)
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                resp = endpoint.get(query_params=params, timeout=self.timeout)
                return resp.to_dict or {}
            except http_errors.HTTPError as exc:
                status = int(exc.status_code)
                if status in (401, 403):
                    raise _key_refused(status, _api_error(exc), "Email Activity") from None
                wait = self._wait_for(exc, attempt)
                if (status == 429 or status >= 500) and attempt < self.max_attempts \
                        and wait is not None:
                    self.sleep(wait)
                    continue
                raise SendGridError(
                    f"the Email Activity API answered {status}: {_api_error(exc)}") from None
            except (OSError, urllib.error.URLError) as exc:
                if attempt < self.max_attempts:
                    self.sleep(self._backoff(attempt))
                    continue
                raise SendGridError(
                    f"cannot reach the Email Activity API at {self.host}: {exc}") from None


# ---------------------------------------------------------------------- request bodies


def _shared_key(m: Outgoing) -> tuple[Any, ...]:
    return (m.body_key, m.from_email, m.from_name or "", m.reply_to or "",
            _categories(m))


def _categories(m: Outgoing) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for c in (m.categories or (m.kind,)):
        c = str(c)[:MAX_CATEGORY_CHARS]
        if c:
            seen.setdefault(c, None)
    return tuple(seen)[:MAX_CATEGORIES]


def _substitution_bytes(m: Outgoing) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in m.substitutions.items())


def _personalization(m: Outgoing, *, inline: bool = False) -> dict[str, Any]:
    to: dict[str, str] = {"email": m.to_email}
    if m.to_name:
        to["name"] = m.to_name
    p: dict[str, Any] = {"to": [to], "subject": m.subject}
    if m.substitutions and not inline:
        p["substitutions"] = {str(k): str(v) for k, v in m.substitutions.items()}
    if m.headers:
        p["headers"] = {str(k): str(v) for k, v in m.headers.items()}
    args = {str(k): str(v) for k, v in m.custom_args.items()}
    args["outbox_id"] = str(m.message_id)
    p["custom_args"] = args
    return p


def _request_body(messages: Sequence[Outgoing], *, inline: bool = False,
                  personalizations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    first = messages[0]
    sender: dict[str, str] = {"email": first.from_email}
    if first.from_name:
        sender["name"] = first.from_name
    text = first.full_text() if inline else first.text
    html = first.full_html() if inline else first.html
    content = [c for c in ({"type": "text/plain", "value": text},
                           {"type": "text/html", "value": html}) if c["value"]]
    body: dict[str, Any] = {
        "personalizations": personalizations
        if personalizations is not None
        else [_personalization(m, inline=inline) for m in messages],
        "from": sender,
        "content": content,
    }
    if first.reply_to:
        body["reply_to"] = {"email": first.reply_to}
    cats = _categories(first)
    if cats:
        body["categories"] = list(cats)
    return body


def _split_group(group: list[Outgoing]) -> list[_Chunk]:
    """Round k holds every address's k-th message (so no address repeats in a request); each
    round is cut into requests of at most 1,000 personalizations and well under 20 MB."""
    rounds: list[list[Outgoing]] = []
    seen: dict[str, int] = defaultdict(int)
    for m in group:
        addr = m.to_email.strip().lower()
        k = seen[addr]
        seen[addr] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(m)
    chunks: list[_Chunk] = []
    shared = len(json.dumps(_request_body(group[:1], personalizations=[])))
    for members in rounds:
        batch: list[Outgoing] = []
        people: list[dict[str, Any]] = []
        size = shared
        for m in members:
            p = _personalization(m)
            p_size = len(json.dumps(p)) + 2
            if batch and (len(batch) >= MAX_PERSONALIZATIONS
                          or size + p_size > MAX_BODY_BYTES - _BODY_HEADROOM):
                chunks.append(_Chunk(batch, _request_body(batch, personalizations=people)))
                batch, people, size = [], [], shared
            batch.append(m)
            people.append(p)
            size += p_size
        if batch:
            chunks.append(_Chunk(batch, _request_body(batch, personalizations=people)))
    return chunks


# ---------------------------------------------------------------------- answers


def _fail(ids: Iterable[int], error: str, *, retryable: bool) -> list[SendResult]:
    return [SendResult(i, ok=False, error=error, retryable=retryable) for i in ids]


def _key_refused(status: int, detail: str, api: str) -> TransportAuthError:
    """401/403: the key is wrong, revoked or lacks the scope; retrying cannot help."""
    what = "refused the API key" if status == 401 else "refused the API key's permissions"
    return TransportAuthError(redact(
        f"transport 'sendgrid': SendGrid {what} (HTTP {status} from the {api} API: {detail}); "
        "nothing more is sent in this run and the messages stay queued: fix "
        "PULSE_SENDGRID_API_KEY (or SENDGRID_API_KEY, or the Airflow Connection "
        f"{CONNECTION_ID!r}) and run again"), transport="sendgrid", status=status)


def _in_doubt(exc: BaseException | str, timeout: float, n: int) -> str:
    # a URLError's reason may be a bare string
    what = "timed out" if isinstance(exc, TimeoutError) else "lost its connection"
    return (f"a SendGrid request for {n} message(s) {what} ({type(exc).__name__}, timeout "
            f"{timeout:g} s): SendGrid may have accepted it, so those messages stay in doubt "
            "and are reconciled before any resend")


def _api_error(exc: Any) -> str:
    """SendGrid's own words from an error answer (`{"errors": [{"message", "field"}]}`)."""
    body = getattr(exc, "body", b"") or b""
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        parts = []
        for e in data.get("errors", []):
            field = e.get("field")
            msg = e.get("message", "")
            parts.append(f"{field}: {msg}" if field and field != "null" else msg)
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text.strip()[:300] or str(getattr(exc, "reason", "")) or "no details"


def _retry_after(headers: Any) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or HTTP-date), else from SendGrid's
    `X-RateLimit-Reset` (epoch seconds); None when neither is present."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


def _unique_arg(value: Any, key: str) -> int | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict) and key in value:
        try:
            return int(value[key])
        except (TypeError, ValueError):
            return None
    return None

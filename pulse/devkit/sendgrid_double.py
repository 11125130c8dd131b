"""A local double of the SendGrid v3 API: Mail Send and the Email Activity query.

`POST /v3/mail/send` checks what the real API checks: the bearer key (401), the request body
against the `/v3/mail/send` request schema of SendGrid's published OpenAPI description
(`specs/sendgrid/tsg_mail_v3.json`, found in `$PULSE_SPECS` or the shared folder's `specs/`, see pulse/shared.py), and
the rules the API enforces beyond the schema (1-1,000 personalizations, each address once per
request, string custom args within 10,000 bytes, text/plain before text/html, a subject for
every personalization, categories, substitutions within 10,000 bytes, 20 MB per request).
Errors come back as SendGrid shapes them: `{"errors": [{"message", "field", "help"}]}`.
A 202 carries an `X-Message-Id`; every accepted personalization is recorded.

`GET /v3/messages?query=...` answers the Email Activity query language for the terms Pulse
uses (`unique_args['k']="v"`, `to_email="..."`, `msg_id="..."`, joined by OR), and
`GET /v3/messages/{msg_id}` returns one message with its `unique_args`.

Tests steer it: `fail_next(429|500|401|403, n, retry_after=)`, `hang()` (hold requests, accept
nothing), `accept_then_hang()` (accept, then never answer: the in-doubt case), `normal()`, and
`latency` (seconds every mail send takes before it is accepted and answered, like a slow
provider; also `SendGridDouble(latency=1.0)`). `api_key` may be changed while it runs (a
rotated key).

    with SendGridDouble() as api:
        transport = SendGridTransport(api_key=api.api_key, host=api.url)
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pulse.core.errors import ConfigError
from pulse.core.settings import env_flag

log = logging.getLogger(__name__)

SPEC_NAME = "sendgrid/tsg_mail_v3.json"
REQUEST_SCHEMA_POINTER = "#/components/requestBodies/PostMailSend/content/application~1json/schema"
MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}
_AUTH_ERRORS = {401: "The provided authorization grant is invalid, expired, or revoked",
                403: "access forbidden"}
_ERRORS_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


def spec_path() -> Path:
    """Where SendGrid's OpenAPI description of the Mail API is expected."""
    from pulse.core.settings import get_settings
    from pulse.core.shared import shared_path

    root = get_settings().specs
    return root.expanduser() / SPEC_NAME if root else shared_path("specs", SPEC_NAME)


def load_request_validator(path: Path | None = None) -> Any | None:
    """A jsonschema validator for the `/v3/mail/send` request body, $refs resolved inside the
    spec document. None (with a warning) when the spec is missing; under CI=true a missing spec
    is an error, so tests fail rather than quietly check less."""
    path = path or spec_path()
    if not path.is_file():
        why = f"SendGrid OpenAPI spec not found at {path} (set PULSE_SPECS)"
        if env_flag("CI"):
            raise ConfigError(f"{why}: required under CI=true")
        warnings.warn(f"{why}; the double checks only its own rules", stacklevel=2)
        return None
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = json.loads(path.read_text(encoding="utf-8"))
    uri = "urn:sendgrid:tsg_mail_v3"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(spec, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": uri + REQUEST_SCHEMA_POINTER}, registry=registry,
                                format_checker=FormatChecker())


@dataclass(frozen=True)
class Accepted:
    """One personalization the double accepted."""

    outbox_id: str | None
    email: str
    x_message_id: str
    msg_id: str  # as the Activity Feed and the Event Webhook name it
    subject: str | None
    from_email: str
    custom_args: dict[str, str]
    categories: tuple[str, ...]
    at: datetime


class ApiError(Exception):
    def __init__(self, status: int, errors: list[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _err(message: str, field_: str | None = None, help_: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field_, "help": help_}


@dataclass
class _Mode:
    kind: str = "normal"  # normal, hang, accept_then_hang
    after: int = 0  # requests to serve normally before the mode applies
    fail_status: int = 0
    fail_left: int = 0
    retry_after: float | None = None


@dataclass
class _State:
    accepted: list[Accepted] = field(default_factory=list)
    mail_requests: int = 0
    activity_requests: int = 0
    rejected: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    held: int = 0  # requests currently hanging


def fake_api_key(label: str) -> str:
    """A SendGrid-shaped key made up at run time (`SG.<label>-<random>.<random>`): tests and
    benchmarks use it so that no key-shaped literal is ever committed."""
    return f"SG.{label}-{secrets.token_urlsafe(12)}.{secrets.token_urlsafe(24)}"


class SendGridDouble:
    """The double, served on 127.0.0.1 at a free port while the context is open."""

    def __init__(self, *, api_key: str | None = None, validate_schema: bool = True,
                 spec: Path | None = None, latency: float = 0.0) -> None:
        self.api_key = api_key or fake_api_key("double")
        self.latency = latency
        self._validator = load_request_validator(spec) if validate_schema else None
        self._lock = threading.Lock()
        self._mode = _Mode()
        self._state = _State()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def schema_checked(self) -> bool:
        return self._validator is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the SendGrid double is not running")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # typeshed allows bytes; a bound AF_INET socket gives str
        return f"http://{host}:{port}"

    def start(self) -> SendGridDouble:
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="sendgrid-double")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SendGridDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ steering

    def fail_next(self, status: int, n: int = 1, *, retry_after: float | None = None) -> None:
        """The next `n` mail sends answer `status` (429, 5xx, 401 or 403) and accept nothing."""
        with self._lock:
            self._mode.fail_status, self._mode.fail_left = status, n
            self._mode.retry_after = retry_after

    def hang(self, *, after: int = 0) -> None:
        """After `after` more normal mail sends, hold every request: no answer, no acceptance."""
        self._set_mode("hang", after)

    def accept_then_hang(self, *, after: int = 0) -> None:
        """After `after` more normal mail sends, accept each request but never answer."""
        self._set_mode("accept_then_hang", after)

    def normal(self) -> None:
        """Answer normally again; held requests are dropped unanswered (never accepted later)."""
        with self._lock:
            self._mode = _Mode()
            self._release.set()
            self._release = threading.Event()

    def _set_mode(self, kind: str, after: int) -> None:
        with self._lock:
            self._mode.kind, self._mode.after = kind, after

    # ------------------------------------------------------------------ what it saw

    @property
    def accepted(self) -> list[Accepted]:
        with self._lock:
            return list(self._state.accepted)

    def accepted_counts(self) -> Counter[str]:
        """How many times each outbox id was accepted."""
        with self._lock:
            return Counter(a.outbox_id for a in self._state.accepted if a.outbox_id)

    @property
    def mail_requests(self) -> int:
        with self._lock:
            return self._state.mail_requests

    @property
    def activity_requests(self) -> int:
        with self._lock:
            return self._state.activity_requests

    @property
    def held(self) -> int:
        with self._lock:
            return self._state.held

    @property
    def rejected(self) -> list[tuple[int, list[dict[str, Any]]]]:
        with self._lock:
            return list(self._state.rejected)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # ------------------------------------------------------------------ the API

    def check_auth(self, header: str | None) -> None:
        if not header:
            raise ApiError(401, [_err("authorization required")])
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(),
                                                                   self.api_key):
            raise ApiError(401, [_err(_AUTH_ERRORS[401])])

    def mail_send(self, raw: bytes) -> tuple[str, str]:
        """Handle one mail send; returns ("answer", x_message_id) or ("hold", "")."""
        with self._lock:
            self._state.mail_requests += 1
            mode = self._mode
            if mode.fail_left > 0:
                mode.fail_left -= 1
                headers = {"Retry-After": f"{mode.retry_after:g}"} \
                    if mode.retry_after is not None else {}
                if mode.fail_status == 429:
                    raise ApiError(429, [_err("too many requests")], headers)
                if mode.fail_status in _AUTH_ERRORS:
                    raise ApiError(mode.fail_status, [_err(_AUTH_ERRORS[mode.fail_status])])
                raise ApiError(mode.fail_status, [_err("internal server error")], headers)
            hanging = mode.kind
            if hanging != "normal" and mode.after > 0:
                mode.after -= 1
                hanging = "normal"
            if hanging == "hang":
                self._state.held += 1
                return "hold", ""
        if self.latency > 0:
            time.sleep(self.latency)
        body = self.validate(raw)
        with self._lock:
            xid = self._accept(body)
            if hanging == "accept_then_hang":
                self._state.held += 1
                return "hold", xid
        return "answer", xid

    def validate(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, [_err("content too large", None)])
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, [_err("Bad Request", None)]) from None
        if not isinstance(body, dict):
            raise ApiError(400, [_err("Bad Request", None)])
        errors: list[dict[str, Any]] = []
        if self._validator is not None:
            for e in sorted(self._validator.iter_errors(body), key=lambda e: list(e.path)):
                where = ".".join(str(p) for p in e.absolute_path) or None
                errors.append(_err(e.message, where, _ERRORS_HELP))
                if len(errors) >= 10:
                    break
        errors.extend(_rules(body))
        if errors:
            with self._lock:
                self._state.rejected.append((400, errors))
            raise ApiError(400, errors)
        return body

    def _accept(self, body: dict[str, Any]) -> str:
        self._seq += 1
        xid = secrets.token_urlsafe(16)[:22]
        now = datetime.now(UTC)
        sender = body["from"]["email"]
        cats = tuple(body.get("categories") or ())
        for i, p in enumerate(body["personalizations"]):
            args = {str(k): v for k, v in (p.get("custom_args") or {}).items()}
            for to in p.get("to", []):
                self._state.accepted.append(Accepted(
                    outbox_id=args.get("outbox_id"), email=to["email"], x_message_id=xid,
                    msg_id=f"{xid}.filterdrecv-p1las1-{self._seq}-{i}-0", subject=p.get(
                        "subject", body.get("subject")), from_email=sender, custom_args=args,
                    categories=cats, at=now))
        return xid

    def activity(self, query: str | None, limit: int) -> dict[str, Any]:
        with self._lock:
            self._state.activity_requests += 1
            rows = list(self._state.accepted)
        terms = _parse_query(query) if query else []
        hits = [a for a in rows if not terms or any(_matches(a, t) for t in terms)]
        return {"messages": [_activity_row(a) for a in hits[:limit]]}

    def activity_message(self, msg_id: str) -> dict[str, Any]:
        with self._lock:
            self._state.activity_requests += 1
            for a in self._state.accepted:
                if a.msg_id == msg_id:
                    return {**_activity_row(a), "unique_args": dict(a.custom_args),
                            "categories": list(a.categories), "events": []}
        raise ApiError(404, [_err("Not Found")])


def _activity_row(a: Accepted) -> dict[str, Any]:
    return {"from_email": a.from_email, "msg_id": a.msg_id, "subject": a.subject or "",
            "to_email": a.email, "status": "processed", "opens_count": 0, "clicks_count": 0,
            "last_event_time": a.at.strftime("%Y-%m-%dT%H:%M:%SZ")}


_TERM = re.compile(
    r"""\(?\s*(?:unique_args\[['"](?P<arg>[^'"]+)['"]\]|(?P<field>to_email|msg_id|subject|from_email))
        \s*=\s*["'](?P<value>[^"']*)["']\s*\)?""", re.VERBOSE)


def _parse_query(query: str) -> list[tuple[str, str]]:
    """The OR-ed equality terms of an Activity query; ApiError 400 on anything else."""
    terms: list[tuple[str, str]] = []
    for part in re.split(r"\s+OR\s+", query.strip()):
        m = _TERM.fullmatch(part.strip())
        if not m:
            raise ApiError(400, [_err(f"invalid query: {part!r}", "query")])
        key = f"unique_args.{m['arg']}" if m["arg"] else m["field"]
        terms.append((key, m["value"]))
    return terms


def _matches(a: Accepted, term: tuple[str, str]) -> bool:
    key, value = term
    if key.startswith("unique_args."):
        return a.custom_args.get(key.split(".", 1)[1]) == value
    if key == "to_email":
        return a.email.lower() == value.lower()
    if key == "msg_id":
        return a.msg_id == value
    if key == "subject":
        return (a.subject or "") == value
    return a.from_email.lower() == value.lower()


def _rules(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What the Mail Send API enforces beyond its schema."""
    errors: list[dict[str, Any]] = []
    people = body.get("personalizations")
    if not isinstance(people, list) or not people:
        return [_err("The personalizations field is required and must have at least one "
                     "personalization.", "personalizations", _ERRORS_HELP + "#-Personalizations")]
    if len(people) > MAX_PERSONALIZATIONS:
        errors.append(_err("The personalizations field may not have more than 1000 "
                           "personalizations per request.", "personalizations",
                           _ERRORS_HELP + "#-Personalizations"))
    seen: dict[str, str] = {}
    subject_top = isinstance(body.get("subject"), str) and body["subject"] != ""
    for i, p in enumerate(people):
        if not isinstance(p, dict):
            continue
        for kind in ("to", "cc", "bcc"):
            for j, r in enumerate(p.get(kind) or []):
                addr = str(r.get("email", "") if isinstance(r, dict) else "").strip().lower()
                if not addr:
                    continue
                if addr in seen:
                    errors.append(_err(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{addr}] in the personalizations.{i}.{kind} field.",
                        f"personalizations.{i}.{kind}",
                        _ERRORS_HELP + "#message.recipient.duplicate"))
                else:
                    seen[addr] = f"personalizations.{i}.{kind}.{j}"
        if not p.get("to"):
            errors.append(_err("The to array is required for all personalization objects, and "
                               "must have at least one email object with a valid email address.",
                               f"personalizations.{i}.to", _ERRORS_HELP + "#-To"))
        if not subject_top and not body.get("template_id") and not p.get("subject"):
            errors.append(_err(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.", "subject", _ERRORS_HELP + "#message.subject"))
        args = p.get("custom_args")
        if isinstance(args, dict):
            for k, v in args.items():
                if not isinstance(v, str):
                    errors.append(_err(
                        f"Invalid type. Expected: string, given: {_json_type(v)}.",
                        f"personalizations.{i}.custom_args.{k}",
                        _ERRORS_HELP + "#message.custom_args"))
            if len(json.dumps(args, ensure_ascii=False).encode()) > MAX_CUSTOM_ARGS_BYTES:
                errors.append(_err("The custom_args may not exceed 10000 bytes.",
                                   f"personalizations.{i}.custom_args",
                                   _ERRORS_HELP + "#message.custom_args"))
        subs = p.get("substitutions")
        if isinstance(subs, dict):
            size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in subs.items())
            if size > MAX_SUBSTITUTION_BYTES:
                errors.append(_err("The substitutions may not exceed 10000 bytes per "
                                   "personalization.", f"personalizations.{i}.substitutions",
                                   _ERRORS_HELP + "#message.personalizations.substitutions"))
        for name in (p.get("headers") or {}) if isinstance(p.get("headers"), dict) else ():
            if str(name).lower() in RESERVED_HEADERS:
                errors.append(_err(f"The header {name!r} is reserved and may not be set.",
                                   f"personalizations.{i}.headers",
                                   _ERRORS_HELP + "#message.headers"))
        if len(errors) >= 20:
            break
    content = body.get("content")
    if not body.get("template_id"):
        if not isinstance(content, list) or not content:
            errors.append(_err("Unless a valid template_id is provided, the content parameter "
                               "is required. There must be at least one defined content block. "
                               "We typically suggest both text/plain and text/html blocks are "
                               "included, but only one block is required.", "content",
                               _ERRORS_HELP + "#message.content"))
    if isinstance(content, list):
        types = [c.get("type") for c in content if isinstance(c, dict)]
        for i, c in enumerate(content):
            if isinstance(c, dict) and not c.get("value"):
                errors.append(_err("The content value must be a string at least one "
                                   "character in length.", f"content.{i}.value",
                                   _ERRORS_HELP + "#message.content.value"))
        if "text/plain" in types and types.index("text/plain") != 0 or (
                "text/html" in types and "text/plain" in types
                and types.index("text/html") < types.index("text/plain")):
            errors.append(_err("If present, text/plain and text/html may only be provided in "
                               "this order: text/plain, text/html.", "content.0.type",
                               _ERRORS_HELP + "#message.content.type"))
        if len(set(types)) != len(types):
            errors.append(_err("Each content type may only appear once.", "content",
                               _ERRORS_HELP + "#message.content.type"))
    cats = body.get("categories")
    if isinstance(cats, list):
        if len(cats) > MAX_CATEGORIES:
            errors.append(_err("Too many categories. A message may have at most 10.",
                               "categories", _ERRORS_HELP + "#message.categories"))
        if len({str(c) for c in cats}) != len(cats):
            errors.append(_err("The categories must be unique.", "categories",
                               _ERRORS_HELP + "#message.categories"))
        for i, c in enumerate(cats):
            if not isinstance(c, str):
                errors.append(_err("Categories must be strings.", f"categories.{i}",
                                   _ERRORS_HELP + "#message.categories"))
            elif len(c) > MAX_CATEGORY_CHARS:
                errors.append(_err("A category cannot be longer than 255 characters.",
                                   f"categories.{i}", _ERRORS_HELP + "#message.categories"))
    return errors


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "array"
    return "object"


class _Handler(BaseHTTPRequestHandler):
    double: SendGridDouble
    protocol_version = "HTTP/1.1"
    server_version = "SendGridDouble/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("double: " + format, *args)

    def _answer(self, status: int, data: Any = None, headers: dict[str, str] | None = None
                ) -> None:
        raw = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Drain without keeping it, then say so.
            left = length
            while left > 0:
                left -= len(self.rfile.read(min(left, 1 << 20)) or b"x" * left)
            raise ApiError(413, [_err("content too large")])
        return self.rfile.read(length) if length else b""

    def _hold(self, release: threading.Event) -> None:
        """Never answer: wait until the test releases us or the double stops, then drop the
        connection without a word."""
        try:
            release.wait()
        finally:
            with self.double._lock:
                self.double._state.held -= 1
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        try:
            path = urlsplit(self.path).path.rstrip("/")
            if path != "/v3/mail/send":
                raise ApiError(404, [_err("not found")])
            raw = self._read_body()  # read first: an early 401 would break the client's pipe
            self.double.check_auth(self.headers.get("Authorization"))
            release = self.double._release
            what, xid = self.double.mail_send(raw)
            if what == "hold":
                self._hold(release)
                return
            self._answer(202, None, {"X-Message-Id": xid})
        except ApiError as exc:
            self._answer(exc.status, {"errors": exc.errors}, exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802
        try:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/")
            self.double.check_auth(self.headers.get("Authorization"))
            if path == "/v3/messages":
                qs = parse_qs(parts.query)
                limit = int((qs.get("limit") or ["10"])[0])
                if not 1 <= limit <= 1000:
                    raise ApiError(400, [_err("limit must be between 1 and 1000", "limit")])
                query = qs.get("query")
                self._answer(200, self.double.activity(query[0] if query else None, limit))
            elif path.startswith("/v3/messages/"):
                self._answer(200, self.double.activity_message(unquote(path.rsplit("/", 1)[1])))
            else:
                raise ApiError(404, [_err("not found")])
        except ApiError as exc:
            self._answer(exc.status, {"errors": exc.errors}, exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

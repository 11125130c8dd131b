"""Who is signed in to the CSM console, and what they may do.

* **Users** (`console_users`) are added by `pulse user add EMAIL --role admin|csm|viewer`
  with a password hashed by argon2id (argon2-cffi), or without one for a deployment behind
  an SSO proxy. A viewer reads; only admins and CSMs act.
* **Sessions** live in the warehouse (`console_sessions`): the cookie holds a random session
  id, the warehouse only its SHA-256, so a copy of the table opens no session. A session ends
  when unused for `PULSE_SESSION_IDLE_MINUTES`, `PULSE_SESSION_MAX_HOURS` after it began, at
  sign-out, or when its user is disabled. The cookie is HttpOnly, SameSite=Lax, and Secure
  when the request came over https.
* **CSRF**: each session has a synchronizer token; every state change carries it (form field
  `csrf_token` or header `X-CSRF-Token`) and is refused with 403 without it or with another.
  The sign-in form, which has no session yet, carries an HMAC of a random cookie instead.
* **Trusted header** (`PULSE_AUTH_HEADER`, `PULSE_AUTH_PROXIES`): behind an SSO proxy, the
  header names the signed-in user's email. It is honoured only on connections from the
  proxy's addresses (the client address the app sees: run `pulse serve` without
  `--proxy-headers`, or the proxy's own address is replaced by its client's); from anywhere
  else it is ignored. The user must exist and be enabled: the header chooses who, the user
  list chooses what they may do.

Pages use the dependencies: `signed_in` (any role), `require_role(...)`, and `acting` for
every state change (a signed-in admin or CSM with the session's CSRF token).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pulse.core.errors import ConsoleUserError
from pulse.core.settings import Settings, get_settings
from pulse.sql import audit
from pulse.sql.schema import ConsoleSession, ConsoleUser

log = logging.getLogger(__name__)

ROLES = ("admin", "csm", "viewer")
ACTING_ROLES = frozenset({"admin", "csm"})
SESSION_COOKIE = "pulse_session"
LOGIN_COOKIE = "pulse_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes anything, but nobody needs more, and it bounds the work
#: Seen by `last_seen_at` at most this often per session (one write a minute, not per click).
TOUCH_EVERY = timedelta(seconds=60)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COMMON = frozenset({
    "password", "password1", "password123", "passw0rd", "123456789012", "qwertyuiop",
    "letmein", "welcome", "iloveyou", "admin", "administrator", "changeme", "pulse",
    "qwerty123456", "111111111111", "abc123456789", "correcthorse", "secret",
})

# --------------------------------------------------------------------------- passwords


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, RFC 9106's second recommended profile (64 MiB, t=3)


_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash to verify against when the user is unknown, so the answer takes as long."""
    if not _dummy:
        _dummy.append(_hasher().hash(secrets.token_urlsafe(16)))
    return _dummy[0]


def normalise_email(email: str) -> str:
    """`email` trimmed and lower-cased; refused unless it looks like an address."""
    value = (email or "").strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ConsoleUserError(f"expected an email address such as ana@example.com "
                               f"(not {email!r})")
    return value


def check_password(password: str, email: str) -> None:
    """Refuse an empty, short, common or guessable password; the message never repeats it."""
    if not password:
        raise ConsoleUserError("the password is empty")
    if len(password) < MIN_PASSWORD:
        raise ConsoleUserError(f"the password is too short: at least {MIN_PASSWORD} "
                               f"characters, please (a few words make a good one)")
    if len(password) > MAX_PASSWORD:
        raise ConsoleUserError(f"the password is too long: at most {MAX_PASSWORD} characters")
    lowered = password.lower()
    local = email.split("@", 1)[0]
    if (lowered in _COMMON or lowered.rstrip("0123456789!") in _COMMON
            or len(set(password)) < 5 or lowered in (email, local)
            or (len(local) >= 4 and local in lowered)):
        raise ConsoleUserError("the password is too easy to guess (a common password, few "
                               "different characters, or the email in it)")


# --------------------------------------------------------------------------- users


def add_user(engine: Engine, email: str, role: str, password: str | None, *, actor: str,
             reason: str | None = None) -> int:
    """Add a console user (password None: signs in only through the SSO proxy's header);
    the new user's id. Writes the audit entry in the same transaction."""
    address = normalise_email(email)
    if role not in ROLES:
        raise ConsoleUserError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    hashed = None
    if password is not None:
        check_password(password, address)
        hashed = _hasher().hash(password)
    t = ConsoleUser.__table__
    try:
        with engine.begin() as conn:
            user_id = conn.execute(insert(t).values(
                email=address, role=role, password_hash=hashed, created_at=datetime.now(UTC))
                .returning(t.c.user_id)).scalar_one()
            audit.record(conn, actor=actor, action=audit.USER_ADD, target=address,
                         reason=reason, detail={"role": role,
                                                "sign_in": "password" if hashed else "sso"})
    except IntegrityError:
        raise ConsoleUserError(f"a console user {address} exists already") from None
    return int(user_id)


def disable_user(engine: Engine, email: str, *, actor: str, reason: str | None = None) -> bool:
    """Disable a user and end their sessions; False if they were disabled already."""
    address = normalise_email(email)
    t = ConsoleUser.__table__
    with engine.begin() as conn:
        row = conn.execute(select(t.c.user_id, t.c.disabled_at).where(
            t.c.email == address)).first()
        if row is None:
            raise ConsoleUserError(f"no console user {address}")
        if row.disabled_at is not None:
            return False
        conn.execute(update(t).where(t.c.user_id == row.user_id)
                     .values(disabled_at=datetime.now(UTC)))
        conn.execute(delete(ConsoleSession.__table__).where(
            ConsoleSession.__table__.c.user_id == row.user_id))
        audit.record(conn, actor=actor, action=audit.USER_DISABLE, target=address,
                     reason=reason)
    return True


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every console user, by email: role, how they sign in, enabled or not, last sign-in."""
    t = ConsoleUser.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.email, t.c.role, t.c.password_hash.is_not(None)
                                   .label("has_password"), t.c.created_at, t.c.disabled_at,
                                   t.c.last_sign_in_at).order_by(t.c.email)).mappings().all()
    return [{"email": r["email"], "role": r["role"],
             "sign_in": "password" if r["has_password"] else "sso",
             "status": "disabled" if r["disabled_at"] else "active",
             "created_at": r["created_at"], "last_sign_in_at": r["last_sign_in_at"]}
            for r in rows]


@dataclass(frozen=True)
class Failure:
    """Why a sign-in failed (recorded in the audit log; the visitor sees one message)."""

    why: str
    user: str | None  # the user's email when the name was a known user, else None


def authenticate(engine: Engine, email: str, password: str) -> tuple[int, str] | Failure:
    """(user id, email) if `password` is the enabled user's, else why not. Unknown names cost
    one argon2 verification too, so the time taken does not tell which names exist."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        address = normalise_email(email)
    except ConsoleUserError:
        address = ""
    t = ConsoleUser.__table__
    with engine.connect() as conn:
        row = conn.execute(select(t.c.user_id, t.c.email, t.c.password_hash, t.c.disabled_at)
                           .where(t.c.email == address)).first() if address else None
    hasher = _hasher()
    stored = row.password_hash if row is not None and row.password_hash else _dummy_hash()
    try:
        good = bool(hasher.verify(stored, password[:MAX_PASSWORD]))
    except (VerificationError, InvalidHashError):
        good = False
    if row is None:
        return Failure("unknown user", None)
    if not row.password_hash:
        return Failure("no password (signs in through SSO)", row.email)
    if not good:
        return Failure("wrong password", row.email)
    if row.disabled_at is not None:
        return Failure("user disabled", row.email)
    if hasher.check_needs_rehash(row.password_hash):  # parameters raised since: hash anew
        with engine.begin() as conn:
            conn.execute(update(t).where(t.c.user_id == row.user_id)
                         .values(password_hash=hasher.hash(password)))
    return int(row.user_id), str(row.email)


# --------------------------------------------------------------------------- sessions


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Identity:
    """The signed-in user of a request and their session."""

    user_id: int
    email: str
    role: str
    csrf_token: str
    session_hash: str
    via: str

    @property
    def can_act(self) -> bool:
        return self.role in ACTING_ROLES


def start_session(engine: Engine, user_id: int, email: str, *, via: str,
                  address: str | None) -> str:
    """A new session for the user (their sign-in, audited); the session id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(ConsoleSession.__table__).values(
            session_hash=_digest(session_id), user_id=user_id,
            csrf_token=secrets.token_urlsafe(32), via=via, created_at=now, last_seen_at=now,
            address=address))
        conn.execute(update(ConsoleUser.__table__).where(
            ConsoleUser.__table__.c.user_id == user_id).values(last_sign_in_at=now))
        audit.record(conn, actor=email, action=audit.SIGN_IN, detail={"via": via},
                     address=address, at=now)
    return session_id


def session_identity(engine: Engine, session_id: str, *, now: datetime | None = None,
                     settings: Settings | None = None) -> Identity | None:
    """The session's user, if the session is live (not idle too long, not too old) and the
    user enabled; it counts as used now. A dead session is deleted."""
    if not session_id or len(session_id) > 128:
        return None
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    s, u = ConsoleSession.__table__, ConsoleUser.__table__
    key = _digest(session_id)
    with engine.connect() as conn:
        row = conn.execute(select(s.c.user_id, s.c.csrf_token, s.c.via, s.c.created_at,
                                  s.c.last_seen_at, u.c.email, u.c.role, u.c.disabled_at)
                           .join(u, u.c.user_id == s.c.user_id)
                           .where(s.c.session_hash == key)).first()
    if row is None:
        return None
    idle = timedelta(minutes=settings.session_idle_minutes)
    if (row.disabled_at is not None or now - row.last_seen_at > idle
            or now - row.created_at > timedelta(hours=settings.session_max_hours)):
        with engine.begin() as conn:
            conn.execute(delete(s).where(s.c.session_hash == key))
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with engine.begin() as conn:
            conn.execute(update(s).where(s.c.session_hash == key).values(last_seen_at=now))
    return Identity(int(row.user_id), str(row.email), str(row.role), str(row.csrf_token), key,
                    str(row.via))


def drop_session(engine: Engine, session_hash: str) -> None:
    """Delete a session without an audit entry (it is being replaced by a new one)."""
    with engine.begin() as conn:
        conn.execute(delete(ConsoleSession.__table__).where(
            ConsoleSession.__table__.c.session_hash == session_hash))


def end_session(engine: Engine, identity: Identity, *, address: str | None) -> None:
    """Sign out: the session is deleted (audited)."""
    with engine.begin() as conn:
        conn.execute(delete(ConsoleSession.__table__).where(
            ConsoleSession.__table__.c.session_hash == identity.session_hash))
        audit.record(conn, actor=identity.email, action=audit.SIGN_OUT,
                     detail={"via": identity.via}, address=address)


def signed_in_now(engine: Engine, *, now: datetime | None = None,
                  settings: Settings | None = None) -> list[dict[str, Any]]:
    """Who has a live session: email, role, last seen (latest session per user)."""
    from sqlalchemy import func

    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    s, u = ConsoleSession.__table__, ConsoleUser.__table__
    query = (select(u.c.email, u.c.role, func.max(s.c.last_seen_at).label("last_seen_at"))
             .join(u, u.c.user_id == s.c.user_id)
             .where(u.c.disabled_at.is_(None),
                    s.c.last_seen_at >= now - timedelta(minutes=settings.session_idle_minutes),
                    s.c.created_at >= now - timedelta(hours=settings.session_max_hours))
             .group_by(u.c.email, u.c.role).order_by(u.c.email))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --------------------------------------------------------------------------- requests


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def from_proxy(address: str, proxies: list[str]) -> bool:
    """Whether `address` lies in one of the CIDRs `proxies`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for cidr in proxies:
        network = ipaddress.ip_network(cidr, strict=False)
        if ip.version == network.version and ip in network:
            return True
    return False


def cookie_header(request: Request, name: str, value: str, *, max_age: int) -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Lax, path /, Secure over https."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if request.url.scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)


def set_cookie(request: Request, name: str, value: str, *, max_age: int) -> None:
    """Have `SessionCookies` add the cookie to whatever response this request gets."""
    request.state.pulse_cookies = [*getattr(request.state, "pulse_cookies", []),
                                   cookie_header(request, name, value, max_age=max_age)]


def set_session_cookie(request: Request, session_id: str) -> None:
    set_cookie(request, SESSION_COOKIE, session_id,
               max_age=int(get_settings().session_max_hours * 3600))


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _from_header(request: Request, settings: Settings,
                 current: Identity | None) -> Identity | None:
    """The trusted header's user (a session started for them if need be), or `current`."""
    name = settings.auth_header
    value = request.headers.get(name)
    if value is None:
        return current
    address = client_address(request)
    if not from_proxy(address, settings.auth_proxies):
        log.warning("ignored the trusted header %s from %s: not one of the proxy's addresses",
                    name, address)
        return current
    try:
        email = normalise_email(value)
    except ConsoleUserError:
        email = ""
    if current is not None and current.email == email and current.via == "header":
        return current
    engine = _engine(request)
    u = ConsoleUser.__table__
    with engine.connect() as conn:
        row = conn.execute(select(u.c.user_id, u.c.email, u.c.disabled_at)
                           .where(u.c.email == email)).first() if email else None
    if current is not None:  # someone else signed in on this browser before: not any more
        drop_session(engine, current.session_hash)
    if row is None or row.disabled_at is not None:
        request.state.pulse_refused = email or "(not an email address)"
        with engine.begin() as conn:
            audit.record(conn, actor=row.email if row is not None else "unknown",
                         action=audit.SIGN_IN_FAILED, address=address,
                         detail={"via": "header", "why": "user disabled" if row is not None
                                 else "unknown user"})
        return None
    session_id = start_session(engine, int(row.user_id), str(row.email), via="header",
                               address=address)
    set_session_cookie(request, session_id)
    return session_identity(engine, session_id, settings=settings)


def identify(request: Request) -> Identity | None:
    """The request's signed-in user: its session cookie's, or the trusted header's when it
    comes from the SSO proxy; None when nobody is signed in. Worked out once per request."""
    if "pulse_identity" in request.scope.get("state", {}):
        found: Identity | None = request.state.pulse_identity
        return found
    settings = get_settings()
    engine = _engine(request)
    identity = session_identity(engine, request.cookies.get(SESSION_COOKIE, ""),
                                settings=settings)
    if settings.auth_header:
        identity = _from_header(request, settings, identity)
    request.state.pulse_identity = identity
    return identity


class NotSignedIn(Exception):
    """Raised by the dependencies: nobody is signed in (a GET is sent to /login)."""


class Forbidden(Exception):
    """Raised by the dependencies: signed in, but not allowed (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def signed_in(request: Request) -> Identity:
    """Dependency: the signed-in user, any role."""
    identity = identify(request)
    if identity is None:
        raise NotSignedIn()
    return identity


def require_role(*roles: str) -> Callable[[Request], Identity]:
    """Dependency factory: the signed-in user, who must hold one of `roles`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}: expected some of {ROLES}")

    def dependency(request: Request) -> Identity:
        identity = signed_in(request)
        if identity.role not in roles:
            raise Forbidden(f"This needs the role {' or '.join(roles)}; you are "
                            f"{identity.role}.")
        return identity

    return dependency


async def csrf_token_of(request: Request) -> str:
    """The CSRF token a request carries: its `X-CSRF-Token` header, else its form field."""
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    return token or ""


def check_csrf(identity: Identity, token: str) -> None:
    if not token or not hmac.compare_digest(token.encode("utf-8"),
                                            identity.csrf_token.encode("utf-8")):
        raise Forbidden("This form has expired or did not come from Pulse. Reload the page "
                        "and try again.")


async def csrf_protected(request: Request) -> Identity:
    """Dependency for a state change any signed-in user may make (signing out): the session's
    CSRF token is required."""
    identity = signed_in(request)
    check_csrf(identity, await csrf_token_of(request))
    return identity


async def acting(request: Request) -> Identity:
    """Dependency for every action a page takes: a signed-in admin or CSM, with the
    session's CSRF token. A viewer is refused with 403."""
    identity = await csrf_protected(request)
    if not identity.can_act:
        raise Forbidden("Viewers can look but not act. Ask an admin for the csm role.")
    return identity


# --------------------------------------------------------------------------- cookies out

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message],
                                                                      Awaitable[None]]],
                   Awaitable[None]]


class SessionCookies:
    """ASGI middleware: adds the cookies a request's handling asked for (`set_cookie`) to
    its response, whatever route or error handler answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})

        async def with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookies = scope["state"].get("pulse_cookies") or []
                if cookies:
                    message["headers"] = list(message.get("headers", [])) + [
                        (b"set-cookie", c.encode("latin-1")) for c in cookies]
            await send(message)

        await self.app(scope, receive, with_cookies)

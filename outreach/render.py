"""Jinja2 templates of every email, rendered into `Outgoing` messages (outreach/message.py).

Each template `NAME` is a set of files in `outreach/templates/`:

* `NAME.subject.txt`: the subject (one line; rendered at queue time, stored in the outbox);
* `NAME.html` and `NAME.txt`: the bodies, which extend `_layout.html` / `_layout.txt`
  (company name, footer with the postal address and, for automated mail, the unsubscribe
  link);
* `NAME.SLOT.html` / `NAME.SLOT.txt` (or the shared `_SLOT.*`): personal fragments.

The bodies are rendered once per template and *shared* context; wherever they call
`{{ personal("SLOT") }}` they get a substitution token (`-p1h-` in HTML, `-p1t-` in text).
Each recipient's fragments are rendered from the whole context (shared and personal keys)
and become that recipient's substitutions, so a transport can send one body to many
recipients. The keys a template treats as personal are declared in `TEMPLATES`; the shared
render never sees them. `unsubscribe_url` is a built-in slot: the recipient's signed link.

Customer-vocabulary templates (`vocabulary.CUSTOMER_CONTEXTS`, the check-in) are rendered
from a context rebuilt from their dataclass: a stored context with any other key is refused
with `TemplateError`, at queue time (the subject) and at send time (the bodies), and a
check-in is rendered for sending only with a named CSM to sign it.

Numbers, money and dates go through the filters `number`, `share`, `percent`, `money` and
`local` (pulse/core/locales.py, Babel): written in the recipient's locale (`row["locale"]`,
the contact's, which the sender joins in; else a `locale` in the context; else
`default_locale`), times in the time zone the template passes. `sentence` ends a sentence
with a name that may already end with a full stop ("Pulse Demo Inc.").

HTML is autoescaped: every value from the context (names, incident titles, evidence lines)
is escaped; a value that looks like a substitution token is neutralised so that it cannot
pull another slot's value into the text.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, TemplateNotFound, pass_context
from markupsafe import Markup, escape

from pulse.core import locales
from pulse.core.errors import PulseError, TemplateError
from pulse.core.settings import Settings, get_settings
from pulse.outreach.message import Outgoing
from pulse.outreach.tokens import sign
from pulse.outreach.vocabulary import customer_context

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
UNSUBSCRIBE = "unsubscribe"  # the token purpose of unsubscribe links
SURVEY = "survey"  # the token purpose of CSAT rating links

_TOKEN_LIKE = re.compile(r"-(p\d+[ht]-)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class TemplateSpec:
    """What the outbox needs to know about a template."""

    name: str
    personal: frozenset[str] = frozenset()  # context keys rendered per recipient
    description: str = ""


TEMPLATES: dict[str, TemplateSpec] = {
    "outage_notice": TemplateSpec(
        "outage_notice",
        frozenset({"account_name", "contact_name", "components", "regions",
                   "failed_requests", "failed_events", "total_requests", "affected_users",
                   "first_affected_at", "last_affected_at", "timezone", "you_were_affected",
                   "service_credit"}),
        "An incident hit this contact's account. Shared: incident_title, stage "
        "(started|update|resolved), what_happened, incident_status, incident_impact, "
        "update_body (aliases: title, status, impact, latest_update), status_page_url. "
        "Personal: the account's impact (you_were_affected false: exposed, not hit), times "
        "shown in `timezone`.",
    ),
    "checkin": TemplateSpec(
        "checkin",
        frozenset({"account_name", "csm_name", "csm_email", "features", "renewal_date",
                   "note"}),
        "A CSM checks in with a quiet account. The context is exactly a "
        "`vocabulary.CustomerCheckin` (any other key is refused): account_name, csm_name and "
        "csm_email (the real person who signs and sends it), features (list of {feature, "
        "label, guide_url}: what the account used to rely on and stopped using), "
        "renewal_date (ISO, only when near), note (the CSM's own words, from a draft edit).",
    ),
    "csm_digest": TemplateSpec(
        "csm_digest",
        frozenset(),
        "For a CSM: accounts (list of {account_id, name or account_name, band, health, mrr, "
        "currency, entered_red, new_flags (strings or {flag, evidence}), evidence, url}) "
        "that entered red or got a new flag; low_ratings (list of {survey_id, account_id, "
        "account_name, contact_id, contact_name, contact_email, rating, comment, rated_at, "
        "trigger, question, comment_only}) rated 1 or 2 since the last digest; day or as_of; "
        "first (on the first scored date, instead of accounts: {accounts, bands {band: n}, "
        "flagged, flags {flag: n}, revenue_at_risk, currency, top: [{account_id, "
        "account_name, url, band, health, mrr, currency, revenue_at_risk, flags}]}). "
        "Not automated.",
    ),
    "csat_alert": TemplateSpec(
        "csat_alert",
        frozenset(),
        "For a CSM (or the CSM queue), at once: one CSAT answer rated 1 or 2 "
        "(outreach/csat_alerts.py): survey_id, account_id, account_name, url, contact_id, "
        "contact_name, contact_email, rating, label, comment, rated_at, question, trigger, "
        "ticket_id, incident_id, csm_name, via_queue (no named CSM). Not automated.",
    ),
    "chatter_alert": TemplateSpec(
        "chatter_alert",
        frozenset(),
        "To on-call and the CSMs of accounts in the chatter (outreach/chatter_alerts.py): "
        "component, bucket_start, negative_mentions, baseline, score, samples (list of "
        "{text, author_handle, account_name, url}), accounts (list of {account_id, name, url}), "
        "rule (score, authors or score+authors), min_authors, window_minutes."),
    "incident_complaint": TemplateSpec(
        "incident_complaint",
        frozenset(),
        "To the CSM of an account whose people complained publicly while an incident was open "
        "(outreach/chatter_alerts.py): incident_id, incident_title, incident_status, "
        "account_id, account_name, url, impact (hit, exposed or None), components, "
        "complaints (list of {text, author_handle, created_at, component}). Not automated."),
    "unanswered_post": TemplateSpec(
        "unanswered_post",
        frozenset(),
        "To the social team, once per post (outreach/response_alerts.py): a negative public "
        "post with no brand reply past its channel's expectation: mention_id, text, "
        "author_handle, channel, post_url, created_at, expected_minutes, waited_minutes, "
        "account_id, account_name, url (the account's page). Not automated."),
    "team_digest": TemplateSpec(
        "team_digest",
        frozenset(),
        "For a product team, once per period (outreach/feedback_digest.py): team, "
        "team_title, triage, period, period_start, period_end, period_label, total_items, "
        "total_accounts, total_mrr, currency, previous_items, themes (list of {theme_key, "
        "label, count (also items), accounts, mrr, currency, previous_items, trend, new, "
        "duplicates_merged, links: [{account_id, name, mrr, url}]}), more_themes, "
        "new_themes (labels), quotes (list of {text (scrubbed), theme, source, account_id, "
        "account_name, url}). Not automated.",
    ),
    "csat_survey": TemplateSpec(
        "csat_survey",
        frozenset({"survey_id", "contact_id", "question", "trigger", "ticket_id",
                   "ticket_subject", "incident_id", "incident_title", "account_name",
                   "contact_name", "timezone", "issued_at", "expires_at"}),
        "One CSAT question with five one-click ratings (outreach/surveys.py). Personal: "
        "survey_id and contact_id (signed into each rating link, see `survey_url`), question, "
        "trigger (ticket, incident, relationship), ticket_id, ticket_subject, incident_id, "
        "incident_title, account_name, issued_at and expires_at (ISO; the links expire then), "
        "timezone.",
    ),
}


def one_line(value: str | None) -> str | None:
    """`value` with every control character (CR, LF, tab, ...) folded into one space."""
    if value is None:
        return None
    return " ".join(_CONTROL.sub(" ", value).split())


def template_spec(name: str) -> TemplateSpec:
    """The spec of template `name`: registered, or any template whose files exist."""
    if name in TEMPLATES:
        return TEMPLATES[name]
    if (TEMPLATE_DIR / f"{name}.html").is_file() and not name.startswith("_"):
        return TemplateSpec(name)
    known = ", ".join(sorted(TEMPLATES))
    raise TemplateError(f"unknown template {name!r}: expected one of {known}")


# --------------------------------------------------------------------------- filters


def _finalize_html(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value  # already markup (a slot token, a macro)
    return Markup(_TOKEN_LIKE.sub(r"&#45;\1", str(escape(value))))


def _finalize_text(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value
    return _TOKEN_LIKE.sub("\u2011\\1", str(value))


def _locale(ctx: Any) -> Any:
    return locales.resolve(ctx.get("locale"), ctx.get("default_locale"))


@pass_context
def _local(ctx: Any, value: Any, tz: Any = None, fmt: str | None = None) -> str:
    """An instant (datetime or ISO text) in time zone `tz` (IANA name), written the
    recipient's way; `fmt` is a style of `locales.when` (or an old strftime format, read as
    the closest style)."""
    return locales.when(value, _locale(ctx), tz, style=locales.style_of(fmt))


@pass_context
def _number(ctx: Any, value: Any, digits: int = 1) -> str:
    return locales.number(value, _locale(ctx), digits=digits)


@pass_context
def _share(ctx: Any, part: Any, whole: Any) -> str:
    return locales.share(part, whole, _locale(ctx))


@pass_context
def _percent(ctx: Any, value: Any, digits: int = 1, exact: bool = False) -> str:
    return locales.percent(value, _locale(ctx), digits=digits, exact=exact)


@pass_context
def _money(ctx: Any, value: Any, currency: Any = None) -> str:
    return locales.money(value, currency, _locale(ctx))


def _sentence(value: Any) -> str:
    """`value` ending a sentence: a full stop unless it already ends with one ("Pulse Demo
    Inc." stays as it is)."""
    text = "" if value is None else str(value).rstrip()
    return text if not text or text[-1] in ".!?" else text + "."


def _safe_url(value: Any) -> str:
    """Only http(s) links reach an href; anything else (javascript:, data:) becomes empty."""
    text = str(value or "").strip()
    return text if re.match(r"^https?://[^\s<>\"']+$", text, re.IGNORECASE) else ""


def survey_url(survey_id: Any, contact_id: Any, rating: Any, issued_at: Any = None) -> str:
    """The one-click link rating survey `survey_id` as `rating` (1..5) for `contact_id`:
    `{public_base_url}/s/{token}`, token = sign("survey", {"s", "c", "r"}) valid
    `survey_ttl_days` from `issued_at` (ISO instant; default now)."""
    settings = get_settings()
    if survey_id is None or contact_id is None:
        raise TemplateError("a survey link needs a survey_id and a contact_id")
    score = int(rating)
    if score not in range(1, 6):
        raise TemplateError(f"invalid rating {rating!r}: expected 1..5")
    issued: datetime | None = None
    if isinstance(issued_at, datetime):
        issued = issued_at
    elif issued_at:
        issued = datetime.fromisoformat(str(issued_at).replace("Z", "+00:00"))
    if issued is not None and issued.tzinfo is None:
        issued = issued.replace(tzinfo=UTC)
    token = sign(SURVEY, {"s": int(survey_id), "c": str(contact_id), "r": score},
                 ttl_days=settings.survey_ttl_days, now=issued)
    return f"{settings.public_base_url.rstrip('/')}/s/{token}"


def _environment(*, html: bool, default_locale: str = locales.FALLBACK) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=html,
        finalize=_finalize_html if html else _finalize_text,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(local=_local, number=_number, share=_share, percent=_percent,
                       money=_money, sentence=_sentence, safe_url=_safe_url)
    env.globals["survey_url"] = survey_url
    env.globals["default_locale"] = default_locale
    return env


# --------------------------------------------------------------------------- renderer


@dataclass(frozen=True)
class _Shared:
    html: str
    text: str
    html_slots: tuple[str, ...]
    text_slots: tuple[str, ...]
    body_key: str


class _Slots:
    """`personal(name)` inside a shared render: a token per slot, in order of use."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.names: list[str] = []

    def __call__(self, name: str) -> Markup:
        if name not in self.names:
            self.names.append(name)
        return Markup(f"-p{self.names.index(name) + 1}{self.suffix}-")


def _no_slot(name: str) -> Markup:
    raise TemplateError(f"personal({name!r}) cannot be used inside a personal fragment")


class Renderer:
    """Renders subjects and outbox rows; caches shared bodies, reuses links per recipient."""

    def __init__(self, *, settings: Settings | None = None, now: datetime | None = None) -> None:
        self.settings = settings or get_settings()
        self.now = now or datetime.now(UTC)
        default = str(locales.resolve(self.settings.default_locale))
        self.html_env = _environment(html=True, default_locale=default)
        self.text_env = _environment(html=False, default_locale=default)
        self.subject_env = _environment(html=False, default_locale=default)
        self._shared: dict[tuple[str, str], _Shared] = {}
        self._links: dict[tuple[str | None, int | None], str] = {}

    # -- contexts

    def _base(self) -> dict[str, Any]:
        s = self.settings
        return {
            "company_name": s.company_name,
            "footer_address": s.footer_address,
            "sender_name": s.sender_name,
            "sender_email": s.sender_email,
            "status_page_url": s.status_page_url,
            "public_base_url": s.public_base_url.rstrip("/"),
        }

    def _full(self, context: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        full = self._base()
        full.update({k: v for k, v in context.items() if v is not None or k not in full})
        full.update(extra)
        return full

    # -- subject

    def locale_of(self, context: Mapping[str, Any], recipient: Any = None) -> str:
        """The locale a message is written in: the recipient's (`contacts.locale`), else the
        context's `locale`, else `default_locale`; always one Babel knows."""
        return str(locales.resolve(recipient or context.get("locale"),
                                   self.settings.default_locale))

    def subject(self, template: str, context: Mapping[str, Any], *,
                to_name: str | None = None, locale: str | None = None) -> str:
        """The one-line subject of `template` for this context and recipient (in `locale`,
        else the context's, else the default)."""
        template_spec(template)
        context = customer_context(template, context) or context
        try:
            tpl = self.subject_env.get_template(f"{template}.subject.txt")
        except TemplateNotFound:
            raise TemplateError(f"template {template!r} has no {template}.subject.txt") from None
        try:
            raw = tpl.render(self._full(context, to_name=to_name, automated=True,
                                        locale=self.locale_of(context, locale)))
        except Exception as exc:  # jinja2 errors, bad filter input
            raise TemplateError(f"cannot render the subject of {template!r}: {exc}") from None
        subject = one_line(raw) or ""
        if not subject:
            raise TemplateError(f"the subject of {template!r} rendered empty")
        return subject

    # -- bodies

    def _shared_part(self, template: str, shared: dict[str, Any], automated: bool,
                     locale: str) -> _Shared:
        key = json.dumps({"a": automated, "c": shared, "l": locale}, sort_keys=True,
                         default=str)
        found = self._shared.get((template, key))
        if found is not None:
            return found
        html_slots, text_slots = _Slots("h"), _Slots("t")
        ctx = self._full(shared, automated=automated, locale=locale)
        try:
            html = self.html_env.get_template(f"{template}.html").render(ctx, personal=html_slots)
            text = self.text_env.get_template(f"{template}.txt").render(ctx, personal=text_slots)
        except TemplateNotFound as exc:
            raise TemplateError(f"template {template!r} is missing the file {exc.name}") from None
        except PulseError:
            raise
        except Exception as exc:
            raise TemplateError(f"cannot render template {template!r}: {exc}") from None
        text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
        digest = hashlib.sha256(f"{template}\0{html}\0{text}".encode()).hexdigest()[:32]
        found = _Shared(html, text, tuple(html_slots.names), tuple(text_slots.names), digest)
        self._shared[(template, key)] = found
        return found

    def unsubscribe_url(self, *, contact_id: str | None, message_id: int | None) -> str:
        """The recipient's signed one-click unsubscribe link (by contact id, else by message)."""
        key = (contact_id, None) if contact_id else (None, message_id)
        if key not in self._links:
            data: dict[str, Any] = {"c": contact_id} if contact_id else {"m": message_id}
            token = sign(UNSUBSCRIBE, data, now=self.now)
            self._links[key] = f"{self.settings.public_base_url.rstrip('/')}/u/{token}"
        return self._links[key]

    def _fragment(self, template: str, slot: str, env: Environment, ctx: dict[str, Any],
                  unsubscribe: Callable[[], str]) -> str:
        if slot == "unsubscribe_url":
            url = unsubscribe()
            return str(escape(url)) if env.autoescape else url
        ext = "html" if env.autoescape else "txt"
        try:
            tpl = env.select_template([f"{template}.{slot}.{ext}", f"_{slot}.{ext}"])
        except TemplateNotFound:
            raise TemplateError(f"template {template!r} uses personal({slot!r}) but neither "
                                f"{template}.{slot}.{ext} nor _{slot}.{ext} exists") from None
        try:
            out = tpl.render(ctx, personal=_no_slot)
        except PulseError:
            raise
        except Exception as exc:
            raise TemplateError(f"cannot render {tpl.name}: {exc}") from None
        return out.strip() if ext == "html" else re.sub(r"\n{3,}", "\n\n", out).strip()

    def outgoing(self, row: Mapping[str, Any]) -> Outgoing:
        """An outbox row (its columns by name) rendered for a transport, in the locale of
        `row["locale"]` (the contact's, joined by the sender) when it has one."""
        template = row["template"]
        spec = template_spec(template)
        context = dict(row.get("context") or {})
        context = customer_context(template, context, sending=True) or context
        automated = bool(row.get("automated", True))
        shared_ctx = {k: v for k, v in context.items() if k not in spec.personal}
        locale = self.locale_of(context, row.get("locale"))
        shared = self._shared_part(template, shared_ctx, automated, locale)
        message_id = int(row["message_id"])
        contact_id = row.get("contact_id")
        full = self._full(context, to_name=row.get("to_name"), to_email=row["to_email"],
                          automated=automated, locale=locale)

        def link() -> str:
            return self.unsubscribe_url(contact_id=contact_id, message_id=message_id)

        subs: dict[str, str] = {}
        for i, slot in enumerate(shared.html_slots, start=1):
            subs[f"-p{i}h-"] = self._fragment(template, slot, self.html_env, full, link)
        for i, slot in enumerate(shared.text_slots, start=1):
            subs[f"-p{i}t-"] = self._fragment(template, slot, self.text_env, full, link)
        headers: dict[str, str] = {}
        if automated:
            mailto = f"mailto:{self.settings.sender_email}?subject=unsubscribe"
            headers["List-Unsubscribe"] = f"<{link()}>, <{mailto}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        kind = row["kind"]
        return Outgoing(
            message_id=message_id,
            kind=kind,
            template=template,
            to_email=row["to_email"],
            to_name=row.get("to_name"),
            from_email=row.get("from_email") or self.settings.sender_email,
            from_name=row.get("from_name") or self.settings.sender_name,
            reply_to=row.get("reply_to"),
            subject=row["subject"],
            html=shared.html,
            text=shared.text,
            body_key=shared.body_key,
            substitutions=subs,
            headers=headers,
            categories=(kind,),
            custom_args={"outbox_id": str(message_id), "kind": kind},
        )


__all__ = ["SURVEY", "TEMPLATES", "Renderer", "TemplateError", "TemplateSpec",
           "one_line", "survey_url", "template_spec"]

"""The data contract: every source, its columns, their types and rules.

One declaration drives validation (listeners/validate.py), landing (listeners/landing.py) and
the documentation (docs/contract.md), so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pulse.core.errors import UnknownNameError

#: the monthly uptime, percent, an account's own SLA may promise (outreach/sla.py trusts
#: nothing outside it)
SLA_UPTIME_RANGE = (50.0, 100.0)

Kind = Literal[
    "id", "text", "decimal", "number", "int", "bool", "timestamp", "date", "enum",
    "email", "timezone", "currency", "handle", "url", "list",
]


@dataclass(frozen=True)
class Field:
    """One column of a source."""

    name: str
    kind: Kind
    required: bool = False
    default: object = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    max_len: int | None = None
    #: the column must name a known account
    references_account: bool = False
    #: an event time: must not lie (much) in the future
    event_time: bool = False
    doc: str = ""
    #: computed by Pulse from other fields (a source's `key_of`), never read from files
    derived: bool = False


@dataclass(frozen=True)
class Source:
    """One input source of the contract."""

    name: str
    table: str
    key: str
    fields: tuple[Field, ...]
    doc: str
    #: (later, earlier): the later timestamp must not precede the earlier one
    ordered: tuple[tuple[str, str], ...] = field(default=())
    #: (part, whole): the part must not exceed the whole (the errors among a day's events)
    at_most: tuple[tuple[str, str], ...] = field(default=())
    #: the fields whose values identify a row, for a source without an id of its own: its
    #: `key` is then derived from them (listeners/prepare.py `derive_key`)
    key_of: tuple[str, ...] = field(default=())

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def read_columns(self) -> list[str]:
        """The columns a file may carry (the derived key is Pulse's own)."""
        return [f.name for f in self.fields if not f.derived]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise UnknownNameError(f"{self.name} has no field {name!r}")


PURCHASE_KINDS = (
    "subscription_started", "renewed", "upgraded", "downgraded", "cancelled",
    "payment_failed", "payment_succeeded", "refunded",
)

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "accounts", "accounts", "account_id",
            (
                Field("account_id", "id", required=True),
                Field("name", "text", required=True, max_len=200),
                Field("mrr", "decimal", required=True, min=0, doc="monthly recurring revenue"),
                Field("currency", "currency", default="USD"),
                Field("plan", "text", max_len=64),
                Field("segment", "text", max_len=64),
                Field("region", "text", max_len=64),
                Field("csm_email", "email"),
                Field("domain", "text", max_len=253),
                Field("x_handle", "handle"),
                Field("seats", "int", min=0),
                Field("created_at", "timestamp"),
                Field("renewal_date", "date"),
                Field("sla_uptime_pct", "number", min=SLA_UPTIME_RANGE[0], max=SLA_UPTIME_RANGE[1],
                      doc="the account's own SLA: monthly uptime promised, percent "
                          "(overrides its plan's)"),
            ),
            "One row per customer account; a later row with the same account_id updates it.",
        ),
        Source(
            "contacts", "contacts", "contact_id",
            (
                Field("contact_id", "id", required=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("email", "email", required=True),
                Field("name", "text", max_len=200),
                Field("role", "text", max_len=100),
                Field("timezone", "timezone", default="UTC"),
                Field("locale", "text", max_len=35),
                Field("x_handle", "handle"),
                Field("opted_out", "bool", default=False),
            ),
            "People at customer accounts.",
        ),
        Source(
            "usage", "usage_events", "event_id",
            (
                Field("event_id", "id", required=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("occurred_at", "timestamp", required=True, event_time=True),
                Field("feature", "text", required=True, max_len=100),
                Field("contact_id", "id"),
                Field("component", "text", max_len=100),
                Field("region", "text", max_len=64),
                Field("quantity", "number", default=1.0, min=0),
                Field("outcome", "enum", default="ok", choices=("ok", "error")),
            ),
            "Product usage events (one row may aggregate a quantity).",
        ),
        Source(
            "usage_daily", "usage_daily_feed", "daily_id",
            (
                Field("daily_id", "id", derived=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("day", "date", required=True, doc="the UTC calendar day"),
                Field("feature", "text", required=True, max_len=100),
                Field("component", "text", max_len=100),
                Field("events", "number", required=True, min=0,
                      doc="the day's usage (summed quantity) of the feature and component"),
                Field("errors", "number", default=0.0, min=0,
                      doc="the part of `events` whose outcome was an error"),
                Field("active_users", "int", min=0,
                      doc="distinct users of the feature and component that day "
                          "(informational: windows count users from `usage_daily_users`)"),
            ),
            "Daily usage aggregated in your own warehouse, one row per account, UTC day, "
            "feature and component, instead of raw usage events; a later row for the same "
            "account, day, feature and component replaces it (docs/usage-rollups.md).",
            key_of=("account_id", "day", "feature", "component"),
            at_most=(("errors", "events"),),
        ),
        Source(
            "usage_daily_users", "usage_daily_users_feed", "daily_id",
            (
                Field("daily_id", "id", derived=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("day", "date", required=True, doc="the UTC calendar day"),
                Field("contact_id", "id", required=True),
                Field("events", "number", required=True, min=0,
                      doc="the contact's usage that day (summed quantity)"),
            ),
            "Daily usage per user aggregated in your own warehouse (who was active on which "
            "day: active users, seat use and the champion); a later row for the same account, "
            "day and contact replaces it (docs/usage-rollups.md).",
            key_of=("account_id", "day", "contact_id"),
        ),
        Source(
            "purchases", "purchase_events", "event_id",
            (
                Field("event_id", "id", required=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("occurred_at", "timestamp", required=True, event_time=True),
                Field("kind", "enum", required=True, choices=PURCHASE_KINDS),
                Field("amount", "decimal", default=0),
                Field("currency", "currency"),
                Field("plan", "text", max_len=64),
                Field("mrr_after", "decimal", min=0),
            ),
            "Billing events.",
        ),
        Source(
            "tickets", "tickets", "ticket_id",
            (
                Field("ticket_id", "id", required=True),
                Field("account_id", "id", required=True, references_account=True),
                Field("opened_at", "timestamp", required=True, event_time=True),
                Field("contact_id", "id"),
                Field("resolved_at", "timestamp", event_time=True),
                Field("status", "enum", choices=("open", "pending", "solved", "closed")),
                Field("channel", "enum", choices=("email", "chat", "phone", "web", "social")),
                Field("priority", "enum", choices=("low", "normal", "high", "urgent")),
                Field("subject", "text", max_len=1000),
                Field("body", "text", max_len=100_000),
                Field("first_response_at", "timestamp", event_time=True,
                      doc="when the first answer from the team reached the customer"),
            ),
            "Support tickets; a later row with the same ticket_id updates the ticket.",
            ordered=(("resolved_at", "opened_at"), ("first_response_at", "opened_at")),
        ),
        Source(
            "mentions", "mentions", "mention_id",
            (
                Field("mention_id", "id", required=True),
                Field("created_at", "timestamp", required=True, event_time=True),
                Field("text", "text", required=True, max_len=10_000),
                Field("author_handle", "handle", required=True),
                Field("platform", "text", default="x", max_len=32),
                Field("author_id", "id"),
                Field("lang", "text", max_len=16),
                Field("url", "url"),
                Field("in_reply_to_id", "id", doc="the post this one answers"),
                Field("account_id", "id", references_account=True),
                Field("conversation_id", "id",
                      doc="the thread's first post (X `conversation_id`)"),
                Field("from_brand", "bool",
                      doc="the brand itself wrote the post (one of its own handles)"),
            ),
            "Social posts that mention the company or its products.",
        ),
        Source(
            "incidents", "incidents", "incident_id",
            (
                Field("incident_id", "id", required=True),
                Field("title", "text", required=True, max_len=500),
                Field("started_at", "timestamp", required=True, event_time=True),
                Field(
                    "status", "enum", default="investigating",
                    choices=("investigating", "identified", "monitoring", "resolved"),
                ),
                Field("impact", "enum", choices=("none", "minor", "major", "critical")),
                Field("resolved_at", "timestamp", event_time=True),
                Field("components", "list", default=()),
                Field("regions", "list", default=()),
                Field("eta", "timestamp", doc="estimated resolution time"),
            ),
            "Service incidents; components and regions are `|`-separated in CSV, arrays in JSONL.",
            ordered=(("resolved_at", "started_at"), ("eta", "started_at")),
        ),
    )
}

#: Sources in landing order: accounts first, because other rows must reference them.
LANDING_ORDER = ("accounts", "contacts", "usage", "usage_daily", "usage_daily_users", "purchases",
                 "tickets", "mentions", "incidents")

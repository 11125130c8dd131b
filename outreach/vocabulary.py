"""Two vocabularies: what a customer may read, and the evidence only their CSM may read.

Issue 13 found check-ins telling customers their own health score, their seat count, their
failed payments and when a colleague last logged in: the CSM's notes pasted into the
customer's inbox. The fix is structural, not a matter of careful template writing:

* `CustomerCheckin` is the *whole* context of a check-in email. It holds plain help only:
  the features the account used to rely on and stopped using (each with a guide where the
  catalogue `guides.yaml` knows one), the renewal date when it is close enough to matter to
  them, and the CSM who signs it. The renderer builds a check-in's template context from this
  class alone and refuses a stored context with any other key (`CUSTOMER_CONTEXTS`), so no
  template can reach a CSM-only fact, whatever someone writes into a template.
* `CsmEvidence` is why the check-in was written: the health score and band, the flags with
  their evidence (seats, tickets, payments, a champion's activity). It travels only in the
  CSM's digest, internal mail.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import yaml

from pulse.core.errors import TemplateError

GUIDES_PATH = Path(__file__).resolve().parent / "guides.yaml"

#: words that make an address a shared inbox, not a person ("cs-team@", "support@")
ROLE_WORDS = frozenset({
    "team", "cs", "success", "support", "care", "help", "helpdesk", "info", "hello", "sales",
    "service", "services", "noreply", "no-reply", "admin", "accounts", "billing", "customers",
    "customer", "group", "desk", "ops", "contact", "office", "mail", "inbox",
})


@dataclass(frozen=True)
class FeatureHelp:
    """A feature the customer used to rely on, in their words, with a guide if one exists."""

    feature: str
    label: str
    guide_url: str | None = None


@dataclass(frozen=True)
class CustomerCheckin:
    """Everything a check-in email may say; nothing else reaches its templates.

    `csm_name` and `csm_email` are the real person who signs and sends it; a check-in without
    one is never rendered for sending (it is recorded as suppressed with rule `no_csm`).
    `renewal_date` (ISO) is set only when the renewal is near enough to be useful to them.
    """

    account_name: str
    csm_name: str | None
    csm_email: str | None
    features: tuple[FeatureHelp, ...] = ()
    renewal_date: str | None = None
    note: str | None = None  # the CSM's own words, added when editing a draft

    template: ClassVar[str] = "checkin"

    def __post_init__(self) -> None:
        if not isinstance(self.account_name, str) or not self.account_name.strip():
            raise TemplateError("a check-in needs the account's name")
        for f in self.features:
            if not isinstance(f, FeatureHelp):
                raise TemplateError(f"a check-in feature must be a FeatureHelp (not {f!r})")

    def to_context(self) -> dict[str, Any]:
        """The JSON-able template context (what the outbox stores)."""
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        return data

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> CustomerCheckin:
        """Rebuild from a stored context; any key outside the customer vocabulary is refused,
        so an outbox row carrying internal facts can neither be queued nor sent."""
        allowed = {f.name for f in fields(cls)}
        extra = sorted(set(context) - allowed)
        if extra:
            raise TemplateError(
                f"a {cls.template} context may hold only {', '.join(sorted(allowed))}; "
                f"refused the key(s) {', '.join(extra)} (CSM-only facts go to the CSM digest)")
        feats = context.get("features") or []
        try:
            features = tuple(FeatureHelp(**dict(f)) for f in feats)
        except TypeError as exc:
            raise TemplateError(f"invalid feature in a {cls.template} context: {exc}") from None
        return cls(account_name=context.get("account_name"),  # type: ignore[arg-type]
                   csm_name=context.get("csm_name"), csm_email=context.get("csm_email"),
                   features=features, renewal_date=context.get("renewal_date"),
                   note=context.get("note"))

    def check_sender(self) -> None:
        """Refuse to render a check-in for sending without a real person to sign it."""
        if not self.csm_name or not self.csm_email or not person_name(self.csm_email):
            raise TemplateError(f"a check-in is signed by a named CSM; {self.account_name!r} "
                                f"has none (csm_email {self.csm_email!r})")


@dataclass(frozen=True)
class CsmEvidence:
    """Why a check-in was written, for its CSM only (the digest): never for a customer."""

    account_id: str
    account_name: str
    contact_name: str | None
    contact_email: str | None
    reason: str  # red | silent_dissatisfied
    health: float | None
    band: str | None
    flags: tuple[tuple[str, str], ...]  # (flag, evidence in words)
    outcome: str  # queued | suppressed: no_csm | ...
    url: str | None = None

    def to_context(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = [{"flag": f, "evidence": e} for f, e in self.flags]
        return data


#: customer-facing templates whose context is a class of the customer vocabulary
CUSTOMER_CONTEXTS: dict[str, type[CustomerCheckin]] = {CustomerCheckin.template: CustomerCheckin}


def customer_context(template: str, context: Mapping[str, Any], *, sending: bool = False
                     ) -> dict[str, Any] | None:
    """The template context of a customer-vocabulary template, rebuilt from its class (None
    for templates outside `CUSTOMER_CONTEXTS`); `sending` also requires a real sender."""
    cls = CUSTOMER_CONTEXTS.get(template)
    if cls is None:
        return None
    obj = cls.from_context(context)
    if sending:
        obj.check_sender()
    return obj.to_context()


def person_name(email: str | None) -> str | None:
    """The display name of a person's address ('maya.chen@x' -> 'Maya Chen'); None for a
    shared inbox ('cs-team@x', 'support@x') or anything that does not look like a name."""
    if not email or "@" not in email:
        return None
    local = email.split("@", 1)[0].split("+", 1)[0]
    words = [w for w in re.split(r"[._-]+", local.lower()) if w]
    if not words or any(w in ROLE_WORDS or not w.isalpha() for w in words):
        return None
    return " ".join(w.capitalize() for w in words)


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(GUIDES_PATH.read_text(encoding="utf-8")) or {}
    return {str(k): dict(v or {}) for k, v in data.items()}


def feature_help(feature: str, help_center_url: str) -> FeatureHelp | None:
    """How a check-in names `feature` and which guide it links; None for features the
    catalogue marks `skip` (chores such as invoices)."""
    entry = _catalogue().get(feature, {})
    if entry.get("skip"):
        return None
    label = str(entry.get("label") or feature.replace("_", " ").strip().capitalize())
    guide = entry.get("guide")
    url = None
    if guide:
        guide = str(guide)
        url = guide if guide.startswith("https://") else (
            f"{help_center_url.rstrip('/')}/{guide.lstrip('/')}" if help_center_url else None)
    return FeatureHelp(feature=feature, label=label, guide_url=url)


__all__ = ["CUSTOMER_CONTEXTS", "CsmEvidence", "CustomerCheckin", "FeatureHelp",
           "customer_context", "feature_help", "person_name"]

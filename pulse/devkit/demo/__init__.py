"""A deterministic generator of a believable B2B SaaS "demo world" for Pulse.

`generate()` writes the seven input sources of the Pulse data contract (accounts, contacts,
usage, purchases, tickets, mentions, incidents) and `truth.json`, the hidden truth the engine
never reads: each account's behaviour group, the churn dates, the silently dissatisfied
accounts, the accounts each incident hit, and how many rows were broken on purpose.

The world
---------
* Accounts: long-tailed seats and MRR by segment and plan, four regions with matching IANA
  time zones, locales, currencies and company names; a few are created inside the window.
* Usage is aggregated: one row per (contact, day, feature) with a quantity, plus one row per
  (account, day, API feature) for service traffic without a contact. Weekends are quiet.
* Behaviour groups shape usage, errors, billing, tickets and mentions: `healthy`,
  `silent_fade` (usage and errors drift the wrong way, no tickets in the last 45 days),
  `loud_complainer` (many tickets and angry mentions, usage fine), `churner` (decline, then a
  `cancelled` event, then silence) and `payment_trouble` (failed payments that never recover).
  Healthy accounts get dips, recoveries, slow declines and one-off payment failures, so the
  groups overlap.
* Incidents hit components in regions: accounts using them there get bursts of `error`
  outcomes, then tickets and angry mentions.
* About `malformed_rate` of the rows of every source are broken copies of real rows, inserted
  right after them, so the world itself stays intact; truth.json counts them per source.

The same arguments with an explicit past `end` give byte-identical files. Customer domains use
the reserved `.example` top-level domain, so no generated e-mail address reaches anybody.

The package
-----------
One module per source (`accounts`, `contacts`, `usage`, `purchases`, `tickets`, `mentions`,
`incidents`) on top of `world` (the shared vocabulary, clock, records, behaviour model and RNG
helpers) and `names` (name pools); `writer` breaks rows and writes the files, `truth` builds
truth.json, and `generator` holds `generate()`. This module re-exports the public names.
"""
from __future__ import annotations

from pulse.devkit.demo.generator import generate
from pulse.devkit.demo.world import (
    BRAND,
    BRAND_HANDLE,
    COMPONENTS,
    FEATURES,
    FILE_NAMES,
    GENERATOR_VERSION,
    GROUPS,
    HEADERS,
    INCIDENT_IMPACTS,
    INCIDENT_STATUSES,
    PLANS,
    PURCHASE_KINDS,
    REGIONS,
    SEGMENTS,
    SOURCES,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    TRUTH_FILE,
    VENDOR_DOMAIN,
    DemoSummary,
)

__all__ = [
    "BRAND",
    "BRAND_HANDLE",
    "COMPONENTS",
    "FEATURES",
    "FILE_NAMES",
    "GENERATOR_VERSION",
    "GROUPS",
    "HEADERS",
    "INCIDENT_IMPACTS",
    "INCIDENT_STATUSES",
    "PLANS",
    "PURCHASE_KINDS",
    "REGIONS",
    "SEGMENTS",
    "SOURCES",
    "TICKET_CHANNELS",
    "TICKET_PRIORITIES",
    "TICKET_STATUSES",
    "TRUTH_FILE",
    "VENDOR_DOMAIN",
    "DemoSummary",
    "generate",
]

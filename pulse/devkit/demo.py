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
"""
from __future__ import annotations

import csv
import json
import logging
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
VENDOR_DOMAIN = "pulse-demo.example"
BRAND = "Pulse"
BRAND_HANDLE = "PulseDemoHQ"

SOURCES: tuple[str, ...] = (
    "accounts", "contacts", "usage", "purchases", "tickets", "mentions", "incidents",
)
FILE_NAMES: dict[str, str] = {
    "accounts": "accounts.csv",
    "contacts": "contacts.csv",
    "usage": "usage.csv",
    "purchases": "purchases.csv",
    "tickets": "tickets.csv",
    "mentions": "mentions.jsonl",
    "incidents": "incidents.jsonl",
}
TRUTH_FILE = "truth.json"

#: Column order of the CSV sources.
HEADERS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id", "name", "mrr", "currency", "plan", "segment", "region",
                 "csm_email", "domain", "x_handle", "seats", "created_at", "renewal_date"),
    "contacts": ("contact_id", "account_id", "email", "name", "role", "timezone", "locale",
                 "x_handle", "opted_out"),
    "usage": ("event_id", "account_id", "occurred_at", "feature", "contact_id", "component",
              "region", "quantity", "outcome"),
    "purchases": ("event_id", "account_id", "occurred_at", "kind", "amount", "currency",
                  "plan", "mrr_after"),
    "tickets": ("ticket_id", "account_id", "opened_at", "contact_id", "resolved_at", "status",
                "channel", "priority", "subject", "body"),
}

PURCHASE_KINDS: tuple[str, ...] = (
    "subscription_started", "renewed", "upgraded", "downgraded", "cancelled",
    "payment_failed", "payment_succeeded", "refunded",
)
TICKET_STATUSES: tuple[str, ...] = ("open", "pending", "solved", "closed")
TICKET_CHANNELS: tuple[str, ...] = ("email", "chat", "phone", "web", "social")
TICKET_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
INCIDENT_STATUSES: tuple[str, ...] = ("investigating", "identified", "monitoring", "resolved")
INCIDENT_IMPACTS: tuple[str, ...] = ("none", "minor", "major", "critical")

#: Feature -> component. Usage rows name the feature; incidents name components.
FEATURES: dict[str, str] = {
    "api_calls": "api",
    "webhooks": "api",
    "dashboards": "dashboard",
    "alerts": "dashboard",
    "reports": "reports",
    "exports": "reports",
    "scheduled_reports": "reports",
    "slack_integration": "integrations",
    "salesforce_sync": "integrations",
    "sso_login": "auth",
    "invoices": "billing-portal",
    "seat_management": "billing-portal",
}
COMPONENTS: tuple[str, ...] = ("api", "dashboard", "reports", "integrations", "auth",
                               "billing-portal")
REGIONS: tuple[str, ...] = ("us-east", "us-west", "eu-west", "ap-southeast")
PLANS: tuple[str, ...] = ("starter", "growth", "business", "enterprise")
SEGMENTS: tuple[str, ...] = ("smb", "mid-market", "enterprise")
GROUPS: tuple[str, ...] = ("healthy", "silent_fade", "loud_complainer", "churner",
                           "payment_trouble")

_FEATURE_LIST: tuple[str, ...] = tuple(FEATURES)
_NF = len(_FEATURE_LIST)
_F_API, _F_WEBHOOKS, _F_DASHBOARDS = 0, 1, 2
_FEATURE_COMPONENT_IDX = np.array([COMPONENTS.index(FEATURES[f]) for f in _FEATURE_LIST])
_FEATURE_LABEL: dict[str, str] = {
    "api_calls": "the API",
    "webhooks": "webhooks",
    "dashboards": "dashboards",
    "alerts": "alerts",
    "reports": "reports",
    "exports": "CSV exports",
    "scheduled_reports": "scheduled reports",
    "slack_integration": "the Slack integration",
    "salesforce_sync": "the Salesforce sync",
    "sso_login": "SSO login",
    "invoices": "invoices",
    "seat_management": "seat management",
}
_COMPONENT_LABEL: dict[str, str] = {
    "api": "API",
    "dashboard": "Dashboards",
    "reports": "Reports",
    "integrations": "Integrations",
    "auth": "Login/SSO",
    "billing-portal": "Billing portal",
}
_REGION_LABEL: dict[str, str] = {
    "us-east": "US East", "us-west": "US West", "eu-west": "EU West",
    "ap-southeast": "AP Southeast",
}
#: Probability that an account of each plan adopts each feature (rows: PLANS).
_ADOPTION = np.array([
    # api  webh  dash alert  rep   exp  sched slack  sf    sso   inv  seats
    [0.15, 0.08, 1.0, 0.50, 0.70, 0.50, 0.20, 0.35, 0.05, 0.02, 0.60, 0.50],
    [0.35, 0.20, 1.0, 0.70, 0.85, 0.60, 0.45, 0.50, 0.20, 0.15, 0.70, 0.60],
    [0.60, 0.40, 1.0, 0.85, 0.95, 0.70, 0.65, 0.65, 0.45, 0.60, 0.75, 0.70],
    [0.85, 0.60, 1.0, 0.90, 1.00, 0.80, 0.80, 0.70, 0.65, 0.95, 0.80, 0.80],
])
#: How much a person uses each feature, relative to the others.
_PERSON_WEIGHT = np.array([0.3, 0.2, 5.0, 1.5, 2.5, 1.2, 0.8, 1.0, 0.7, 0.9, 0.25, 0.2])
#: Mean extra quantity of a person's (day, feature) row.
_PERSON_QTY = np.array([25.0, 6.0, 8.0, 3.0, 4.0, 2.0, 2.0, 5.0, 3.0, 1.0, 0.5, 0.5])
#: Service traffic (no contact) per seat and day for the API features.
_SERVICE_PER_SEAT = {_F_API: 30.0, _F_WEBHOOKS: 5.0}

#: Relative weekday volume, Monday first.
_WEEKDAY_PEOPLE = np.array([1.02, 1.03, 1.02, 0.98, 0.88, 0.16, 0.11])
_WEEKDAY_SERVICE = np.array([1.0, 1.0, 1.0, 1.0, 0.97, 0.6, 0.55])
_WEEKDAY_TICKETS = np.array([1.1, 1.05, 1.0, 1.0, 0.9, 0.3, 0.25])
_WEEKDAY_SOCIAL = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.7, 0.65])


class _Tz(NamedTuple):
    name: str
    region: int
    weight: float
    locale: str
    pool: str
    currency: str
    country: str
    std_offset_min: int


_TZ: tuple[_Tz, ...] = (
    _Tz("America/New_York", 0, 0.55, "en-US", "en", "USD", "US", -300),
    _Tz("America/Chicago", 0, 0.25, "en-US", "en", "USD", "US", -360),
    _Tz("America/Toronto", 0, 0.20, "en-CA", "en", "CAD", "CA", -300),
    _Tz("America/Los_Angeles", 1, 0.60, "en-US", "en", "USD", "US", -480),
    _Tz("America/Denver", 1, 0.20, "en-US", "en", "USD", "US", -420),
    _Tz("America/Phoenix", 1, 0.08, "en-US", "en", "USD", "US", -420),
    _Tz("America/Vancouver", 1, 0.12, "en-CA", "en", "CAD", "CA", -480),
    _Tz("Europe/London", 2, 0.30, "en-GB", "en", "GBP", "GB", 0),
    _Tz("Europe/Dublin", 2, 0.07, "en-IE", "en", "EUR", "IE", 0),
    _Tz("Europe/Berlin", 2, 0.20, "de-DE", "de", "EUR", "DE", 60),
    _Tz("Europe/Paris", 2, 0.15, "fr-FR", "fr", "EUR", "FR", 60),
    _Tz("Europe/Madrid", 2, 0.10, "es-ES", "es", "EUR", "ES", 60),
    _Tz("Europe/Amsterdam", 2, 0.10, "nl-NL", "nl", "EUR", "NL", 60),
    _Tz("Europe/Stockholm", 2, 0.08, "sv-SE", "nordic", "SEK", "SE", 60),
    _Tz("Asia/Singapore", 3, 0.35, "en-SG", "sea", "SGD", "SG", 480),
    _Tz("Australia/Sydney", 3, 0.28, "en-AU", "en", "AUD", "AU", 600),
    _Tz("Asia/Jakarta", 3, 0.10, "id-ID", "sea", "USD", "ID", 420),
    _Tz("Asia/Manila", 3, 0.10, "en-PH", "sea", "USD", "PH", 480),
    _Tz("Pacific/Auckland", 3, 0.08, "en-NZ", "en", "NZD", "NZ", 720),
    _Tz("Asia/Kolkata", 3, 0.09, "en-IN", "in", "USD", "IN", 330),
)
_REGION_WEIGHT = np.array([0.38, 0.22, 0.28, 0.12])
_FX: dict[str, float] = {"USD": 1.0, "CAD": 1.36, "GBP": 0.79, "EUR": 0.92, "SEK": 10.4,
                         "SGD": 1.34, "AUD": 1.52, "NZD": 1.66}
_LEGAL: dict[str, tuple[str, ...]] = {
    "US": ("", "", " Inc.", " LLC", " Corp."), "CA": ("", " Inc.", " Ltd."),
    "GB": ("", " Ltd", " Ltd."), "IE": (" Ltd", ""), "DE": (" GmbH", " GmbH", " AG", ""),
    "FR": (" SAS", " SARL", ""), "ES": (" S.L.", " S.A.", ""), "NL": (" B.V.", ""),
    "SE": (" AB", ""), "SG": (" Pte. Ltd.", ""), "AU": (" Pty Ltd", ""), "ID": ("", ""),
    "PH": (" Inc.", ""), "NZ": (" Ltd", ""), "IN": (" Pvt. Ltd.", ""),
}

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Sophia", "Mason",
         "Isabella", "Lucas", "Mia", "Aiden", "Harper", "Ella", "Jack", "Grace", "Chloe",
         "Daniel", "Priya", "Wei", "Aaliyah", "Marcus", "Zoë", "Nora", "Caleb", "Hannah",
         "Omar", "Leah", "Ryan", "Megan", "Tyler", "Jasmine", "André", "Keisha", "Connor",
         "Siobhan", "Renée", "Samuel", "Fatima", "Brooke", "Diego", "Naomi", "Ben", "Kate"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
         "Rodriguez", "Martinez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
         "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
         "Walker", "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Patel", "Kim",
         "O'Brien", "Murphy", "Kelly", "Chen", "Okafor", "Brennan", "Foster", "Hughes"),
    ),
    "de": (
        ("Lukas", "Leon", "Finn", "Jonas", "Anna", "Lena", "Marie", "Sophie", "Jürgen",
         "Jörg", "Björn", "Käthe", "Günther", "Anja", "Katrin", "Stefan", "Matthias",
         "Felix", "Lea", "Tobias", "Sabine", "Maximilian"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
         "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
         "Schröder", "Neumann", "Schwarz", "Zimmermann", "Krüger", "Hartmann", "Lange",
         "Weiß", "Brückner"),
    ),
    "fr": (
        ("Louis", "Gabriel", "Léa", "Chloé", "Camille", "Hugo", "Jules", "Inès", "Zoé",
         "Amélie", "Théo", "Noémie", "François", "Hélène", "Benoît", "Manon", "Élodie"),
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garnier", "Faure",
         "Rousseau", "Gérard", "Fontaine", "Chevalier"),
    ),
    "es": (
        ("José", "María", "Lucía", "Sofía", "Martín", "Mateo", "Hugo", "Álvaro", "Marta",
         "Paula", "Javier", "Sergio", "Elena", "Raúl", "Inés", "Nuria", "Íñigo"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez",
         "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
         "Álvarez", "Muñoz", "Romero", "Ibáñez"),
    ),
    "nl": (
        ("Daan", "Sem", "Lotte", "Emma", "Bram", "Fleur", "Sanne", "Thijs", "Joost", "Anouk",
         "Maartje", "Ruben"),
        ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser",
         "Smit", "Meijer", "de Boer", "Mulder", "Bos"),
    ),
    "nordic": (
        ("Søren", "Åsa", "Björn", "Ingrid", "Mikkel", "Sigrid", "Erik", "Astrid", "Linnéa",
         "Oskar", "Elin"),
        ("Jensen", "Nielsen", "Hansen", "Andersson", "Johansson", "Østergaard", "Lindqvist",
         "Karlsson", "Nilsson", "Ekström", "Åberg"),
    ),
    "sea": (
        ("Wei Ling", "Jun Hao", "Siti", "Nurul", "Kai", "Mei", "Thanh", "Linh", "Ayu",
         "Budi", "Maria Clara", "Paolo", "Rizal", "Hui Min", "Dewi"),
        ("Tan", "Lim", "Lee", "Ng", "Wong", "Goh", "Chua", "Ong", "Santoso", "Wijaya",
         "Reyes", "Santos", "Cruz", "Nguyen", "Tran", "Hidayat", "Bautista"),
    ),
    "in": (
        ("Arjun", "Priya", "Rohan", "Ananya", "Vikram", "Sneha", "Aditya", "Kavya", "Rahul",
         "Isha", "Karthik", "Meera"),
        ("Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Menon", "Rao", "Kapoor",
         "Banerjee", "Joshi"),
    ),
}
_COMPANY_WORDS: tuple[str, ...] = (
    "Northwind", "Bluefin", "Brightline", "Cobalt", "Crescent", "Driftwood", "Evergreen",
    "Fjord", "Granite", "Harbor", "Ironbark", "Juniper", "Kestrel", "Lumen", "Maple",
    "Meridian", "Nimbus", "Oakridge", "Orbit", "Pinecrest", "Quartz", "Redwood", "Riverbend",
    "Saffron", "Silverline", "Summit", "Tidewater", "Trellis", "Umber", "Vantage", "Willow",
    "Zephyr", "Alder", "Beacon", "Cascade", "Copperleaf", "Dune", "Ember", "Falcon",
    "Glacier", "Hollow", "Indigo", "Jasper", "Keystone", "Lakeside", "Lodestar", "Mosaic",
    "Nova", "Onyx", "Paragon", "Pioneer", "Prairie", "Quill", "Raven", "Sable", "Sierra",
    "Solstice", "Starling", "Sterling", "Tamarack", "Topaz", "Vertex", "Wavecrest", "Yarrow",
    "Zenith", "Arbor", "Bramble", "Canyon", "Delta", "Foxglove", "Halcyon", "Helix",
    "Horizon", "Kinetic", "Larkspur", "Magnolia", "Nordlicht", "Osprey", "Polaris", "Rook",
    "Sequoia", "Tundra", "Löwenzahn", "Étoile", "Åkerberg", "Brisa", "Lichtblick",
    "Sunbeam", "Greenfield", "Blackstone", "Clearwater", "Ridgeway", "Westbrook",
)
_INDUSTRIES: tuple[str, ...] = (
    "Analytics", "Logistics", "Health", "Labs", "Systems", "Software", "Foods", "Robotics",
    "Capital", "Media", "Energy", "Freight", "Studios", "Dynamics", "Networks", "Bio",
    "Retail", "Learning", "Security", "Cloud", "Data", "Payments", "Travel", "Mobility",
    "Insurance", "Markets", "Works", "Digital", "Solutions", "Partners", "Technologies",
    "Apparel", "Outdoors", "Interactive", "Ventures", "Clinics", "Manufacturing", "Legal",
)
_ROLES: tuple[str, ...] = (
    "Engineer", "Analyst", "Ops Manager", "Finance Manager", "Head of Data", "Developer",
    "Support Lead", "Product Manager", "Marketing Lead", "IT Administrator", "CTO",
    "VP Operations", "Data Scientist", "Account Executive",
)
_CSMS: dict[int, tuple[str, ...]] = {
    0: ("maya.chen", "ben.carter", "grace.okafor"),
    1: ("diego.morales", "emily.park", "tom.becker"),
    2: ("sophie.laurent", "hannah.vogel", "lars.eriksen", "jonas.weber"),
    3: ("ravi.menon", "aisha.rahman"),
}
_HANDLE_WORDS: tuple[str, ...] = (
    "data", "ops", "dev", "growth", "saas", "metrics", "product", "infra", "cloud", "pm",
    "founder", "analytics", "eng", "cs", "revops", "build", "ships", "codes", "writes",
)

_BROWSERS: tuple[str, ...] = ("Chrome", "Firefox", "Safari", "Edge")
_WHEN: tuple[str, ...] = (
    "this morning", "yesterday afternoon", "since the last release", "over the weekend",
    "since Monday", "about an hour ago",
)
_TEAMS: tuple[str, ...] = ("finance", "ops", "sales", "support", "leadership", "data")

_TICKETS: dict[str, tuple[tuple[str, str], ...]] = {
    "bug": (
        ("{Feature} not loading",
         ("Hi team,\n\nSince {when} {feature} won't load for several people on our side. We "
          "just get a spinner and then \"Something went wrong\". Tried {browser} and an "
          "incognito window, same result.\n\nCan you take a look?\n\nThanks,\n{first}")),
        ("Error 500 when using {feature}",
         ("Hello,\n\nwe're getting HTTP 500 errors from {feature} roughly {n} times an hour, "
          "starting {when}. Request IDs are available if that helps.\n\n{first}")),
        ("Numbers in {feature} don't match the export",
         ("Hi,\nthe totals shown in {feature} differ from the CSV export by about {n}%. "
          "Which one is right? Our {team} team is asking, and we need this sorted before "
          "month-end.\n\nBest,\n{first}")),
        ("{Feature} timing out",
         ("Opening {feature} takes forever and then times out (~30s) for our larger "
          "workspaces; smaller ones are fine. Is there a limit we're hitting?\n\n-- {first}")),
        ("Webhook deliveries failing intermittently",
         ("Hey, about 1 in {n} webhook deliveries to our endpoint fail with a timeout, but "
          "our server logs show nothing. Retries, backoff, all configured. Ideas?")),
    ),
    "how_to": (
        ("How do I schedule a weekly report?",
         ("Hi! I'd like {feature} to go out every Monday at 8am to our {team} team. Is "
          "that possible, and can recipients be outside our domain?\n\nThanks, {first}")),
        ("Question about API rate limits",
         ("Hello, what are the rate limits on the API for our plan? We're planning a sync "
          "of roughly {n}k records per day.\n\n{first}")),
        ("Inviting users in bulk",
         ("Is there a way to invite {n} users at once, e.g. from a CSV, instead of one by "
          "one?")),
        ("Setting up SSO for a second domain",
         ("Hi team,\nwe acquired another company and need SSO for their domain, too. How do "
          "we add a second identity provider?\n\nRegards,\n{first}")),
        ("Where can I find {feature}?",
         ("Probably a silly question, but I can't find {feature} in the new navigation. "
          "Where did it move to?")),
    ),
    "billing": (
        ("Invoice {invoice} has the wrong VAT number",
         ("Hello,\n\ninvoice {invoice} shows our old VAT number. Could you reissue it with "
          "the correct one? Our accounts payable won't process it otherwise.\n\n{first}")),
        ("Charged twice this month?",
         ("Hi, we see two charges of {amount} {currency} on our card this month. Can you "
          "check and refund the duplicate, please?")),
        ("Need a copy of invoice {invoice}",
         "Could you send a PDF copy of invoice {invoice} to our finance team? Thanks!"),
        ("Question about seat pricing",
         ("We have {seats} seats but only about half log in regularly. Do we pay for "
          "inactive users, and can we reduce seats mid-term?")),
        ("Updating our credit card",
         ("Our card expires at the end of the month; what's the best way to update it "
          "without interrupting the subscription?")),
    ),
    "feature_request": (
        ("Feature request: dark mode for dashboards",
         "Our ops team lives in dashboards all day, dark mode would be hugely appreciated."),
        ("Would love a Looker integration",
         ("Any plans for a native Looker integration? We currently export CSVs and "
          "re-import them, which is error-prone.")),
        ("Custom fields in {feature}",
         ("It would really help if {feature} supported custom fields, e.g. \"region\" and "
          "\"cost center\". Happy to jump on a call to explain our use case.\n\n{first}")),
        ("API endpoint for audit logs",
         ("Our security team needs to pull audit logs via the API for SOC 2. Is that on "
          "the roadmap?")),
        ("Granular permissions for {feature}",
         ("We'd like to give contractors read-only access to {feature} without exposing "
          "billing. Is something like that planned?")),
    ),
    "complaint": (
        ("Very disappointed with the recent outages",
         ("Hi,\n\nthis is the {n}th disruption this quarter. Our {team} team can't rely on "
          "{feature} anymore, and I have to explain it to leadership every time.\n\nWhat "
          "are you doing about reliability?\n\n{first}")),
        ("Third time this month {feature} is broken",
         ("Honestly, this is getting ridiculous. {Feature} broke again {when}. We pay a lot "
          "for this product, and it's the third time this month.")),
        ("Support response times are unacceptable",
         ("We opened a ticket {n} days ago and still have no real answer, just \"we're "
          "looking into it\". Please escalate.")),
        ("Your latest update broke our workflow",
         ("After the latest release the way {feature} works changed, and nobody told us. "
          "Our reports for the board are now wrong, and we found out the hard way.")),
        ("Considering alternatives",
         ("To be frank, we're evaluating alternatives. Working with {feature} feels slow, "
          "support is slow, and the price keeps going up. Convince me otherwise.")),
    ),
    "incident": (
        ("{Component} errors right now?",
         ("Is something down? For about {minutes} minutes now, everyone on our team in "
          "{region_label} gets errors from {feature}.\n\n{first}")),
        ("Outage? {Feature} failing",
         ("URGENT: we're getting errors from {feature} across the whole company. Nothing "
          "on your status page yet. Please advise ASAP.")),
        ("Lots of errors from {feature}",
         ("We're seeing a spike of errors from {feature}, started {minutes} minutes ago. "
          "Is there an incident?")),
    ),
    "cancel": (
        ("How do we cancel our subscription?",
         ("Hi,\n\nwe've decided not to continue with {brand}. How do we cancel, and will "
          "we get a pro-rated refund for the rest of the term?\n\n{first}")),
        ("Please cancel at the end of our term",
         ("Please don't renew our subscription. We're consolidating tools, nothing "
          "personal. Can we export our data first?")),
    ),
}
_TICKETS_LOCAL: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "de": {
        "bug": (("{Feature} lädt nicht",
                 ("Hallo zusammen,\n\nseit {when_de} lädt {feature} bei uns nicht mehr. "
                  "Könnt ihr bitte nachsehen?\n\nViele Grüße\n{first}")),),
        "complaint": (("Schon wieder Störungen",
                       ("Das ist jetzt die {n}. Störung in diesem Quartal. So können wir "
                        "nicht arbeiten – bitte um Rückmeldung.")),),
    },
    "fr": {
        "bug": (("{Feature} ne fonctionne plus",
                 ("Bonjour,\n\ndepuis ce matin, {feature} ne fonctionne plus chez nous. "
                  "Pouvez-vous regarder ?\n\nMerci,\n{first}")),),
        "how_to": (("Question sur les exports",
                    ("Bonjour, est-il possible de planifier un export hebdomadaire vers "
                     "notre équipe finance ? Merci d'avance.")),),
    },
    "es": {
        "bug": (("Error en {feature}",
                 ("Hola,\n\ndesde esta mañana {feature} da error para todo el equipo. "
                  "¿Podéis revisarlo?\n\nGracias,\n{first}")),),
        "billing": (("Factura {invoice} incorrecta",
                     ("Hola, la factura {invoice} tiene un NIF antiguo. ¿Podéis emitirla de "
                      "nuevo?")),),
    },
}

_MENTIONS: dict[str, tuple[str, ...]] = {
    "praise": (
        ("Honestly {brand_at} has made our Monday metrics review painless. {Feature}? It "
         "just works."),
        ("Shoutout to the {brand_at} support team, fixed our {feature} issue in under an "
         "hour 🙌"),
        "The new {feature} in {brand_at} is 🔥",
        "We moved the whole team onto {brand} last quarter and haven't looked back.",
        "Small thing, but the way {brand_at} handles {feature} is chef's kiss",
        "Renewed with {brand_at} today. Easiest vendor decision of the year.",
    ),
    "complaint": (
        "{brand_at} is {feature} down again? Third time this week…",
        "Getting really tired of {brand_at} {feature} timing out. We pay for this.",
        "Support ticket open for 4 days with {brand_at}, still no real answer. Not great.",
        ("Why did {brand_at} change {feature} without telling anyone?? Our whole workflow "
         "broke 😤"),
        "Per-seat pricing on {brand} for read-only users is wild. Looking at alternatives.",
        "{brand_at} flaky {feature} all month long. Please fix it.",
    ),
    "question": (
        "Does anyone know if {brand_at} supports SCIM provisioning?",
        "{brand_at} how do I get {feature} to run on a schedule?",
        "Anyone using {brand} with Snowflake? How's the {feature} experience?",
        "Is there a way to pull {feature} data out of {brand_at} via the API?",
        "Thinking about {brand} vs building it in-house. Thoughts, #saas people?",
    ),
    "noise": (
        "My pulse after climbing six flights of stairs 😵",
        "Finger on the pulse of the market today, crazy volatility",
        "Pulse oximeter says 97%, all good after the run",
        "New single 'Pulse' drops Friday 🔥🔥",
        "Keeping a pulse on the election results tonight",
        "Lentils, chickpeas, beans: pulses are underrated protein",
        "That bassline has a pulse of its own",
        "Pulse check: who's still awake? 😅",
    ),
    "incident": (
        "Is {brand_at} down? {Component} erroring for our whole team in {region_label}",
        ("{brand_at} getting a wall of errors from {feature} right now. Status page says "
         "nothing."),
        "Anyone else seeing {brand} {component} failures? Started ~{minutes} min ago",
        "{brand_at} outage again? {Feature} just stopped working for us.",
    ),
    "reply": (
        ("@{handle} Sorry about that! We're looking into it. Could you DM us the email on "
         "your account so we can dig in?"),
        ("@{handle} Thanks for flagging. Our team is on it; updates at "
         "status.pulse-demo.example"),
        ("@{handle} Good question! This guide should help: "
         "https://docs.pulse-demo.example/{feature_slug}"),
    ),
}
_MENTIONS_LOCAL: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "praise": (("Richtig gutes Update von {brand_at} – {feature} ist jetzt deutlich "
                   "schneller. 👍"),),
        "complaint": (("Seit heute Morgen lädt {feature} bei {brand_at} nicht mehr. "
                      "Ärgerlich!"),),
        "question": ("Weiß jemand, ob {brand_at} auch SSO mit Azure AD unterstützt?",),
    },
    "fr": {
        "praise": ("Très contente du support de {brand_at}, réponse en 5 minutes 👏",),
        "complaint": (("Encore une panne chez {brand_at}… {feature} inutilisable depuis ce "
                      "matin."),),
        "question": ("Quelqu'un a déjà connecté {brand} à Salesforce ? Des retours ?",),
    },
    "es": {
        "praise": (("¡Qué gusto trabajar con {brand_at}! El nuevo {feature} nos ahorra "
                   "horas."),),
        "complaint": (("¿Alguien más tiene problemas con {brand_at} hoy? {feature} no "
                      "funciona."),),
        "question": ("¿{brand_at} tiene API para exportar datos de {feature}?",),
    },
}
_INCIDENT_TITLES: dict[str, tuple[str, ...]] = {
    "api": ("Elevated API error rates", "Increased API latency and timeouts"),
    "dashboard": ("Dashboards failing to load", "Degraded dashboard performance"),
    "reports": ("Delayed report generation", "Report exports failing"),
    "integrations": ("Slack notifications delayed", "Salesforce sync failures"),
    "auth": ("SSO login failures", "Users unable to sign in"),
    "billing-portal": ("Billing portal unavailable", "Errors loading invoices"),
}

#: Values a malformed row may carry.
_BAD_TIMESTAMPS: tuple[str, ...] = (
    "yesterday", "2026-13-45T99:00", "not a timestamp", "2026-02-30T10:00:00Z",
    "31/12/2026 25:61", "TBD",
)
_BAD_DATES: tuple[str, ...] = ("2026-02-30", "31/12/2026", "next year", "2026-13-01", "TBD")
_BAD_DECIMALS: tuple[str, ...] = ("abc", "N/A", "12.5.1", "--", "1O0")
_BAD_EMAILS: tuple[str, ...] = (
    "bob@", "no-at-sign", "@acme.example", "jane doe@acme.example", "anna@@acme.example",
)
_BAD_TIMEZONES: tuple[str, ...] = ("Mars/Olympus", "Europe/Atlantis", "GMT+25",
                                   "Pacific/Nowhere")


@dataclass(frozen=True)
class DemoSummary:
    """What `generate()` wrote."""

    out_dir: Path
    files: dict[str, Path]
    rows: dict[str, int]
    malformed: dict[str, int]
    truth_path: Path


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

_TRANSLIT = str.maketrans({
    "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss",
    "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ł": "l", "Ł": "L",
})


def _ascii(text: str) -> str:
    """Transliterate to ASCII (Müller -> Mueller, Zoë -> Zoe)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _slug(text: str) -> str:
    return "".join(ch for ch in _ascii(text).lower() if ch.isalnum())


def _rng(seed: int, stage: int) -> np.random.Generator:
    """An independent random stream per stage, so stages do not shift each other."""
    return np.random.default_rng([stage, seed & 0xFFFF_FFFF_FFFF_FFFF])


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _choice(rng: np.random.Generator, p: Sequence[float]) -> int:
    return int(rng.choice(len(p), p=np.asarray(p, dtype=float) / float(np.sum(p))))


def _epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 86400


def _offset_label(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _fmt_ts(ts: np.ndarray, off_min: np.ndarray, style: np.ndarray,
            millis: bool = False) -> list[str]:
    """ISO 8601 strings: style 0 as `...Z`, 1 in the given UTC offset, 2 without offset."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return []
    style = np.asarray(style)
    off = np.where(style == 1, np.asarray(off_min, dtype=np.int64), 0)
    body = np.datetime_as_string((ts + off * 60).astype("datetime64[s]"), unit="s").tolist()
    uniq, inv = np.unique(off, return_inverse=True)
    labels = [_offset_label(int(o)) for o in uniq]
    frac = ".000" if millis else ""
    out: list[str] = []
    for b, s, i in zip(body, style.tolist(), inv.tolist()):
        if s == 0:
            out.append(f"{b}{frac}Z")
        elif s == 1:
            out.append(b + labels[i])
        else:
            out.append(b)
    return out


def _fmt1(ts: int, off_min: int = 0, style: int = 0) -> str:
    return _fmt_ts(np.array([ts]), np.array([off_min]), np.array([style]))[0]


def _styles(rng: np.random.Generator, n: int, p_offset: float, p_naive: float) -> np.ndarray:
    return rng.choice(3, size=n, p=[1.0 - p_offset - p_naive, p_offset, p_naive])


def _money(x: float) -> str:
    return f"{x:.2f}"


class _Fill(dict[str, str]):
    """A format_map mapping that leaves unknown placeholders visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    """The window: `days` days ending on `end`; nothing after `limit_ts` (<= now)."""

    start: date
    end: date
    days: int
    start_ts: int
    limit_ts: int
    dow: np.ndarray
    tz_off: np.ndarray  # (len(_TZ), days) UTC offset in minutes at noon UTC of each day

    @classmethod
    def make(cls, end: date, days: int, now: datetime) -> _Clock:
        start = end - timedelta(days=days - 1)
        start_ts = _epoch(start)
        limit_ts = min(_epoch(end) + 86399, int(now.timestamp()))
        dow = (np.arange(days) + start.weekday()) % 7
        tz_off = np.zeros((len(_TZ), days), dtype=np.int64)
        for t, spec in enumerate(_TZ):
            try:
                zone = ZoneInfo(spec.name)
            except (ZoneInfoNotFoundError, ValueError):
                tz_off[t, :] = spec.std_offset_min
                continue
            last = None
            for d in range(days):
                noon = datetime.fromtimestamp(start_ts + d * 86400 + 43200, tz=UTC)
                off = noon.astimezone(zone).utcoffset()
                last = int(off.total_seconds() // 60) if off is not None else spec.std_offset_min
                tz_off[t, d] = last
        return cls(start, end, days, start_ts, limit_ts, dow, tz_off)

    def at(self, day: np.ndarray, sec: np.ndarray, squeeze: bool = True) -> np.ndarray:
        """Epoch seconds of (day index, second of UTC day).

        While the last day is still running, `squeeze` maps its whole day into the part that
        has passed; otherwise callers drop what lies after `limit_ts` themselves.
        """
        day = np.asarray(day, dtype=np.int64)
        sec = np.asarray(sec, dtype=np.int64)
        ts = self.start_ts + day * 86400 + sec
        last_start = self.start_ts + (self.days - 1) * 86400
        span = self.limit_ts - last_start + 1
        if squeeze and span < 86400:
            ts = np.where(day == self.days - 1, last_start + (sec * span) // 86400, ts)
        return ts

    def at1(self, day: int, sec: int) -> int:
        return int(self.at(np.array([day]), np.array([sec]))[0])

    def day_of(self, ts: int) -> int:
        return (ts - self.start_ts) // 86400


def _local_secs(rng: np.random.Generator, off_min: np.ndarray, mean_h: float = 13.5,
                sd_h: float = 2.8, lo_h: float = 6.5, hi_h: float = 22.5) -> np.ndarray:
    """Seconds of the UTC day for local business-hours activity in the given offsets."""
    off_min = np.asarray(off_min, dtype=np.int64)
    local = np.clip(rng.normal(mean_h, sd_h, off_min.shape), lo_h, hi_h) * 3600.0
    return (local.astype(np.int64) - off_min * 60) % 86400


def _local_sec1(rng: np.random.Generator, off_min: int, mean_h: float = 13.5,
                sd_h: float = 2.8) -> int:
    return int(_local_secs(rng, np.array([off_min]), mean_h, sd_h)[0])


# --------------------------------------------------------------------------------------
# Accounts, contacts, behaviour
# --------------------------------------------------------------------------------------


@dataclass
class _Accounts:
    n: int
    ids: list[str]
    names: list[str]
    domains: list[str]
    handles: list[str]
    csm: list[str]
    region: np.ndarray
    tz: np.ndarray
    segment: np.ndarray
    plan0: np.ndarray
    seats0: np.ndarray
    mrr0: np.ndarray
    currency: list[str]
    created_day: np.ndarray
    created_ts: np.ndarray
    annual: np.ndarray
    engagement: np.ndarray
    adopt: np.ndarray


@dataclass
class _Contacts:
    n: int
    ids: list[str]
    acc: np.ndarray
    tz: np.ndarray
    engagement: np.ndarray
    first: list[str]
    names: list[str]
    emails: list[str]
    roles: list[str]
    locales: list[str]
    handles: list[str]
    by_acc: list[list[int]]


@dataclass
class _Groups:
    group: np.ndarray  # index into GROUPS
    cancel_day: np.ndarray  # -1: none
    cancel_ts: np.ndarray  # int64 max: none
    fade_start: np.ndarray  # -1: none

    def name(self, i: int) -> str:
        return GROUPS[int(self.group[i])]


def _make_accounts(rng: np.random.Generator, n: int, clock: _Clock,
                   used_handles: set[str]) -> _Accounts:
    days = clock.days
    width = max(5, len(str(n)))
    ids = [f"ACC-{i + 1:0{width}d}" for i in range(n)]
    region = rng.choice(len(REGIONS), size=n, p=_REGION_WEIGHT)
    tz = np.zeros(n, dtype=np.int64)
    for r in range(len(REGIONS)):
        members = np.flatnonzero(region == r)
        cands = [t for t, spec in enumerate(_TZ) if spec.region == r]
        w = np.array([_TZ[t].weight for t in cands])
        tz[members] = rng.choice(cands, size=members.size, p=w / w.sum())
    segment = rng.choice(3, size=n, p=[0.6, 0.28, 0.12])
    plan_p = np.array([[0.60, 0.35, 0.05, 0.00],
                       [0.10, 0.45, 0.40, 0.05],
                       [0.00, 0.05, 0.35, 0.60]])
    plan0 = np.array([rng.choice(4, p=plan_p[s]) for s in segment], dtype=np.int64)
    seat_median = np.array([8.0, 45.0, 260.0])[segment]
    seat_sigma = np.array([0.7, 0.6, 0.75])[segment]
    seats0 = np.maximum(1, np.round(rng.lognormal(np.log(seat_median), seat_sigma)))
    seats0 = np.where(plan0 == 0, np.minimum(seats0, 40), seats0).astype(np.int64)
    price = np.array([12.0, 22.0, 38.0, 55.0])[plan0]
    minimum = np.array([29.0, 149.0, 599.0, 2000.0])[plan0]
    usd = np.maximum(minimum, seats0 * price * rng.lognormal(0.0, 0.25, n))
    pilot = (plan0 == 0) & (rng.random(n) < 0.02)
    currency: list[str] = []
    fx = np.ones(n)
    for i in range(n):
        cur = _TZ[tz[i]].currency
        if cur != "USD" and rng.random() < 0.25:
            cur = "USD"
        currency.append(cur)
        fx[i] = _FX[cur]
    mrr0 = np.where(pilot, 0.0, np.round(usd * fx, 2))

    created_day = np.zeros(n, dtype=np.int64)
    new = (rng.random(n) < 0.07) if days >= 21 else np.zeros(n, dtype=bool)
    created_day[new] = rng.integers(0, max(1, days - 14), size=int(new.sum()))
    age = np.minimum(2900, 14 + rng.lognormal(np.log(420.0), 0.8, n)).astype(np.int64)
    created_day[~new] = -age[~new]
    hq_off = np.array([clock.tz_off[tz[i], max(0, created_day[i])] for i in range(n)])
    created_ts = clock.start_ts + created_day * 86400 + _local_secs(rng, hq_off, 11.5, 2.5)
    created_ts = np.where(new, clock.at(np.maximum(created_day, 0),
                                        created_ts - clock.start_ts - created_day * 86400),
                          created_ts)
    annual_p = np.array([0.08, 0.35, 0.85, 0.9])[plan0]
    annual = rng.random(n) < annual_p
    engagement = rng.lognormal(0.0, 0.25, n)
    adopt = rng.random((n, _NF)) < _ADOPTION[plan0]
    adopt[:, _F_DASHBOARDS] = True

    names: list[str] = []
    domains: list[str] = []
    handles: list[str] = []
    csm: list[str] = []
    used_base: set[str] = set()
    used_domains: set[str] = set()
    for i in range(n):
        spec = _TZ[tz[i]]
        word, industry, base = "", "", ""
        for attempt in range(60):
            if spec.pool in ("de", "fr", "es", "nl", "nordic") and rng.random() < 0.3:
                word = _pick(rng, _NAMES[spec.pool][1])
            else:
                word = _pick(rng, _COMPANY_WORDS)
            industry = _pick(rng, _INDUSTRIES)
            base = f"{word} {industry}"
            if attempt >= 30:
                word = f"{word} {_pick(rng, _COMPANY_WORDS)}"
                base = f"{word} {industry}"
            if base not in used_base:
                break
        else:
            word = f"{word} {i}"
            base = f"{word} {industry}"
        used_base.add(base)
        names.append(base + _pick(rng, _LEGAL[spec.country]))
        a, b = _slug(word), _slug(industry)
        r = rng.random()
        dom = f"{a}-{b}.example" if r < 0.25 else (
            f"{a}{b}hq.example" if r < 0.35 else f"{a}{b}.example")
        while dom in used_domains:
            dom = dom.replace(".example", "1.example")
        used_domains.add(dom)
        domains.append(dom)
        handle = ""
        if rng.random() < 0.45:
            options = (f"{a}{b}", f"{a}hq", f"get{a}", f"{a}_{b[:4]}", f"{a}{b[:3]}")
            cand = _pick(rng, options)[:15]
            if cand not in used_handles and len(cand) >= 4:
                handle = cand
                used_handles.add(cand)
        handles.append(handle)
        if rng.random() < 0.02:
            csm.append("")
        elif segment[i] == 0 and rng.random() < 0.6:
            csm.append(f"cs-team@{VENDOR_DOMAIN}")
        else:
            csm.append(f"{_pick(rng, _CSMS[int(region[i])])}@{VENDOR_DOMAIN}")
    return _Accounts(n, ids, names, domains, handles, csm, region, tz, segment, plan0, seats0,
                     mrr0, currency, created_day, created_ts, annual, engagement, adopt)


def _make_contacts(rng: np.random.Generator, acc: _Accounts, used_handles: set[str]
                   ) -> _Contacts:
    per = np.clip(1 + rng.poisson(0.8 * np.log1p(acc.seats0)), 1, 30)
    ids: list[str] = []
    acc_idx: list[int] = []
    tzs: list[int] = []
    firsts: list[str] = []
    names: list[str] = []
    emails: list[str] = []
    roles: list[str] = []
    locales: list[str] = []
    handles: list[str] = []
    by_acc: list[list[int]] = []
    same_region = {r: [t for t, s in enumerate(_TZ) if s.region == r] for r in range(4)}
    for i in range(acc.n):
        pattern = _choice(rng, [0.45, 0.2, 0.15, 0.1, 0.1])
        used_local: set[str] = set()
        mine: list[int] = []
        for j in range(int(per[i])):
            u = rng.random()
            if u < 0.72:
                t = int(acc.tz[i])
            elif u < 0.95:
                t = int(_pick(rng, same_region[int(acc.region[i])]))
            else:
                t = int(rng.integers(len(_TZ)))
            spec = _TZ[t]
            first = _pick(rng, _NAMES[spec.pool][0])
            last = _pick(rng, _NAMES[spec.pool][1])
            f, l_ = _slug(first), _slug(last)
            local = (f"{f}.{l_}", f"{f[:1]}{l_}", f, f"{f}_{l_}", f"{f}{l_[:1]}")[pattern]
            k = 2
            cand = local
            while cand in used_local:
                cand = f"{local}{k}"
                k += 1
            used_local.add(cand)
            handle = ""
            if rng.random() < 0.18:
                opts = (f"{f}{l_}", f"{f}_{l_}", f"{f}{int(rng.integers(10, 99))}",
                        f"{f[:1]}{l_}_{_pick(rng, _HANDLE_WORDS)}", f"{f}_{_pick(rng, _HANDLE_WORDS)}")
                h = _pick(rng, opts)[:15]
                if h not in used_handles and len(h) >= 4:
                    handle = h
                    used_handles.add(h)
            idx = len(ids)
            ids.append(f"C-{idx + 1:06d}")
            acc_idx.append(i)
            tzs.append(t)
            firsts.append(first)
            names.append(f"{first} {last}")
            emails.append(f"{cand}@{acc.domains[i]}")
            roles.append(_pick(rng, ("Admin", "Owner")) if j == 0 else _pick(rng, _ROLES))
            locales.append(spec.locale)
            handles.append(handle)
            mine.append(idx)
        by_acc.append(mine)
    n = len(ids)
    engagement = rng.beta(2.0, 3.5, n)
    first_of_account = np.zeros(n, dtype=bool)
    first_of_account[[m[0] for m in by_acc]] = True
    engagement = np.where(first_of_account, np.minimum(engagement + 0.15, 0.95), engagement)
    return _Contacts(n, ids, np.array(acc_idx, dtype=np.int64), np.array(tzs, dtype=np.int64),
                     engagement, firsts, names, emails, roles, locales, handles, by_acc)


def _assign_groups(rng: np.random.Generator, acc: _Accounts, con: _Contacts, clock: _Clock
                   ) -> _Groups:
    n, days = acc.n, clock.days
    group = np.zeros(n, dtype=np.int64)
    old = np.flatnonzero(acc.created_day < 0)

    def count(frac: float) -> int:
        k = round(frac * n)
        return max(k, 1) if n >= 20 else k

    monthly_old = old[~acc.annual[old] & (acc.mrr0[old] > 0)]
    pay = rng.permutation(monthly_old)[: count(0.04)]
    group[pay] = GROUPS.index("payment_trouble")
    # Fading needs something to fade from: busier accounts are likelier to fade or churn.
    people = np.array([len(c) for c in con.by_acc], dtype=float)
    for name, frac, busy in (("silent_fade", 0.08, True), ("loud_complainer", 0.07, False),
                             ("churner", 0.06, True)):
        pool = old[group[old] == 0]
        k = min(count(frac), pool.size)
        if k == 0:
            continue
        w = np.sqrt(people[pool]) if busy else np.ones(pool.size)
        group[rng.choice(pool, size=k, replace=False, p=w / w.sum())] = GROUPS.index(name)
    cancel_day = np.full(n, -1, dtype=np.int64)
    cancel_ts = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    fade_start = np.full(n, -1, dtype=np.int64)
    churners = np.flatnonzero(group == GROUPS.index("churner"))
    lo = max(int(days * 0.45), days - 60, 1)
    hi = max(lo + 1, days - 3)
    for i in churners:
        c = int(rng.integers(lo, hi)) if days > 3 else days - 1
        cancel_day[i] = c
        off = int(clock.tz_off[acc.tz[i], c])
        cancel_ts[i] = clock.at1(c, _local_sec1(rng, off))
    for i in np.flatnonzero(group == GROUPS.index("silent_fade")):
        length = int(rng.integers(30, 61))
        fade_start[i] = max(0, days - length)
    return _Groups(group, cancel_day, cancel_ts, fade_start)


def _trajectories(rng: np.random.Generator, acc: _Accounts, grp: _Groups, clock: _Clock
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-(account, day) usage level and error rate."""
    n, days = acc.n, clock.days
    d = np.arange(days, dtype=float)
    eps = rng.normal(0.0, 0.25, (n, days + 6))
    csum = np.cumsum(np.pad(eps, ((0, 0), (1, 0))), axis=1)
    smooth = (csum[:, 7:] - csum[:, :-7]) / 7.0
    trend = np.clip(rng.normal(0.04, 0.12, n), -0.25, 0.5)
    level = acc.engagement[:, None] * np.exp(smooth) * (1.0 + trend[:, None] * d / days)
    base_err = np.clip(rng.lognormal(np.log(0.012), 0.6, n), 0.002, 0.08)
    err = base_err[:, None] * np.exp(rng.normal(0.0, 0.3, (n, days)))

    g = grp.group
    healthy = np.flatnonzero(g == 0)
    for i in healthy:
        u = rng.random()
        if u < 0.12 and days >= 14:  # a temporary dip (holidays, a re-org)
            a = int(rng.integers(0, days - 7))
            length = int(rng.integers(5, 22))
            level[i, a: a + length] *= rng.uniform(0.35, 0.75)
        elif u < 0.18 and days >= 50 and acc.created_day[i] < 0:  # faded, then recovered
            room = days - 30
            ld, lr = int(rng.integers(14, 30)), int(rng.integers(7, 20))
            a = int(rng.integers(0, max(1, room - ld - lr)))
            trough = rng.uniform(0.3, 0.6)
            shape = np.ones(days)
            shape[a: a + ld] = np.linspace(1.0, trough, ld)[: max(0, min(ld, days - a))]
            b = a + ld
            shape[b: b + lr] = np.linspace(trough, 0.95, lr)[: max(0, min(lr, days - b))]
            level[i] *= shape
            err[i, a: a + ld] += rng.uniform(0.02, 0.06)
        elif u < 0.23:  # a slow decline, milder than a silent fade
            level[i] *= np.linspace(1.0, rng.uniform(0.7, 0.85), days)
        elif u < 0.28 and days >= 14:  # a buggy spell: errors up, usage fine
            a = int(rng.integers(0, days - 7))
            err[i, a: a + int(rng.integers(5, 15))] += rng.uniform(0.03, 0.1)

    for i in np.flatnonzero(grp.fade_start >= 0):
        s = int(grp.fade_start[i])
        length = days - s
        floor = rng.uniform(0.08, 0.3)
        ramp = np.linspace(0.0, 1.0, length)
        level[i, s:] *= 1.0 - (1.0 - floor) * ramp ** rng.uniform(0.6, 1.0)
        err[i, s:] += ramp * rng.uniform(0.08, 0.22)
    for i in np.flatnonzero(grp.cancel_day >= 0):
        c = int(grp.cancel_day[i])
        length = int(rng.integers(1, 7)) if rng.random() < 0.25 else int(rng.integers(20, 51))
        s = max(0, c - length)
        if c > s:
            ramp = np.linspace(0.0, 1.0, c - s)
            level[i, s:c] *= 1.0 - (1.0 - rng.uniform(0.2, 0.5)) * ramp
            err[i, s:c] += ramp * rng.uniform(0.02, 0.08)
        level[i, c:] = 0.0
    loud = g == GROUPS.index("loud_complainer")
    err[loud] *= 1.3
    for i in np.flatnonzero(acc.created_day >= 0):
        c = int(acc.created_day[i])
        level[i, :c] = 0.0
        ramp_len = min(21, days - c)
        level[i, c: c + ramp_len] *= np.linspace(0.35, 1.0, 21)[:ramp_len]
    return level, np.clip(err, 0.0, 0.6)


# --------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Incident:
    id: str
    title: str
    start_ts: int
    end_ts: int  # resolved_at, or the window limit while ongoing
    resolved: bool
    status: str
    impact: str
    components: tuple[str, ...]
    regions: tuple[str, ...]

    @property
    def impact_factor(self) -> float:
        return {"none": 0.15, "minor": 0.6, "major": 1.0, "critical": 1.6}[self.impact]


def _make_incidents(rng: np.random.Generator, clock: _Clock) -> list[_Incident]:
    days = clock.days
    n = min(int(rng.integers(4, 9)), max(0, days - 1))
    if n == 0:
        return []
    start_days = np.sort(rng.choice(np.arange(1, days), size=n, replace=False))
    out: list[_Incident] = []
    for k, day in enumerate(start_days.tolist()):
        start = clock.at1(day, int(rng.integers(0, 86400)))
        minutes = float(np.clip(rng.lognormal(np.log(100.0), 0.7), 20, 600))
        end = start + int(minutes * 60)
        ncomp = 1 if rng.random() < 0.7 else 2
        comps = tuple(sorted(rng.choice(len(COMPONENTS), size=ncomp, replace=False).tolist()))
        components = tuple(COMPONENTS[c] for c in comps)
        u = rng.random()
        nreg = 1 if u < 0.55 else (2 if u < 0.9 else len(REGIONS))
        regs = tuple(sorted(rng.choice(len(REGIONS), size=nreg, replace=False).tolist()))
        regions = tuple(REGIONS[r] for r in regs)
        impact = INCIDENT_IMPACTS[_choice(rng, [0.08, 0.42, 0.38, 0.12])]
        if len(components) == 1:
            title = _pick(rng, _INCIDENT_TITLES[components[0]])
        else:
            title = "Degraded performance: " + " and ".join(
                _COMPONENT_LABEL[c] for c in components)
        where = "all regions" if len(regions) == len(REGIONS) else ", ".join(
            _REGION_LABEL[r] for r in regions)
        title = f"{title} ({where})"
        if end <= clock.limit_ts:
            resolved, status = True, "resolved"
        else:
            resolved = False
            elapsed = clock.limit_ts - start
            status = ("investigating" if elapsed < 1200 else
                      "identified" if elapsed < 3600 else "monitoring")
            end = clock.limit_ts
        inc_id = f"INC-{(clock.start + timedelta(days=day)).strftime('%Y%m%d')}-{k + 1:02d}"
        out.append(_Incident(inc_id, title, start, end, resolved, status, impact, components,
                             regions))
    return out


def _live(inc: _Incident, clock: _Clock) -> _Incident:
    """The incident, moved to the last 50 minutes of the window and still open."""
    start = max(clock.start_ts, clock.limit_ts - 50 * 60)
    day = (start - clock.start_ts) // 86400
    suffix = inc.id.rsplit("-", 1)[1]
    inc_id = f"INC-{(clock.start + timedelta(days=day)).strftime('%Y%m%d')}-{suffix}"
    return _Incident(inc_id, inc.title, start, clock.limit_ts, False, "identified", "major",
                     inc.components, inc.regions)


# --------------------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------------------


def _hex_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    while True:
        raw = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64)
        if np.unique(raw).size == n:
            return [f"{prefix}{x:016x}" for x in raw.tolist()]


def _make_usage(rng: np.random.Generator, acc: _Accounts, con: _Contacts, grp: _Groups,
                level: np.ndarray, err_rate: np.ndarray, clock: _Clock,
                incidents: list[_Incident]) -> tuple[list[tuple[str, ...]], dict[str, list[int]]]:
    days = clock.days
    # People: one row per (contact, day, feature).
    weights = rng.gamma(2.0, 1.0, (con.n, _NF)) * _PERSON_WEIGHT[None, :] * acc.adopt[con.acc]
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    wday = _WEEKDAY_PEOPLE[clock.dow]
    p_active = np.minimum(con.engagement[:, None] * level[con.acc] * wday[None, :], 0.95)
    # People come and go: a few join or leave any account; in a fading or churning account
    # most people drift away, one by one, while a champion hangs on.
    u = rng.random(con.n)
    joins = np.where(u < 0.05, rng.integers(0, days, con.n), 0)
    leaves = np.where(u > 0.95, rng.integers(0, days, con.n), days)
    for i in np.flatnonzero((grp.fade_start >= 0) | (grp.cancel_day >= 0)).tolist():
        start = int(grp.fade_start[i]) if grp.fade_start[i] >= 0 else max(
            0, int(grp.cancel_day[i]) - 40)
        people = con.by_acc[i]
        champion = int(_pick(rng, people))
        for c in people:
            if c != champion:
                leaves[c] = min(leaves[c], start + int(rng.integers(0, 2 * (days - start) + 1)))
    dd = np.arange(days)[None, :]
    p_active = np.where((dd >= joins[:, None]) & (dd < leaves[:, None]), p_active,
                        p_active * 0.05)
    ci, di = np.nonzero(rng.random((con.n, days)) < p_active)
    k = np.minimum(1 + rng.poisson(0.45 * np.minimum(level[con.acc[ci], di], 1.5)), 4)
    rc, rd = np.repeat(ci, k), np.repeat(di, k)
    u = 1.0 - rng.random(rc.size)
    feat = np.empty(rc.size, dtype=np.int64)
    for lo in range(0, rc.size, 200_000):
        hi = lo + 200_000
        feat[lo:hi] = (cum[rc[lo:hi]] < u[lo:hi, None]).sum(axis=1)
    key = np.unique((rc.astype(np.int64) * days + rd) * _NF + feat)
    p_contact = key // (days * _NF)
    p_day = (key // _NF) % days
    p_feat = key % _NF
    p_acc = con.acc[p_contact]
    lv = level[p_acc, p_day]
    p_qty = 1 + rng.poisson(_PERSON_QTY[p_feat] * np.clip(lv, 0.3, 2.0))
    p_err = rng.random(key.size) < err_rate[p_acc, p_day]
    p_qty = np.where(p_err, 1 + rng.poisson(1.0, key.size), p_qty)
    p_off = clock.tz_off[con.tz[p_contact], p_day]
    p_ts = clock.at(p_day, _local_secs(rng, p_off), squeeze=False)

    # Service traffic: one row per (account, day, API feature), no contact.
    s_parts: list[tuple[np.ndarray, ...]] = []
    svc_p = np.array([0.5, 0.75, 0.9, 1.0])[acc.plan0]
    for f, per_seat in _SERVICE_PER_SEAT.items():
        has = acc.adopt[:, f] & (rng.random(acc.n) < svc_p)
        p = np.clip(0.9 * level, 0.0, 0.97)
        p = p * _WEEKDAY_SERVICE[clock.dow][None, :] * has[:, None]
        ai, dd = np.nonzero(rng.random((acc.n, days)) < p)
        mean = acc.seats0[ai] * per_seat * np.clip(level[ai, dd], 0.05, 3.0)
        qty = np.maximum(1, np.round(rng.lognormal(np.log(mean), 0.4))).astype(np.int64)
        ts = clock.at(dd, rng.integers(0, 86400, ai.size), squeeze=False)
        ff = np.full(ai.size, f, dtype=np.int64)
        s_parts.append((ai, dd, ff, qty, np.zeros(ai.size, dtype=bool), ts))
        e_rate = err_rate[ai, dd]
        e = rng.random(ai.size) < np.minimum(0.9, e_rate * 3)
        eq = np.maximum(1, np.round(qty[e] * e_rate[e] * rng.lognormal(0.0, 0.5, int(e.sum()))))
        ets = clock.at(dd[e], rng.integers(0, 86400, int(e.sum())), squeeze=False)
        s_parts.append((ai[e], dd[e], ff[e], eq.astype(np.int64),
                        np.ones(int(e.sum()), dtype=bool), ets))

    a_acc = np.concatenate([p_acc] + [p[0] for p in s_parts])
    a_feat = np.concatenate([p_feat] + [p[2] for p in s_parts])
    a_qty = np.concatenate([p_qty] + [p[3] for p in s_parts])
    a_err = np.concatenate([p_err] + [p[4] for p in s_parts])
    a_ts = np.concatenate([p_ts] + [p[5] for p in s_parts])
    a_con = np.concatenate([p_contact] + [np.full(p[0].size, -1, dtype=np.int64)
                                          for p in s_parts])
    a_off = np.concatenate([p_off] + [clock.tz_off[acc.tz[p[0]], p[1]] for p in s_parts])

    # Incidents: errors during the window, plus bursts for accounts using the components.
    burst: list[tuple[int, int, int, int, int, int]] = []
    region_of = acc.region
    for inc in incidents:
        comp_feats = [j for j, f in enumerate(_FEATURE_LIST) if FEATURES[f] in inc.components]
        reg_idx = [REGIONS.index(r) for r in inc.regions]
        in_win = ((a_ts >= inc.start_ts) & (a_ts <= inc.end_ts)
                  & np.isin(a_feat, comp_feats) & np.isin(region_of[a_acc], reg_idx))
        flip = in_win & (rng.random(a_ts.size) < 0.85)
        a_err = a_err | flip
        a_qty = np.where(flip & (a_qty > 5), np.maximum(1, a_qty // 3), a_qty)
        day = clock.day_of(inc.start_ts)
        hours = max(0.25, (inc.end_ts - inc.start_ts) / 3600.0)
        uses = acc.adopt[:, comp_feats].any(axis=1)
        cand = np.flatnonzero(np.isin(region_of, reg_idx) & uses & (level[:, day] > 0))
        p_hit = 1.0 - np.exp(-hours * 0.8 * inc.impact_factor
                             * np.minimum(level[cand, day], 1.5)
                             * max(0.3, float(_WEEKDAY_PEOPLE[clock.dow[day]])))
        hit = cand[rng.random(cand.size) < p_hit]
        for i in hit.tolist():
            feats = [f for f in comp_feats if acc.adopt[i, f]]
            chosen = [f for f in feats if rng.random() < 0.8] or [feats[0]]
            for f in chosen:
                people = con.by_acc[i]
                if f in (_F_API, _F_WEBHOOKS) and rng.random() < 0.7:
                    c = -1
                else:
                    c = int(_pick(rng, people))
                qty = 1 + int(rng.poisson(1 + 2 * inc.impact_factor * np.log1p(acc.seats0[i])))
                ts = int(rng.integers(inc.start_ts, inc.end_ts + 1))
                off = int(clock.tz_off[con.tz[c] if c >= 0 else acc.tz[i], day])
                burst.append((i, f, qty, ts, c, off))
    if burst:
        b = np.array(burst, dtype=np.int64)
        a_acc = np.concatenate([a_acc, b[:, 0]])
        a_feat = np.concatenate([a_feat, b[:, 1]])
        a_qty = np.concatenate([a_qty, b[:, 2]])
        a_ts = np.concatenate([a_ts, b[:, 3]])
        a_con = np.concatenate([a_con, b[:, 4]])
        a_off = np.concatenate([a_off, b[:, 5]])
        a_err = np.concatenate([a_err, np.ones(len(burst), dtype=bool)])

    # Nothing before an account exists, after it cancelled, or after the window.
    keep = ((a_ts >= acc.created_ts[a_acc]) & (a_ts < grp.cancel_ts[a_acc])
            & (a_ts <= clock.limit_ts))
    order = np.flatnonzero(keep)[np.argsort(a_ts[keep], kind="stable")]
    a_acc, a_feat, a_qty, a_ts = a_acc[order], a_feat[order], a_qty[order], a_ts[order]
    a_con, a_off, a_err = a_con[order], a_off[order], a_err[order]
    n = a_ts.size

    hits: dict[str, list[int]] = {}
    for inc in incidents:
        comp_feats = [j for j, f in enumerate(_FEATURE_LIST) if FEATURES[f] in inc.components]
        reg_idx = [REGIONS.index(r) for r in inc.regions]
        m = (a_err & (a_ts >= inc.start_ts) & (a_ts <= inc.end_ts)
             & np.isin(a_feat, comp_feats) & np.isin(region_of[a_acc], reg_idx))
        hits[inc.id] = sorted(set(a_acc[m].tolist()))

    event_ids = _hex_ids(rng, n, "evt_")
    stamps = _fmt_ts(a_ts, a_off, _styles(rng, n, 0.08, 0.02))
    acc_ids = np.array(acc.ids, dtype=object)[a_acc].tolist()
    con_lookup = np.array(con.ids + [""], dtype=object)
    con_ids = con_lookup[np.where(a_con >= 0, a_con, con.n)].tolist()
    feat_names = np.array(_FEATURE_LIST, dtype=object)[a_feat].tolist()
    comp_names = np.array(COMPONENTS + ("",), dtype=object)[
        np.where(rng.random(n) < 0.04, len(COMPONENTS), _FEATURE_COMPONENT_IDX[a_feat])].tolist()
    reg_names = np.array(REGIONS + ("",), dtype=object)[
        np.where(rng.random(n) < 0.05, len(REGIONS), region_of[a_acc])].tolist()
    qty_txt = a_qty.astype(str).astype(object)
    qty_txt[(a_qty == 1) & (rng.random(n) < 0.04)] = ""
    outcome = np.where(a_err, "error", "ok").astype(object)
    outcome[~a_err & (rng.random(n) < 0.03)] = ""
    rows = list(zip(event_ids, acc_ids, stamps, feat_names, con_ids, comp_names, reg_names,
                    qty_txt.tolist(), outcome.tolist()))
    return rows, hits


# --------------------------------------------------------------------------------------
# Purchases
# --------------------------------------------------------------------------------------


@dataclass
class _Billing:
    rows: list[tuple[str, ...]]
    mrr: np.ndarray
    plan: np.ndarray
    seats: np.ndarray
    renewal: list[str]


def _add_months(day: date, months: int, dom: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    return date(day.year + y, m + 1, min(dom, 28))


_Event = tuple[int, int, str, str, str, str, str]  # ts, account, kind, amount, currency, ...


def _bill_account(rng: np.random.Generator, i: int, acc: _Accounts, grp: _Groups,
                  clock: _Clock, events: list[_Event]) -> tuple[float, int, int, str]:
    """Append account i's billing events; return its final MRR, plan, seats, renewal date."""
    days = clock.days
    fade = GROUPS.index("silent_fade")
    pay_trouble = GROUPS.index("payment_trouble")
    churner = GROUPS.index("churner")
    loud = GROUPS.index("loud_complainer")
    g = int(grp.group[i])
    cur = acc.currency[i]
    cur_txt = "" if cur == "USD" and rng.random() < 0.05 else cur
    mrr = float(acc.mrr0[i])
    plan = int(acc.plan0[i])
    seats = int(acc.seats0[i])
    created = date(1970, 1, 1) + timedelta(seconds=int(acc.created_ts[i]))
    created_day = int(acc.created_day[i])
    cancel_day = int(grp.cancel_day[i])
    hq = int(acc.tz[i])
    alive_until = cancel_day if cancel_day >= 0 else days

    def emit(ts: int, kind: str, amount: float | None, mrr_after: float | None) -> None:
        events.append((ts, i, kind, "" if amount is None else _money(amount), cur_txt,
                       PLANS[plan], "" if mrr_after is None else _money(mrr_after)))

    def biz_ts(day: int) -> int:
        return clock.at1(day, _local_sec1(rng, int(clock.tz_off[hq, day])))

    def run_ts(day: int) -> int:  # the nightly billing run
        return clock.at1(day, int(rng.integers(2 * 3600, 6 * 3600)))

    # Billing days inside the window.
    bills: list[int] = []
    if acc.annual[i]:
        for y in range(clock.start.year - 1, clock.end.year + 1):
            try:
                anniv = created.replace(year=y)
            except ValueError:
                anniv = date(y, 2, 28)
            d = (anniv - clock.start).days
            if anniv > created and 0 <= d < days:
                bills.append(d)
    else:
        dom = min(created.day, 28)
        first = date(clock.start.year, clock.start.month, 1)
        for m in range(days // 28 + 3):
            b = _add_months(first, m, dom)
            d = (b - clock.start).days
            if b > created and 0 <= d < days:
                bills.append(d)
    bills = sorted(set(bills))

    actions: list[tuple[int, int, str]] = []
    if created_day >= 0:
        actions.append((created_day, 0, "start"))
    actions += [(d, 2, "bill") for d in bills]
    if days >= 10:
        u = rng.random()
        if g == fade and rng.random() < 0.35 and days >= 30:
            actions.append((int(rng.integers(days - 30, days - 2)), 1, "downgrade"))
        elif g == churner and rng.random() < 0.3 and cancel_day > 5:
            actions.append((int(rng.integers(max(0, cancel_day - 30), cancel_day)), 1,
                            "downgrade"))
        elif g in (0, loud) and u < (0.10 if g == 0 else 0.04):
            actions.append((int(rng.integers(max(0, created_day + 1), days)), 1, "upgrade"))
        elif g == 0 and u < 0.13:
            actions.append((int(rng.integers(max(0, created_day + 1), days)), 1,
                            "downgrade"))
    if cancel_day >= 0:
        actions.append((cancel_day, 3, "cancel"))
    actions.sort()

    trouble_from = days
    if g == pay_trouble and bills:
        recent = [d for d in bills if d >= days - 45] or bills[-1:]
        trouble_from = recent[-2] if len(recent) >= 2 and rng.random() < 0.4 else recent[-1]
    one_off_fail = -1
    if g != pay_trouble and not acc.annual[i] and bills and rng.random() < 0.06:
        ok = [d for d in bills if d <= days - 6]
        if ok:
            one_off_fail = int(_pick(rng, ok))

    cancelled = False
    for day, _, what in actions:
        if cancelled or day >= alive_until and what != "cancel":
            continue
        if what == "start":
            ts = int(acc.created_ts[i])
            emit(ts, "subscription_started", 0.0, mrr)
            first_amount = mrr * 12 if acc.annual[i] else mrr
            if first_amount > 0:
                emit(ts + int(rng.integers(5, 90)), "payment_succeeded", first_amount, None)
        elif what in ("upgrade", "downgrade"):
            if mrr <= 0:
                continue
            old = mrr
            if what == "upgrade":
                mrr = round(mrr * rng.uniform(1.15, 1.8), 2)
                seats = max(seats + 1, round(seats * mrr / old))
                if plan < 3 and rng.random() < 0.5:
                    plan += 1
                amount = (mrr - old) * rng.uniform(0.1, 1.0)
                emit(biz_ts(day), "upgraded", amount, mrr)
            else:
                mrr = round(mrr * rng.uniform(0.55, 0.85), 2)
                seats = max(1, round(seats * mrr / old))
                if plan > 0 and rng.random() < 0.4:
                    plan -= 1
                emit(biz_ts(day), "downgraded", None if rng.random() < 0.5 else 0.0, mrr)
        elif what == "bill":
            if mrr <= 0:
                continue
            ts = run_ts(day)
            if acc.annual[i]:
                if rng.random() < 0.4:
                    mrr = round(mrr * rng.uniform(1.03, 1.08), 2)
                emit(ts, "renewed", mrr * 12, mrr)
                ts += int(rng.integers(30, 600))
            amount = mrr * 12 if acc.annual[i] else mrr
            if day >= trouble_from:
                emit(ts, "payment_failed", amount, None)
                for retry in (2, 5):
                    if day + retry < days:
                        emit(run_ts(day + retry), "payment_failed", amount, None)
            elif day == one_off_fail:
                emit(ts, "payment_failed", amount, None)
                emit(run_ts(day + int(rng.integers(1, 5))), "payment_succeeded", amount,
                     None)
            else:
                emit(ts, "payment_succeeded", amount, None)
                if rng.random() < 0.015:
                    rd = day + int(rng.integers(1, 11))
                    if rd < min(days, alive_until):
                        emit(biz_ts(rd), "refunded", amount * rng.uniform(0.1, 1.0), None)
        elif what == "cancel":
            ts = int(grp.cancel_ts[i])
            emit(ts, "cancelled", None if rng.random() < 0.5 else 0.0, 0.0)
            cancelled = True
            if rng.random() < 0.3 and mrr > 0:
                rd = day + int(rng.integers(0, 4))
                if rd < days:
                    rts = max(ts + 600, biz_ts(rd))
                    if rts <= clock.limit_ts:
                        emit(rts, "refunded", mrr * rng.uniform(0.2, 1.0), None)
            mrr = 0.0
    # The renewal date after the window.
    if cancelled and rng.random() < 0.5:
        return mrr, plan, seats, ""
    if acc.annual[i]:
        nxt = date(clock.end.year, created.month, min(created.day, 28))
        while nxt <= clock.end:
            nxt = date(nxt.year + 1, nxt.month, nxt.day)
    else:
        nxt = date(clock.end.year, clock.end.month, min(created.day, 28))
        while nxt <= clock.end:
            nxt = _add_months(nxt, 1, nxt.day)
    return mrr, plan, seats, "" if rng.random() < 0.04 else nxt.isoformat()


def _make_purchases(rng: np.random.Generator, acc: _Accounts, grp: _Groups, clock: _Clock
                    ) -> _Billing:
    days = clock.days
    events: list[_Event] = []
    mrr_end = acc.mrr0.copy()
    plan_end = acc.plan0.copy()
    seats_end = acc.seats0.copy()
    renewal: list[str] = []
    for i in range(acc.n):
        mrr_end[i], plan_end[i], seats_end[i], when = _bill_account(rng, i, acc, grp, clock,
                                                                     events)
        renewal.append(when)

    events = [e for e in events if e[0] <= clock.limit_ts]
    order = sorted(range(len(events)), key=lambda j: events[j][0])
    ts_arr = np.array([events[j][0] for j in order], dtype=np.int64)
    styles = _styles(rng, len(order), 0.05, 0.02)
    offs = np.array([clock.tz_off[acc.tz[events[j][1]], max(0, min(clock.day_of(events[j][0]),
                                                                 days - 1))]
                     for j in order], dtype=np.int64)
    stamps = _fmt_ts(ts_arr, offs, styles)
    ids = _hex_ids(rng, len(order), "pay_")
    rows: list[tuple[str, ...]] = []
    for k, j in enumerate(order):
        _, i, kind, amount, cur_txt, plan_name, mrr_after = events[j]
        rows.append((ids[k], acc.ids[i], stamps[k], kind, amount, cur_txt, plan_name, mrr_after))
    return _Billing(rows, mrr_end, plan_end, seats_end, renewal)


# --------------------------------------------------------------------------------------
# Tickets
# --------------------------------------------------------------------------------------

_CATEGORY_P: dict[int, list[float]] = {  # bug, how_to, billing, feature_request, complaint
    0: [0.30, 0.35, 0.12, 0.18, 0.05],
    1: [0.30, 0.35, 0.12, 0.18, 0.05],
    2: [0.30, 0.10, 0.10, 0.15, 0.35],
    3: [0.25, 0.25, 0.25, 0.10, 0.15],
    4: [0.20, 0.25, 0.40, 0.10, 0.05],
}
_CATEGORIES = ("bug", "how_to", "billing", "feature_request", "complaint")
_PRIORITY_P: dict[str, list[float]] = {  # low, normal, high, urgent
    "bug": [0.10, 0.50, 0.30, 0.10],
    "how_to": [0.35, 0.60, 0.05, 0.0],
    "billing": [0.20, 0.60, 0.15, 0.05],
    "feature_request": [0.60, 0.40, 0.0, 0.0],
    "complaint": [0.05, 0.40, 0.40, 0.15],
    "incident": [0.0, 0.15, 0.50, 0.35],
    "cancel": [0.10, 0.60, 0.25, 0.05],
}
_RESOLVE_HOURS = {"low": 45.0, "normal": 20.0, "high": 7.0, "urgent": 2.5}


@dataclass
class _Ticket:
    acc: int
    ts: int
    category: str
    contact: int  # -1: none
    incident: _Incident | None = None


def _ticket_text(rng: np.random.Generator, t: _Ticket, acc: _Accounts, con: _Contacts,
                 billing_mrr: float) -> tuple[str, str]:
    i = t.acc
    locale = con.locales[t.contact] if t.contact >= 0 else "en"
    lang = locale.split("-")[0]
    templates = _TICKETS[t.category]
    local = _TICKETS_LOCAL.get(lang, {}).get(t.category)
    if local and rng.random() < 0.4:
        templates = local
    subject, body = _pick(rng, templates)
    if t.incident is not None:
        feats = [f for f in _FEATURE_LIST if FEATURES[f] in t.incident.components]
        component = FEATURES[feats[0]]
        region = t.incident.regions[0]
    else:
        adopted = [f for j, f in enumerate(_FEATURE_LIST) if acc.adopt[i, j]]
        feats = adopted
        component = ""
        region = REGIONS[int(acc.region[i])]
    feature = _FEATURE_LABEL[_pick(rng, feats)]
    component = component or FEATURES[_pick(rng, feats)]
    first = con.first[t.contact] if t.contact >= 0 else _pick(rng, ("Sam", "Alex", "Chris"))
    fill = _Fill(
        feature=feature, Feature=_cap(feature), component=_COMPONENT_LABEL[component],
        Component=_COMPONENT_LABEL[component], first=first, browser=_pick(rng, _BROWSERS),
        when=_pick(rng, _WHEN), when_de="heute Morgen", team=_pick(rng, _TEAMS),
        n=str(int(rng.integers(3, 40))), minutes=str(int(rng.integers(5, 50))),
        invoice=f"INV-{int(rng.integers(2024, 2027))}-{int(rng.integers(10000, 99999))}",
        amount=_money(billing_mrr or 99.0), currency=acc.currency[i],
        seats=str(int(acc.seats0[i])), brand=BRAND, region_label=_REGION_LABEL[region],
    )
    return subject.format_map(fill), body.format_map(fill)


def _make_tickets(rng: np.random.Generator, acc: _Accounts, con: _Contacts, grp: _Groups,
                  level: np.ndarray, clock: _Clock, incidents: list[_Incident],
                  hits: dict[str, list[int]]) -> list[tuple[str, ...]]:
    days = clock.days
    g = grp.group
    fade = GROUPS.index("silent_fade")
    loud = GROUPS.index("loud_complainer")
    gfac = np.array([1.0, 0.8, 8.0, 1.3, 1.2])[g]
    lam = (0.0075 * np.clip(acc.seats0, 1, None)[:, None] ** 0.25 * gfac[:, None]
           * _WEEKDAY_TICKETS[clock.dow][None, :] * (0.5 + 0.5 * np.minimum(level, 1.5)))
    lam = np.where(level > 0, lam, 0.0)
    quiet_from = max(0, days - 55)
    lam[g == fade, quiet_from:] = 0.0
    fade_cutoff = clock.start_ts + max(0, days - 45) * 86400 - 3600
    counts = rng.poisson(lam)
    tickets: list[_Ticket] = []
    for i, d in zip(*np.nonzero(counts)):
        i, d = int(i), int(d)
        for _ in range(int(counts[i, d])):
            cat = _CATEGORIES[_choice(rng, _CATEGORY_P[int(g[i])])]
            people = con.by_acc[i]
            c = -1 if rng.random() < 0.08 else int(_pick(rng, people))
            t_idx = int(con.tz[c]) if c >= 0 else int(acc.tz[i])
            ts = clock.at1(d, _local_sec1(rng, int(clock.tz_off[t_idx, d])))
            tickets.append(_Ticket(i, ts, cat, c))
    for inc in incidents:
        for i in hits.get(inc.id, []):
            p = 0.7 if g[i] == loud else 0.2
            if rng.random() >= p:
                continue
            ts = inc.start_ts + int(rng.integers(600, 20 * 3600))
            if ts > clock.limit_ts or ts >= grp.cancel_ts[i]:
                continue
            if g[i] == fade and ts >= fade_cutoff:
                continue
            c = int(_pick(rng, con.by_acc[i]))
            tickets.append(_Ticket(i, ts, "incident", c, inc))
    for i in np.flatnonzero(grp.cancel_day >= 0).tolist():
        if rng.random() < 0.5:
            d = max(0, int(grp.cancel_day[i]) - int(rng.integers(1, 11)))
            c = int(con.by_acc[i][0])
            ts = clock.at1(d, _local_sec1(rng, int(clock.tz_off[con.tz[c], d])))
            if ts < grp.cancel_ts[i]:
                tickets.append(_Ticket(i, ts, "cancel", c))
    tickets.sort(key=lambda t: t.ts)

    rows: list[tuple[int, int, list[str]]] = []  # (row ts, seq, row)
    for k, t in enumerate(tickets):
        i = t.acc
        ticket_id = f"T-{100001 + k}"
        pp = list(_PRIORITY_P[t.category])
        prio = _choice(rng, pp)
        if g[i] == loud and prio < 3 and rng.random() < 0.4:
            prio += 1
        priority = TICKET_PRIORITIES[prio]
        if t.category in ("complaint",) or g[i] == loud:
            channel = TICKET_CHANNELS[_choice(rng, [0.35, 0.15, 0.15, 0.15, 0.20])]
        else:
            channel = TICKET_CHANNELS[_choice(rng, [0.42, 0.20, 0.07, 0.25, 0.06])]
        subject, body = _ticket_text(rng, t, acc, con, float(acc.mrr0[i]))
        tz_idx = int(con.tz[t.contact]) if t.contact >= 0 else int(acc.tz[i])
        day = min(max(clock.day_of(t.ts), 0), clock.days - 1)
        off = int(clock.tz_off[tz_idx, day])
        style = int(_styles(rng, 1, 0.12, 0.02)[0])
        opened = _fmt1(t.ts, off, style)
        cid = con.ids[t.contact] if t.contact >= 0 else ""
        base = [ticket_id, acc.ids[i], opened, cid, "", "open", channel, priority, subject, body]
        rows.append((t.ts, 3 * k, base))
        hours = rng.lognormal(np.log(_RESOLVE_HOURS[priority]), 0.9)
        if g[i] == loud:
            hours *= 1.3
        resolve_ts = t.ts + int(hours * 3600) + 60
        limit = clock.limit_ts
        if g[i] == fade:
            limit = min(limit, fade_cutoff)
            resolve_ts = min(resolve_ts, max(t.ts + 600, fade_cutoff - 60))
        if rng.random() < 0.2:
            pend_ts = t.ts + int((resolve_ts - t.ts) * rng.uniform(0.2, 0.7))
            if pend_ts <= limit:
                row = list(base)
                row[5] = "pending"
                rows.append((pend_ts, 3 * k + 1, row))
        if resolve_ts <= limit and rng.random() >= 0.04:
            row = list(base)
            row[5] = "solved" if rng.random() < 0.72 else "closed"
            row[4] = _fmt1(resolve_ts, off, int(_styles(rng, 1, 0.12, 0.02)[0]))
            rows.append((resolve_ts, 3 * k + 2, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [tuple(r[2]) for r in rows]


# --------------------------------------------------------------------------------------
# Mentions
# --------------------------------------------------------------------------------------


@dataclass
class _Mention:
    ts: int
    kind: str
    author: str
    text: str
    lang: str
    account: int = -1  # explicit account_id
    parent: int = -1  # index of the mention this replies to


def _mention_text(rng: np.random.Generator, kind: str, lang: str, feats: Sequence[str],
                  component: str = "", region: str = "", handle: str = "") -> tuple[str, str]:
    templates = _MENTIONS[kind]
    local = _MENTIONS_LOCAL.get(lang, {}).get(kind)
    used_lang = "en"
    if local and rng.random() < 0.5:
        templates, used_lang = local, lang
    feature_key = _pick(rng, feats)
    component = component or FEATURES[feature_key]
    fill = _Fill(
        brand=BRAND, brand_at=f"@{BRAND_HANDLE}", feature=_FEATURE_LABEL[feature_key],
        Feature=_cap(_FEATURE_LABEL[feature_key]), component=_COMPONENT_LABEL[component],
        Component=_COMPONENT_LABEL[component], region_label=_REGION_LABEL.get(region, "the US"),
        minutes=str(int(rng.integers(5, 45))), handle=handle,
        feature_slug=feature_key.replace("_", "-"),
    )
    return _pick(rng, templates).format_map(fill), used_lang


def _make_mentions(rng: np.random.Generator, acc: _Accounts, con: _Contacts, grp: _Groups,
                   level: np.ndarray, clock: _Clock, incidents: list[_Incident],
                   hits: dict[str, list[int]], used_handles: set[str]
                   ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    n, days = acc.n, clock.days
    g = grp.group
    fade = GROUPS.index("silent_fade")
    loud = GROUPS.index("loud_complainer")
    all_feats = list(_FEATURE_LIST)
    # Handles per account: its own and its contacts'.
    people: list[list[int]] = [[c for c in con.by_acc[i] if con.handles[c]] for i in range(n)]
    has_handle = np.array([bool(acc.handles[i]) or bool(people[i]) for i in range(n)])
    rate = np.array([0.0025, 0.002, 0.035, 0.004, 0.003])[g] * has_handle
    lam = rate[:, None] * _WEEKDAY_SOCIAL[clock.dow][None, :] * (level > 0)
    lam[g == fade, max(0, days - 50):] = 0.0
    fade_cutoff = clock.start_ts + max(0, days - 45) * 86400
    kinds_p = {0: [0.5, 0.15, 0.35], 1: [0.4, 0.2, 0.4], 2: [0.08, 0.77, 0.15],
               3: [0.2, 0.55, 0.25], 4: [0.3, 0.35, 0.35]}
    out: list[_Mention] = []

    def author_of(i: int) -> tuple[str, int, str]:
        """(handle, tz index, language) of someone speaking for account i."""
        if people[i] and (not acc.handles[i] or rng.random() < 0.75):
            c = int(_pick(rng, people[i]))
            return con.handles[c], int(con.tz[c]), con.locales[c].split("-")[0]
        return acc.handles[i], int(acc.tz[i]), _TZ[int(acc.tz[i])].locale.split("-")[0]

    def account_feats(i: int) -> list[str]:
        return [f for j, f in enumerate(_FEATURE_LIST) if acc.adopt[i, j]]

    counts = rng.poisson(lam)
    for i, d in zip(*np.nonzero(counts)):
        i, d = int(i), int(d)
        for _ in range(int(counts[i, d])):
            kind = ("praise", "complaint", "question")[_choice(rng, kinds_p[int(g[i])])]
            handle, tz_idx, lang = author_of(i)
            ts = clock.at1(d, _local_sec1(rng, int(clock.tz_off[tz_idx, d]), 14.0, 4.0))
            if ts >= grp.cancel_ts[i]:
                continue
            text, used = _mention_text(rng, kind, lang, account_feats(i))
            out.append(_Mention(ts, kind, handle, text, used,
                                account=i if rng.random() < 0.25 else -1))

    # The public: fans, critics, the curious and people who just say "pulse".
    pool_size = max(150, n)
    public: list[str] = []
    while len(public) < pool_size:
        first = _slug(_pick(rng, _NAMES[_pick(rng, tuple(_NAMES))][0]))
        h = (f"{first}_{_pick(rng, _HANDLE_WORDS)}" if rng.random() < 0.5
             else f"{_pick(rng, _HANDLE_WORDS)}{first}{int(rng.integers(1, 999))}")[:15]
        if h not in used_handles and len(h) >= 4:
            used_handles.add(h)
            public.append(h)
    lam_pub = (2.0 + 10.0 * n / 2000.0) * _WEEKDAY_SOCIAL[clock.dow]
    for d, k in enumerate(rng.poisson(lam_pub).tolist()):
        for _ in range(k):
            kind = ("praise", "complaint", "question", "noise")[
                _choice(rng, [0.27, 0.2, 0.18, 0.35])]
            lang = _pick(rng, ("de", "fr", "es")) if rng.random() < 0.08 else "en"
            ts = clock.at1(d, int(rng.integers(0, 86400)))
            text, used = _mention_text(rng, kind, lang, all_feats)
            out.append(_Mention(ts, kind, _pick(rng, public), text, used))

    for inc in incidents:
        feats = [f for f in _FEATURE_LIST if FEATURES[f] in inc.components]
        for _ in range(int(rng.poisson(1.5 + 4.0 * inc.impact_factor))):
            ts = inc.start_ts + int(rng.integers(120, 4 * 3600))
            if ts <= clock.limit_ts:
                text, used = _mention_text(rng, "incident", "en", feats, inc.components[0],
                                           _pick(rng, inc.regions))
                out.append(_Mention(ts, "complaint", _pick(rng, public), text, used))
        for i in hits.get(inc.id, []):
            if not has_handle[i] or rng.random() >= (0.6 if g[i] == loud else 0.15):
                continue
            ts = inc.start_ts + int(rng.integers(300, 8 * 3600))
            if ts > clock.limit_ts or ts >= grp.cancel_ts[i]:
                continue
            if g[i] == fade and ts >= fade_cutoff:
                continue
            handle, _, _ = author_of(i)
            text, used = _mention_text(rng, "incident", "en", feats, inc.components[0],
                                       REGIONS[int(acc.region[i])])
            out.append(_Mention(ts, "complaint", handle, text, used,
                                account=i if rng.random() < 0.25 else -1))

    out.sort(key=lambda m: m.ts)
    replies: list[_Mention] = []
    for j, m in enumerate(out):
        if m.kind in ("complaint", "question") and rng.random() < 0.3:
            ts = m.ts + int(rng.integers(900, 8 * 3600))
            if ts <= clock.limit_ts:
                text, _ = _mention_text(rng, "reply", "en", all_feats, handle=m.author)
                replies.append(_Mention(ts, "reply", BRAND_HANDLE, text, "en", parent=j))
    # Keep parents addressable: parents are indices into `out` before the merge.
    merged = [(m.ts, 0, j, m) for j, m in enumerate(out)]
    merged += [(m.ts, 1, j, m) for j, m in enumerate(replies)]
    merged.sort(key=lambda x: (x[0], x[1], x[2]))
    ms = rng.integers(0, 1000, size=len(merged))
    ids_of_original: dict[int, str] = {}
    records: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    author_ids: dict[str, str] = {}
    stamps = _fmt_ts(np.array([x[0] for x in merged], dtype=np.int64),
                     np.zeros(len(merged), dtype=np.int64),
                     _styles(rng, len(merged), 0.02, 0.0),
                     millis=True)
    plain = rng.random(len(merged)) < 0.4
    for k, (ts, is_reply, j, m) in enumerate(merged):
        snowflake = ((ts * 1000 + int(ms[k]) - 1288834974657) << 22) | (k & 0x1FFFFF)
        mid = str(snowflake)
        if not is_reply:
            ids_of_original[j] = mid
        if m.author not in author_ids:
            author_ids[m.author] = str(int(rng.integers(10**7, 10**18)))
        stamp = stamps[k].replace(".000Z", "Z") if plain[k] else stamps[k]
        rec: dict[str, Any] = {"mention_id": mid, "created_at": stamp}
        u = rng.random()
        if u < 0.1:
            pass  # platform omitted: defaults to x
        elif u < 0.97:
            rec["platform"] = "x"
        else:
            rec["platform"] = "linkedin"
        rec["author_handle"] = m.author
        rec["author_id"] = author_ids[m.author]
        rec["text"] = m.text
        if rng.random() < 0.92:
            rec["lang"] = m.lang
        if rec.get("platform", "x") == "x":
            rec["url"] = f"https://x.com/{m.author}/status/{mid}"
        if is_reply:
            rec["in_reply_to_id"] = ids_of_original[m.parent]
        if m.account >= 0:
            rec["account_id"] = acc.ids[m.account]
        records.append(rec)
        kinds[mid] = m.kind
    return records, kinds


def _incident_records(incidents: list[_Incident], rng: np.random.Generator
                      ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inc in incidents:
        style = int(_styles(rng, 1, 0.1, 0.0)[0])
        off = int(_pick(rng, (60, 120, -300, -420, 330)))
        out.append({
            "incident_id": inc.id,
            "title": inc.title,
            "started_at": _fmt1(inc.start_ts, off, style),
            "status": inc.status,
            "impact": inc.impact,
            "resolved_at": _fmt1(inc.end_ts, off, style) if inc.resolved else None,
            "components": list(inc.components),
            "regions": list(inc.regions),
        })
    return out


# --------------------------------------------------------------------------------------
# Malformed rows
# --------------------------------------------------------------------------------------

_CsvBreaker = Callable[[list[str], np.random.Generator], list[str]]
_JsonBreaker = Callable[[dict[str, Any], np.random.Generator], str]


class _Breakers:
    """Ways to break a row of each source, all of them invalid under the data contract."""

    def __init__(self, n_accounts: int) -> None:
        self.width = max(5, len(str(n_accounts)))
        self.unknown_base = 2 * n_accounts + 1000

    def unknown_account(self, rng: np.random.Generator) -> str:
        return f"ACC-{self.unknown_base + int(rng.integers(0, 9000)):0{self.width}d}"

    def csv(self, source: str) -> list[_CsvBreaker]:
        cols = {c: j for j, c in enumerate(HEADERS[source])}

        def blank(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                row[cols[col]] = ""
                return row
            return f

        def setv(col: str, values: Sequence[str]) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                row[cols[col]] = str(_pick(rng, values))
                return row
            return f

        def bad_decimal(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                v = row[cols[col]] or "12.50"
                if "." in v and rng.random() < 0.5:
                    row[cols[col]] = v.replace(".", ",")  # a European decimal comma
                elif rng.random() < 0.5:
                    row[cols[col]] = f"{v.split('.')[0]},5"
                else:
                    row[cols[col]] = str(_pick(rng, _BAD_DECIMALS))
                return row
            return f

        def negative(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                v = row[cols[col]].lstrip("-")
                row[cols[col]] = "-" + (v if v not in ("", "0", "0.00") else "12.00")
                return row
            return f

        def unknown_account(row: list[str], rng: np.random.Generator) -> list[str]:
            row[cols["account_id"]] = self.unknown_account(rng)
            return row

        def extra_field(row: list[str], rng: np.random.Generator) -> list[str]:
            # An unquoted comma: "Acme, Inc" or "1,200" spills into the next column.
            texty = [j for j, v in enumerate(row) if " " in v and "\n" not in v]
            if texty and rng.random() < 0.7:
                j = int(_pick(rng, texty))
                head, tail = row[j].split(" ", 1)
                return row[:j] + [head.rstrip(","), tail] + row[j + 1:]
            j = int(rng.integers(1, len(row) + 1))
            return row[:j] + [""] + row[j:]

        def missing_field(row: list[str], rng: np.random.Generator) -> list[str]:
            j = int(rng.integers(1, len(row)))
            return row[:j] + row[j + 1:]

        common = [extra_field, missing_field]
        if source == "accounts":
            return common + [
                blank("name"), blank("mrr"), bad_decimal("mrr"), bad_decimal("mrr"),
                negative("mrr"), setv("seats", ("ten", "-3", "12.5", "lots")),
                setv("currency", ("DOLLARS", "€", "usd$", "EURO")),
                setv("created_at", _BAD_TIMESTAMPS), setv("renewal_date", _BAD_DATES),
                blank("account_id"),
            ]
        if source == "contacts":
            return common + [
                blank("email"), setv("email", _BAD_EMAILS), setv("email", _BAD_EMAILS),
                setv("timezone", _BAD_TIMEZONES), unknown_account,
                setv("opted_out", ("maybe", "unknown", "2")), blank("contact_id"),
                blank("account_id"),
            ]
        if source == "usage":
            return common + [
                blank("event_id"), blank("account_id"), blank("occurred_at"), blank("feature"),
                setv("occurred_at", _BAD_TIMESTAMPS), bad_decimal("quantity"),
                negative("quantity"), setv("outcome", ("fail", "ERR", "timeout", "OK!")),
                unknown_account,
            ]
        if source == "purchases":
            return common + [
                blank("event_id"), blank("kind"),
                setv("kind", ("charge", "Renewal!!", "paid", "cancel")),
                bad_decimal("amount"), negative("mrr_after"), bad_decimal("mrr_after"),
                setv("occurred_at", _BAD_TIMESTAMPS), unknown_account,
                setv("currency", ("US$", "dollars", "EURO")),
            ]
        if source == "tickets":
            def resolved_before(row: list[str], rng: np.random.Generator) -> list[str]:
                opened = datetime.fromisoformat(row[cols["opened_at"]])
                if opened.tzinfo is None:
                    opened = opened.replace(tzinfo=UTC)
                back = opened - timedelta(hours=float(rng.uniform(1, 72)))
                row[cols["resolved_at"]] = back.astimezone(UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
                row[cols["status"]] = "solved"
                return row
            return common + [
                setv("status", ("SOLVED!!", "done", "reopened", "Closed.")),
                setv("channel", ("fax", "pigeon", "sms?")),
                setv("priority", ("P1", "critical", "!!!")),
                resolved_before, resolved_before, setv("opened_at", _BAD_TIMESTAMPS),
                blank("ticket_id"), blank("opened_at"), blank("account_id"), unknown_account,
            ]
        raise ValueError(source)

    def jsonl(self, source: str) -> list[_JsonBreaker]:
        def dumps(rec: dict[str, Any]) -> str:
            return json.dumps(rec, ensure_ascii=False)

        def invalid_json(rec: dict[str, Any], rng: np.random.Generator) -> str:
            text = dumps(rec)
            how = int(rng.integers(4))
            if how == 0:
                return text[: max(1, len(text) // 2)]  # truncated write
            if how == 1:
                return repr(rec)  # Python repr, single quotes
            if how == 2:
                return text[:-1] + ",}"  # trailing comma
            return "{" + text[2:]  # a key lost its opening quote

        def as_array(rec: dict[str, Any], rng: np.random.Generator) -> str:
            return json.dumps(list(rec.values()), ensure_ascii=False)

        def drop(key: str) -> _JsonBreaker:
            def f(rec: dict[str, Any], rng: np.random.Generator) -> str:
                if rng.random() < 0.5:
                    rec.pop(key, None)
                else:
                    rec[key] = None if rng.random() < 0.5 else ""
                return dumps(rec)
            return f

        def setv(key: str, values: Sequence[Any]) -> _JsonBreaker:
            def f(rec: dict[str, Any], rng: np.random.Generator) -> str:
                rec[key] = _pick(rng, values)
                return dumps(rec)
            return f

        if source == "mentions":
            def unknown_account(rec: dict[str, Any], rng: np.random.Generator) -> str:
                rec["account_id"] = self.unknown_account(rng)
                return dumps(rec)
            return [invalid_json, invalid_json, as_array, drop("text"), drop("author_handle"),
                    drop("mention_id"), drop("created_at"), setv("created_at", _BAD_TIMESTAMPS),
                    unknown_account]
        if source == "incidents":
            def resolved_before(rec: dict[str, Any], rng: np.random.Generator) -> str:
                started = datetime.fromisoformat(rec["started_at"])
                if started.tzinfo is None:
                    started = started.replace(tzinfo=UTC)
                back = started - timedelta(hours=float(rng.uniform(1, 24)))
                rec["resolved_at"] = back.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rec["status"] = "resolved"
                return dumps(rec)
            return [invalid_json, as_array, setv("status", ("fixed", "RESOLVED!!", "down")),
                    setv("impact", ("huge", "sev1", "P0")), resolved_before,
                    setv("components", ("api, auth", "dashboard")),
                    setv("regions", ("us-east", "everywhere")), drop("title"),
                    setv("started_at", _BAD_TIMESTAMPS)]
        raise ValueError(source)


def _n_malformed(rate: float, n: int) -> int:
    if rate <= 0 or n == 0:
        return 0
    return max(1, round(rate * n))


def _inject_csv(rng: np.random.Generator, rows: Sequence[Sequence[str]],
                breakers: list[_CsvBreaker], k: int,
                fresh_id: Callable[[int, list[str]], None]) -> list[Sequence[str]]:
    """Insert k broken copies of random rows, each right after its original."""
    if k == 0 or not rows:
        return list(rows)
    src = np.sort(rng.choice(len(rows), size=k, replace=k > len(rows)))
    out: list[Sequence[str]] = []
    start = 0
    for j, idx in enumerate(src.tolist()):
        out.extend(rows[start: idx + 1])  # empty when several copies follow one row
        start = idx + 1
        bad = list(rows[idx])
        fresh_id(j, bad)
        out.append(_pick(rng, breakers)(bad, rng))
    out.extend(rows[start:])
    return out


def _inject_jsonl(rng: np.random.Generator, records: list[dict[str, Any]],
                  breakers: list[_JsonBreaker], k: int,
                  fresh_id: Callable[[int, dict[str, Any]], None]) -> list[str]:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if k == 0 or not records:
        return lines
    src = np.sort(rng.choice(len(records), size=k, replace=k > len(records)))
    out: list[str] = []
    start = 0
    for j, idx in enumerate(src.tolist()):
        out.extend(lines[start: idx + 1])
        start = idx + 1
        bad = dict(records[idx])
        fresh_id(j, bad)
        out.append(_pick(rng, breakers)(bad, rng))
    out.extend(lines[start:])
    return out


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_lines(path: Path, lines: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


def _entity_rows(rng: np.random.Generator, acc: _Accounts, con: _Contacts, billing: _Billing,
                 clock: _Clock) -> tuple[list[Sequence[str]], list[Sequence[str]]]:
    """The rows of accounts.csv (as of the end of the window) and contacts.csv."""
    a_styles = _styles(rng, acc.n, 0.08, 0.02)
    a_offs = np.array([clock.tz_off[acc.tz[i], max(0, int(acc.created_day[i]))]
                       for i in range(acc.n)], dtype=np.int64)
    a_created = _fmt_ts(acc.created_ts, a_offs, a_styles)
    account_rows: list[Sequence[str]] = []
    for i in range(acc.n):
        cur = acc.currency[i]
        account_rows.append((
            acc.ids[i], acc.names[i], _money(float(billing.mrr[i])),
            "" if cur == "USD" and rng.random() < 0.1 else cur,
            PLANS[int(billing.plan[i])], SEGMENTS[int(acc.segment[i])],
            REGIONS[int(acc.region[i])], acc.csm[i], acc.domains[i], acc.handles[i],
            "" if rng.random() < 0.02 else str(int(billing.seats[i])),
            "" if rng.random() < 0.02 else a_created[i], billing.renewal[i],
        ))
    contact_rows: list[Sequence[str]] = []
    for c in range(con.n):
        u = rng.random()
        opted = "true" if u < 0.04 else ("" if u < 0.1 else "false")
        contact_rows.append((
            con.ids[c], acc.ids[int(con.acc[c])], con.emails[c], con.names[c], con.roles[c],
            "" if rng.random() < 0.03 else _TZ[int(con.tz[c])].name,
            "" if rng.random() < 0.1 else con.locales[c], con.handles[c], opted,
        ))
    return account_rows, contact_rows


def generate(out_dir: Path, *, accounts: int = 2000, days: int = 180, seed: int = 7,
             end: date | None = None, malformed_rate: float = 0.01,
             live_incident: bool = False,
             progress: Callable[[str, int], None] | None = None) -> DemoSummary:
    """Write a demo world of `accounts` accounts over the `days` days ending on `end`.

    `live_incident=True` moves the world's last incident to the end of the window: a major
    incident that started 50 minutes before the window ends and is still open (`identified`),
    so that the outage path (impact, notices) has something current to act on.

    `end` defaults to today's UTC date and may not lie after it; no timestamp lies after the
    end of `end` or after the current time. `progress(source, rows)` is called after each
    source file is written. The same arguments (with a past `end`) give byte-identical files.
    """
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, not {accounts}")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if not 0.0 <= malformed_rate <= 0.5:
        raise ValueError(f"malformed_rate must lie in [0, 0.5], not {malformed_rate}")
    now = datetime.now(UTC)
    if isinstance(end, datetime):
        end = end.date()
    if end is None:
        end = now.date()
    if end > now.date():
        raise ValueError(f"end {end} lies after today's UTC date {now.date()}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = _Clock.make(end, days, now)
    used_handles: set[str] = {BRAND_HANDLE}

    acc = _make_accounts(_rng(seed, 1), accounts, clock, used_handles)
    con = _make_contacts(_rng(seed, 2), acc, used_handles)
    grp = _assign_groups(_rng(seed, 3), acc, con, clock)
    level, err_rate = _trajectories(_rng(seed, 4), acc, grp, clock)
    incidents = _make_incidents(_rng(seed, 5), clock)
    if live_incident and incidents:
        incidents[-1] = _live(incidents[-1], clock)
    usage_rows, hits_idx = _make_usage(_rng(seed, 6), acc, con, grp, level, err_rate, clock,
                                       incidents)
    billing = _make_purchases(_rng(seed, 7), acc, grp, clock)
    ticket_rows = _make_tickets(_rng(seed, 8), acc, con, grp, level, clock, incidents, hits_idx)
    mention_recs, mention_kinds = _make_mentions(_rng(seed, 9), acc, con, grp, level, clock,
                                                 incidents, hits_idx, used_handles)
    incident_recs = _incident_records(incidents, _rng(seed, 10))

    account_rows, contact_rows = _entity_rows(_rng(seed, 11), acc, con, billing, clock)

    # Break a few rows of every source.
    breakers = _Breakers(accounts)
    mrng = _rng(seed, 12)
    csv_rows: dict[str, Sequence[Sequence[str]]] = {
        "accounts": account_rows, "contacts": contact_rows, "usage": usage_rows,
        "purchases": billing.rows, "tickets": ticket_rows,
    }
    malformed: dict[str, int] = {}
    width = max(5, len(str(accounts)))
    id_rng = _rng(seed, 13)

    def random_id(prefix: str, rows: Sequence[Sequence[str]]
                  ) -> Callable[[int, list[str]], None]:
        taken: set[str] = set()

        def fresh(j: int, row: list[str]) -> None:
            if not taken:
                taken.update(r[0] for r in rows)
            while True:
                new = f"{prefix}{int(id_rng.integers(0, np.iinfo(np.int64).max)):016x}"
                if new not in taken:
                    taken.add(new)
                    row[0] = new
                    return
        return fresh

    def same_id(j: int, row: list[str]) -> None:
        pass  # a broken update of the same ticket

    fresh_csv: dict[str, Callable[[int, list[str]], None]] = {
        "accounts": lambda j, r: r.__setitem__(0, f"ACC-{accounts + 1 + j:0{width}d}"),
        "contacts": lambda j, r: r.__setitem__(0, f"C-{con.n + 1 + j:06d}"),
        "usage": random_id("evt_", usage_rows),
        "purchases": random_id("pay_", billing.rows),
        "tickets": same_id,
    }
    final_csv: dict[str, list[Sequence[str]]] = {}
    for source, rows in csv_rows.items():
        k = _n_malformed(malformed_rate, len(rows))
        final_csv[source] = _inject_csv(mrng, rows, breakers.csv(source), k, fresh_csv[source])
        malformed[source] = k

    def mention_fresh(j: int, rec: dict[str, Any]) -> None:
        # Real ids keep bit 21 of the sequence clear; broken copies set it.
        mid = int(rec["mention_id"])
        rec["mention_id"] = str((mid & ~0x3FFFFF) | 0x200000 | (j & 0x1FFFFF))

    def incident_fresh(j: int, rec: dict[str, Any]) -> None:
        prefix = rec["incident_id"].rsplit("-", 1)[0]
        rec["incident_id"] = f"{prefix}-{len(incident_recs) + 1 + j:02d}"

    final_lines: dict[str, list[str]] = {}
    for source, recs, fresh in (("mentions", mention_recs, mention_fresh),
                                ("incidents", incident_recs, incident_fresh)):
        k = _n_malformed(malformed_rate, len(recs))
        final_lines[source] = _inject_jsonl(mrng, recs, breakers.jsonl(source), k, fresh)
        malformed[source] = k

    # Write.
    files: dict[str, Path] = {}
    rows_written: dict[str, int] = {}
    for source in SOURCES:
        path = out_dir / FILE_NAMES[source]
        if source in final_csv:
            _write_csv(path, HEADERS[source], final_csv[source])
            rows_written[source] = len(final_csv[source])
        else:
            _write_lines(path, final_lines[source])
            rows_written[source] = len(final_lines[source])
        files[source] = path
        log.debug("wrote %s: %d rows (%d malformed)", path, rows_written[source],
                  malformed[source])
        if progress is not None:
            progress(source, rows_written[source])

    groups = {acc.ids[i]: grp.name(i) for i in range(acc.n)}
    truth = {
        "generated_with": {
            "generator": "pulse.devkit.demo", "version": GENERATOR_VERSION, "accounts": accounts,
            "days": days, "seed": seed, "start": clock.start.isoformat(),
            "end": clock.end.isoformat(),
            "window_end": _fmt1(clock.limit_ts), "malformed_rate": malformed_rate,
            "vendor_domain": VENDOR_DOMAIN, "brand_handle": BRAND_HANDLE,
        },
        "groups": groups,
        "churn": {acc.ids[i]: (date(1970, 1, 1) + timedelta(seconds=int(grp.cancel_ts[i])))
                  .isoformat() for i in np.flatnonzero(grp.cancel_day >= 0).tolist()},
        "silent_dissatisfied": [acc.ids[i] for i in
                                np.flatnonzero(grp.group == GROUPS.index("silent_fade")).tolist()],
        "incident_hits": {inc_id: [acc.ids[i] for i in idx] for inc_id, idx in hits_idx.items()},
        "live_incident": incidents[-1].id if live_incident and incidents else None,
        "malformed": malformed,
        "features": dict(FEATURES),
        "mention_kinds": mention_kinds,
    }
    truth_path = out_dir / TRUTH_FILE
    truth_path.write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n",
                          encoding="utf-8")
    log.info("demo world in %s: %d accounts x %d days, %s rows in %.1f s", out_dir, accounts,
             days, sum(rows_written.values()), time.perf_counter() - t0)
    return DemoSummary(out_dir=out_dir, files=files, rows=rows_written, malformed=malformed,
                       truth_path=truth_path)

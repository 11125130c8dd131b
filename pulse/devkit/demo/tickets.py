"""tickets.csv: the support tickets of the demo world, one row per state change."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pulse.devkit.demo.world import (
    _COMPONENT_LABEL,
    _FEATURE_LABEL,
    _FEATURE_LIST,
    _REGION_LABEL,
    _WEEKDAY_TICKETS,
    BRAND,
    FEATURES,
    GROUPS,
    REGIONS,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    _Accounts,
    _cap,
    _choice,
    _Clock,
    _Contacts,
    _Fill,
    _fmt1,
    _Groups,
    _Incident,
    _local_sec1,
    _money,
    _pick,
    _styles,
    _Voice,
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
                  hits: dict[str, list[int]], voice: _Voice | None = None
                  ) -> list[tuple[str, ...]]:
    days = clock.days
    g = grp.group
    fade = GROUPS.index("silent_fade")
    loud = GROUPS.index("loud_complainer")
    if voice is None:
        gfac = np.array([1.0, 0.8, 8.0, 1.3, 1.2])[g][:, None]
    else:
        gfac = voice.ticket_mult
    lam = (0.0075 * np.clip(acc.seats0, 1, None)[:, None] ** 0.25 * gfac
           * _WEEKDAY_TICKETS[clock.dow][None, :] * (0.5 + 0.5 * np.minimum(level, 1.5)))
    lam = np.where(level > 0, lam, 0.0)
    if voice is None:
        quiet_from = max(0, days - 55)
        lam[g == fade, quiet_from:] = 0.0
    fade_cutoff = clock.start_ts + max(0, days - 45) * 86400 - 3600

    def quiet(i: int, ts: int) -> bool:
        """Whether account i keeps quiet at `ts` (a silently dissatisfied one does)."""
        if voice is None:
            return bool(g[i] == fade and ts >= fade_cutoff)
        d = min(max(clock.day_of(ts), 0), days - 1)
        return bool(voice.ticket_mult[i, d] <= 0.0)

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
            if quiet(i, ts):
                continue
            c = int(_pick(rng, con.by_acc[i]))
            tickets.append(_Ticket(i, ts, "incident", c, inc))
    cancel_p = 0.5 if voice is None else voice.cancel_ticket_p
    for i in np.flatnonzero(grp.cancel_day >= 0).tolist():
        if rng.random() < cancel_p:
            d = max(0, int(grp.cancel_day[i]) - int(rng.integers(1, 11)))
            c = int(con.by_acc[i][0])
            ts = clock.at1(d, _local_sec1(rng, int(clock.tz_off[con.tz[c], d])))
            if ts < grp.cancel_ts[i] and (voice is None or not quiet(i, ts)):
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
        if g[i] == fade and voice is None:
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

"""accounts.csv: the accounts of the demo world, and the entity rows as of the window's end."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pulse.devkit.demo.names import _COMPANY_WORDS, _CSMS, _INDUSTRIES, _LEGAL, _NAMES
from pulse.devkit.demo.purchases import _Billing
from pulse.devkit.demo.world import (
    _ADOPTION,
    _F_DASHBOARDS,
    _FX,
    _NF,
    _REGION_WEIGHT,
    _TZ,
    PLANS,
    REGIONS,
    SEGMENTS,
    VENDOR_DOMAIN,
    _Accounts,
    _Clock,
    _Contacts,
    _fmt_ts,
    _local_secs,
    _money,
    _pick,
    _slug,
    _styles,
)


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
        roll = rng.random()
        dom = f"{a}-{b}.example" if roll < 0.25 else (
            f"{a}{b}hq.example" if roll < 0.35 else f"{a}{b}.example")
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

"""usage.csv: aggregated product usage of the demo world, and the accounts each incident hit."""
from __future__ import annotations

import numpy as np

from pulse.devkit.demo.world import (
    _F_API,
    _F_WEBHOOKS,
    _FEATURE_COMPONENT_IDX,
    _FEATURE_LIST,
    _NF,
    _PERSON_QTY,
    _PERSON_WEIGHT,
    _SERVICE_PER_SEAT,
    _WEEKDAY_PEOPLE,
    _WEEKDAY_SERVICE,
    COMPONENTS,
    FEATURES,
    REGIONS,
    _Accounts,
    _Clock,
    _Contacts,
    _fmt_ts,
    _Groups,
    _hex_ids,
    _Incident,
    _local_secs,
    _pick,
    _Shape,
    _styles,
)


def _make_usage(rng: np.random.Generator, acc: _Accounts, con: _Contacts, grp: _Groups,
                level: np.ndarray, err_rate: np.ndarray, clock: _Clock,
                incidents: list[_Incident], shape: _Shape | None = None
                ) -> tuple[list[tuple[str, ...]], dict[str, list[int]]]:
    days = clock.days
    # People: one row per (contact, day, feature).
    weights = rng.gamma(2.0, 1.0, (con.n, _NF)) * _PERSON_WEIGHT[None, :] * acc.adopt[con.acc]
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    wday = _WEEKDAY_PEOPLE[clock.dow] if shape is None else shape.day_people
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
    if shape is None:
        k = np.minimum(1 + rng.poisson(0.45 * np.minimum(level[con.acc[ci], di], 1.5)), 4)
    else:  # busier people: more features a day
        k = np.minimum(1 + rng.poisson(0.45 * shape.intensity
                                       * np.minimum(level[con.acc[ci], di], 1.5)),
                       max(4, round(4 * shape.intensity)))
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
        sday = _WEEKDAY_SERVICE[clock.dow] if shape is None else shape.day_service
        p = p * sday[None, :] * has[:, None]
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
        need = min(3, cand.size) - hit.size
        if not inc.resolved and need > 0:
            # An incident still open at the end of the window is the one the outage path acts
            # on now: it has hit someone whatever the hour or weekday (a quiet Saturday night
            # would otherwise leave it hitting nobody). The likeliest candidates make up the
            # rest, without drawing from the generator, so resolved incidents stay as they were.
            likeliest = cand[np.argsort(-p_hit, kind="stable")]
            hit = np.sort(np.concatenate([hit, likeliest[~np.isin(likeliest, hit)][:need]]))
        for i in hit.tolist():
            feats = [f for f in comp_feats if acc.adopt[i, f]]
            chosen = [f for f in feats if rng.random() < 0.8] or [feats[0]]
            for f in chosen:
                people = con.by_acc[i]
                if f in (_F_API, _F_WEBHOOKS) and rng.random() < 0.7:
                    c = -1
                else:
                    c = int(_pick(rng, people))
                burst_qty = 1 + int(rng.poisson(1 + 2 * inc.impact_factor * np.log1p(acc.seats0[i])))
                burst_ts = int(rng.integers(inc.start_ts, inc.end_ts + 1))
                off = int(clock.tz_off[con.tz[c] if c >= 0 else acc.tz[i], day])
                burst.append((i, f, burst_qty, burst_ts, c, off))
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

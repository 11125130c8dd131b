"""purchases.csv: the billing events of the demo world, and each account's state at the end."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from pulse.devkit.demo.world import (
    GROUPS,
    PLANS,
    _Accounts,
    _Clock,
    _fmt_ts,
    _Groups,
    _hex_ids,
    _local_sec1,
    _money,
    _pick,
    _styles,
)


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
    if grp.moves is not None:
        actions += [(d, 1, kind) for d, kind in grp.moves[i] if 0 <= d < days]
    elif days >= 10:
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
    if grp.trouble_day is not None:
        if grp.trouble_day[i] >= 0:
            trouble_from = next((d for d in bills if d >= grp.trouble_day[i]), days)
    elif g == pay_trouble and bills:
        recent = [d for d in bills if d >= days - 45] or bills[-1:]
        trouble_from = recent[-2] if len(recent) >= 2 and rng.random() < 0.4 else recent[-1]
    one_off_fail = -1
    no_trouble = g != pay_trouble if grp.trouble_day is None else trouble_from >= days
    if no_trouble and not acc.annual[i] and bills and rng.random() < 0.06:
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

"""contacts.csv: the people of each account of the demo world."""
from __future__ import annotations

import numpy as np

from pulse.devkit.demo.names import _HANDLE_WORDS, _NAMES, _ROLES
from pulse.devkit.demo.world import _TZ, _Accounts, _choice, _Contacts, _pick, _slug


def _make_contacts(rng: np.random.Generator, acc: _Accounts, used_handles: set[str],
                   *, per_log_seat: float = 0.8, most: int = 30) -> _Contacts:
    per = np.clip(1 + rng.poisson(per_log_seat * np.log1p(acc.seats0)), 1, most)
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

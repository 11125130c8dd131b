"""mentions.jsonl: what the demo world says about the brand on social media."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pulse.devkit.demo.names import _HANDLE_WORDS, _NAMES
from pulse.devkit.demo.world import (
    _COMPONENT_LABEL,
    _FEATURE_LABEL,
    _FEATURE_LIST,
    _REGION_LABEL,
    _TZ,
    _WEEKDAY_SOCIAL,
    BRAND,
    BRAND_HANDLE,
    FEATURES,
    GROUPS,
    REGIONS,
    _Accounts,
    _cap,
    _choice,
    _Clock,
    _Contacts,
    _Fill,
    _fmt_ts,
    _Groups,
    _Incident,
    _local_sec1,
    _pick,
    _slug,
    _styles,
    _Voice,
)

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
                   hits: dict[str, list[int]], used_handles: set[str],
                   voice: _Voice | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    n, days = acc.n, clock.days
    g = grp.group
    fade = GROUPS.index("silent_fade")
    loud = GROUPS.index("loud_complainer")
    all_feats = list(_FEATURE_LIST)
    # Handles per account: its own and its contacts'.
    people: list[list[int]] = [[c for c in con.by_acc[i] if con.handles[c]] for i in range(n)]
    has_handle = np.array([bool(acc.handles[i]) or bool(people[i]) for i in range(n)])
    if voice is None:
        rate = (np.array([0.0025, 0.002, 0.035, 0.004, 0.003])[g] * has_handle)[:, None]
    else:
        rate = 0.0025 * voice.mention_mult * has_handle[:, None]
    lam = rate * _WEEKDAY_SOCIAL[clock.dow][None, :] * (level > 0)
    if voice is None:
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
            if voice is not None and voice.sour[i, d]:
                kind = ("praise", "complaint", "question")[_choice(rng, [0.08, 0.67, 0.25])]
            else:
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
            if voice is None and g[i] == fade and ts >= fade_cutoff:
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

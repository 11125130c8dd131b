"""The flags and their rules: each flag's name, what it means, and the thresholds that decide it.

This module holds what the flags are (`FLAG_NAMES`, `COMPUTED_FLAGS`) and their settings
(`SilentRule`, `FlagSettings`); models/flags.py decides them for every account
(`evaluate_flags`) and stores them for a date (`compute_flags`).

The flags
---------
`silent_dissatisfied`
    The account shows dissatisfaction that is unusual both for *itself* and for its *peers*,
    and has not opened a ticket in the last `no_contact_days` (30; the product's runs read
    PULSE_SILENT_NO_CONTACT_DAYS, `models.flags.flag_settings`) days. No threshold is a
    fixed volume, share or rate: each is a z (standard deviations) or a quantile measured on
    the data of the date, so the rule carries over to customers and worlds of any size,
    volume per seat, noise or weekly cycle (models/flags.py `silent_scores`).

    Trajectory signals compare the mean of the last `recent_weeks` (4) whole weeks with the
    median of the account's baseline weeks: the `baseline_weeks` (22) weeks before the last
    `skip_weeks` (4), those it existed in (at least `min_baseline_weeks`, 4; the week of its
    first usage is left out, it may be partial). Whole 7-day weeks ending with the as-of
    date, so a weekly cycle never tilts a comparison. The median of a long baseline still
    holds the account's usual level when dissatisfaction set in months ago. Four weeks
    rather than two: a mean of four weeks wanders less, so a decline that lasts shows more
    surely than a fortnight's dip (measured: docs/demo-variants.md).

    ==============  =============================================================
    signal          own past (robust z)                 peers (robust z)
    ==============  =============================================================
    usage_drop      events a week, relative change in   log of that ratio against
                    units of the account's own weekly   its peer group's
                    spread (MAD / median)
    error_rise      error share of events, change in    the same change against
                    units of its own weekly spread, or  its peer group's
                    of chance on the rows seen
    users_drop      active users a week, as usage_drop  as usage_drop
    ==============  =============================================================

    A trajectory signal's strength is the *smaller* of the two z (both must find it
    unusual). The own spread is never taken below the `noise_floor_quantile` (25 %) of the
    peers' spreads, nor below chance (1/sqrt of the weekly observations), so a flat history
    does not make every wobble extreme. Peers are the accounts of the same segment and plan
    (as stored now) when at least `min_peers` (20) of them have a baseline, else the same
    segment, else all accounts; with fewer than 20 in all, the account's own past decides
    alone. The error share may also be unusual against the peers' shares (and their pooled
    share, for chance): failures that set in before the baseline count too. An error rise
    *backs a decline up* and never fires the flag on its own: its strength stops at 2.58
    (`models.flags.CORROBORATING_Z`, as the modelled risk's), under `min_evidence` (and just
    under `min_evidence` when that is set lower). Failures
    at the usual volume are a technical problem (the outage flag, a ticket); measured on the
    variant worlds, most accounts flagged on errors alone were not dissatisfied.

    Event signals weigh by how rare they are among the live accounts of the date: a share p
    of accounts showing it gives the z with P(Z > z) = p (a downgrade seen in 3 % of
    accounts weighs 1.9, one seen in 30 % weighs 0.5):

    ==============  =============================================================
    contraction     a downgrade in 90 days, or MRR lower than 90 days ago
    negative_voice  a negative social mention in the last 28 days
    modelled_risk   the champion churn model's risk of the date (`churn_scores`,
                    scored before the flags as the health DAG does), by its rank
                    among the live accounts it scored: the top share p weighs
                    the z with P(Z > z) = p (top 5%: 1.6), the lower half 0;
                    without scores for the date (no champion), left out
    ==============  =============================================================

    The modelled risk never fires the flag on its own (a share under 0.5% weighs as 0.5%,
    2.58 < `min_evidence`, however many accounts are scored): it tips a decline the
    trajectory signals see only mildly. Every caller scores a date through one step
    (`models.scoring.score_day`: features, health, churn scores when there is a champion,
    then flags), so `pulse score`, the history backfill, the benches and the health DAG
    weigh it alike (docs/demo-variants.md has the figures per variant).

    The evidence is the root of the sum of squared strengths (each capped at
    `signal_cap`, 6); the flag fires when it reaches `min_evidence` (3: one signal three
    standard deviations out in both senses, or several milder ones together). How many
    accounts fire is therefore whatever the data shows on the date, never a fixed share.

    Contact shortly before the quiet spell raises that bar: an account whose latest ticket
    is `no_contact_days` old is still talking to the team, so it needs `recent_contact_z`
    (2) more evidence (5 instead of 3); the rise fades in a straight line to nothing when
    the ticket is `recent_contact_days` (90) old, and an account with no ticket on record
    meets the plain bar. Days, not a count of tickets, so the rule does not depend on how
    often a customer base writes in. Measured on the variant worlds (docs/demo-variants.md):
    most false alarms were accounts that had opened a ticket 30 to 90 days before, and the
    graded bar raised precision on 14 of 16 worlds.

    Cancelled accounts are not flagged (they are churned, not at risk). When the support
    source is stale (the scorecard's `stale_after_days`) no account is called silent, since
    Pulse cannot know; when the usage source is stale the trajectory signals are left out.
    The evidence in words names each signal with its numbers, its peer percentile and the
    days without a ticket; `details` holds every z.

`payment_risk`
    Failed payments that no successful payment followed (the `open_failed_payments`
    feature), with how many, since when and how much.

`renewal_soon_at_risk`
    The renewal date falls within `renewal_days` (60) days and the health band is red or
    amber, or health fell by `renewal_falling_points` (10) or more over 7 or 30 days, and
    the contract is worth something (an MRR of 0 has no renewal to save). The stored renewal
    date decides; without one, an annual contract's renewal is estimated from
    its billing term or its start's anniversary, and the evidence says so
    (`models.flags.renewal_days`).

`champion_gone`
    The account's champion, the contact with the most usage in the `champion_prior_days`
    (60) days before the last `champion_gone_days` (21) days, active on at least
    `champion_min_active_days` (3) of them, has not used the product in those last 21 days,
    while the account is still a customer (not cancelled).

`outage_affected`
    An incident hit the account in the last `outage_days` (7) days: the account had errors
    on an affected component inside the incident's window (`incident_impacts`, computed by
    models/outage.py), and those errors reach into the 7 days. The evidence names the latest
    such incident with the account's own numbers ("hit by incident inc-07 (Exports failing)
    on 2026-06-15: 42 of 120 requests failed for 3 users") and how many others hit it too.
    With the "known" basis only incidents that had landed by the date count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pulse.core.errors import InvalidArgumentError

SILENT = "silent_dissatisfied"
PAYMENT = "payment_risk"
RENEWAL = "renewal_soon_at_risk"
CHAMPION = "champion_gone"
OUTAGE = "outage_affected"

#: Every flag name, and what it means (the risk list and `pulse flags` show these).
FLAG_NAMES: dict[str, str] = {
    SILENT: "shows dissatisfaction and has not opened a ticket lately",
    PAYMENT: "failed payments not recovered",
    RENEWAL: "renews soon with red or amber or falling health",
    CHAMPION: "the most active user stopped using the product",
    OUTAGE: "hit by an incident in the last 7 days (errors on an affected component)",
}
#: Every flag in a few words, as the console's risk list shows it.
FLAG_WORDS: dict[str, str] = {
    SILENT: "silently unhappy",
    PAYMENT: "payment failed",
    RENEWAL: "renewal at risk",
    CHAMPION: "champion gone",
    OUTAGE: "hit by an outage",
}


def flag_words(name: str) -> str:
    """A flag in a few words, as a CSM reads it (`FLAG_WORDS`; a flag without wording reads
    as its name with spaces)."""
    return FLAG_WORDS.get(name, name.replace("_", " "))


#: The flags `compute_flags` decides today.
COMPUTED_FLAGS: tuple[str, ...] = (SILENT, PAYMENT, RENEWAL, CHAMPION, OUTAGE)


@dataclass(frozen=True)
class SilentRule:
    """When an account counts as silently dissatisfied; see the module docstring.

    Every threshold is statistical: `min_evidence` and `signal_cap` are z (standard
    deviations), `noise_floor_quantile` a quantile of the peers; the weeks say which history
    is compared, not how much change is enough.
    """

    no_contact_days: int = 30
    recent_weeks: int = 4
    skip_weeks: int = 4
    baseline_weeks: int = 22
    min_baseline_weeks: int = 4
    min_peers: int = 20
    noise_floor_quantile: float = 0.25
    min_evidence: float = 3.0
    signal_cap: float = 6.0
    recent_contact_days: int = 90
    recent_contact_z: float = 2.0

    def __post_init__(self) -> None:
        if self.no_contact_days < 1:
            raise InvalidArgumentError(
                f"no_contact_days must be at least 1 (not {self.no_contact_days})")
        if not 1 <= self.recent_weeks <= self.skip_weeks:
            raise InvalidArgumentError(
                f"recent_weeks must be between 1 and skip_weeks ({self.skip_weeks}), not "
                f"{self.recent_weeks}")
        if not 2 <= self.min_baseline_weeks <= self.baseline_weeks:
            raise InvalidArgumentError(
                f"min_baseline_weeks must be between 2 and baseline_weeks "
                f"({self.baseline_weeks}), not {self.min_baseline_weeks}")
        if not 0 <= self.noise_floor_quantile <= 1:
            raise InvalidArgumentError(
                f"noise_floor_quantile must be a quantile in [0, 1] (not "
                f"{self.noise_floor_quantile})")
        if self.min_evidence <= 0 or self.signal_cap <= 0:
            raise InvalidArgumentError(
                f"min_evidence and signal_cap must be positive z (not {self.min_evidence}, "
                f"{self.signal_cap})")
        if self.min_peers < 2:
            raise InvalidArgumentError(f"min_peers must be at least 2 (not {self.min_peers})")
        if self.recent_contact_z < 0 or self.recent_contact_days < 1:
            raise InvalidArgumentError(
                f"recent_contact_z must be a z of 0 or more and recent_contact_days at least 1 "
                f"(not {self.recent_contact_z}, {self.recent_contact_days})")

    def evidence_bar(self, days_since_last_ticket: Any) -> np.ndarray:
        """The evidence each account needs, given the days since its latest ticket (NaN:
        none on record): `min_evidence`, plus `recent_contact_z` for a ticket exactly
        `no_contact_days` old, fading in a straight line to nothing at
        `recent_contact_days` (no rise at all when that is not later than
        `no_contact_days`)."""
        since = np.asarray(days_since_last_ticket, dtype="float64")
        bar = np.full(since.shape, float(self.min_evidence))
        span = self.recent_contact_days - self.no_contact_days
        if span <= 0 or self.recent_contact_z == 0:
            return bar
        with np.errstate(invalid="ignore"):
            fade = np.clip((self.recent_contact_days - since) / span, 0.0, 1.0)
        return bar + self.recent_contact_z * np.nan_to_num(fade, nan=0.0)

    def fires(self, evidence: Any, days_since_last_ticket: Any) -> np.ndarray:
        """Whether each account is called silent: no ticket in `no_contact_days` (NaN: none
        on record) and its evidence at its `evidence_bar` (cancelled accounts aside)."""
        since = np.asarray(days_since_last_ticket, dtype="float64")
        quiet = np.isnan(since) | (since >= self.no_contact_days)
        return quiet & (np.asarray(evidence, dtype="float64") >= self.evidence_bar(since))


@dataclass(frozen=True)
class FlagSettings:
    """Thresholds of every flag (the defaults are what `pulse flags` uses)."""

    silent: SilentRule = field(default_factory=SilentRule)
    renewal_days: int = 60
    renewal_bands: tuple[str, ...] = ("red", "amber")
    renewal_falling_points: float = 10.0
    champion_prior_days: int = 60
    champion_gone_days: int = 21
    champion_min_active_days: int = 3
    outage_days: int = 7

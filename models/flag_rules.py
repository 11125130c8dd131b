"""The flags and their rules: each flag's name, what it means, and the thresholds that decide it.

This module holds what the flags are (`FLAG_NAMES`, `COMPUTED_FLAGS`) and their settings
(`SilentRule`, `FlagSettings`); models/flags.py decides them for every account
(`evaluate_flags`) and stores them for a date (`compute_flags`).

The flags
---------
`silent_dissatisfied`
    The account shows dissatisfaction and has not opened a ticket in the last
    `no_contact_days` (30) days. Dissatisfaction is read from *signals*, each compared with
    the account's own past or its own size, never with absolute volumes, so that the rule
    carries over to customers of any size:

    ==============  ======================================================  ========  ========
    signal          what                                                    weak      strong
    ==============  ======================================================  ========  ========
    usage_drop      events, last 28 days against the 28 before              -25 %     -50 %
    error_rise      error share of events, last 28 days against the 28      x1.5 and  x2 and
                    before                                                  +2 pts    +5 pts
    users_drop      active users, last 28 days against the 28 before        -30 %
    contraction     a downgrade in 90 days, or MRR down 10 % over 90 days   any
    failed_payment  failed payments not recovered                           any
    negative_voice  at least half of the last 28 days' mentions negative    any
    low_health      health band red, or health down 15 points in 30 days    any
    ==============  ======================================================  ========  ========

    It fires on at least one strong signal, or at least two signals of any strength
    (`SilentRule`). The usage signals need a baseline: usage on at least 3 days of the 28
    days before. Cancelled accounts are not flagged (they are churned, not at risk). When
    the support source is stale (the scorecard's `stale_after_days`) no account is called
    silent, since Pulse cannot know; when the usage source is stale its signals are left out.

`payment_risk`
    Failed payments that no successful payment followed (the `open_failed_payments`
    feature), with how many, since when and how much.

`renewal_soon_at_risk`
    The renewal date falls within `renewal_days` (60) days and the health band is red or
    amber, or health fell by `renewal_falling_points` (10) or more over 7 or 30 days.

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
#: The flags `compute_flags` decides today.
COMPUTED_FLAGS: tuple[str, ...] = (SILENT, PAYMENT, RENEWAL, CHAMPION, OUTAGE)

STRONG, WEAK = 2, 1


@dataclass(frozen=True)
class SilentRule:
    """When an account counts as silently dissatisfied; see the module docstring.

    Shares are fractions (0.25 = 25 %); error points are shares of events (0.02 = 2 points).
    """

    no_contact_days: int = 30
    baseline_days: int = 84
    min_baseline_active_days: int = 3
    usage_drop_weak: float = 0.25
    usage_drop_strong: float = 0.50
    error_ratio_weak: float = 1.5
    error_points_weak: float = 0.02
    error_ratio_strong: float = 2.0
    error_points_strong: float = 0.05
    error_min_z: float = 3.0
    users_drop: float = 0.30
    users_drop_min: int = 2
    mrr_drop: float = 0.10
    negative_share: float = 0.5
    low_health_bands: tuple[str, ...] = ("red",)
    health_drop_points: float = 15.0
    min_strong: int = 1
    min_signals: int = 2

    def __post_init__(self) -> None:
        for name in ("usage_drop_weak", "usage_drop_strong", "users_drop", "mrr_drop",
                     "negative_share"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise InvalidArgumentError(f"{name} must be a share in (0, 1] (not {value})")
        if self.usage_drop_strong < self.usage_drop_weak:
            raise InvalidArgumentError("usage_drop_strong must be at least usage_drop_weak")
        if self.no_contact_days < 1:
            raise InvalidArgumentError(f"no_contact_days must be at least 1 (not {self.no_contact_days})")


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

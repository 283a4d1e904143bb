"""What a shadow pipeline would have done: its lists against the served ones, and their CTR.

For every request a shadow followed, the shadow log has the list it made and the
recommendation log the list the user saw, with the logged propensity of every served
position. The report compares the two (agreement, latency, fallbacks, items) and estimates
the shadow's CTR per slot off-policy, by position-based IPS: a served position counts for
the shadow when the shadow put the same item there, weighted by one over the propensity the
served item had there. The estimate is unbiased only if the serving policy could have put
every shadow item where the shadow did. For a served policy that can say so (no
exploration, epsilon-greedy), the shadow log holds, per shadow item, the probability that the
served policy would have put it there, and a slot where it is 0 is unsupported. For others
(the bandits), only the certain gaps are known: slots where the served list did not explore
at all (propensity 1) and the shadow differs. Past ``MAX_UNSUPPORTED_SHARE`` the estimate is
flagged, since it misses the shadow's clicks in those slots. Exploration on the served
surface is what makes the estimate possible.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from recloop.analysis.outcomes import app_events, served_lists
from recloop.analysis.stats import jsonable
from recloop.config import CleaningConfig
from recloop.domain import EventType, RecommendationRecord, ShadowRecord
from recloop.evaluation.ope import BootstrapSpec, Estimate, position_based_ips
from recloop.evaluation.ope_data import LoggedBandit
from recloop.store.protocols import EventLog, RecommendationLog, ShadowLog

_PAGE = 5000
#: Above this share of shadow slots with certainly no support, the CTR estimate is flagged.
MAX_UNSUPPORTED_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class ShadowPair:
    """One shadowed request: the list served, the shadow's list, the served items clicked."""

    served: RecommendationRecord
    shadow: ShadowRecord
    clicked: frozenset[str]


@dataclass(frozen=True, slots=True)
class ShadowSide:
    """One side's figures over the shadowed requests."""

    latency_p50_ms: float
    latency_p99_ms: float
    fallback_share: float
    distinct_items: int
    mean_length: float


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """Everything ``recloop shadow report`` prints and the admin route returns."""

    shadow: str
    requests: int
    missing_served: int
    first: datetime | None
    last: datetime | None
    model_versions: tuple[str, ...]
    served: ShadowSide | None
    shadowed: ShadowSide | None
    overlap: float  # mean share of the served list's items the shadow also had
    same_first: float  # share of requests whose first item is the same
    same_slot: float  # share of slots holding the same item in both lists
    served_ctr: float  # on-policy clicks per served slot, over the shadowed requests
    served_ctr_ci: tuple[float, float]
    shadow_ctr: Estimate | None  # position-based IPS estimate for the shadow's lists
    # The same over the shadow's supported slots only (None when every slot had support).
    supported_ctr: Estimate | None
    unsupported_share: float  # shadow slots the served policy could not have filled so
    support_known: float  # share of lists whose served policy stated its full support
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON types."""
        estimate = self.shadow_ctr
        return {
            "shadow": self.shadow,
            "requests": self.requests,
            "missingServed": self.missing_served,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "modelVersions": list(self.model_versions),
            "served": jsonable(self.served),
            "shadowed": jsonable(self.shadowed),
            "overlap": self.overlap,
            "sameFirst": self.same_first,
            "sameSlot": self.same_slot,
            "servedCtr": self.served_ctr,
            "servedCtrCi": list(self.served_ctr_ci),
            "shadowCtr": None
            if estimate is None
            else {
                "estimator": estimate.estimator,
                "value": estimate.value,
                "ciLow": estimate.ci_low,
                "ciHigh": estimate.ci_high,
                "rows": estimate.n,
                "essShare": estimate.diagnostics.ess_share,
                "weightMax": estimate.diagnostics.weight_max,
            },
            "supportedCtr": None
            if self.supported_ctr is None
            else {
                "value": self.supported_ctr.value,
                "ciLow": self.supported_ctr.ci_low,
                "ciHigh": self.supported_ctr.ci_high,
            },
            "unsupportedShare": self.unsupported_share,
            "supportKnown": self.support_known,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def read_shadow_pairs(
    shadow_log: ShadowLog,
    rec_log: RecommendationLog,
    events: EventLog,
    app_id: str,
    shadow: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[ShadowPair], int]:
    """Every request the shadow followed, with its served list and clicks; and how many
    shadow lists had no served list in the log (dropped, or purged with their user)."""
    shadows = {
        r.request_id: r
        for r in _shadow_lists(shadow_log, app_id, shadow)
        if (since is None or r.computed_at >= since) and (until is None or r.computed_at < until)
    }
    served = {
        r.request_id: r for r in served_lists(rec_log, app_id, since) if r.request_id in shadows
    }
    clicked: dict[str, set[str]] = {}
    for event in app_events(events, app_id, since):
        if event.event_type is EventType.CLICK and event.request_id in served and event.item_id:
            clicked.setdefault(event.request_id, set()).add(event.item_id)
    pairs = [
        ShadowPair(served[rid], record, frozenset(clicked.get(rid, ())))
        for rid, record in sorted(shadows.items())
        if rid in served
    ]
    return pairs, len(shadows) - len(pairs)


def shadow_report(
    shadow: str,
    pairs: Sequence[ShadowPair],
    missing_served: int = 0,
    bootstrap: BootstrapSpec | None = None,
    cleaning: CleaningConfig | None = None,
) -> ShadowReport:
    """Compare a shadow's lists with the served ones and estimate its CTR per slot.

    Users who click like bots (the training data's rule) are left out, as in the experiment
    report: a user who clicks everything would make any list look good.
    """
    bootstrap = bootstrap or BootstrapSpec()
    notes: list[str] = []
    warnings: list[str] = []
    if missing_served:
        notes.append(
            f"{missing_served:,} shadow lists have no served list in the log and are left out"
        )
    pairs, bots = _without_bots(pairs, cleaning or CleaningConfig())
    if bots:
        notes.append(f"{bots} users left out as bots (they click nearly everything served)")
    if not pairs:
        return ShadowReport(
            shadow, 0, missing_served, None, None, (), None, None, 0.0, 0.0, 0.0,
            float("nan"), (float("nan"), float("nan")), None, None, 0.0, 0.0, (), tuple(notes),
        )  # fmt: skip
    rewards, p0, pe, positions, groups, supported = [], [], [], [], [], []
    overlap, same_first, slots, same_slots, unsupported, known = [], 0, 0, 0, 0, 0
    for g, pair in enumerate(pairs):
        served_ids = [i.item_id for i in pair.served.items]
        shadow_ids = [i.item_id for i in pair.shadow.items]
        support = pair.shadow.support
        known += support is not None
        if served_ids:
            overlap.append(len(set(served_ids) & set(shadow_ids)) / len(served_ids))
        same_first += bool(served_ids and shadow_ids and served_ids[0] == shadow_ids[0])
        for item in pair.served.items:
            k = item.position
            target = shadow_ids[k] if k < len(shadow_ids) else None
            rewards.append(float(item.item_id in pair.clicked))
            p0.append(item.propensity)
            pe.append(float(item.item_id == target))
            positions.append(k)
            groups.append(g)
            slots += 1
            same_slots += item.item_id == target
            if target is None:
                supported.append(False)
                continue
            if support is not None:
                gap = support[k] <= 0.0
            else:
                # A served position with propensity 1 is one the serving policy never
                # varies: a different shadow item there could never have been shown.
                gap = item.item_id != target and item.propensity >= 1
            unsupported += gap
            supported.append(not gap)
    data = LoggedBandit(
        rewards=np.array(rewards),
        logging_propensity=np.array(p0),
        target_propensity=np.array(pe),
        positions=np.array(positions),
        groups=np.array(groups),
    )
    estimate = position_based_ips(data, bootstrap=bootstrap)
    # The served lists' own CTR by the same statistic (each position's mean, averaged), so
    # the two are comparable when lists differ in length.
    ones = np.ones(data.n)
    on_policy = position_based_ips(
        dataclasses.replace(data, logging_propensity=ones, target_propensity=ones),
        bootstrap=bootstrap,
    )
    # Each position's mean over the requests whose shadow slot there had support: unbiased
    # for the shadow's CTR on those slots, whatever happens in the others.
    mask = np.array(supported)
    on_supported = None
    if unsupported and mask.any():
        on_supported = position_based_ips(
            LoggedBandit(
                rewards=data.rewards[mask],
                logging_propensity=data.logging_propensity[mask],
                target_propensity=data.target_propensity[mask],
                positions=np.array(positions)[mask],
                groups=np.array(groups)[mask],
            ),
            bootstrap=bootstrap,
        )
    unsupported_share = unsupported / max(1, slots)
    if unsupported_share > MAX_UNSUPPORTED_SHARE:
        warnings.append(
            f"{unsupported_share:.0%} of the shadow's slots hold an item the served lists could "
            "never have shown there: the estimate misses the shadow's clicks in them and is "
            "biased low (the CTR on its supported slots is the better guide); explore more "
            "widely on the served surface"
        )
    if known < len(pairs):
        notes.append(
            f"the served policy stated its support for {known / len(pairs):.0%} of the lists; "
            "for the rest only slots the served list never varied count as unsupported"
        )
    warnings.extend(estimate.warnings)
    notes.extend(
        n for n in estimate.notes if "support unknown" not in n
    )  # the unsupported share above is this report's support check
    return ShadowReport(
        shadow=shadow,
        requests=len(pairs),
        missing_served=missing_served,
        first=min(p.shadow.computed_at for p in pairs),
        last=max(p.shadow.computed_at for p in pairs),
        model_versions=tuple(sorted({p.shadow.model_version for p in pairs})),
        served=_side([p.served for p in pairs]),
        shadowed=_side([p.shadow for p in pairs]),
        overlap=statistics.fmean(overlap) if overlap else 0.0,
        same_first=same_first / len(pairs),
        same_slot=same_slots / max(1, slots),
        served_ctr=on_policy.value,
        served_ctr_ci=(on_policy.ci_low, on_policy.ci_high),
        shadow_ctr=estimate,
        supported_ctr=on_supported,
        unsupported_share=unsupported_share,
        support_known=known / len(pairs),
        warnings=tuple(warnings),
        notes=tuple(notes),
    )


def _without_bots(
    pairs: Sequence[ShadowPair], rules: CleaningConfig
) -> tuple[list[ShadowPair], int]:
    clicks: dict[str, int] = {}
    shown: dict[str, int] = {}
    for pair in pairs:
        user = pair.served.user_id
        clicks[user] = clicks.get(user, 0) + len(pair.clicked)
        shown[user] = shown.get(user, 0) + len(pair.served.items)
    bots = {
        user
        for user, n in clicks.items()
        if n >= rules.bot_min_clicks and n > rules.bot_max_ctr * shown[user]
    }
    return [p for p in pairs if p.served.user_id not in bots], len(bots)


def _side(records: Sequence[RecommendationRecord | ShadowRecord]) -> ShadowSide:
    latencies = np.array([r.latency_ms for r in records])
    return ShadowSide(
        latency_p50_ms=float(np.quantile(latencies, 0.5)),
        latency_p99_ms=float(np.quantile(latencies, 0.99)),
        fallback_share=sum(r.fallback for r in records) / len(records),
        distinct_items=len({i.item_id for r in records for i in r.items}),
        mean_length=statistics.fmean(len(r.items) for r in records),
    )


def _shadow_lists(shadow_log: ShadowLog, app_id: str, shadow: str) -> Iterator[ShadowRecord]:
    after: str | None = None
    while True:
        page = shadow_log.scan(app_id, shadow, after, _PAGE)
        if not page:
            return
        yield from page
        after = page[-1].request_id

"""A family of worlds: whole world structures drawn from a seed, within documented ranges.

One world is one set of choices (how many categories, how peaked tastes are, how strongly
position and fatigue bite, how much clickbait and how strong its pull, whose clocks are
wrong and how the service's clock runs). A recommender tuned on one world can be tuned to
it; judged on a family, it has to work on worlds it was never tuned on.

Seeds are split once and for all: seeds below ``HELD_OUT_FROM`` are tuning seeds, free for
any choice; seeds from it on are held out, and their worlds also draw from wider ranges and
from clock modes that tuning worlds never have (``HELD_OUT_CLOCK_MODES``). Report held-out
worlds (``HELD_OUT_SEEDS``); never choose anything by them.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recloop.simulate.behaviour import BehaviourConfig
from recloop.simulate.clocks import ClientClockConfig, ServiceClockConfig
from recloop.simulate.world import WorldConfig

#: Seeds from this one on are held out.
HELD_OUT_FROM = 10_000
#: The held-out worlds a benchmark reports.
HELD_OUT_SEEDS: tuple[int, ...] = tuple(range(HELD_OUT_FROM + 1, HELD_OUT_FROM + 11))
#: A few tuning worlds, for development.
TUNING_SEEDS: tuple[int, ...] = (1, 2, 3)

ClockMode = Literal["synced", "skewed", "months-behind", "replay", "mixed"]
#: Clock modes a tuning world may have.
TUNING_CLOCK_MODES: tuple[ClockMode, ...] = ("synced", "skewed")
#: Clock modes only held-out worlds have.
HELD_OUT_CLOCK_MODES: tuple[ClockMode, ...] = ("months-behind", "replay", "mixed")

Range = tuple[float, float]


def is_held_out(seed: int) -> bool:
    """Whether a seed is held out of every choice."""
    return seed >= HELD_OUT_FROM


class Ranges(BaseModel):
    """The ranges one kind of world (tuning or held-out) draws its structure from.

    Every range is (low, high), drawn uniformly, except ``taste_concentration``: drawn
    log-uniformly, as it acts by ratios. ``favourite_counts`` and ``clock_modes`` are drawn
    from as lists. ``taste_shift`` is drawn only for a family whose worlds shift tastes
    (``WorldFamily.taste_shift_day``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[int, int]
    category_skew: Range
    item_spread: Range
    favourite_counts: tuple[tuple[int, ...], ...]
    taste_concentration: Range
    taste_noise: Range
    clickbait_share: Range
    clickbait_pull: Range
    position_decay: Range
    seen_penalty: Range
    category_fatigue: Range
    activity_sigma: Range
    taste_drift_per_day: Range
    clock_modes: tuple[ClockMode, ...]
    taste_shift: Range = (0.6, 1.0)


#: What tuning worlds draw from (the demo's world sits inside every range).
TUNING_RANGES = Ranges(
    categories=(6, 20),
    category_skew=(0.0, 0.8),
    item_spread=(0.45, 0.65),
    favourite_counts=((1, 2, 2, 3), (1, 1, 2), (2, 3)),
    taste_concentration=(0.7, 4.0),
    taste_noise=(0.2, 0.4),
    clickbait_share=(0.0, 0.2),
    clickbait_pull=(0.8, 1.6),
    position_decay=(0.6, 1.1),
    seen_penalty=(0.8, 1.6),
    category_fatigue=(0.1, 0.4),
    activity_sigma=(0.9, 1.3),
    taste_drift_per_day=(0.01, 0.05),
    clock_modes=TUNING_CLOCK_MODES,
)
#: What held-out worlds draw from: the tuning ranges, widened, and every clock mode.
HELD_OUT_RANGES = Ranges(
    categories=(4, 40),
    category_skew=(0.0, 1.2),
    item_spread=(0.4, 0.75),
    favourite_counts=((1, 2, 2, 3), (1, 1, 2), (2, 3), (1,), (2, 3, 4)),
    taste_concentration=(0.4, 8.0),
    taste_noise=(0.15, 0.5),
    clickbait_share=(0.0, 0.3),
    clickbait_pull=(0.5, 2.2),
    position_decay=(0.4, 1.4),
    seen_penalty=(0.5, 2.0),
    category_fatigue=(0.0, 0.5),
    activity_sigma=(0.8, 1.4),
    taste_drift_per_day=(0.0, 0.08),
    clock_modes=(*TUNING_CLOCK_MODES, *HELD_OUT_CLOCK_MODES),
    taste_shift=(0.4, 1.0),
)


class WorldSpec(BaseModel):
    """One drawn world: its structure, its users' behaviour and its clocks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    held_out: bool
    clock_mode: ClockMode
    world: WorldConfig
    behaviour: BehaviourConfig
    clients: ClientClockConfig
    service_clock: ServiceClockConfig

    def describe(self) -> str:
        """The world's shape in one line."""
        w, b, s = self.world, self.behaviour, self.service_clock
        clock: str = self.clock_mode
        if s.lead_days:
            clock += f" lead {s.lead_days:.0f} d"
        if s.compression != 1:
            clock += f" x{s.compression:.0f}"
        shift = (
            f", tastes shift {w.taste_shift:.2f} on day {w.taste_shift_day}"
            if w.taste_shift_day is not None
            else ""
        )
        return (
            f"{w.categories} categories (skew {w.category_skew:.2f}), favourites "
            f"{'/'.join(map(str, w.favourite_counts))} conc {w.taste_concentration:.2f}, "
            f"position decay {b.position_decay:.2f}, fatigue {b.seen_penalty:.2f}/"
            f"{b.category_fatigue:.2f}, clickbait {w.clickbait_share:.0%} pull "
            f"{w.clickbait_pull:.2f}, clock {clock}{shift}"
        )


#: The client clocks of a world whose clients are mostly right, as mobile fleets are.
SKEWED_CLIENTS = ClientClockConfig(
    jitter_s=2.0, skewed_share=0.15, skew_s=(60.0, 6 * 3600.0), late_upload_share=0.05
)


class WorldFamily(BaseModel):
    """Draws whole worlds from seeds; sizes are fixed, the shape varies.

    ``days`` is how long the worlds will run: a replayed world must start that far behind
    the service's clock (``ServiceClockConfig.min_lead_days``). With ``taste_shift_day``,
    every world's users shift tastes at once that day, by a strength drawn from the split's
    ``taste_shift`` range (from a stream of its own: the rest of each world is the seed's
    world without a shift).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = Field(default=5, ge=1)
    initial_items: int = Field(default=800, ge=10)
    initial_users: int = Field(default=250, ge=1)
    new_items_per_day: int = Field(default=40, ge=0)
    new_users_per_day: int = Field(default=15, ge=0)
    taste_shift_day: int | None = Field(default=None, ge=1)
    tuning: Ranges = TUNING_RANGES
    held_out: Ranges = HELD_OUT_RANGES

    def draw(self, seed: int, clock_mode: ClockMode | None = None) -> WorldSpec:
        """The world of ``seed``: one draw of every setting from its split's ranges.

        ``clock_mode`` forces a clock mode (tests); the structure is the seed's either way.
        """
        held_out = is_held_out(seed)
        ranges = self.held_out if held_out else self.tuning
        rng = np.random.default_rng([seed, 0xFA317])

        def uniform(r: Range) -> float:
            return float(rng.uniform(r[0], r[1]))

        def log_uniform(r: Range) -> float:
            return float(math.exp(rng.uniform(math.log(r[0]), math.log(r[1]))))

        categories = int(rng.integers(ranges.categories[0], ranges.categories[1] + 1))
        fitting = [c for c in ranges.favourite_counts if max(c) <= categories]
        favourite_counts = fitting[int(rng.integers(len(fitting)))]
        world = WorldConfig(
            seed=seed,
            initial_items=self.initial_items,
            initial_users=self.initial_users,
            new_items_per_day=self.new_items_per_day,
            new_users_per_day=self.new_users_per_day,
            categories=categories,
            category_skew=uniform(ranges.category_skew),
            item_spread=uniform(ranges.item_spread),
            favourite_counts=favourite_counts,
            taste_concentration=log_uniform(ranges.taste_concentration),
            taste_noise=uniform(ranges.taste_noise),
            clickbait_share=uniform(ranges.clickbait_share),
            clickbait_pull=uniform(ranges.clickbait_pull),
            activity_sigma=uniform(ranges.activity_sigma),
            taste_drift_per_day=uniform(ranges.taste_drift_per_day),
        )
        if self.taste_shift_day is not None:
            # Drawn apart, so that the seed's other settings stay what they were.
            shift = np.random.default_rng([seed, 0x5A1F7])
            world = WorldConfig.model_validate(
                {
                    **world.model_dump(),
                    "taste_shift_day": self.taste_shift_day,
                    "taste_shift": float(shift.uniform(*ranges.taste_shift)),
                }
            )
        behaviour = BehaviourConfig(
            position_decay=uniform(ranges.position_decay),
            seen_penalty=uniform(ranges.seen_penalty),
            category_fatigue=uniform(ranges.category_fatigue),
        )
        drawn = ranges.clock_modes[int(rng.integers(len(ranges.clock_modes)))]
        mode = clock_mode or drawn
        clients, service = self._clocks(mode, np.random.default_rng([seed, 0xC10C]))
        return WorldSpec(
            seed=seed,
            held_out=held_out,
            clock_mode=mode,
            world=world,
            behaviour=behaviour,
            clients=clients,
            service_clock=service,
        )

    def _clocks(
        self, mode: ClockMode, rng: np.random.Generator
    ) -> tuple[ClientClockConfig, ServiceClockConfig]:
        """Client clocks and the service's clock of a clock mode.

        - ``synced``: every clock agrees (the demo);
        - ``skewed``: most clients within seconds, 15 % minutes to hours off (a fifth of them
          ahead, by at most 4 minutes), 5 % of sessions uploaded 1-12 hours late;
        - ``months-behind``: clients as in ``skewed``, and the service's clock 60-180 days
          ahead of the world (a world replayed at real speed, long after it happened);
        - ``replay``: the world replayed 20-200 times faster than the service's clock runs,
          starting 1-30 days after the replayed history ends;
        - ``mixed``: a quarter of the clients months behind, 15 % skewed, 10 % of sessions
          uploaded late, the service on the world's time.
        """
        if mode == "synced":
            return ClientClockConfig(), ServiceClockConfig()
        if mode == "skewed":
            return SKEWED_CLIENTS, ServiceClockConfig()
        if mode == "months-behind":
            return SKEWED_CLIENTS, ServiceClockConfig(lead_days=float(rng.uniform(60, 180)))
        if mode == "replay":
            compression = float(math.exp(rng.uniform(math.log(20), math.log(200))))
            service = ServiceClockConfig(compression=compression)
            lead = service.min_lead_days(self.days) + float(rng.uniform(1, 30))
            return SKEWED_CLIENTS, service.model_copy(update={"lead_days": lead})
        return (
            ClientClockConfig(
                jitter_s=2.0,
                skewed_share=0.15,
                months_behind_share=0.25,
                late_upload_share=0.1,
            ),
            ServiceClockConfig(),
        )

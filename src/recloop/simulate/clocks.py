"""Clocks: the world's true time, its clients' clocks, and the service's own clock.

Three timelines meet in a simulated run, as they do in production:

- the world's true time, on which users act (the driver's ``now``);
- each client's clock, which stamps the events it sends (``eventTs``): a per-client offset
  from true time, near zero for most, minutes or hours off for some, months behind for a
  few; an offline client may also upload a whole session hours after it happened;
- the service's clock, which stamps what it serves and receives and is ``now`` for nightly
  training. It starts at an anchor (``lead_days`` after the world's start) and advances at
  ``1 / compression`` of the world's rate: compression 100 replays the world 100 times
  faster than real time.

With the defaults the three agree, which is how the demo has always run.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClientClockConfig(BaseModel):
    """How far each client's clock is from true time, and how often it uploads late.

    A client is a user's device (each simulated user has one). Offsets are seconds added to
    true time; negative is behind. A clock ahead of the service by more than the service
    accepts (``ingest.max_future_skew_s``, 300 s by default) would have its events refused,
    so ahead offsets stay within ``max_ahead_s``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    jitter_s: float = Field(default=0.0, ge=0, description="Every clock: N(0, jitter) seconds.")
    skewed_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of clients minutes to hours off."
    )
    skew_s: tuple[float, float] = Field(
        default=(60.0, 6 * 3600.0), description="Range of a skewed clock's offset (log-uniform)."
    )
    ahead_share: float = Field(
        default=0.2, ge=0, le=1, description="Share of skewed clocks that run ahead, not behind."
    )
    max_ahead_s: float = Field(default=240.0, ge=0)
    months_behind_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of clients whose clocks run months behind."
    )
    months_behind_days: tuple[float, float] = Field(
        default=(30.0, 180.0), description="Range of those clocks' lag in days (uniform)."
    )
    late_upload_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of sessions uploaded late, all at once."
    )
    late_upload_hours: tuple[float, float] = Field(
        default=(1.0, 12.0), description="Range of that delay in hours (log-uniform)."
    )

    @model_validator(mode="after")
    def _shares_fit(self) -> ClientClockConfig:
        if self.skewed_share + self.months_behind_share > 1:
            raise ValueError("skewed_share + months_behind_share must be at most 1")
        for name in ("skew_s", "months_behind_days", "late_upload_hours"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(low, high)}")
        return self

    @property
    def synced(self) -> bool:
        """Whether every client stamps true time and sends on time."""
        return (
            self.jitter_s == 0
            and self.skewed_share == 0
            and self.months_behind_share == 0
            and self.late_upload_share == 0
        )


class ServiceClockConfig(BaseModel):
    """Where the service's clock starts relative to the world, and how fast it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lead_days: float = Field(
        default=0.0,
        ge=0,
        description="The service's clock starts this many days after the world's start.",
    )
    compression: float = Field(
        default=1.0,
        ge=1,
        description="The world runs this many times faster than the service's clock.",
    )

    def min_lead_days(self, days: float) -> float:
        """The least lead for which no client on true time is ever ahead of the service.

        Over ``days`` of world time the service advances ``days / compression``, so the
        world gains ``days * (1 - 1 / compression)`` on it: a replay must start that far
        behind, as replayed history does.
        """
        return days * (1.0 - 1.0 / self.compression)


class ClientClocks:
    """Each client's offset and each session's upload delay, from the world's seed.

    Both come from their own seeded streams (keyed by user id and session number), so a
    world's structure and its users' responses are the same whatever the clocks do.
    """

    def __init__(self, config: ClientClockConfig, seed: int) -> None:
        self.config = config
        self._seed = seed
        self._offsets: dict[str, timedelta] = {}

    def offset(self, user_id: str) -> timedelta:
        """How far ``user_id``'s clock is from true time (negative: behind)."""
        cached = self._offsets.get(user_id)
        if cached is not None:
            return cached
        c = self.config
        seconds = 0.0
        if not c.synced:
            key = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big")
            rng = np.random.default_rng([self._seed, 3, key])
            kind = rng.random()
            seconds = float(rng.normal(0.0, c.jitter_s)) if c.jitter_s > 0 else 0.0
            if kind < c.months_behind_share:
                seconds -= 86_400.0 * float(rng.uniform(*c.months_behind_days))
            elif kind < c.months_behind_share + c.skewed_share:
                magnitude = float(np.exp(rng.uniform(np.log(c.skew_s[0]), np.log(c.skew_s[1]))))
                if rng.random() < c.ahead_share:
                    seconds += min(magnitude, c.max_ahead_s)
                else:
                    seconds -= magnitude
            seconds = min(seconds, c.max_ahead_s)
        offset = timedelta(seconds=seconds)
        self._offsets[user_id] = offset
        return offset

    def upload_delay(self, session_number: int) -> timedelta | None:
        """How long after it ends a session's events are uploaded; None: as they happen."""
        c = self.config
        if c.late_upload_share == 0:
            return None
        rng = np.random.default_rng([self._seed, 4, session_number])
        if rng.random() >= c.late_upload_share:
            return None
        low, high = c.late_upload_hours
        return timedelta(hours=float(np.exp(rng.uniform(np.log(low), np.log(high)))))


class ServiceClock:
    """The service's clock, driven by the world's time.

    ``set`` is called with the world's time before every request; calling the clock gives
    the service's time then. ``deliver`` is called with the world's time at which a write
    (events, items, users) reaches the service; ``received`` gives the service's time then,
    which stamps what it receives (``server_ts``). The driver simulates overlapping sessions
    one after another, so a batch may arrive later than the request the service last
    answered. With ``arrivals_move_clock`` an arrival also moves the clock itself: a server
    behind HTTP stamps what it receives with its own clock, which must then be the arrival
    time, or a batch would be ahead of it. An in-process service is handed ``received``
    instead, and its clock moves only with requests.
    """

    def __init__(
        self,
        world_start: datetime,
        config: ServiceClockConfig | None = None,
        *,
        arrivals_move_clock: bool = False,
    ) -> None:
        self.config = config or ServiceClockConfig()
        self.world_start = world_start
        self.anchor = world_start + timedelta(days=self.config.lead_days)
        self.arrivals_move_clock = arrivals_move_clock
        self._now = self.anchor
        self._received = self.anchor

    def service_time(self, world_time: datetime) -> datetime:
        """The service's time when the world's time is ``world_time``."""
        elapsed = world_time - self.world_start
        if self.config.compression != 1:
            elapsed = elapsed / self.config.compression
        return self.anchor + elapsed

    def set(self, world_now: datetime) -> None:
        """Move the clock to the service's time at ``world_now``.

        Sessions are simulated one after another but overlap in simulated time, so a request
        may be earlier than the previous one; each must be served at its own time, or events
        would precede the list they came from.
        """
        self._now = self.service_time(world_now)

    def __call__(self) -> datetime:
        """The service's current time."""
        return self._now

    def deliver(self, world_time: datetime) -> None:
        """A write reaches the service at the world's ``world_time``."""
        self._received = self.service_time(world_time)
        if self.arrivals_move_clock:
            self._now = self._received

    def received(self) -> datetime:
        """The service's time at the latest delivery."""
        return self._received

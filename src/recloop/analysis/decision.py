"""Guardrails and the ship decision: the primary metric, SRM and guardrails combined."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from recloop.analysis.stats import ComparisonResult, SRMResult, jsonable


class Direction(StrEnum):
    """Which way a metric moves."""

    UP = "up"
    DOWN = "down"


class GuardrailStatus(StrEnum):
    """The outcome of one guardrail."""

    PASS = "pass"
    TRIPPED = "tripped"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A metric that must not move the bad way by more than ``tolerance`` (relative).

    E.g. ``Guardrail("latency_p99", Direction.UP, 0.10)``: p99 must not rise more than 10%;
    ``Guardrail("hide_rate", Direction.UP)``: hides must not rise significantly. It trips
    when the change is significantly bad and its estimate is past the tolerance; an estimate
    past a non-zero tolerance without significance is inconclusive (with tolerance 0 it is
    a plain significance test, and noise passes). With an ``allowance`` (in the metric's
    units: ms for a latency) a change within it is tolerated too, so only a change past both
    the tolerance and the allowance counts: ``Guardrail("latency_p99", Direction.UP, 1.0,
    allowance=100)`` lets p99 double or grow by 100 ms, whichever is more. With
    ``require_non_inferiority`` it passes only when the interval rules out a change past the
    tolerance, so an underpowered test cannot pass it.
    """

    metric: str
    bad_direction: Direction
    tolerance: float = 0.0
    require_non_inferiority: bool = False
    allowance: float | None = None

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError("tolerance must be non-negative")
        if self.allowance is not None and not self.allowance >= 0:
            raise ValueError("allowance must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        """The guardrail as JSON types."""
        result: dict[str, Any] = jsonable(self)
        return result


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One guardrail evaluated on its metric's comparison."""

    guardrail: Guardrail
    result: ComparisonResult
    status: GuardrailStatus
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON types."""
        return {
            "guardrail": self.guardrail.to_dict(),
            "result": self.result.to_dict(),
            "status": self.status.value,
            "reason": self.reason,
        }


def check_guardrail(guardrail: Guardrail, result: ComparisonResult) -> GuardrailCheck:
    """Evaluate a guardrail on the relative change of its metric (treatment vs control),
    and on the absolute change as well when it has an ``allowance``."""
    if result.metric != guardrail.metric:
        raise ValueError(f"result is for {result.metric!r}, not {guardrail.metric!r}")
    if guardrail.allowance is not None:
        return _check_with_allowance(guardrail, result, guardrail.allowance)
    # Turn everything into "harm": positive is the bad direction.
    sign = 1.0 if guardrail.bad_direction is Direction.UP else -1.0
    harm = sign * result.relative_diff
    low, high = sorted(sign * v for v in result.relative_ci)
    tol = guardrail.tolerance
    label = (
        f"{guardrail.metric} {result.relative_diff:+.2%} "
        f"(CI {result.relative_ci[0]:+.2%}..{result.relative_ci[1]:+.2%})"
    )
    if not math.isfinite(harm):
        if result.control_value == result.treatment_value:
            # Both arms at zero (no hides at all, say): nothing moved.
            return GuardrailCheck(
                guardrail,
                result,
                GuardrailStatus.PASS,
                f"{guardrail.metric}: {result.control_value:g} in both arms",
            )
        return GuardrailCheck(
            guardrail, result, GuardrailStatus.INCONCLUSIVE, f"{label}: undefined"
        )
    if result.significant and low > 0 and harm > tol:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.TRIPPED,
            f"{label}: significantly {guardrail.bad_direction.value}, past {tol:.1%} tolerated",
        )
    if harm > tol > 0:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.INCONCLUSIVE,
            f"{label}: past {tol:.1%} tolerated but not significant",
        )
    if guardrail.require_non_inferiority and not high <= tol:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.INCONCLUSIVE,
            f"{label}: cannot yet rule out a change past {tol:.1%}",
        )
    return GuardrailCheck(guardrail, result, GuardrailStatus.PASS, f"{label}: within tolerance")


def _check_with_allowance(
    guardrail: Guardrail, result: ComparisonResult, allowance: float
) -> GuardrailCheck:
    """A change counts only when past the relative tolerance and past the absolute
    allowance: what a loaded machine adds to both arms alike moves neither much."""
    sign = 1.0 if guardrail.bad_direction is Direction.UP else -1.0
    tol = guardrail.tolerance
    abs_harm = sign * result.absolute_diff
    abs_low, abs_high = sorted(sign * v for v in result.absolute_ci)
    rel_harm = sign * result.relative_diff
    rel_high = max(sign * v for v in result.relative_ci)
    # A control at zero has no relative change: the allowance alone decides.
    relative_known = math.isfinite(rel_harm) and math.isfinite(rel_high)
    past = abs_harm > allowance and (not relative_known or rel_harm > tol)
    tolerated = f"{allowance:g} or {tol:.0%}" if tol > 0 else f"{allowance:g}"
    label = (
        f"{guardrail.metric} {result.treatment_value:.4g} against {result.control_value:.4g}: "
        f"{result.absolute_diff:+.4g} "
        f"(CI {result.absolute_ci[0]:+.4g}..{result.absolute_ci[1]:+.4g}"
        + (f"; {result.relative_diff:+.1%}" if relative_known else "")
        + ")"
    )
    if not math.isfinite(abs_harm):
        return GuardrailCheck(
            guardrail, result, GuardrailStatus.INCONCLUSIVE, f"{label}: undefined"
        )
    if past and result.significant and abs_low > 0:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.TRIPPED,
            f"{label}: significantly {guardrail.bad_direction.value}, past what is tolerated "
            f"({tolerated} over the control)",
        )
    if past:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.INCONCLUSIVE,
            f"{label}: past what is tolerated ({tolerated} over the control) but not significant",
        )
    ruled_out = abs_high <= allowance or (relative_known and rel_high <= tol)
    if guardrail.require_non_inferiority and not ruled_out:
        return GuardrailCheck(
            guardrail,
            result,
            GuardrailStatus.INCONCLUSIVE,
            f"{label}: cannot yet rule out a change past what is tolerated ({tolerated} over "
            "the control)",
        )
    return GuardrailCheck(
        guardrail,
        result,
        GuardrailStatus.PASS,
        f"{label}: within what is tolerated ({tolerated} over the control)",
    )


class Decision(StrEnum):
    """What to do with an experiment."""

    SHIP = "ship"
    DONT_SHIP = "don't ship"
    KEEP_RUNNING = "keep running"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class ShipDecision:
    """A decision with the reasons behind it and the evidence it used."""

    decision: Decision
    reasons: tuple[str, ...]
    primary: ComparisonResult
    srm: SRMResult | None
    guardrails: tuple[GuardrailCheck, ...]

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON types."""
        return {
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "primary": self.primary.to_dict(),
            "srm": self.srm.to_dict() if self.srm is not None else None,
            "guardrails": [g.to_dict() for g in self.guardrails],
        }


def decide(
    primary: ComparisonResult,
    *,
    srm: SRMResult | None = None,
    guardrails: Sequence[GuardrailCheck] = (),
    good_direction: Direction = Direction.UP,
    min_relative_effect: float | None = None,
) -> ShipDecision:
    """Combine the primary metric, the SRM check and the guardrails into a decision.

    In order: a sample-ratio mismatch makes the experiment invalid; a tripped guardrail
    blocks shipping; a significant primary win ships unless a guardrail is still
    inconclusive (keep running); a significant loss does not ship. A non-significant result
    does not ship when its interval rules out ``min_relative_effect`` (the smallest gain
    worth shipping), and keeps running otherwise (underpowered or inconclusive).
    """
    checks = tuple(guardrails)
    reasons: list[str] = []

    def done(decision: Decision) -> ShipDecision:
        return ShipDecision(decision, tuple(reasons), primary, srm, checks)

    if srm is not None and srm.mismatch:
        reasons.append(
            f"sample-ratio mismatch: p={srm.p_value:.2g} < {srm.threshold:g}, users "
            + ", ".join(f"{name} {count:,}" for name, count in srm.observed.items())
        )
        return done(Decision.INVALID)
    tripped = [c for c in checks if c.status is GuardrailStatus.TRIPPED]
    pending = [c for c in checks if c.status is GuardrailStatus.INCONCLUSIVE]
    sign = 1.0 if good_direction is Direction.UP else -1.0
    gain = sign * primary.relative_diff
    gain_ci = sorted(sign * v for v in primary.relative_ci)
    summary = (
        f"{primary.metric} {primary.relative_diff:+.2%} "
        f"(CI {primary.relative_ci[0]:+.2%}..{primary.relative_ci[1]:+.2%}, "
        f"p={primary.p_value:.3g})"
    )
    if tripped:
        reasons.extend(f"guardrail tripped: {c.reason}" for c in tripped)
        return done(Decision.DONT_SHIP)
    if primary.significant and gain > 0:
        reasons.append(f"primary metric improved: {summary}")
        if pending:
            reasons.extend(f"guardrail inconclusive: {c.reason}" for c in pending)
            return done(Decision.KEEP_RUNNING)
        return done(Decision.SHIP)
    if primary.significant:
        reasons.append(f"primary metric got worse: {summary}")
        return done(Decision.DONT_SHIP)
    if min_relative_effect is not None and gain_ci[1] < min_relative_effect:
        reasons.append(
            f"no effect worth shipping: {summary} rules out a gain of {min_relative_effect:.1%}"
        )
        return done(Decision.DONT_SHIP)
    reasons.append(f"inconclusive (underpowered or no effect yet): {summary}")
    reasons.extend(f"guardrail inconclusive: {c.reason}" for c in pending)
    return done(Decision.KEEP_RUNNING)

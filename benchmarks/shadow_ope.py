"""Shadow mode on the simulator: is a shadow's off-policy CTR what its lists would have got?

The demo's world (without bots) runs in-process against the service for ``--days`` days with nightly
``recloop train``; every user gets the default ``home`` surface (the learned ranker, with
epsilon-greedy exploration 0.1 over a pool of 50). Shadows follow every ``home`` request:

- ``no-explore``: home itself, without exploration (the served policy's greedy list);
- ``click-only``: home ranked by P(click) alone;
- ``source-scores``: home's sources ranked by their normalised scores (no learned ranker);
- ``popular``: the popular-only surface (other candidates altogether).

Before the user responds to each served list, the world's truth (``Behaviour.truth``, in the
session's state at that moment) gives the click probability of every position of every
shadow's list for the same request: the shadow's true CTR per slot is their mean, per
position, then over positions, as the report's estimate is. At the end ``recloop shadow
report``'s code reads the logs and estimates each shadow's CTR by position-based IPS over the
served lists' propensities. Printed per shadow: truth, estimate with its 95% interval,
relative error, whether the interval covers the truth, agreement with the served lists, the
share of certainly unsupported slots, and the report's warnings. The served lists' own
observed CTR per slot against their truth is the sanity row.

    .venv/bin/python benchmarks/shadow_ope.py [--seed 7] [--days 3] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from recloop.analysis.shadow_report import read_shadow_pairs, shadow_report
from recloop.config import Settings, ShadowConfig, default_surfaces
from recloop.demo.run import DemoConfig, demo_settings, run_demo
from recloop.domain import ShadowRecord
from recloop.evaluation.ope import BootstrapSpec
from recloop.runtime.process import Runtime
from recloop.simulate.behaviour import Behaviour, Session
from recloop.simulate.world import WorldConfig
from recloop.store.bootstrap import prepare_store


def shadows() -> list[ShadowConfig]:
    """The shadows every home request is run through."""
    home = default_surfaces()["home"]
    fallback = home.ranker.params.get("fallback_weights", {})
    return [
        ShadowConfig(name="no-explore", surface="home"),
        ShadowConfig(
            name="click-only",
            surface="home",
            overrides={
                "ranker": {
                    "name": "learned",
                    "params": {"weights": {"click": 1.0}, "fallback_weights": fallback},
                }
            },
        ),
        ShadowConfig(
            name="source-scores",
            surface="home",
            overrides={
                "ranker": {"name": "source-scores", "params": {"weights": fallback}},
                "online_features": False,
            },
        ),
        ShadowConfig(name="popular", surface="home", pipeline="popular-only"),
    ]


class TruthKeeper:
    """Captures every shadow list as it is logged, and sums its true click probabilities
    per position in the state the served list met."""

    def __init__(self, names: list[str]) -> None:
        self.captured: dict[tuple[str, str], ShadowRecord] = {}
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.names = names
        self.missing = 0

    def observer(self, runtime: Runtime, behaviour: Behaviour) -> Callable[[Session, str], None]:
        """The driver's hook: judge each shadow's list for the request just served."""
        log_shadow = runtime.writer.log_shadow

        def capture(record: ShadowRecord) -> bool:
            self.captured[(record.request_id, record.shadow)] = record
            return log_shadow(record)

        runtime.writer.log_shadow = capture  # type: ignore[method-assign]
        runner = runtime.shadows
        assert runner is not None

        def on_served(session: Session, request_id: str) -> None:
            assert runner.wait_idle(60)
            runtime.writer.flush()
            served = runtime.store.rec_log.get("default", request_id)
            if served is not None:
                self._add("served", behaviour, session, [i.item_id for i in served.items])
            for name in self.names:
                record = self.captured.pop((request_id, name), None)
                if record is None:
                    self.missing += 1
                    continue
                items = [i.item_id for i in record.items]
                self._add(name, behaviour, session, items)
                if record.support is not None:
                    # The truth on the slots the served policy could have filled.
                    supported = [p > 0 for p in record.support]
                    self._add(f"{name}@supported", behaviour, session, items, supported)

        return on_served

    def _add(
        self,
        name: str,
        behaviour: Behaviour,
        session: Session,
        items: list[str],
        keep: list[bool] | None = None,
    ) -> None:
        # The report leaves out users who click like bots; the truth is about people too.
        if not items or session.user.is_bot:
            return
        click = behaviour.truth(session, items).click_probability
        mask = np.ones(len(click)) if keep is None else np.array(keep, dtype=float)
        self.sums.setdefault(name, np.zeros(100))[: len(click)] += click * mask
        self.counts.setdefault(name, np.zeros(100))[: len(click)] += mask

    def truth(self, name: str) -> float:
        """True clicks per slot: each position's mean over lists, averaged over positions."""
        if name not in self.counts:
            return float("nan")
        used = self.counts[name] > 0
        return float(np.mean(self.sums[name][used] / self.counts[name][used]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 day, a smaller world")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "shadow_ope.json"
    )
    args = parser.parse_args()
    # No bots: the truth is about people, and a bot with too few lists to be recognised
    # would add clicks the truth does not have (the report's bot rule is tested elsewhere).
    world = (
        WorldConfig(seed=args.seed, initial_items=500, initial_users=200, bot_share=0.0)
        if args.quick
        else WorldConfig(seed=args.seed, bot_share=0.0)
    )
    days = 1 if args.quick else args.days
    configured = shadows()
    keeper = TruthKeeper([s.name for s in configured])
    config = DemoConfig(
        world=world,
        days=days,
        transport="inprocess",
        variants={"home": "home"},
        observer=keeper.observer,
    )
    started = time.perf_counter()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        # The popular-only surface the last shadow runs is the demo's own (demo_settings).
        settings = Settings(data_dir=Path(tmp)).model_copy(update={"shadows": configured})
        outcome = run_demo(config, settings, Console(file=io.StringIO()))
        store = prepare_store(demo_settings(settings, Path(tmp) / "demo"))
        try:
            reports = {}
            for shadow in configured:
                pairs, missing = read_shadow_pairs(
                    store.shadow_log, store.rec_log, store.events, "default", shadow.name
                )
                reports[shadow.name] = shadow_report(
                    shadow.name, pairs, missing, BootstrapSpec(args.resamples, seed=args.seed)
                )
        finally:
            store.close()
    wall = time.perf_counter() - started
    rows: dict[str, dict[str, Any]] = {}
    title = f"seed {args.seed}, {days} days, {wall:.0f} s"
    table = Table(
        "shadow", "true CTR/slot", "estimate [95% CI]", "rel. error", "covers", "same slot",
        "unsupported", "supported slots: truth / estimate [CI]", "ESS share", "warnings",
        title=title,
    )  # fmt: skip
    first = next(iter(reports.values()))
    served_truth = keeper.truth("served")
    low, high = first.served_ctr_ci
    table.add_row(
        "served (on-policy)",
        f"{served_truth:.4f}",
        f"{first.served_ctr:.4f} [{low:.4f}, {high:.4f}]",
        f"{first.served_ctr / served_truth - 1:+.1%}",
        "yes" if low <= served_truth <= high else "no",
        "", "", "", "", "",
    )  # fmt: skip
    rows["served"] = {"truth": served_truth, "estimate": first.served_ctr, "ci": [low, high]}
    for name, report in reports.items():
        truth = keeper.truth(name)
        estimate = report.shadow_ctr
        assert estimate is not None
        covers = estimate.ci_low <= truth <= estimate.ci_high
        table.add_row(
            name,
            f"{truth:.4f}",
            f"{estimate.value:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]",
            f"{estimate.value / truth - 1:+.1%}",
            "yes" if covers else "no",
            f"{report.same_slot:.0%}",
            f"{report.unsupported_share:.0%}",
            f"{keeper.truth(name + '@supported'):.4f} / {report.supported_ctr.value:.4f} "
            f"[{report.supported_ctr.ci_low:.4f}, {report.supported_ctr.ci_high:.4f}]"
            if report.supported_ctr is not None
            else "all supported",
            f"{estimate.diagnostics.ess_share:.2f}",
            "; ".join(w[:60] for w in report.warnings) or "none",
        )
        rows[name] = {
            "truth": truth,
            "estimate": estimate.value,
            "ci": [estimate.ci_low, estimate.ci_high],
            "relative_error": estimate.value / truth - 1,
            "covers": covers,
            "same_slot": report.same_slot,
            "overlap": report.overlap,
            "unsupported_share": report.unsupported_share,
            "truth_supported": keeper.truth(f"{name}@supported"),
            "estimate_supported": report.supported_ctr.value if report.supported_ctr else None,
            "ci_supported": [report.supported_ctr.ci_low, report.supported_ctr.ci_high]
            if report.supported_ctr
            else None,
            "support_known": report.support_known,
            "ess_share": estimate.diagnostics.ess_share,
            "requests": report.requests,
            "warnings": list(report.warnings),
            "shadow_latency_p50_ms": report.shadowed.latency_p50_ms if report.shadowed else None,
        }
    console.print(table)
    console.print(
        f"{first.requests:,} shadowed requests per shadow; {keeper.missing} shadow lists not "
        f"captured; served true CTR {outcome.result.totals('home')['true_ctr']:.4f} per impression"
    )
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        json.dumps({"seed": args.seed, "days": days, "wall_s": wall, "rows": rows}, indent=2)
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

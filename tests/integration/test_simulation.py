"""The simulated loop against the real service: reproducible, realistic shapes, nothing lost."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from recloop.config import Settings
from recloop.demo.run import DemoConfig, DemoOutcome, run_demo
from recloop.evaluation.shapes import gini, rate_by_position, top_share
from recloop.simulate.report import shape_figures
from recloop.simulate.world import WorldConfig
from recloop.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = WorldConfig(
    seed=11, initial_items=400, initial_users=150, new_items_per_day=20, new_users_per_day=10
)
DAYS = 3


def _run(
    data_dir: Path,
    transport: str = "inprocess",
    days: int = DAYS,
    train: bool = False,
    settings: Settings | None = None,
) -> DemoOutcome:
    # The shapes below are the world's; nightly training is tested on its own.
    config = DemoConfig(
        world=WORLD,
        days=days,
        transport=transport,  # type: ignore[arg-type]
        train_nightly=train,
    )
    settings = (settings or Settings()).model_copy(update={"data_dir": data_dir})
    return run_demo(config, settings, Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> DemoOutcome:
    return _run(tmp_path_factory.mktemp("sim"))


def _without_latency(
    per_day: dict[str, list[dict[str, float]]],
) -> dict[str, list[dict[str, float]]]:
    return {
        variant: [{k: v for k, v in day.items() if not k.startswith("latency")} for day in days]
        for variant, days in per_day.items()
    }


def test_one_seed_makes_one_run(outcome: DemoOutcome, tmp_path: Path) -> None:
    again = _run(tmp_path)
    assert again.result.events_sent == outcome.result.events_sent
    assert _without_latency(again.result.per_day) == _without_latency(outcome.result.per_day)


def test_the_services_experiment_report_agrees_with_what_the_world_saw(
    outcome: DemoOutcome,
) -> None:
    # The service assigned the variants and logged the lists; the driver watched the users.
    report = outcome.experiment
    assert report is not None
    assert report.experiment == "demo-home"
    assert [v.variant for v in report.variants] == list(outcome.result.variants)
    for summary in report.variants:
        seen = outcome.result.totals(summary.variant)
        # Bots are left out of both: by the world's flag, and by the report's click rule.
        assert summary.requests == seen["requests"]
        assert summary.impressions == seen["impressions"]
        assert summary.ctr == pytest.approx(seen["ctr"])
    assert report.srm is not None
    assert not report.srm.mismatch
    assert "Experiment demo-home, from the service" in outcome.report_path.read_text()


def test_each_night_trains_a_version_that_the_next_day_is_served_from(tmp_path: Path) -> None:
    # With nightly training, runs agree until the two-tower model retrains: its multithreaded
    # fit is not bit-reproducible, and a near-tie in the ranking can then swap two items.
    # A first day of this small world has a few dozen clicks: let the ranker train on them.
    few = Settings(train={"ranker": {"min_positives": 10}})
    trained = _run(tmp_path, days=2, train=True, settings=few)

    html = trained.report_path.read_text()
    assert "each simulated night runs `recloop train`" in html
    # The version table names each night's version; the one trained after day 1 serves
    # from day 2 and is marked on the charts over days, the last one served after the run.
    first, second = (t.version for t in trained.trainings)
    assert re.search(rf"<td class='t'>model 1</td><td class='t'>{first}</td>.*?day 2</td>", html)
    assert re.search(rf"{second}</td>.*?after the run</td>", html)
    assert ">model 1</text>" in html
    assert ">model 2</text>" not in html
    # Day 1 had no ranker: the pipeline was cold (the sources' scores ranked), which is
    # not a failure, so no list fell back; day 2 had one, and nothing failed either.
    home = trained.result.per_day["home"]
    assert home[0]["fallback_share"] == 0.0
    assert home[1]["fallback_share"] < 0.05


def test_item_popularity_is_long_tailed(outcome: DemoOutcome) -> None:
    catalog = WORLD.initial_items + WORLD.new_items_per_day * DAYS
    shapes = shape_figures(outcome.result, catalog, WORLD.initial_users)
    # The same number of clicks spread by chance alone, for a fair baseline: small counts
    # are uneven even without any tail.
    clicks = sum(outcome.result.clicks_per_item.values())
    chance = np.random.default_rng(0).multinomial(clicks, [1 / catalog] * catalog)
    assert shapes["item_top10_share"] > 1.5 * top_share(chance.tolist(), 0.1)
    assert shapes["item_gini"] > 1.3 * gini(chance.tolist())


def test_user_activity_is_heavy_tailed(outcome: DemoOutcome) -> None:
    users = WORLD.initial_users + WORLD.new_users_per_day * DAYS
    shapes = shape_figures(outcome.result, 1, users)
    # Equal activity would give the top tenth of users a tenth of the events.
    assert shapes["user_top10_share"] > 0.3


def test_ctr_falls_with_position(outcome: DemoOutcome) -> None:
    result = outcome.result
    ctr = rate_by_position(result.clicks_by_position, result.impressions_by_position)
    top, bottom = sum(ctr[:2]) / 2, sum(ctr[5:]) / len(ctr[5:])
    assert top > 2 * bottom


def test_observed_clicks_agree_with_the_worlds_ground_truth(outcome: DemoOutcome) -> None:
    result = outcome.result
    observed = expected = 0.0
    for variant in result.variants:
        totals = result.totals(variant)
        assert totals["impressions"] > 3000
        observed += totals["ctr"] * totals["impressions"]
        expected += totals["true_ctr"] * totals["impressions"]
    # Clicks are a sum of independent Bernoulli draws given each list, so their variance is
    # at most the expected count: four standard deviations is a band no correct run leaves.
    assert abs(observed - expected) < 4 * expected**0.5


def test_late_and_repeated_events_are_each_stored_once(outcome: DemoOutcome) -> None:
    result = outcome.result
    assert result.late_events > 0
    assert result.duplicate_events > 0
    store = open_store(f"sqlite:///{outcome.report_path.parent / 'recloop.db'}")
    try:
        assert store.events.count("default") == result.events_sent - result.duplicate_events
    finally:
        store.close()


def test_report_has_the_daily_charts_and_the_three_shapes(outcome: DemoOutcome) -> None:
    html = outcome.report_path.read_text()
    # The decision first; then CTR observed and true (an interval chart and two per day),
    # five more per day, the sources' clicks per variant, latency per variant and per
    # stage, and the three shapes.
    assert html.index("<h2 id='decision'>Decision</h2>") < html.index("<h2 id='what-ran'>")
    titles = (
        "CTR per variant: observed (filled) and true (open)",
        "CTR per day: observed (solid) and true (dashed)",
        "Fallback share: lists the fallback chain served",
        "popular: clicks per day by credited source",
        "home: clicks per day by credited source",
        "p99 of each stage per day (service side)",
        "Item popularity",
        "User activity",
        "CTR by position",
    )
    for title in titles:
        assert f'aria-label="{title}' in html
    assert html.count("<svg") == 15
    assert "What ran: popular = popular (source-scores ranker); home = " in html
    assert "nightly training was off" in html


@pytest.mark.e2e
def test_the_demo_drives_the_service_over_http(tmp_path: Path) -> None:
    result = _run(tmp_path, transport="http", days=1).result
    for variant in result.variants:
        day = result.per_day[variant][0]
        assert day["requests"] > 0
        assert day["latency_p50_ms"] > 0


def test_every_event_follows_the_list_it_came_from(outcome: DemoOutcome) -> None:
    # Sessions overlap in simulated time; each list must be served at its own moment, or
    # its clicks would precede it and could not be attributed to it.
    import sqlalchemy as sa

    store = open_store(f"sqlite:///{outcome.report_path.parent / 'recloop.db'}")
    try:
        with store.engine.connect() as conn:
            request_ids = (
                conn.execute(
                    sa.text(
                        "SELECT DISTINCT request_id FROM events "
                        "WHERE event_type = 'click' AND request_id IS NOT NULL LIMIT 300"
                    )
                )
                .scalars()
                .all()
            )
            assert len(request_ids) > 100
            for request_id in request_ids:
                served = store.rec_log.get("default", request_id)
                assert served is not None
                first_event = conn.execute(
                    sa.text("SELECT min(event_ts) FROM events WHERE request_id = :r"),
                    {"r": request_id},
                ).scalar_one()
                assert served.served_at.replace(tzinfo=None) <= sa_datetime(first_event)
    finally:
        store.close()


def sa_datetime(value: object) -> object:
    """SQLite hands back timestamps as text here; compare them as naive UTC datetimes."""
    from datetime import datetime

    return datetime.fromisoformat(str(value)) if not hasattr(value, "year") else value

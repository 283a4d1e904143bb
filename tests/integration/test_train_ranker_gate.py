"""A deliberately broken training is kept back: a good version serves, a training whose
ranker learned from shuffled labels is blocked by ``ranker_no_regression`` with both figures
in its reason, the service keeps recommending from the good version, and the metric the
``RecloopTrainingBlocked`` alert watches says so."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from recloop.api.app import create_app
from recloop.cli import common
from recloop.config import RankerTrainSettings, Settings, TrainSettings, TrainSourceConfig
from recloop.registry.artifacts import ModelRegistry
from recloop.store.bootstrap import ensure_dev_key, prepare_store
from recloop.training import ranker as ranker_module
from recloop.training.job import TrainResult, train
from recloop.training.promotion import RANKER_NO_REGRESSION
from tests.integration.conftest import run_cli
from tests.integration.test_train_from_interactions import END, HOME, _history

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = timedelta(days=1)
_LABELLED = ranker_module.labelled


def _shuffled_labels(table: pa.Table, label: str) -> pa.Table:
    """The fault: the rows a head learns from, their labels shuffled among them (a join
    that lost the row order). The gate's test rows keep their true labels."""
    rows = _LABELLED(table, label)
    values = np.asarray(rows.column(label).to_numpy(zero_copy_only=False))
    shuffled = values[np.random.default_rng(0).permutation(len(values))]
    return rows.set_column(rows.column_names.index(label), label, pa.array(shuffled))


@dataclass(frozen=True)
class Trainings:
    settings: Settings
    dev_key: str
    good: TrainResult
    broken: TrainResult


@pytest.fixture(scope="module")
def trainings(tmp_path_factory: pytest.TempPathFactory) -> Trainings:
    """A good version trained 8 days before the end of the history and promoted; then,
    on the whole history, a training with shuffled labels."""
    data_dir: Path = tmp_path_factory.mktemp("broken")
    settings = Settings(
        data_dir=data_dir,
        train=TrainSettings(
            sources=[TrainSourceConfig(name="covisitation"), TrainSourceConfig(name="item-knn")],
            ranker=RankerTrainSettings(min_positives=5, max_negatives=40),
            validation_fraction=0.2,
        ),
        surfaces={"home": HOME},
    )
    store = prepare_store(settings)
    key = ensure_dev_key(store, data_dir)
    assert key is not None
    items, events = _history()
    store.catalog.upsert_items("default", items, END - timedelta(days=90))
    cut = END - 8 * DAY
    store.events.append([e for e in events if e.server_ts < cut])
    try:
        good = train(settings, store, now=cut)
        store.events.append([e for e in events if e.server_ts >= cut])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ranker_module, "labelled", _shuffled_labels)
            broken = train(settings, store, now=END + DAY)
    finally:
        store.close()
    return Trainings(settings, key, good, broken)


def test_the_broken_ranker_blocks_its_version_with_both_figures(trainings: Trainings) -> None:
    good, broken = trainings.good, trainings.broken
    assert good.promoted, good.verdict
    figures = broken.ranker.report["gate"]["figures"]
    learned, served = figures["learned"]["interactions"], figures["previous"]["interactions"]
    # The fault did break the ranker; its own gate then ships the old ranker inside the
    # new version, which alone would have promoted it.
    assert learned < 0.5 * served
    assert broken.ranker.report["gate"]["serve"] == "previous"

    assert not broken.promoted
    assert [g.name for g in broken.verdict.blocked_by] == [RANKER_NO_REGRESSION]
    detail = broken.verdict.blocked_by[0].detail
    assert f"against served {good.version}'s" in detail
    assert f"the new learned ranker {learned:.4f} against the served ranker {served:.4f}" in detail
    assert "NDCG@10 on held-out interactions" in detail
    assert "more than 5% (train.promotion.max_ranker_regression)" in detail

    registry = ModelRegistry(trainings.settings.resolved_model_dir())
    assert registry.current("default") == good.version
    manifest = registry.manifest("default", broken.version)
    assert manifest.extra["promotion"]["passed"] is False
    assert any(n.startswith(f"blocked by {RANKER_NO_REGRESSION}:") for n in manifest.notes)


@pytest.fixture
def client(trainings: Trainings) -> Iterator[TestClient]:
    with TestClient(create_app(trainings.settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {trainings.dev_key}"
        yield test_client


def test_the_service_keeps_the_good_version_and_the_alert_metric_fires(
    trainings: Trainings, client: TestClient
) -> None:
    served = client.get("/api/recommendations", params={"userId": "u5", "surface": "home"})
    assert served.status_code == 200, served.text
    body = served.json()
    assert body["items"]
    assert trainings.good.version in body["modelVersion"]
    assert trainings.broken.version not in body["modelVersion"]

    text = client.get("/metrics").text
    # What RecloopTrainingBlocked (docs/alerts.yml) fires on, for 10 minutes.
    sample = 'recloop_training_last_outcome{app="default",outcome="not_promoted"}'
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found is not None, sample
    assert float(found.group(1)) == 1.0


def test_models_list_shows_the_block_and_its_reason(
    trainings: Trainings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECLOOP_CONFIG", raising=False)
    monkeypatch.delenv("RECLOOP_STORE_URL", raising=False)
    monkeypatch.setattr(common.console, "width", 240)  # the table, unwrapped
    listed = run_cli(
        "models", "list", "--data-dir", str(trainings.settings.data_dir), "--app", "default"
    )
    assert listed.exit_code == 0, listed.output
    out = " ".join(re.sub(r"[│┃╭╮╰╯─━┌┐└┘├┤┬┴┼╇┡┩┏┓┗┛┳┻╋]", " ", listed.stdout).split())
    assert f"blocked: {RANKER_NO_REGRESSION}" in out
    assert f"{trainings.broken.version} {RANKER_NO_REGRESSION}: " in out

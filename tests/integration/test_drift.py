"""Drift against a running ``recloop serve``: a model version whose ranker was trained on
one catalog's categories serves that catalog without drift; after the catalog changes (its
items removed, new ones in new categories), the sampled ranked rows move the feature's PSI
over the threshold, ``recloop_drift_detected`` turns 1, and ``recloop monitor`` exits 1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from recloop.config import RankerTrainSettings
from recloop.evaluation.drift_reference import save_drift_reference
from recloop.features.definitions import code
from recloop.monitoring.drift import DRIFT_REFERENCE, DriftReference
from recloop.ranking.learned import RANKER_DIR
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.factors import ALSModel
from recloop.training.ranker import fit_ranker
from tests.servers import recloop_command, recloop_env, recloop_serve

pytestmark = pytest.mark.integration

ALERTS = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"

OLD = ("c0", "c1", "c2")
NEW = ("c7", "c8", "c9")
CONFIG = """
[serving]
popularity_refresh_s = 0.2
model_refresh_s = 0.5
item_features_ttl_s = 0.0

[serving.drift]
sample_every = 1
min_requests = 20

[surfaces.home]
sources = [{ name = "popular", quota = 50 }]
online_features = true
ranker = { name = "learned" }
exploration = { name = "none" }
"""


def _rows(lists: int, seed: int) -> pa.Table:
    """Served lists of ten over the old categories, evenly; category k clicked more."""
    rng = np.random.default_rng(seed)
    n = lists * 10
    k = rng.integers(0, len(OLD), n)
    clicked = rng.random(n) < 0.05 + 0.1 * k
    return pa.table(
        {
            "item_category": np.array([code(OLD[i]) for i in k]),
            "label_click": clicked.astype(np.int32),
            "label": clicked.astype(np.int32),
            "request_id": np.repeat([f"r{seed}-{i}" for i in range(lists)], 10),
            "position": np.tile(np.arange(10), lists),
        }
    )


def _als(directory: Path, users: np.ndarray, items: np.ndarray) -> ModelEntry:
    """An ALS model of ``users`` and ``items`` vectors (ids u0.., i0..), as training saves it."""
    directory.mkdir()
    model = ALSModel(factors=users.shape[1])
    np.savez(directory / "factors.npz", users=users, items=items)
    ids = {
        "users": [f"u{n}" for n in range(len(users))],
        "items": [f"i{n}" for n in range(len(items))],
    }
    (directory / "ids.json").write_text(json.dumps(ids))
    (directory / "params.json").write_text(json.dumps(model.params()))
    return ModelEntry("als", "als", model.params())


def _version(
    data_dir: Path, version: str = "v1", als: tuple[np.ndarray, np.ndarray] | None = None
) -> DriftReference:
    """A version with a ranker on ``item_category`` and its drift reference (and an ALS
    model of the given vectors), promoted."""
    parts = {"train": _rows(600, 1), "validation": _rows(200, 2), "test": _rows(200, 3)}
    fitted = fit_ranker(
        parts,
        RankerTrainSettings(max_rounds=20, heads=("click",)),
        version=version,
        features=("item_category",),
    )
    assert fitted.model is not None
    registry = ModelRegistry(data_dir / "models")
    created = datetime.now(UTC) - timedelta(hours=1)
    with registry.writing("default", version) as directory:
        fitted.model.save(directory / RANKER_DIR)
        save_drift_reference(directory, fitted.model, parts)
        models = (_als(directory / "als", *als),) if als is not None else ()
        manifest = VersionManifest(version, "default", created, None, models)
        registry.write_manifest(directory, manifest)
    registry.promote("default", version)
    return DriftReference.load(registry.path("default", version) / DRIFT_REFERENCE)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, httpx.Client, Path]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "recloop.toml"
    config.write_text(CONFIG)
    with recloop_serve(data_dir, tmp_path / "server.log", RECLOOP_CONFIG=str(config)) as (url, _):
        key = (data_dir / "dev-key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            yield url, client, config


def _catalog(client: httpx.Client, categories: tuple[str, ...], prefix: str) -> None:
    items = [{"itemId": f"{prefix}{n}", "category": categories[n % 3]} for n in range(12)]
    assert client.post("/api/items", json={"items": items}).status_code == 200
    events = [
        {"userId": f"fan{n}", "itemId": f"{prefix}{n % 12}", "eventType": "view"} for n in range(36)
    ]
    assert client.post("/api/events", json={"events": events}).status_code == 202


def _serve(client: httpx.Client, requests: int, prefix: str) -> None:
    for n in range(requests):
        response = client.get(
            "/api/recommendations", params={"userId": f"{prefix}-reader{n}", "limit": 10}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["fallback"] is False, body
        assert all(i["itemId"].startswith(prefix) for i in body["items"]), body


def _gauge(text: str, name: str, **labels: str) -> float:
    written = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(written)}\}} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name}{{{written}}} not in /metrics"
    return float(found.group(1))


def _wait_for(client: httpx.Client, prefix: str, version: str = "") -> None:
    """Until popularity (not the fallback chain) serves the catalog's items, and the model
    version, when given, ranks them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get("/api/recommendations", params={"userId": "probe", "limit": 10}).json()
        served = body["items"] and not body["fallback"] and version in body["modelVersion"]
        if served and all(i["itemId"].startswith(prefix) for i in body["items"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"the service never served {prefix} items")


def _drift_metrics() -> set[str]:
    """The drift metrics docs/alerts.yml reads."""
    return set(re.findall(r"\brecloop_drift_[a-z_]+", ALERTS.read_text()))


def _monitor(config: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [recloop_command(), "monitor", *args],
        env=recloop_env(data_dir, RECLOOP_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_catalog_change_moves_the_ranker_feature_drift_over_threshold(
    server: tuple[str, httpx.Client, Path], tmp_path: Path
) -> None:
    url, client, config = server
    app = {"app": "default"}
    _catalog(client, OLD, "old")
    _wait_for(client, "old")
    # Promoted once the catalog is served: the window starts when the version loads.
    reference = _version(tmp_path / "data")
    assert [b.name for b in reference.features] == ["item_category"]
    assert reference.score is not None
    _wait_for(client, "old", version="v1")
    _serve(client, 40, "old")

    text = client.get("/metrics").text
    before = _gauge(text, "recloop_drift_feature_psi", **app, feature="item_category")
    assert before < 0.1
    assert _gauge(text, "recloop_drift_score_psi", **app) < 0.25
    assert _gauge(text, "recloop_drift_sampled_requests", **app) >= 40
    assert _gauge(text, "recloop_drift_detected", **app) == 0
    calm = _monitor(config, tmp_path / "data", "--url", url)
    assert calm.returncode == 0, calm.stdout + calm.stderr
    assert "item_category" in calm.stdout
    assert "nothing over threshold" in calm.stdout

    # The catalog changes: every old item removed, new ones in categories never trained on.
    for n in range(12):
        assert client.put(f"/api/items/old{n}", json={"status": "removed"}).status_code == 200
    _catalog(client, NEW, "new")
    _wait_for(client, "new")
    _serve(client, 40, "new")

    text = client.get("/metrics").text
    after = _gauge(text, "recloop_drift_feature_psi", **app, feature="item_category")
    assert after > 0.25
    assert _gauge(text, "recloop_drift_feature_p_value", **app, feature="item_category") < 0.01
    assert _gauge(text, "recloop_drift_detected", **app) == 1
    head = _gauge(text, "recloop_drift_head_share", **app)
    assert 0 < head <= 0.2  # one head item of twelve, in lists of ten or fewer
    drifted = _monitor(config, tmp_path / "data", "--url", url)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "item_category: PSI" in drifted.stdout
    # Every drift metric the alert rules read has samples, but the embedding shift (below).
    named = _drift_metrics() - {"recloop_drift_embedding_shift"}
    assert len(named) >= 5
    for name in sorted(named):
        assert re.search(rf"^{name}\{{", text, re.MULTILINE), f"{name} has no sample"
    if shutil.which("promtool") is not None:
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_new_version_reports_how_far_its_embeddings_moved(
    server: tuple[str, httpx.Client, Path], tmp_path: Path
) -> None:
    _, client, config = server
    data_dir = tmp_path / "data"
    rng = np.random.default_rng(7)
    users, items = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    _version(data_dir, "v1", (users, items))
    _wait_for_metric(client, 'recloop_drift_detected{app="default"}')  # v1 loaded
    # v2: the same items' geometry, rotated (no shift); the users' vectors dealt anew.
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    _version(data_dir, "v2", (users[rng.permutation(40)], items @ rotation))
    text = _wait_for_metric(client, "recloop_drift_embedding_shift{")

    app = {"app": "default", "source": "als"}
    assert _gauge(text, "recloop_drift_embedding_shift", **app, entity="item") < 0.01
    assert _gauge(text, "recloop_drift_embedding_shift", **app, entity="user") > 0.3
    # A shift a retraining made is not drift a retraining answers: a warning, not a trigger.
    assert _gauge(text, "recloop_drift_detected", app="default") == 0
    # The data directory alone measures the same shift between the promoted version and
    # the one before it.
    offline = _monitor(config, data_dir)
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert re.search(r"als user: 0\.[3-9]", offline.stdout), offline.stdout
    assert re.search(r"als item: 0\.00", offline.stdout), offline.stdout


def _wait_for_metric(client: httpx.Client, sample: str) -> str:
    """``/metrics`` once it has ``sample`` (the model check runs every 0.5 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = client.get("/metrics").text
        if sample in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{sample} never appeared in /metrics")

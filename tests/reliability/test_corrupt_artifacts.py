"""Damaged model files under a running ``recloop serve``: the service starts, never answers
500 for them, and says what it left out.

Two apps share one data directory. ``default``'s promoted version has one source's file
damaged (``als/factors.npz``, a flipped byte): the version serves without that source, and
every list it serves is flagged ``fallback``. ``other``'s promoted version has every source
damaged (truncated files): it is refused, and the newest older version serves. Both are
counted in ``/metrics``, named in ``/readyz`` and logged.
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recloop.config import Settings
from recloop.domain import Event, EventType, Item, Scope
from recloop.registry.artifacts import ModelEntry, ModelRegistry, VersionManifest
from recloop.retrieval.factors import ALSModel
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.item_item import CoVisitation
from recloop.retrieval.models import RetrievalModel
from recloop.store.bootstrap import DEFAULT_APP, ensure_dev_key, prepare_store
from recloop.store.keys import issue_key
from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

OTHER_APP = "other"
ITEMS = [f"i{n:02d}" for n in range(30)]
USERS = [f"u{n:02d}" for n in range(40)]


def _history(seed: int) -> list[tuple[str, str, float]]:
    """(user, item, ts): each user clicks six items of one of three neighbourhoods, so the
    collaborative models have pairs to learn."""
    rng = random.Random(seed)
    now = datetime.now(UTC).timestamp()
    rows = []
    for n, user in enumerate(USERS):
        block = ITEMS[(n % 3) * 10 : (n % 3) * 10 + 10]
        for k, item in enumerate(rng.sample(block, 6)):
            rows.append((user, item, now - 3600 + 60 * k))
    return rows


def _models(rows: list[tuple[str, str, float]]) -> dict[str, RetrievalModel]:
    users, items, stamps = zip(*rows, strict=True)
    data = TrainingData(Interactions.from_records(users, items, stamps))
    return {
        "covisitation": CoVisitation().fit(data),
        "als": ALSModel(factors=8, iterations=5).fit(data),
    }


def _write_version(
    registry: ModelRegistry, app_id: str, version: str, models: dict[str, RetrievalModel]
) -> None:
    with registry.writing(app_id, version) as directory:
        for name, model in models.items():
            (directory / name).mkdir()
            model.save(directory / name)
        (directory / "titles.json").write_text(json.dumps({i: f"Item {i}" for i in ITEMS}))
        now = datetime.now(UTC)
        registry.write_manifest(
            directory,
            VersionManifest(
                version,
                app_id,
                now,
                None,
                tuple(ModelEntry(name, model.kind, {}) for name, model in models.items()),
                extra={"data_as_of": now.isoformat()},
            ),
        )


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _prepare(data_dir: Path) -> tuple[str, str]:
    """A data directory with items, events and two model versions per app, the promoted
    one damaged; the two apps' keys."""
    settings = Settings(data_dir=data_dir)
    store = prepare_store(settings)
    try:
        key = ensure_dev_key(store, data_dir)
        assert key is not None
        now = datetime.now(UTC)
        store.tenancy.create_app(OTHER_APP, "Other app", now)
        other_key = issue_key(store.tenancy, OTHER_APP, list(Scope), now, name="t")
        registry = ModelRegistry(settings.resolved_model_dir())
        for app_id, seed in ((DEFAULT_APP, 1), (OTHER_APP, 2)):
            store.catalog.upsert_items(
                app_id, [Item(i, category=f"c{int(i[1:]) // 10}") for i in ITEMS], now
            )
            rows = _history(seed)
            store.events.append(
                [
                    Event(
                        app_id=app_id,
                        event_id=f"e{n}",
                        user_id=user,
                        event_type=EventType.CLICK,
                        event_ts=datetime.fromtimestamp(ts, UTC),
                        server_ts=now - timedelta(minutes=1),
                        item_id=item,
                    )
                    for n, (user, item, ts) in enumerate(rows)
                ]
            )
            models = _models(rows)
            _write_version(registry, app_id, "v1", models)
            _write_version(registry, app_id, "v2", models)
            registry.promote(app_id, "v2")
    finally:
        store.close()
    # Damaged after promotion, as a disk or a copy would damage them.
    _flip_a_byte(registry.path(DEFAULT_APP, "v2") / "als" / "factors.npz")
    for source in ("covisitation", "als"):
        for path in (registry.path(OTHER_APP, "v2") / source).rglob("*"):
            if path.is_file():
                _truncate(path)
    return key, other_key


def _models_ready(client: httpx.Client) -> dict[str, Any]:
    """/readyz's model checks, once both apps have loaded something."""
    deadline = time.monotonic() + 30
    while True:
        ready = client.get("/readyz")
        models: dict[str, Any] = ready.json()["checks"]["models"]
        if all((models.get(app) or {}).get("serving") for app in (DEFAULT_APP, OTHER_APP)):
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "degraded"
            return models
        assert time.monotonic() < deadline, models
        time.sleep(0.2)


def _stage(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in body["stages"] if s["stage"] == name]
    assert len(found) == 1, body["stages"]
    return found[0]


def _metric(text: str, pattern: str) -> float:
    found = re.findall(rf"^{pattern} (\S+)$", text, flags=re.MULTILINE)
    assert found, pattern
    return float(found[0])


def test_damaged_model_files_never_take_the_service_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key, other_key = _prepare(data_dir)
    log = tmp_path / "server.log"
    with recloop_serve(data_dir, log) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        models = _models_ready(client)
        assert models[DEFAULT_APP] == {
            "state": "loaded, sources failed",
            "promoted": "v2",
            "serving": "v2",
            "failed": ["als"],
        }
        assert models[OTHER_APP] == {
            "state": "not loaded",
            "promoted": "v2",
            "serving": "v1",
            "failed": [],
        }

        # default: v2 serves without its damaged source, and every list says so.
        for user in USERS[:10]:
            answer = client.get(
                "/api/recommendations",
                params={"userId": user, "debug": "true"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["items"], body
            assert body["fallback"] is True, body["stages"]
            assert body["modelVersion"].endswith("retrieval:v2"), body["modelVersion"]
            assert _stage(body, "retrieve:als")["outcome"] == "fallback"
            assert _stage(body, "retrieve:covisitation")["outcome"] == "ok"

        # other: the refused v2 leaves the older v1 serving, both of its sources whole.
        answer = client.get(
            "/api/recommendations",
            params={"userId": USERS[0], "debug": "true"},
            headers={"Authorization": f"Bearer {other_key}"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["modelVersion"].endswith("retrieval:v1"), body["modelVersion"]
        assert _stage(body, "retrieve:covisitation")["outcome"] == "ok"
        assert _stage(body, "retrieve:als")["outcome"] in ("ok", "empty")

        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
        # One per damaged source: default's als, other's covisitation and als.
        assert _metric(metrics, "recloop_model_load_errors_total") >= 3
        fallbacks = (
            r'recloop_stage_outcomes_total\{app="default",outcome="fallback",'
            r'stage="retrieve:als"\}'
        )
        assert _metric(metrics, fallbacks) == 10

    text = log.read_text()
    assert "source als of model version v2 of default failed" in text
    assert "app other serves model version v1: the promoted v2 is damaged" in text

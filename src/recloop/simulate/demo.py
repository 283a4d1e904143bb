"""``recloop demo``: the loop on the embedded store, driven over real HTTP, with a summary."""

from __future__ import annotations

import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.config import Settings
from recloop.serving.runtime import ensure_dev_key, prepare_store, start_runtime
from recloop.simulate.world import World


@dataclass(frozen=True)
class DemoConfig:
    """How big the demo's world is."""

    seed: int = 7
    users: int = 400
    items: int = 600
    events: int = 30_000
    batch_size: int = 500
    single_posts: int = 1_000
    recommendation_requests: int = 500


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_demo(config: DemoConfig, settings: Settings, console: Console) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures it printed."""
    data_dir = settings.data_dir / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = settings.model_copy(update={"data_dir": data_dir, "store_url": None})
    console.rule("recloop demo")
    console.print(f"embedded store in [bold]{data_dir}[/bold] (fresh for every demo run)")
    store = prepare_store(settings)
    key = ensure_dev_key(store, data_dir)
    assert key is not None
    runtime = start_runtime(settings, store)
    world = World(
        seed=config.seed, n_items=config.items, n_users=config.users, now=datetime.now(UTC)
    )
    figures: dict[str, Any] = {}
    try:
        with (
            BackgroundServer(create_app(settings, runtime)) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            console.print(f"service listening on {server.url} (OpenAPI docs at {server.url}/docs)")
            figures.update(_load_catalog(client, world, config))
            figures.update(_post_events(client, world, config, console))
            runtime.refresher.refresh()
            figures.update(_recommend(client, world, config, console))
            figures.update(_feedback(client, world))
            runtime.writer.flush()
            figures["logged lists"] = runtime.writer.stats.logs_written
    finally:
        runtime.close()
    _summary(figures, console, settings, key)
    return figures


def _load_catalog(client: httpx.Client, world: World, config: DemoConfig) -> dict[str, Any]:
    items = [item.as_json() for item in world.items]
    for start in range(0, len(items), config.batch_size):
        response = client.post(
            "/api/items", json={"items": items[start : start + config.batch_size]}
        )
        response.raise_for_status()
    for user in world.users:
        client.put(
            f"/api/users/{user.user_id}", json={"attributes": user.attributes}
        ).raise_for_status()
    return {"items": len(items), "users": len(world.users)}


def _post_events(
    client: httpx.Client, world: World, config: DemoConfig, console: Console
) -> dict[str, Any]:
    events = world.events(config.events, span=timedelta(days=7))
    accepted = duplicates = 0
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("posting events in batches", total=len(events))
        started = time.perf_counter()
        for start in range(0, len(events), config.batch_size):
            batch = events[start : start + config.batch_size]
            body = client.post("/api/events", json={"events": batch}).json()
            accepted += body["accepted"]
            duplicates += body["duplicates"]
            progress.advance(task, len(batch))
        batch_rate = len(events) / (time.perf_counter() - started)
        singles = world.events(config.single_posts, span=timedelta(hours=1))
        task = progress.add_task("posting single events (8 clients)", total=len(singles))

        def post_one(event: dict[str, Any]) -> int:
            response = client.post("/api/events", json=event)
            progress.advance(task, 1)
            return response.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post_one, singles))
        single_rate = len(singles) / (time.perf_counter() - started)
    accepted += statuses.count(202)
    # A client retrying a batch it already sent: every event is acknowledged, none stored twice.
    retry = client.post("/api/events", json={"events": events[: config.batch_size]}).json()
    bad = client.post(
        "/api/events",
        json={
            "events": [
                events[0] | {"eventId": "fresh-1"},
                {"userId": "u1", "itemId": "v00001", "eventType": "teleport"},
                {"userId": "u1", "itemId": "v00001", "eventType": "click", "position": -3},
                {"userId": "u1", "eventType": "click"},
            ]
        },
    ).json()
    return {
        "events accepted": accepted,
        "batched ingest (events/s)": round(batch_rate),
        "single-post ingest (events/s)": round(single_rate),
        "retried batch: duplicates": retry["duplicates"],
        "bad batch": bad,
    }


def _recommend(
    client: httpx.Client, world: World, config: DemoConfig, console: Console
) -> dict[str, Any]:
    latencies: list[float] = []
    fallbacks = 0
    in_favourites = 0
    served = 0
    for n in range(config.recommendation_requests):
        user = world.users[n % len(world.users)]
        started = time.perf_counter()
        body = client.get(
            "/api/recommendations", params={"userId": user.user_id, "limit": 10}
        ).json()
        latencies.append((time.perf_counter() - started) * 1000)
        fallbacks += body["fallback"]
        category = {i.item_id: i.category for i in world.items}
        for item in body["items"]:
            served += 1
            in_favourites += category[item["itemId"]] in user.favourites
    user = world.users[0]
    anchor = world.items[0]
    table = Table("surface", "item", "category", "reason", title=f"what {user.user_id} sees")
    for surface, params in (
        ("home", {}),
        ("trending", {}),
        ("similar", {"itemId": anchor.item_id}),
    ):
        body = client.get(
            "/api/recommendations",
            params={"userId": user.user_id, "surface": surface, "limit": 4, **params},
        ).json()
        category = {i.item_id: i.category for i in world.items}
        for item in body["items"]:
            table.add_row(surface, item["itemId"], category[item["itemId"]], item["reason"])
    console.print(table)
    console.print(
        f"(similar is anchored on {anchor.item_id}, a {anchor.category} item; "
        f"{user.user_id} likes {', '.join(user.favourites)})"
    )
    return {
        "recommendation p50 (ms, client side)": round(statistics.median(latencies), 2),
        "recommendation p99 (ms, client side)": round(_percentile(latencies, 0.99), 2),
        "requests with a fallback": fallbacks,
        "share of served items in the user's favourite categories": round(
            in_favourites / max(1, served), 3
        ),
    }


def _feedback(client: httpx.Client, world: World) -> dict[str, Any]:
    user = world.users[1]
    before = client.get("/api/recommendations", params={"userId": user.user_id, "limit": 5}).json()
    top = before["items"][0]["itemId"]
    client.post(
        "/api/recommendations/feedback",
        json={"userId": user.user_id, "itemId": top, "feedback": "not_interested"},
    ).raise_for_status()
    after = client.get("/api/recommendations", params={"userId": user.user_id, "limit": 5}).json()
    return {
        "not_interested honoured on the next request": top
        not in {i["itemId"] for i in after["items"]},
    }


def _summary(figures: dict[str, Any], console: Console, settings: Settings, key: str) -> None:
    table = Table("figure", "value", title="demo summary")
    for name, value in figures.items():
        if name == "bad batch":
            rejected = "; ".join(
                f"#{r['index']} {r['field']}: {r['reason'][:40]}" for r in value["rejected"]
            )
            table.add_row(
                "batch with 3 bad events", f"accepted {value['accepted']}, rejected: {rejected}"
            )
        else:
            table.add_row(name, str(value))
    console.print(table)
    console.print(
        "Sources today: popularity (all time) and trending (24 h half-life), with per-request "
        "eligibility filters. They are not personalised, which the favourite-category share "
        "above shows; learned sources and ranking come next."
    )
    console.print(
        "\nKeep exploring on this data:\n"
        f"  RECLOOP_DATA_DIR={settings.data_dir} recloop serve --port 8000\n"
        f"  curl -H 'Authorization: Bearer {key}' "
        "'http://127.0.0.1:8000/api/recommendations?userId=u00001&limit=5'"
    )

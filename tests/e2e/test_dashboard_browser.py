"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real
server over a short demo's data directory: every page opens signed in, with no console
error and no request leaving 127.0.0.1; a serve-only key is refused; a stop and a promotion
made from the dashboard are in the audit log.

Screenshots of every page are written to ``RECLOOP_SCREENSHOTS`` (a folder) or to a pytest
temporary folder, whose path the run prints.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from rich.console import Console

from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.config import Settings
from recloop.demo.run import DemoConfig, run_demo
from recloop.domain import Scope
from recloop.registry.artifacts import ModelRegistry
from recloop.simulate.world import WorldConfig
from recloop.store.bootstrap import prepare_store
from recloop.store.keys import issue_key, key_id_of

CHROMIUM = os.environ.get("RECLOOP_TEST_CHROMIUM") or shutil.which("chromium")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the skip below says what is missing
    sync_playwright = None

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        sync_playwright is None or CHROMIUM is None,
        reason="needs playwright (pip install playwright) and Debian's chromium "
        "(apt-get install chromium, or RECLOOP_TEST_CHROMIUM=/path/to/chromium)",
    ),
]

# As ../shared recipes drive chromium: headless, and nothing it would fetch on its own.
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
WORLD = WorldConfig(seed=7, initial_users=30, initial_items=80)


@dataclass
class Served:
    """The running service over the demo's folder, and its keys."""

    url: str
    settings: Settings
    admin_key: str
    serve_key: str
    shots: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A two-day demo with nightly training (two model versions and an experiment), served
    by uvicorn on a loopback port."""
    root = tmp_path_factory.mktemp("dashboard")
    folder = root / "demo"
    config = DemoConfig(world=WORLD, days=2, transport="inprocess")
    run_demo(config, Settings(data_dir=root), Console(file=io.StringIO()), data_dir=folder)
    settings = Settings(data_dir=folder)
    assert settings.experiments, "the demo's folder carries its experiment"
    # Each night's version promoted in turn, as an operator would where a two-day world is
    # too small for the promotion gates: the dashboard then has a version to roll back to.
    registry = ModelRegistry(settings.resolved_model_dir())
    versions = registry.versions("default")
    assert len(versions) == 2
    if registry.previous("default") is None:
        for version in versions:
            registry.promote("default", version)
    store = prepare_store(settings)
    try:
        serve_key = issue_key(store.tenancy, "default", {Scope.SERVE}, datetime.now(UTC))
    finally:
        store.close()
    given = os.environ.get("RECLOOP_SCREENSHOTS")
    shots = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    admin_key = (folder / "dev-key").read_text().strip()
    with BackgroundServer(create_app(settings)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        yield Served(server.url, settings, admin_key, serve_key, shots)


@dataclass
class Watched:
    """A browser page, every URL it asked for, and every console error it logged."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A fresh browser context (no cookies) whose requests off 127.0.0.1 are recorded and
    refused, and whose console errors are recorded."""
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    seen = Watched(page)

    def route(route: Any) -> None:
        url = route.request.url
        seen.requests.append(url)
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", route)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
    yield seen
    context.close()


def _sign_in(seen: Watched, served: Served, key: str) -> None:
    seen.page.goto(f"{served.url}/dashboard/")
    assert seen.page.url.endswith("/dashboard/login"), "unsigned: sent to the sign-in form"
    seen.page.fill("#key", key)
    seen.page.click("button[type=submit]")


def _shot(seen: Watched, served: Served, name: str) -> None:
    seen.page.screenshot(path=str(served.shots / f"{name}.png"), full_page=True)


def _served_user(settings: Settings) -> str:
    """A user the demo served the experiment's treatment to (the whole home pipeline)."""
    store = prepare_store(settings)
    try:
        records = store.rec_log.scan(None, 1000, app_id="default")
    finally:
        store.close()
    return next(r.user_id for r in records if r.variant == "home")


def test_every_page_opens_signed_in_with_no_console_error_and_nothing_leaving_loopback(
    served: Served, watched: Watched, capsys: pytest.CaptureFixture[str]
) -> None:
    page = watched.page
    page.goto(f"{served.url}/dashboard/login")
    _shot(watched, served, "0-sign-in")
    _sign_in(watched, served, served.admin_key)

    # Overview: the demo's surfaces with their CTR, the counts.
    page.wait_for_selector("#surfaces")
    assert page.url == f"{served.url}/dashboard/"
    surfaces = page.locator("#surfaces tbody tr td:first-child").all_inner_texts()
    assert "home" in surfaces
    assert page.locator(".charts svg").count() >= 1
    _shot(watched, served, "1-overview")

    # Models: both nightly versions, the newest serving; the table sorts by a click.
    page.click("nav >> text=Models")
    page.wait_for_selector("#versions")
    registry = ModelRegistry(served.settings.resolved_model_dir())
    versions = registry.versions("default")
    assert len(versions) == 2
    column = page.locator("#versions tbody tr td:first-child")
    assert column.all_inner_texts() == list(reversed(versions))
    assert page.inner_text("#current") == registry.current("default")
    page.click("#versions thead th:first-child")  # descending: newest first
    page.click("#versions thead th:first-child")  # ascending
    assert column.all_inner_texts() == versions
    _shot(watched, served, "2-models")

    # Experiments, then the demo's experiment and its report.
    page.click("nav >> text=Experiments")
    page.wait_for_selector("#experiments")
    _shot(watched, served, "3-experiments")
    page.click("#experiments a")
    page.wait_for_selector("#variants")
    assert page.inner_text("#state") == "running"
    assert page.locator("[id^=decision-]").count() == 1
    assert page.locator("#variants tbody tr").count() == 2
    _shot(watched, served, "4-experiment-report")

    # The user inspector: a served user's history and next list, stage by stage.
    page.click("nav >> text=User inspector")
    page.fill("#user", _served_user(served.settings))
    page.click("#find-user button")
    page.wait_for_selector("#trace")
    stages = page.locator("#trace tbody tr td:nth-child(2)").all_inner_texts()
    assert stages[0].startswith("retrieve:")
    assert {s.split(":")[0] for s in stages} >= {"retrieve", "filter", "rank", "gate"}
    assert page.locator("#served tbody tr").count() > 0
    # What each stage did to the items: every source's candidates, in a block per stage.
    assert page.locator('#stage-items details[data-stage^="retrieve:"]').count() > 0
    _shot(watched, served, "5-user-inspector")

    # From the list, an item.
    page.click("#served tbody tr:first-child td:nth-child(2) a")
    page.wait_for_selector("h2.mono")
    # The trained sources name its neighbours.
    assert page.locator("#neighbours .neighbours tbody tr").count() > 0
    _shot(watched, served, "6-item-inspector")

    # Back on Overview: the inspector's request was timed stage by stage in this process.
    page.click("nav >> text=Overview")
    page.wait_for_selector("#stages")
    timed = page.locator("#stages tbody tr td:first-child").all_inner_texts()
    assert {"retrieve", "rank"} <= {t.split(":")[0] for t in timed}
    _shot(watched, served, "1b-overview-after-a-request")

    for name, label in (
        ("7-health", "Drift & health"),
        ("8-suggestions", "Suggestions"),
        ("9-audit", "Audit log"),
    ):
        page.click(f"nav >> text={label}")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == label
        _shot(watched, served, name)

    assert watched.errors == []
    assert watched.requests, "the route saw the pages' requests"
    assert [u for u in watched.requests if urlsplit(u).hostname != "127.0.0.1"] == []
    assert any(u.endswith("/dashboard/static/sort.js") for u in watched.requests)
    with capsys.disabled():
        sys.stdout.write(f"\ndashboard screenshots: {served.shots}\n")


def test_a_serve_only_key_is_refused(served: Served, watched: Watched) -> None:
    _sign_in(watched, served, served.serve_key)

    page = watched.page
    page.wait_for_selector(".error")
    assert "no admin scope" in page.inner_text(".error")
    _shot(watched, served, "10-serve-key-refused")
    assert page.context.cookies() == []
    page.goto(f"{served.url}/dashboard/models")
    assert page.url.endswith("/dashboard/login")
    # Over plain HTTP too: 403, and no cookie is set.
    refused = httpx.post(f"{served.url}/dashboard/login", data={"key": served.serve_key})
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    # The browser logs the refused sign-in's 403 as a failed load; nothing else.
    assert all("status of 403" in e for e in watched.errors), watched.errors


def test_a_stop_and_a_promotion_from_the_dashboard_are_audited(
    served: Served, watched: Watched
) -> None:
    registry = ModelRegistry(served.settings.resolved_model_dir())
    current, previous = registry.current("default"), registry.previous("default")
    assert previous is not None
    assert previous != current
    # A form posted with a genuine session but without the sign-in's token (as another
    # site would, if a browser sent it the cookie) changes nothing.
    login = httpx.post(
        f"{served.url}/dashboard/login", data={"key": served.admin_key}, follow_redirects=False
    )
    session = login.headers["set-cookie"].split(";")[0]
    assert session.startswith("recloop_dashboard_session=")
    assert served.admin_key not in session
    forged = httpx.post(
        f"{served.url}/dashboard/models/promote",
        data={"version": previous},
        headers={"Cookie": session},
    )
    assert forged.status_code == 403
    assert registry.current("default") == current

    _sign_in(watched, served, served.admin_key)
    page = watched.page
    page.wait_for_selector("#surfaces")
    page.click("nav >> text=Models")
    page.click("#rollback")
    page.wait_for_selector(".ok")
    assert registry.current("default") == previous
    assert page.inner_text("#current") == previous

    experiment = served.settings.experiments[0].name
    page.goto(f"{served.url}/dashboard/experiments/{experiment}")
    page.fill("#reason", "seen enough")
    page.click("#stop button")
    page.wait_for_selector("#state")
    assert page.inner_text("#state") == "stopped"

    page.click("nav >> text=Audit log")
    page.wait_for_selector("#audit")
    _shot(watched, served, "11-audit-after-actions")
    store = prepare_store(served.settings)
    try:
        entries = store.audit.since(0, 1000)
    finally:
        store.close()
    actor = f"dashboard:{key_id_of(served.admin_key)}"
    done = {(e.actor, e.action, e.subject) for e in entries}
    assert (actor, "model.promote", previous) in done
    assert (actor, "experiment.stop", experiment) in done
    stop = next(e for e in entries if e.action == "experiment.stop")
    assert stop.detail["reason"] == "seen enough"
    rows = page.locator("#audit tbody tr").all_inner_texts()
    assert any("experiment.stop" in r and experiment in r for r in rows)
    assert any("model.promote" in r and previous in r for r in rows)
    assert watched.errors == []


@pytest.mark.parametrize(
    ("path", "ready"), [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")]
)
def test_the_api_docs_render_with_nothing_leaving_loopback(
    served: Served, watched: Watched, path: str, ready: str
) -> None:
    page = watched.page
    page.goto(f"{served.url}{path}")
    page.wait_for_selector(ready, timeout=30_000)

    assert "recloop" in page.inner_text(ready).lower()
    _shot(watched, served, f"12-api{path.replace('/', '-')}")
    assert watched.errors == []
    assert [u for u in watched.requests if urlsplit(u).hostname != "127.0.0.1"] == []

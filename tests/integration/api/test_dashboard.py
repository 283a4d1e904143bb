"""The dashboard without a browser: who may sign in, the cookies it sets, the CSRF check on
its actions, the audit entries they write, and every page rendering on an empty app.

The browser tests (tests/e2e/test_dashboard_browser.py) drive the same pages in chromium.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.analysis.guard import StoppedExperiments
from recloop.api.app import create_app
from recloop.api.dashboard.auth import session_token, signing_secret
from recloop.config import Settings
from recloop.domain import Scope
from recloop.registry.artifacts import ModelRegistry, VersionManifest
from recloop.runtime.process import stopped_experiments_path
from recloop.store import open_store
from recloop.store.keys import key_id_of
from tests.factories import settings_with
from tests.integration.api.conftest import key_with

pytestmark = pytest.mark.integration

PAGES = ["/", "/models", "/experiments", "/users", "/items", "/health", "/suggestions", "/audit"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        experiments=[
            {
                "name": "newest-first",
                "surface": "trending",
                "variants": [
                    {"name": "control", "share": 0.5},
                    {
                        "name": "newest",
                        "share": 0.5,
                        "overrides": {"sources": [{"name": "newest", "quota": 50}]},
                    },
                ],
            }
        ],
    )


@pytest.fixture
def browser(settings: Settings, dev_key: str) -> Iterator[TestClient]:
    """A client without a key header, on https (the cookies are ``Secure``)."""
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client


def _sign_in(browser: TestClient, key: str) -> str:
    """Sign in; the CSRF token of the forms."""
    answer = browser.post("/dashboard/login", data={"key": key}, follow_redirects=False)
    assert answer.status_code == 303
    page = browser.get("/dashboard/experiments/newest-first").text
    return page.split('name="csrf" value="')[1].split('"')[0]


def test_pages_need_a_sign_in(browser: TestClient) -> None:
    for path in PAGES:
        answer = browser.get(f"/dashboard{path}", follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/dashboard/login"
    login = browser.get("/dashboard/login")
    assert login.status_code == 200
    assert "default-src 'self'" in login.headers["content-security-policy"]


def test_an_admin_key_signs_in_with_a_secure_http_only_strict_cookie(
    browser: TestClient, dev_key: str
) -> None:
    answer = browser.post("/dashboard/login", data={"key": dev_key}, follow_redirects=False)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/"
    (cookie,) = answer.headers.get_list("set-cookie")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/dashboard"} <= flags
    # The cookie holds a signed session naming the key, never the key itself.
    assert dev_key not in cookie
    assert dev_key.split(".")[-1] not in cookie
    assert dev_key not in answer.headers["location"]
    for path in PAGES:
        page = browser.get(f"/dashboard{path}")
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
        assert dev_key not in page.text


def test_a_revoked_key_ends_its_session_on_the_next_page(
    browser: TestClient, settings: Settings
) -> None:
    key = key_with(settings, Scope.ADMIN)
    _sign_in(browser, key)
    assert browser.get("/dashboard/models").status_code == 200
    store = open_store(settings.resolved_store_url())
    try:
        assert store.tenancy.revoke_key(key_id_of(key) or "", datetime.now(UTC))
    finally:
        store.close()

    page = browser.get("/dashboard/models", follow_redirects=False)

    assert page.status_code in (302, 303, 307, 401)
    assert "Sign in" in browser.get("/dashboard/models").text


def test_a_forged_or_expired_session_is_refused_and_another_worker_accepts_a_genuine_one(
    browser: TestClient, settings: Settings, dev_key: str
) -> None:
    _sign_in(browser, dev_key)
    token = browser.cookies["recloop_dashboard_session"]
    key_id, expires, nonce, signature = token.rsplit(".", 3)
    secret = settings.data_dir / "dashboard-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    # A second process on the same data directory (another --workers process) reads the
    # same secret: the cookie one signed in with is good on the other.
    with TestClient(create_app(settings), base_url="https://testserver") as other:
        for value, accepted in (
            (token, True),
            (f"{key_id}.{int(expires) + 3600}.{nonce}.{signature}", False),  # tampered
            (f"{key_id}.{expires}.{nonce}.{'0' * len(signature)}", False),  # forged
            (dev_key, False),  # the key itself is no session
        ):
            other.cookies.set("recloop_dashboard_session", value, path="/dashboard")
            page = other.get("/dashboard/models", follow_redirects=False)
            assert (page.status_code == 200) is accepted, value
    expired = session_token(signing_secret(settings.data_dir), key_id, nonce, int(time.time()) - 1)
    browser.cookies.clear()
    browser.cookies.set("recloop_dashboard_session", expired, path="/dashboard")
    assert browser.get("/dashboard/models", follow_redirects=False).status_code != 200


def test_a_serve_only_or_unknown_key_is_refused(browser: TestClient, serve_key: str) -> None:
    serve = browser.post("/dashboard/login", data={"key": serve_key}, follow_redirects=False)
    assert serve.status_code == 403
    assert "no admin scope" in serve.text
    assert "set-cookie" not in serve.headers

    unknown = browser.post("/dashboard/login", data={"key": "rl_000000000000_nope"})
    assert unknown.status_code == 401
    assert "set-cookie" not in unknown.headers
    assert browser.get("/dashboard/", follow_redirects=False).status_code == 303


def test_a_sign_in_from_another_site_is_refused(browser: TestClient, dev_key: str) -> None:
    answer = browser.post(
        "/dashboard/login", data={"key": dev_key}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_a_stop_needs_the_forms_token_and_is_audited(
    browser: TestClient, dev_key: str, settings: Settings
) -> None:
    token = _sign_in(browser, dev_key)
    record = StoppedExperiments(stopped_experiments_path(settings))

    for forged in ({"reason": "x"}, {"reason": "x", "csrf": "0" * 64}):
        refused = browser.post("/dashboard/experiments/newest-first/stop", data=forged)
        assert refused.status_code == 403
    assert record.read() == {}

    stopped = browser.post(
        "/dashboard/experiments/newest-first/stop",
        data={"reason": "enough seen", "csrf": token},
        follow_redirects=False,
    )
    assert stopped.status_code == 303
    assert record.read()["newest-first"].reason == "enough seen"
    store = open_store(settings.resolved_store_url())
    try:
        entries = store.audit.since(0, 100, action="experiment.stop")
    finally:
        store.close()
    assert [(e.subject, e.detail["reason"]) for e in entries] == [("newest-first", "enough seen")]
    assert entries[0].actor.startswith("dashboard:")
    assert "experiment.stop" in browser.get("/dashboard/audit").text
    # Unknown names are a 404 naming the field, never a 500.
    missing = browser.post("/dashboard/experiments/nope/stop", data={"csrf": token})
    assert missing.status_code == 404


def test_promoting_an_unknown_version_is_a_404(browser: TestClient, dev_key: str) -> None:
    token = _sign_in(browser, dev_key)
    answer = browser.post("/dashboard/models/promote", data={"version": "v0", "csrf": token})
    assert answer.status_code == 404
    assert "version" in answer.text


def test_the_user_inspector_shows_the_trace_of_a_new_users_list(
    browser: TestClient, dev_key: str
) -> None:
    _sign_in(browser, dev_key)
    page = browser.get("/dashboard/users", params={"user": "someone", "surface": "trending"})
    assert page.status_code == 200
    assert 'id="trace"' in page.text
    assert "retrieve:" in page.text
    unknown = browser.get("/dashboard/users", params={"user": "someone", "surface": "nope"})
    assert unknown.status_code == 200
    assert "unknown surface" in unknown.text


def test_the_user_inspector_shows_what_each_source_recalled_and_each_rule_did(
    browser: TestClient, dev_key: str
) -> None:
    key = {"Authorization": f"Bearer {dev_key}"}
    items = [{"itemId": f"i{n}", "category": "c"} for n in range(6)]
    assert browser.post("/api/items", json={"items": items}, headers=key).status_code == 200
    clicks = [
        {"userId": f"fan{n}-{m}", "itemId": f"i{n}", "eventType": "click"}
        for n in range(6)
        for m in range(6 - n)
    ]
    assert browser.post("/api/events", json={"events": clicks}, headers=key).status_code == 202
    runtime = browser.app.state.runtime  # type: ignore[attr-defined]
    runtime.refresher.refresh()
    listed = browser.get(
        "/api/recommendations", params={"userId": "dana", "limit": 2}, headers=key
    ).json()
    shown = [i["itemId"] for i in listed["items"]]
    runtime.writer.flush()
    _sign_in(browser, dev_key)

    page = browser.get("/dashboard/users", params={"user": "dana", "surface": "home"}).text

    # A folded block per stage that touched items, the popular source's candidates in it.
    popular = page.split('data-stage="retrieve:popular"')[1].split("</details>")[0]
    assert all(f">i{n}</a>" in popular for n in range(6))
    # The recently-shown rule names an item it demoted: one the user was just shown.
    rule = page.split('data-stage="rerank:recently-shown"')[1].split("</details>")[0]
    assert "demoted" in rule
    assert any(f">{item}</a></td><td>demoted<" in rule for item in shown)


def test_the_item_inspector_shows_the_neighbours_each_source_recalls_for_it(
    browser: TestClient, dev_key: str
) -> None:
    key = {"Authorization": f"Bearer {dev_key}"}
    items = [{"itemId": f"c{n}", "category": "cats"} for n in range(4)]
    items += [{"itemId": f"d{n}", "category": "dogs"} for n in range(4)]
    assert browser.post("/api/items", json={"items": items}, headers=key).status_code == 200
    clicks = [
        {"userId": f"fan{n}-{m}", "itemId": item["itemId"], "eventType": "click"}
        for n, item in enumerate(items)
        for m in range(n + 1)
    ]
    assert browser.post("/api/events", json={"events": clicks}, headers=key).status_code == 202
    browser.app.state.runtime.refresher.refresh()  # type: ignore[attr-defined]
    _sign_in(browser, dev_key)

    page = browser.get("/dashboard/items", params={"item": "c0"}).text

    # same-category answers for the seed: the other cats, never the seed, no dog.
    block = page.split('data-source="same-category"')[1].split("</section>")[0]
    shown = {f"c{n}" for n in range(4) if f">c{n}</a>" in block}
    assert shown == {"c1", "c2", "c3"}
    assert ">d" not in block
    # Popularity recalls the same list whatever the seed: named, not shown as neighbours.
    assert 'data-source="popular"' not in page
    assert "whatever the seed" in page.split('id="neighbours"')[1]
    assert "popular" in page.split("whatever the seed")[1].split("</p>")[0]


def test_what_a_page_shows_of_its_input_is_escaped(browser: TestClient, dev_key: str) -> None:
    _sign_in(browser, dev_key)
    page = browser.get("/dashboard/users", params={"user": "<script>x()</script>"})
    assert page.status_code == 200
    assert "<script>x()" not in page.text
    assert "&lt;script&gt;x()" in page.text


def _version(settings: Settings, version: str, passed: bool) -> None:
    """A finished model version whose promotion gates passed, or failed ``validated``."""
    registry = ModelRegistry(settings.resolved_model_dir())
    gates = [{"name": "validated", "passed": passed, "detail": "asked 0 users"}]
    with registry.writing("default", version) as directory:
        registry.write_manifest(
            directory,
            VersionManifest(
                version,
                "default",
                datetime.now(UTC),
                None,
                (),
                extra={"promotion": {"passed": passed, "gates": gates}},
            ),
        )


def test_a_version_its_gates_blocked_is_promoted_only_when_forced_and_audited_so(
    settings: Settings, browser: TestClient, dev_key: str
) -> None:
    _version(settings, "v1", passed=True)
    _version(settings, "v2", passed=False)
    registry = ModelRegistry(settings.resolved_model_dir())
    registry.promote("default", "v1")
    token = _sign_in(browser, dev_key)
    assert 'name="force"' in browser.get("/dashboard/models").text

    refused = browser.post("/dashboard/models/promote", data={"version": "v2", "csrf": token})
    assert refused.status_code == 422
    assert "force" in refused.text
    assert "validated: asked 0 users" in refused.text
    assert registry.current("default") == "v1"

    forced = browser.post(
        "/dashboard/models/promote",
        data={"version": "v2", "csrf": token, "force": "1"},
        follow_redirects=False,
    )
    assert forced.status_code == 303
    assert registry.current("default") == "v2"
    # Back to the version served before: no force needed.
    back = browser.post(
        "/dashboard/models/promote", data={"version": "v1", "csrf": token}, follow_redirects=False
    )
    assert back.status_code == 303
    assert registry.current("default") == "v1"
    store = open_store(settings.resolved_store_url())
    try:
        entries = store.audit.since(0, 100)
    finally:
        store.close()
    done = [(e.action, e.subject) for e in entries if e.action.startswith("model.")]
    assert done == [("model.promote.force", "v2"), ("model.promote", "v1")]
    force = next(e for e in entries if e.action == "model.promote.force")
    assert force.detail["blocked_by"] == {"validated": "asked 0 users"}

"""``docs/alerts.yml``: valid Prometheus rules, each alert tiered and recorded firing.

``promtool`` (Debian's ``prometheus`` package; ``scripts/install-system-deps.sh`` installs
it) checks the rules and runs ``alerts.test.yml``, where every alert fires on a recorded
series and a healthy series beside it does not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "alerts.yml"
TESTS = Path(__file__).with_name("alerts.test.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus, or "
    "scripts/install-system-deps.sh)",
)


def _alerts() -> dict[str, str]:
    """Alert name -> its rule's text, up to the next rule."""
    text = RULES.read_text()
    starts = list(re.finditer(r"^\s*- (?:alert|record): (\S+)", text, re.MULTILINE))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {
        m.group(1): text[m.start() : end]
        for m, end in zip(starts, ends, strict=True)
        if "alert:" in m.group(0)
    }


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=TESTS.parent, capture_output=True, text=True, timeout=120
    )


def test_every_alert_is_tiered_and_has_a_recorded_firing() -> None:
    alerts = _alerts()
    tests = TESTS.read_text()
    assert len(alerts) >= 10
    for name, rule in alerts.items():
        severity = re.search(r"severity: (\S+)", rule)
        assert severity is not None, name
        assert severity.group(1) in {"notify", "page"}, name
        # Each alert is evaluated in the tests with at least one alert expected to fire.
        fired = re.search(
            rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels: .*severity: "
            rf"{severity.group(1)}\}}",
            tests,
        )
        assert fired is not None, f"{name}: no recorded firing in {TESTS.name}"


def test_the_tiers_are_the_ones_asked_for() -> None:
    alerts = _alerts()

    def severity(name: str) -> str:
        found = re.search(r"severity: (\S+)", alerts[name])
        assert found is not None
        return found.group(1)

    # A 5 % CTR drop over 24 h notifies, a 20 % drop in an hour pages.
    assert "< 0.95 *" in alerts["RecloopCTRDrop"]
    assert "[24h]" in alerts["RecloopCTRDrop"]
    assert severity("RecloopCTRDrop") == "notify"
    assert "< 0.8 *" in alerts["RecloopCTRDropFast"]
    assert "[1h]" in alerts["RecloopCTRDropFast"]
    assert severity("RecloopCTRDropFast") == "page"
    # Schema violations on critical features page at once: no ``for``.
    critical = alerts["RecloopCriticalFeatureSchemaViolation"]
    assert severity("RecloopCriticalFeatureSchemaViolation") == "page"
    assert "for:" not in critical


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


@pytest.mark.slow  # two days of series at 10 minutes: about 6 s
@needs_promtool
def test_each_alert_fires_on_its_recorded_series_and_not_on_healthy_ones() -> None:
    tested = _promtool("test", "rules", TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

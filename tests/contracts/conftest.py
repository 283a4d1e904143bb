"""Fixtures of the conformance suite, and its report: components checked, and their cost.

Every check module names the kind of component it checks (``KIND``) and parametrizes over
``name``; the summary at the end of a run counts the components whose every check passed
and prints what each one cost on the checkerboard world.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from tests.contracts.support import COSTS, Fitted, counted
from tests.contracts.world import World


@pytest.fixture(scope="session")
def world() -> World:
    """The checkerboard world."""
    return World()


@pytest.fixture(scope="session")
def fitted(world: World) -> Fitted:
    """Each registered model kind, fitted on the world once."""
    return Fitted(world)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag each check with the component it checks, for the summary."""
    for item in items:
        module = getattr(item, "module", None)
        if module is None or not module.__name__.startswith(__package__ + "."):
            continue
        kind = getattr(module, "KIND", None)
        callspec = getattr(item, "callspec", None)
        if kind is not None and callspec is not None and "name" in callspec.params:
            item.user_properties.append(("component", (kind, callspec.params["name"])))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the components checked, by kind, and print what each cost."""
    passed: set[tuple[str, str]] = set()
    failed: set[tuple[str, str]] = set()
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            component = dict(getattr(report, "user_properties", ())).get("component")
            if component is None:
                continue
            if outcome == "passed":
                if report.when == "call":
                    passed.add(component)
            else:
                failed.add(component)
    if not passed and not failed:
        return
    checked = sorted(passed - failed)
    by_kind: dict[str, int] = defaultdict(int)
    for kind, _ in checked:
        by_kind[kind] += 1
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", "conformance")
    kinds = ", ".join(counted(kind, n) for kind, n in sorted(by_kind.items()))
    write(f"{len(checked)} components passed every check run ({kinds}); {len(failed)} failed")
    if failed:
        write("failed: " + ", ".join(f"{kind} {name}" for kind, name in sorted(failed)))
    if COSTS:
        write(f"  {'cost on the checkerboard world':<42}{'fit s':>8}{'ms/call':>10}")
        for (kind, name), cost in sorted(COSTS.items()):
            fit_s = f"{cost['fit_s']:.2f}" if "fit_s" in cost else "-"
            call_ms = f"{cost['call_ms']:.3f}" if "call_ms" in cost else "-"
            write(f"  {kind + ' ' + name:<42}{fit_s:>8}{call_ms:>10}")

"""The admin blocklist: validation, the file, and the filters that follow it across replicas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.errors import InvalidInput
from recloop.suggest.blocklist import (
    MAX_BLOCKLIST_TERMS,
    Blocklist,
    BlocklistFile,
    SafetyFilters,
    app_folder,
    validate_blocklist,
    with_blocklist,
)
from recloop.suggest.safety import MAX_PATTERNS, SafetyPolicy

pytestmark = pytest.mark.unit

NOW = datetime(2024, 6, 1, tzinfo=UTC)
POLICY = SafetyPolicy(blocked_terms=("hate",), patterns=(r"\bbuy\s+followers\b",))


def test_a_valid_list_is_kept_in_order_without_repeats() -> None:
    blocklist = validate_blocklist(
        ["spoiler", "leak", "spoiler"], [r"\bfree\s+v-?bucks\b"], POLICY, NOW
    )
    assert blocklist == Blocklist(("spoiler", "leak"), (r"\bfree\s+v-?bucks\b",), NOW)


@pytest.mark.parametrize(
    ("terms", "patterns", "field", "rule"),
    [
        (["ok", "!!!"], [], "terms[1]", "no letters or digits"),
        (["x" * 201], [], "terms[0]", "at most 200 characters"),
        ([], ["fine", "(a+)+$"], "patterns[1]", "'(a+)+$'"),
        ([], ["(unclosed"], "patterns[0]", "'(unclosed'"),
        ([], [".*"], "patterns[0]", "'.*'"),
        (["t"] * (MAX_BLOCKLIST_TERMS + 1), [], "terms", "at most 10000 terms"),
        ([], [f"word{n}" for n in range(MAX_PATTERNS)], "patterns", "at most 199 patterns"),
    ],
)
def test_a_bad_entry_is_refused_naming_it_and_the_rule(
    terms: list[str], patterns: list[str], field: str, rule: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_blocklist(terms, patterns, POLICY, NOW)
    assert refused.value.field == field
    assert rule in refused.value.rule


def test_the_list_adds_to_the_configured_policy() -> None:
    policy = with_blocklist(POLICY, Blocklist(("spoiler",), ("leak",)))
    assert policy.blocked_terms == ("hate", "spoiler")
    assert policy.patterns == (r"\bbuy\s+followers\b", "leak")
    assert with_blocklist(POLICY, Blocklist()) is POLICY


def test_the_file_round_trips_and_is_empty_when_missing(tmp_path: Path) -> None:
    file = BlocklistFile(tmp_path / "a" / "blocklist.json")
    assert file.read() == Blocklist()
    assert file.stamp() is None
    file.write(Blocklist(("spoiler",), ("leak",), NOW), "a")
    assert file.read() == Blocklist(("spoiler",), ("leak",), NOW)
    assert file.app_id() == "a"
    assert list(file.path.parent.iterdir()) == [file.path]  # no temporary file left
    file.path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a blocklist"):
        file.read()


def test_odd_app_ids_get_a_hashed_folder() -> None:
    assert app_folder("default") == "default"
    for odd in ("../etc", "a/b", "..", " x", "ü" * 3):
        folder = app_folder(odd)
        assert folder.startswith("app-")
        assert "/" not in folder
    assert app_folder("a/b") != app_folder("a/c")


def test_a_put_serves_the_next_check_and_other_replicas_follow_on_refresh(tmp_path: Path) -> None:
    here = SafetyFilters(POLICY, tmp_path)
    there = SafetyFilters(POLICY, tmp_path)
    assert here.get("app").check("no spoilers please").allowed
    here.put("app", Blocklist(("spoilers",), (), NOW))
    assert not here.get("app").check("no spoilers please").allowed
    assert here.get("other").check("no spoilers please").allowed  # per app
    assert not here.get("app").check("i hate it").allowed  # the configured terms still hold
    assert there.get("app").check("no spoilers please").allowed  # not read yet
    there.refresh()
    assert not there.get("app").check("no spoilers please").allowed
    here.put("app", Blocklist((), (), NOW))
    there.refresh()
    assert there.get("app").check("no spoilers please").allowed


def test_a_replica_finds_the_list_of_an_app_with_an_odd_id(tmp_path: Path) -> None:
    SafetyFilters(POLICY, tmp_path).put("team/one", Blocklist(("spoilers",), (), NOW))
    other = SafetyFilters(POLICY, tmp_path)
    other.refresh()
    assert not other.get("team/one").check("spoilers").allowed


def test_an_unreadable_list_keeps_the_last_good_filter_and_is_counted(tmp_path: Path) -> None:
    errors: list[int] = []
    filters = SafetyFilters(POLICY, tmp_path, on_error=lambda: errors.append(1))
    filters.put("app", Blocklist(("spoilers",), (), NOW))
    path = filters.file("app").path
    path.write_text(json.dumps({"app_id": "app", "terms": 3}))
    filters.refresh()
    assert errors == [1]
    assert not filters.get("app").check("spoilers").allowed

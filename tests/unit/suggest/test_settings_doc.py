"""The ``[suggestions]`` example in docs/suggestions.md is valid settings and a valid policy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from recloop.config import Settings, SuggestionSettings
from recloop.runtime.process import suggestion_policy

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "suggestions.md"


def test_the_documented_settings_are_the_defaults_and_the_policy_validates() -> None:
    block = next(
        b for b in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S) if "[suggestions]" in b
    )
    section = tomllib.loads(block)["suggestions"]
    settings = Settings(suggestions=section)
    # Every documented value is the default, except the example policy.
    assert settings.suggestions.model_copy(update={"safety": {}}) == SuggestionSettings()
    assert set(section) - {"safety"} == set(SuggestionSettings.model_fields) - {"safety"}
    policy = suggestion_policy(settings)
    assert policy.blocked_terms == ("hate",)
    assert "*-DE" in policy.overrides

"""Settings written as TOML read back the same, and which recloop.toml a data directory uses."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.config import ExperimentConfig, Settings, VariantConfig, default_surfaces
from recloop.config.saved import write_settings
from recloop.demo.run import DEMO_EXPERIMENT, DEMO_VARIANTS, demo_configuration

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "recloop.example.toml"


@pytest.fixture(autouse=True)
def _no_outside_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("RECLOOP_CONFIG", "RECLOOP_DATA_DIR", "RECLOOP_STORE_URL"):
        monkeypatch.delenv(name, raising=False)


def read_back(folder: Path) -> Settings:
    return Settings(data_dir=folder)


def test_the_demos_configuration_reads_back_equal_from_its_data_directory(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    configured = demo_configuration(Settings(), folder, None, DEMO_VARIANTS)

    write_settings(configured, folder / "recloop.toml", exclude={"data_dir", "store_url"})

    back = read_back(folder)
    assert back == configured
    assert [e.name for e in back.experiments] == [DEMO_EXPERIMENT]
    assert "popular-only" in back.surfaces


def test_the_documented_example_reads_back_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_CONFIG", str(EXAMPLE))
    example = Settings(data_dir=tmp_path)
    monkeypatch.delenv("RECLOOP_CONFIG")

    write_settings(example, tmp_path / "recloop.toml", header="a header\nof two lines")

    text = (tmp_path / "recloop.toml").read_text()
    assert text.startswith("# a header\n# of two lines\n\n")
    assert read_back(tmp_path) == example


def test_strings_that_need_escapes_keys_that_need_quotes_and_times_survive(
    tmp_path: Path,
) -> None:
    awkward = 'say "hi"\\ then\nnew line\ttab \x7f and ünïcödé'
    surfaces = default_surfaces()
    surfaces["a.b c"] = surfaces["trending"]
    settings = Settings(
        surfaces=surfaces,
        experiments=[
            ExperimentConfig(
                name="e",
                surface="a.b c",
                salt=awkward,
                start=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                variants=[VariantConfig(name="a", share=0.5), VariantConfig(name="b", share=0.5)],
            )
        ],
    )

    write_settings(settings, tmp_path / "recloop.toml")

    tomllib.loads((tmp_path / "recloop.toml").read_text())  # valid TOML
    back = read_back(tmp_path)
    assert back == settings.model_copy(update={"data_dir": tmp_path})
    assert back.experiments[0].salt == awkward


def test_only_what_differs_from_the_defaults_is_written(tmp_path: Path) -> None:
    write_settings(Settings(experiment_check_s=5.0), tmp_path / "recloop.toml")

    assert tomllib.loads((tmp_path / "recloop.toml").read_text()) == {"experiment_check_s": 5.0}


def test_a_data_directorys_recloop_toml_wins_over_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recloop.toml").write_text("experiment_check_s = 11.0\n")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "recloop.toml").write_text("experiment_check_s = 22.0\n")

    assert Settings().experiment_check_s == 11.0
    assert Settings(data_dir=folder).experiment_check_s == 22.0
    monkeypatch.setenv("RECLOOP_DATA_DIR", str(folder))
    assert Settings().experiment_check_s == 22.0
    assert Settings().data_dir == folder
    # A folder without one falls back to the working directory's.
    assert Settings(data_dir=tmp_path / "elsewhere").experiment_check_s == 11.0


def test_recloop_config_wins_over_the_data_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "recloop.toml").write_text("experiment_check_s = 22.0\n")
    named = tmp_path / "named.toml"
    named.write_text("experiment_check_s = 33.0\n")
    monkeypatch.setenv("RECLOOP_CONFIG", str(named))

    assert Settings(data_dir=folder).experiment_check_s == 33.0
    monkeypatch.setenv("RECLOOP_CONFIG", str(tmp_path / "absent.toml"))
    assert Settings(data_dir=folder).experiment_check_s == 300.0

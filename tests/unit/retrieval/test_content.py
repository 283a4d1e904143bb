"""ContentModel on a tiny catalogue with the hashing embedder: similar texts come first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from recloop.retrieval.content import ContentModel
from recloop.retrieval.interactions import Interactions, ItemTable, TrainingData
from recloop.retrieval.models import Recalled, RecallQuery, RetrievalModel
from recloop.retrieval.text_embedding import EmbedderUnavailable

pytestmark = pytest.mark.unit

CATALOGUE = {
    "c1": ("Laugh Riot", "a hilarious comedy about two friends"),
    "c2": ("Funny Business", "a slapstick comedy, funny and hilarious"),
    "c3": ("Comedy Night", "stand-up comedy special, hilarious jokes"),
    "s1": ("Space Voyage", "science fiction drama among the stars"),
    "s2": ("Galaxy Wars", "science fiction space battle among the stars"),
    "h1": ("Haunted House", "horror film with ghosts"),
    "h2": ("Midnight Screams", "horror slasher with ghosts at midnight"),
    "e1": (None, ""),  # no text: left out of the index
}
COMEDIES = {"c1", "c2", "c3"}


def training_data() -> TrainingData:
    interactions = Interactions.from_records(
        ["u1", "u1", "u2", "u2", "u3"],
        ["c1", "c2", "s1", "s2", "h1"],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        item_vocabulary=list(CATALOGUE),
    )
    ids = tuple(CATALOGUE)
    items = ItemTable(
        ids,
        tuple(title for title, _ in CATALOGUE.values()),
        tuple(" ".join(p for p in parts if p) for parts in CATALOGUE.values()),
        tuple(None for _ in ids),
        np.full(len(ids), np.nan),
    )
    return TrainingData(interactions, items)


@pytest.fixture
def model() -> ContentModel:
    return ContentModel(embedder="hashing").fit(training_data())


def ids_of(found: list[Recalled]) -> list[str]:
    return [r.item_id for r in found]


def test_is_a_retrieval_model(model: ContentModel) -> None:
    as_protocol: RetrievalModel = model
    assert as_protocol.kind == "content"
    assert model.params() == {"embedder": "hashing", "history_len": 20, "recency_half_life": 5.0}


def test_items_without_text_are_left_out(model: ContentModel) -> None:
    assert model.index_ is not None
    assert set(model.index_.ids) == set(CATALOGUE) - {"e1"}
    assert model.title("c1") == "Laugh Riot"
    assert model.title("e1") is None


def test_comedy_anchor_recalls_comedies_first_because_of_the_anchor(model: ContentModel) -> None:
    found = model.recall(RecallQuery(anchor_item_id="c1"), 4)
    assert set(ids_of(found[:2])) == COMEDIES - {"c1"}
    assert "c1" not in ids_of(found)
    assert all(r.because == "c1" for r in found)
    scores = [r.score for r in found]
    assert scores == sorted(scores, reverse=True)


def test_new_item_added_with_add_items_is_recalled_at_once(model: ContentModel) -> None:
    added = model.add_items(
        ["c4", "blank"], ["Comedy of Errors: a hilarious slapstick comedy", "  "], ["C4", None]
    )
    assert added == 1
    assert model.title("c4") == "C4"
    assert "c4" in ids_of(model.recall(RecallQuery(anchor_item_id="c2"), 3))
    # The new item can itself be an anchor.
    assert set(ids_of(model.recall(RecallQuery(anchor_item_id="c4"), 3))) == COMEDIES


def test_add_items_replaces_and_removes(model: ContentModel) -> None:
    # h1 is rewritten as a comedy: it must now follow comedy anchors, not horror ones.
    assert model.add_items(["h1"], ["hilarious slapstick comedy"], ["Not Scary"]) == 1
    assert "h1" in ids_of(model.recall(RecallQuery(anchor_item_id="c2"), 3))
    assert "h1" not in ids_of(model.recall(RecallQuery(anchor_item_id="h2"), 1))
    # An item whose text is now empty is taken out.
    assert model.add_items(["s2"], [""], [None]) == 0
    assert "s2" not in ids_of(model.recall(RecallQuery(anchor_item_id="s1"), 10))
    assert model.title("s2") is None
    with pytest.raises(ValueError, match="same length"):
        model.add_items(["x"], [], [])


def test_history_profile_explains_each_result_by_the_closest_history_item(
    model: ContentModel,
) -> None:
    found = model.recall(RecallQuery(history=("c1", "s1")), 10)
    by_id = {r.item_id: r.because for r in found}
    assert by_id["c2"] == "c1"
    assert by_id["c3"] == "c1"
    assert by_id["s2"] == "s1"


def test_excluded_and_history_items_are_never_returned(model: ContentModel) -> None:
    query = RecallQuery(session=("c3",), history=("c1", "s1"), exclude=frozenset({"c2"}))
    returned = set(ids_of(model.recall(query, 10)))
    assert returned
    assert not returned & {"c1", "c2", "c3", "s1"}
    anchored = RecallQuery(anchor_item_id="c1", history=("c3",), exclude=frozenset({"s2"}))
    returned = set(ids_of(model.recall(anchored, 10)))
    assert returned
    assert not returned & {"c1", "c3", "s2"}


def test_most_recent_history_weighs_most() -> None:
    model = ContentModel(embedder="hashing", recency_half_life=0.5).fit(training_data())
    assert ids_of(model.recall(RecallQuery(history=("s1", "c1")), 1)) == ["s2"]
    assert ids_of(model.recall(RecallQuery(history=("c1", "s1")), 1))[0] in COMEDIES


def test_history_len_caps_the_profile() -> None:
    model = ContentModel(embedder="hashing", history_len=1).fit(training_data())
    # Only the most recent indexed item counts (e1 has no vector and is skipped).
    found = model.recall(RecallQuery(history=("e1", "h1", "c1", "c2")), 1)
    assert ids_of(found) == ["h2"]
    assert found[0].because == "h1"


def test_no_usable_history_gives_nothing(model: ContentModel) -> None:
    assert model.recall(RecallQuery(), 5) == []
    assert model.recall(RecallQuery(history=("unknown", "e1")), 5) == []
    assert model.recall(RecallQuery(anchor_item_id="unknown"), 5) == []
    assert model.recall(RecallQuery(anchor_item_id="c1"), 0) == []
    # An unknown anchor falls back to the history.
    fallback = model.recall(RecallQuery(anchor_item_id="unknown", history=("h1",)), 1)
    assert ids_of(fallback) == ["h2"]


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ContentModel(embedder="hashing").recall(RecallQuery(anchor_item_id="c1"), 3)


def test_save_load_round_trip(model: ContentModel, tmp_path: Path) -> None:
    model.add_items(["c4"], ["a funny comedy"], ["C4"])
    model.save(tmp_path)
    loaded = ContentModel.load(tmp_path)
    assert loaded.params() == model.params()
    assert loaded.embedder_name_ == "hashing"
    for query in (
        RecallQuery(anchor_item_id="c1"),
        RecallQuery(history=("s1", "h1"), exclude=frozenset({"h2"})),
    ):
        assert loaded.recall(query, 5) == model.recall(query, 5)
    assert loaded.title("c4") == "C4"
    assert loaded.add_items(["c5"], ["comedy comedy"], [None]) == 1
    assert "c5" in ids_of(loaded.recall(RecallQuery(anchor_item_id="c4"), 3))


def test_load_without_the_saved_embedder_recalls_but_cannot_add(
    model: ContentModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.save(tmp_path)
    params = json.loads((tmp_path / "params.json").read_text())
    params["embedder_name"] = "minilm"  # as if trained where sentence-transformers ran
    (tmp_path / "params.json").write_text(json.dumps(params))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # and it is absent here
    loaded = ContentModel.load(tmp_path)
    query = RecallQuery(anchor_item_id="c1")
    assert loaded.recall(query, 3) == model.recall(query, 3)
    with pytest.raises(EmbedderUnavailable, match=r"'minilm'.*sentence_transformers"):
        loaded.add_items(["c9"], ["comedy"], [None])

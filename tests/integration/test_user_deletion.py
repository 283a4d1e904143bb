"""A deleted user is forgotten by what serving holds: the store purge and its audit entry
are one transaction, and every process following the audit log deletes the user's online
entries and sessions and drops their vector from its loaded models."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recloop.features.online import counters_key, session_key
from recloop.online.memory import MemoryOnlineStore
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.factors import ALSModel
from recloop.retrieval.interactions import Interactions, TrainingData
from recloop.retrieval.models import RecallQuery
from recloop.serving.deletions import DeletionFollower
from recloop.store import USER_DELETE, Store
from tests.factories import APP, T0, make_event

pytestmark = pytest.mark.integration

USERS = ["u1", "u2", "u1", "u2", "u1", "u3"]
ITEMS = ["a", "b", "c", "a", "b", "c"]


def _als() -> ALSModel:
    data = TrainingData(Interactions.from_records(USERS, ITEMS, [float(n) for n in range(6)]))
    return ALSModel(factors=4, iterations=3).fit(data)


def _knows(model: ALSModel, user: str) -> bool:
    return model.user_vector(RecallQuery(user_id=user, history=(), now_ts=0.0)) is not None


def _online() -> MemoryOnlineStore:
    online = MemoryOnlineStore()
    for user, session in (("u1", "s1"), ("u2", "s2")):
        online.hincr_many([(counters_key(APP, "u", user), "eng", 1.0)], ttl=timedelta(hours=1))
        online.push_capped(session_key(APP, session), ["a\tc1"], 10, ttl=timedelta(hours=1))
    return online


def test_a_deleted_user_is_forgotten_by_every_follower(apps: Store) -> None:
    apps.events.append(
        [
            make_event("e1", user_id="u1", session_id="s1"),
            make_event("e2", user_id="u1", session_id="s9"),
            make_event("e3", user_id="u2", session_id="s2"),
        ]
    )
    index, model, online, told = ModelIndex(), _als(), _online(), []
    index.publish(APP, ModelBundle("v1", {"als": model}))
    follower = DeletionFollower(apps.audit, online, [index], lambda a, u: told.append((a, u)))
    assert _knows(model, "u1")

    sessions = apps.users.forget_user(APP, "u1", "key-1", T0)
    follower.step()

    assert sessions == ("s1", "s9")
    [entry] = apps.audit.since(0, 10, USER_DELETE)
    assert (entry.app_id, entry.actor, entry.subject) == (APP, "key-1", "u1")
    assert apps.events.count(APP) == 1
    assert online.hgetall_many([counters_key(APP, "u", "u1")]) == [{}]
    assert online.get_lists([session_key(APP, "s1")]) == [[]]
    assert online.hgetall_many([counters_key(APP, "u", "u2")]) != [{}]  # others untouched
    assert not _knows(model, "u1")
    assert _knows(model, "u2")
    assert told == [(APP, {"u1"})]
    assert follower.forgotten(APP) == {"u1"}

    # Another process, started later, replays the log for the version it loaded.
    late_index, late_model = ModelIndex(), _als()
    late_index.publish(APP, ModelBundle("v1", {"als": late_model}))
    DeletionFollower(apps.audit, MemoryOnlineStore(), [late_index]).step()
    assert not _knows(late_model, "u1")


def test_deleting_a_user_never_stored_writes_no_audit_entry(apps: Store) -> None:
    assert apps.users.forget_user(APP, "nobody", "key-1", T0) is None
    assert apps.audit.since(0, 10) == []


def test_a_forgotten_users_vector_is_not_saved_and_the_others_are_unchanged(
    tmp_path: Path,
) -> None:
    model = _als()
    before = {
        u: model.user_vector(RecallQuery(user_id=u, history=(), now_ts=0.0)) for u in ("u2", "u3")
    }
    assert model.forget_users(["u1", "never-seen"]) == 1
    model.save(tmp_path)

    loaded = ALSModel.load(tmp_path)
    assert not _knows(loaded, "u1")
    ids = (tmp_path / "ids.json").read_text()
    assert '"u1"' not in ids
    for user, vector in before.items():
        again = loaded.user_vector(RecallQuery(user_id=user, history=(), now_ts=0.0))
        assert again is not None
        assert vector is not None
        np.testing.assert_array_equal(again, vector)

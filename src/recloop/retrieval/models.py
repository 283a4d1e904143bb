"""The trained-source role: a model fitted offline that recalls items for a request.

Models follow the scikit-learn habit: construct with hyper-parameters, ``fit(data)``, then
``save(path)`` / ``load(path)``. Nothing trains at request time. The service wraps each
loaded model in a ``ModelSource`` (``retrieval.model_source``), which turns a request into a
``RecallQuery`` and the answers into candidates with reasons.

Each model class carries everything recloop needs to know about its kind: the name saved
artifacts use, the sources it serves, ``fit``, ``save``/``load`` and its hyper-parameter
search space. ``retrieval.registry`` lists the classes once; loading, training, tuning and
serving all read that list.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from recloop.retrieval.interactions import TrainingData

if TYPE_CHECKING:
    # Only for the annotation: retrieval is on the request path, and importing Optuna there
    # would cost every process start the tuner's import time.
    from optuna.trial import BaseTrial

#: What a source feeds its model: the whole history (with the session first), or only the
#: current session's items.
Seeds = Literal["history", "session"]

#: How many of a user's most recent distinct items a request hands the sources (serving)
#: and a validation case holds (training): the same number, so validation asks what
#: serving will ask.
MAX_HISTORY = 200


def scalar_attributes(attributes: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """A user's scalar attributes as (name, value) text pairs: what segment sources match."""
    return tuple(
        (name, str(value))
        for name, value in (attributes or {}).items()
        if isinstance(value, str | int | float | bool)
    )


@dataclass(frozen=True, slots=True)
class RecallQuery:
    """What a trained source sees of a request."""

    user_id: str | None = None
    history: tuple[str, ...] = ()  # items the user engaged with, most recent first
    session: tuple[str, ...] = ()  # items of the current session, most recent first
    anchor_item_id: str | None = None  # the item a "similar" surface is anchored on
    now_ts: float | None = None  # seconds since the epoch
    device: str | None = None
    exclude: frozenset[str] = frozenset()  # never return these
    attributes: tuple[tuple[str, str], ...] = ()  # what the user told us (cold users only)


@dataclass(frozen=True, slots=True)
class Recalled:
    """One recalled item; ``because`` names the history item that explains it, if any."""

    item_id: str
    score: float
    because: str | None = None
    reason: str | None = None  # a reason of the model's own, when no history item explains it


class RetrievalModel(Protocol):
    """A trained candidate source. ``kind`` names the class in saved artifacts.

    ``serves`` names the candidate sources a surface may configure on this model, and what
    each feeds it: usually one source named after the kind, fed the history.
    """

    kind: ClassVar[str]
    serves: ClassVar[Mapping[str, Seeds]]

    def fit(self, data: TrainingData) -> Self:
        """Learn from the training data; returns self."""
        ...

    def recall(self, query: RecallQuery, k: int) -> list[Recalled]:
        """At most ``k`` items, best first, none of them in ``query.exclude``.

        An unknown user or item gets ``[]`` (or what the history alone supports), never an
        error.
        """
        ...

    def save(self, path: Path) -> None:
        """Write the model into the (existing, empty) directory ``path``."""
        ...

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        ...

    def params(self) -> dict[str, Any]:
        """The hyper-parameters, as recorded beside the artifact."""
        ...

    @classmethod
    def search_space(cls, trial: BaseTrial) -> dict[str, Any]:
        """The hyper-parameters tuning searches, suggested on an Optuna trial
        (define-by-run); the others keep the constructor's defaults."""
        ...


@runtime_checkable
class KnowsUsers(Protocol):
    """A model that keeps something learned per user (a trained user vector)."""

    def forget_users(self, user_ids: Collection[str]) -> int:
        """Drop what was learned of these users, in memory and in what ``save`` writes next:
        they are answered as users the model never saw. Returns how many it knew."""
        ...


@runtime_checkable
class QueryTunable(Protocol):
    """A model with settings that shape its answers but not its fit (how much of the history
    it reads, how fast older items fade): training picks them on validation after one fit."""

    def query_options(self) -> list[dict[str, Any]]:
        """The settings to try, the current ones first."""
        ...

    def with_query(self, options: Mapping[str, Any]) -> Self:
        """The same fitted model answering with ``options``."""
        ...

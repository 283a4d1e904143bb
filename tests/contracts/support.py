"""What the contract checks share: the suite's parameters, fitted models and their cost."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from recloop.retrieval.models import RetrievalModel
from recloop.training.sources import fit
from tests.contracts.world import World

#: Hyper-parameters that suit a world this small and keep the suite fast; every other
#: parameter is the class default.
SUITE_PARAMS: dict[str, dict[str, Any]] = {
    # MiniLM would load a 90 MB model: hashing is the embedder a fresh install falls back to.
    "content": {"embedder": "hashing"},
    # The world has two tastes. More factors fit noise, which ALS's closed-form fold-in of a
    # three-item history then reads (at the default 64: 2-4 of 5 from the other group).
    "als": {"factors": 2},
    # implicit's BPR updates from every core at once: reproducible under its seed on one.
    "bpr": {"threads": 1},
    # Three passes, in batches small enough for ten steps each, learn this world as the
    # defaults' ten passes do.
    "two-tower": {"epochs": 3, "batch_size": 128},
}

#: (component kind, name) -> what it cost: filled by the checks, printed at the end of a run.
COSTS: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)

#: Milliseconds per call that no component may exceed on the checkerboard world: ten times
#: the request path's largest stage budget (5 ms), for a busy test machine. Tiny inputs make
#: this a bound on fixed costs: a model loaded per call, a query per item.
CALL_MS_BOUND = 50.0
#: Seconds a trained model may take to fit the world (about 1,200 interactions).
FIT_S_BOUND = 30.0


def suite_params(kind: str) -> dict[str, Any]:
    """The parameters the suite fits ``kind`` with."""
    return dict(SUITE_PARAMS.get(kind, {}))


def counted(kind: str, n: int) -> str:
    """``n`` components of ``kind``, in words ("4 exploration policies")."""
    if n == 1:
        return f"1 {kind}"
    return f"{n} {kind[:-1]}ies" if kind.endswith("y") else f"{n} {kind}s"


def per_call_ms(call: Callable[[], object], calls: int = 20) -> float:
    """The median wall time of ``call``, in milliseconds, after one warm-up call."""
    call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


class Fitted:
    """Models fitted once per session, by kind (a failed fit is re-raised each time)."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._models: dict[str, RetrievalModel | Exception] = {}

    def __call__(self, kind: str) -> RetrievalModel:
        """The model of ``kind`` fitted on the world, with the suite's parameters."""
        if kind not in self._models:
            try:
                model, seconds = fit(kind, suite_params(kind), self._world.training_data)
            except Exception as exc:
                self._models[kind] = exc
            else:
                self._models[kind] = model
                COSTS[("trained model", kind)]["fit_s"] = seconds
        found = self._models[kind]
        if isinstance(found, Exception):
            raise found
        return found

"""Serves a trained model as a candidate source, with a reason a person can read."""

from __future__ import annotations

from recloop.domain import Candidate
from recloop.retrieval.bundle import ModelBundle, ModelIndex
from recloop.retrieval.models import Recalled, RecallQuery, Seeds, scalar_attributes
from recloop.retrieval.protocols import RetrievalQuery, SourceNotLoaded


class ModelSource:
    """A candidate source backed by the model of the same name in the app's live bundle.

    Before the first model version (or when this version lacks the model) it recalls
    nothing, and the surface's other sources and fallbacks serve. When the version has the
    model but it failed to load, it raises ``SourceNotLoaded``: the request is served
    without it and says so.

    Args:
        name: the source name, which is also the model's name in the bundle.
        models: where the live bundles are published.
        seeds: ``"session"`` recalls only from the current session's items.
        because: the reason when a history or anchor item explains the candidate.
        reason: the reason otherwise.
    """

    #: It computes in this process's memory and never waits on I/O: the pipeline may run it
    #: in the request's thread while it stays cheap.
    in_memory = True

    def __init__(
        self,
        name: str,
        models: ModelIndex,
        *,
        seeds: Seeds = "history",
        model: str | None = None,
        because: str = "Because you watched {title}",
        similar: str = "Similar to {title}",
        reason: str = "Picked for you",
    ) -> None:
        self.name = name
        self._model_name = model or name
        self._models = models
        self._seeds = seeds
        self._because = because
        self._similar = similar
        self._reason = reason

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        """At most ``k`` candidates from the model, best first."""
        bundle = self._models.get(query.app_id)
        model = bundle.model(self._model_name) if bundle is not None else None
        if bundle is None or model is None:
            if bundle is not None and self._model_name in bundle.failed:
                raise SourceNotLoaded(
                    f"model {self._model_name!r} of version {bundle.version} failed to load"
                )
            return []
        if self._seeds == "session":
            if not query.session_items:
                return []
            recall = RecallQuery(
                user_id=query.user_id,
                session=query.session_items,
                now_ts=query.now.timestamp(),
                device=query.device,
                exclude=query.excluded_item_ids,
            )
        else:
            recall = RecallQuery(
                user_id=query.user_id,
                history=query.history,
                session=query.session_items,
                anchor_item_id=query.anchor_item_id,
                now_ts=query.now.timestamp(),
                device=query.device,
                exclude=query.excluded_item_ids,
                attributes=_attributes(query),
            )
        # Many candidates share a reason (the same history item explains them): format each
        # reason once.
        reasons: dict[tuple[str | None, str | None], str] = {}
        out: list[Candidate] = []
        for r in model.recall(recall, k):
            reason = reasons.get((r.because, r.reason))
            if reason is None:
                reason = self._explain(r, bundle, query)
                reasons[(r.because, r.reason)] = reason
            out.append(Candidate(r.item_id, self.name, r.score, reason))
        return out

    def _explain(self, recalled: Recalled, bundle: ModelBundle, query: RetrievalQuery) -> str:
        if recalled.because is None:
            return recalled.reason or self._reason
        title = bundle.titles.get(recalled.because) or recalled.because
        template = self._similar if recalled.because == query.anchor_item_id else self._because
        return template.format(title=title)


def _attributes(query: RetrievalQuery) -> tuple[tuple[str, str], ...]:
    """The user's scalar attributes, and the request's locale, as (name, value) pairs."""
    pairs = list(scalar_attributes(query.user_attributes))
    if query.locale is not None and not any(name == "locale" for name, _ in pairs):
        pairs.append(("locale", query.locale))
    return tuple(pairs)

"""Classification, reranking and embeddings of texts: each request's texts within the
route's limits, the engine's answers in the route's shape."""

from __future__ import annotations

from typing import TypeVar

from endpointgen.runtime import http
from endpointgen.runtime.tasks.calls import Calls
from endpointgen.runtime.tasks.checks import MAX_CHARS, MAX_ITEMS, check_texts
from endpointgen.runtime.tasks.schemas import (
    MAX_LABELS,
    Classification,
    ClassifyRequest,
    EmbedRequest,
    EmbedResponse,
    Entities,
    Ranked,
    RerankRequest,
    ZeroShotRequest,
    ZeroShotResult,
)

Answer = TypeVar("Answer")


def texts_of(body: ClassifyRequest, max_items: int, max_chars: int) -> list[str]:
    """A request's `text` or `texts`, within the route's limits (422 past them)."""
    texts = body.texts if body.texts is not None else [body.text or ""]
    check_texts("texts" if body.texts is not None else "text", texts, max_items, max_chars)
    return texts


def one_or_all(body: ClassifyRequest, results: list[Answer]) -> Answer | list[Answer]:
    """A list of answers for `texts`, the one answer for `text`."""
    return results if body.texts is not None else results[0]


class Classifying(Calls):
    """A model's routes on texts: classify, zero-shot, entities, rerank and embed."""

    async def classify(
        self, body: ClassifyRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> Classification | list[Classification]:
        found = await self.run(texts_of(body, max_items, max_chars))
        return one_or_all(body, [Classification(**r) for r in found])

    async def zero_shot(
        self, body: ZeroShotRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> ZeroShotResult | list[ZeroShotResult]:
        """Each text scored against the request's labels, best first."""
        texts = texts_of(body, max_items, max_chars)
        check_texts("labels", body.labels, MAX_LABELS, 200)
        settings = (tuple(body.labels), body.multi_label, body.hypothesis_template)
        found = await self.run([(text, *settings) for text in texts])
        return one_or_all(body, [ZeroShotResult(**r) for r in found])

    async def entities(
        self, body: ClassifyRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> Entities | list[Entities]:
        """The named entities of each text, tokens of one entity grouped into one span."""
        found = await self.run(texts_of(body, max_items, max_chars))
        return one_or_all(body, [Entities(entities=spans) for spans in found])

    async def rerank(
        self, body: RerankRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> list[Ranked]:
        """The texts by relevance to the query, best first (`top_n` of them)."""
        check_texts("texts", body.texts, max_items, max_chars)
        check_texts("query", [body.query], 1, max_chars)
        how = (body.truncate is not False, body.truncation_direction.lower())
        scored = await self.run([(body.query, text, *how) for text in body.texts])
        for i, answer in enumerate(scored):
            if isinstance(answer, str):  # too long, and not to be cut
                why = f"texts[{i}]: {answer}; send `truncate: true` to cut it"
                raise http.reject("texts", why)
        order = sorted(range(len(scored)), key=lambda i: -scored[i][0])[: body.top_n]
        pick = 0 if body.raw_scores else 1  # (logit, 0-1 score)
        return [
            Ranked(
                index=i,
                score=scored[i][pick],
                text=body.texts[i] if body.return_text else None,
            )
            for i in order
        ]

    async def embed(
        self, body: EmbedRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> EmbedResponse:
        check_texts("texts", body.texts, max_items, max_chars)
        vectors = await self.run(body.texts)
        return EmbedResponse(embeddings=vectors, dim=len(vectors[0]))

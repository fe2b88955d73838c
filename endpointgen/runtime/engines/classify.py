"""Text classifiers: a sequence's label (`Classifier`), labels chosen at request time
(`ZeroShotClassifier`), named entities (`TokenClassifier`), and query-text relevance
(`Reranker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from endpointgen.runtime.engine import Engine, top_labels


class Classifier(Engine):
    """A sequence classifier: the top label and its softmax score for each text."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.model = self.weights(AutoModelForSequenceClassification)
        self.labels = self.model.config.id2label

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            logits = self.model(**batch.to(self.device)).logits
        return top_labels(logits, self.labels)


class Pipelined(Engine):
    """A transformers pipeline over the model: what `pipeline(task)` answers, on the
    engine's device and dtype, batched as the requests come."""

    task = ""
    model_kind = "AutoModelForSequenceClassification"

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import transformers

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(transformers.AutoTokenizer)
        self.model = self.weights(getattr(transformers, self.model_kind))
        device = None if self.spread else self.device
        make: Any = transformers.pipeline
        self.pipe = make(self.task, model=self.model, tokenizer=self.tokenizer, device=device)


class ZeroShotClassifier(Pipelined):
    """Zero-shot classification with an NLI model: each text against candidate labels.
    Requests with the same labels and settings share one pipeline call."""

    task = "zero-shot-classification"

    def __call__(self, items: list[tuple[str, tuple[str, ...], bool, str]]) -> list[Any]:
        groups: dict[tuple[tuple[str, ...], bool, str], list[int]] = {}
        for i, (_, labels, multi, template) in enumerate(items):
            groups.setdefault((labels, multi, template), []).append(i)
        out: list[Any] = [None] * len(items)
        for (labels, multi, template), where in groups.items():
            texts = [items[i][0] for i in where]
            with self.lock, self.torch.inference_mode():
                found = self.pipe(
                    texts,
                    candidate_labels=list(labels),
                    multi_label=multi,
                    hypothesis_template=template,
                    batch_size=len(texts) * len(labels),  # one forward pass for all
                )
            for i, result in zip(where, found, strict=True):
                scores = [float(s) for s in result["scores"]]
                best = {"label": result["labels"][0], "score": scores[0]}
                out[i] = {**best, "labels": list(result["labels"]), "scores": scores}
        return out


class TokenClassifier(Pipelined):
    """Named entities: token labels grouped into spans (IOB tags joined, as the
    pipeline's `simple` aggregation does), with character offsets into the text."""

    task = "token-classification"
    model_kind = "AutoModelForTokenClassification"

    def __call__(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        with self.lock, self.torch.inference_mode():
            found = self.pipe(texts, aggregation_strategy="simple", batch_size=len(texts))
        return [
            [
                {
                    "entity_group": str(e["entity_group"]),
                    "score": float(e["score"]),
                    "word": str(e["word"]),
                    "start": int(e["start"]),
                    "end": int(e["end"]),
                }
                for e in entities
            ]
            for entities in found
        ]


# What a reranker is asked about one text: (query, text, truncate, side). `truncate`
# False: a pair longer than the model reads is refused, not cut; `side` is where a cut
# pair loses tokens ("left" or "right"). A bare (query, text) is cut at the right.
Pair = tuple[str, str] | tuple[str, str, bool, str]
ROBERTA_LIKE = frozenset({"roberta", "xlm-roberta", "camembert"})  # positions offset


def longest_input(config: Any, tokenizer: Any) -> int | None:
    """The most tokens the model reads in one input, as Text Embeddings Inference counts
    them: its position embeddings (less the padding offset RoBERTa's kind keeps), and the
    tokenizer's `model_max_length` when it states one (unset, it is a huge number)."""
    limits: list[int] = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", None) in ROBERTA_LIKE:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        limits.append(positions)
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < 10**9:
        limits.append(stated)
    return min(limits) if limits else None


class Reranker(Classifier):
    """A cross-encoder: a sequence classifier reading each (query, text) pair together,
    one relevance logit. Answers (logit, score) for each pair: the score is its sigmoid,
    or for a model with several labels the softmax of the last. A pair longer than the
    model reads is cut to `max_length`, the longer of query and text losing tokens first
    from its `side` (TEI's `truncate`), or, asked not to cut it, answers why not (a str)
    instead, and is not run."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        super().__init__(source, revision, dtype)
        self.max_length = longest_input(self.model.config, self.tokenizer)

    def __call__(self, pairs: list[Pair]) -> list[tuple[float, float] | str]:  # type: ignore[override]
        asked = [(p[0], p[1], *(p[2:] or (True, "right"))) for p in pairs]
        out: list[tuple[float, float] | str] = ["" for _ in pairs]
        with self.lock, self.torch.inference_mode():
            for i, reason in self._too_long([(i, p) for i, p in enumerate(asked) if not p[2]]):
                out[i] = reason
            for side in ("right", "left"):
                run = [i for i, p in enumerate(asked) if p[3].lower() == side and not out[i]]
                if run:
                    scored = self._scored([asked[i][:2] for i in run], side)
                    for i, answer in zip(run, scored, strict=True):
                        out[i] = answer
        return out

    def _too_long(
        self, pairs: list[tuple[int, tuple[str, str, bool, str]]]
    ) -> list[tuple[int, str]]:
        """The pairs (by index) that are longer than the model reads, and why."""
        if not pairs or self.max_length is None:
            return []
        queries, texts = [p[0] for _, p in pairs], [p[1] for _, p in pairs]
        lengths = [len(ids) for ids in self.tokenizer(queries, texts)["input_ids"]]
        return [
            (i, f"{n} tokens with the query; the model reads at most {self.max_length}")
            for (i, _), n in zip(pairs, lengths, strict=True)
            if n > self.max_length
        ]

    def _scored(self, pairs: list[tuple[str, str]], side: str) -> list[tuple[float, float]]:
        queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
        self.tokenizer.truncation_side = side
        batch = self.tokenizer(
            queries,
            texts,
            padding=True,
            truncation="longest_first" if self.max_length else False,
            max_length=self.max_length,
            return_tensors="pt",
        )
        logits = self.model(**batch.to(self.device)).logits.float()
        if logits.shape[1] == 1:
            raw = logits[:, 0]
            score = raw.sigmoid()
        else:
            raw = logits[:, -1]
            score = logits.softmax(dim=-1)[:, -1]
        return list(zip(raw.cpu().tolist(), score.cpu().tolist(), strict=True))

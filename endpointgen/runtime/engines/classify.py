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


class Reranker(Classifier):
    """A cross-encoder: a sequence classifier reading each (query, text) pair together,
    one relevance logit. Answers (logit, score): the score is its sigmoid, or for a model
    with several labels the softmax of the last."""

    def __call__(self, pairs: list[tuple[str, str]]) -> list[tuple[float, float]]:  # type: ignore[override]
        queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
        with self.lock, self.torch.inference_mode():
            batch = self.tokenizer(
                queries, texts, padding=True, truncation=True, return_tensors="pt"
            )
            logits = self.model(**batch.to(self.device)).logits.float()
        if logits.shape[1] == 1:
            raw = logits[:, 0]
            score = raw.sigmoid()
        else:
            raw = logits[:, -1]
            score = logits.softmax(dim=-1)[:, -1]
        return list(zip(raw.cpu().tolist(), score.cpu().tolist(), strict=True))

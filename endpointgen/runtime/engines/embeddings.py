"""Embeddings: sentences as vectors (`Embedder`), and texts and images in one space
(`ImageTextEmbedder`, CLIP-style)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from endpointgen.runtime.engine import Engine

POOLING_MODES = {  # sentence-transformers' Pooling config keys -> how we pool
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}


class Embedder(Engine):
    """Sentence embeddings, pooled as the model's sentence-transformers config says (the
    `Pooling` module of `modules.json`: CLS, mean, max or last token; L2-normalised when
    a `Normalize` module follows). A model without that config: mean pooling under the
    attention mask, L2-normalised."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.model = self.weights(AutoModel)
        self.pooling, self.normalize = self.pooling_config()

    def json_file(self, name: str) -> Any:
        """A JSON file of the model (a local folder's, or from the Hub), or None."""
        from transformers.utils.hub import cached_file

        found = cached_file(
            self.source,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **self.options,
        )
        return json.loads(Path(found).read_text(encoding="utf-8")) if found else None

    def pooling_config(self) -> tuple[str, bool]:
        """(pooling, normalize) from `modules.json` and its Pooling module's config."""
        modules = self.json_file("modules.json")
        if not isinstance(modules, list):
            return "mean", True
        kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
        normalize = "Normalize" in kinds
        pooling = kinds.get("Pooling")
        if pooling is None:
            return "mean", normalize
        folder = str(pooling.get("path") or "").strip("/")
        config = self.json_file(f"{folder}/config.json" if folder else "config.json") or {}
        chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
        others = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
        if len(chosen) != 1 or len(others) != 1:
            raise ValueError(
                f"pooling {', '.join(others) or 'none'} is not supported "
                "(one of: cls, mean, max or last token)"
            )
        return chosen[0], normalize

    def count_tokens(self, texts: list[str]) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.tokenizer(texts)["input_ids"])

    def __call__(self, texts: list[str]) -> list[list[float]]:
        torch = self.torch
        with self.lock, torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state
            pooled = self.pool(hidden, batch["attention_mask"]).float()
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        vectors: list[list[float]] = pooled.cpu().tolist()
        return vectors

    def pool(self, hidden: Any, attention: Any) -> Any:
        """One vector per text from its token vectors, padding left out."""
        torch = self.torch
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            if self.tokenizer.padding_side == "left":
                return hidden[:, -1]
            last = attention.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = attention.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class ImageTextEmbedder(Engine):
    """A CLIP-style model: texts and images into one space, L2-normalised, so a text's
    vector can be compared with an image's. A batch may mix both."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModel)

    def __call__(self, items: list[Any]) -> list[list[float]]:
        torch = self.torch
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        images = [i for i, item in enumerate(items) if not isinstance(item, str)]
        out: list[list[float]] = [[] for _ in items]
        with self.lock, torch.inference_mode():
            if texts:
                batch = self.tokenizer(
                    [items[i] for i in texts], padding=True, truncation=True, return_tensors="pt"
                )
                found = self.model.get_text_features(**batch.to(self.device))
                self._place(out, texts, found)
            if images:
                pixels = self.processor(images=[items[i] for i in images], return_tensors="pt")
                found = self.model.get_image_features(**pixels.to(self.device))
                self._place(out, images, found)
        return out

    def _place(self, out: list[list[float]], where: list[int], found: Any) -> None:
        vectors = getattr(found, "pooler_output", found)  # a tensor, or an output object
        vectors = self.torch.nn.functional.normalize(vectors.float(), p=2, dim=-1)
        for i, vector in zip(where, vectors.cpu().tolist(), strict=True):
            out[i] = vector

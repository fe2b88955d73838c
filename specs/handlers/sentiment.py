"""The handler behind specs/sentiment.yaml: it gets the body and the loaded model."""

from typing import Any


def predict(data: dict, model: Any) -> dict:
    """`model` is the app's classifier: a list of texts in, a list of {label, score} out."""
    (best,) = model([data["text"]])
    return {"sentiment": best["label"], "confidence": round(best["score"], 4)}

"""The handler behind specs/batch.yaml: plain Python, bundled into the Modal image."""


def process(data: dict) -> dict:
    """`data` holds the validated body: texts and model."""
    results = []
    for text in data["texts"]:
        if not text:
            raise ValueError("empty text")  # mapped to 400 by the spec's `errors:`
        results.append(text.upper() if data["model"] == "shout" else text)
    return {"results": results, "count": len(results)}

"""Images in: their label (`ImageClassifier`), the objects in them (`ObjectDetector`),
and the uploaded bytes read as an image within bounds (`open_image`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from endpointgen.runtime.engine import Engine, top_labels

MAX_PIXELS = 40_000_000  # about 40 MP: 7000 x 5700, beyond any camera a route expects
MAX_ASPECT = 20  # longer side / shorter side: a panorama is under 10


def open_image(content: bytes, max_pixels: int = MAX_PIXELS) -> Any:
    """The uploaded bytes as an RGB image; a 422 when they are not an image, a 413 when
    its header declares more than `max_pixels` (checked before anything is decoded: a
    20 KB PNG can declare 13000 x 13000 pixels, 2.7 GB once decoded), a 422 when its
    longer side is more than `MAX_ASPECT` times its shorter, also from the header.
    Image processors scale the shorter side to their size and the longer with it: a
    1,000,000 x 1 image becomes 224,000,000 x 224 (9.7 GB) for CLIP, and 20,000 x 1
    becomes 0 pixels high for a detector; within `MAX_ASPECT` a processor's input stays
    within 20 times its square."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    413, f"the image is {width}x{height} pixels; at most {max_pixels} are accepted"
                )
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise HTTPException(
                    422,
                    f"the image is {width}x{height} pixels; its longer side may be at most "
                    f"{MAX_ASPECT} times its shorter",
                )
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(422, "the file is not a readable image") from None


class ImageClassifier(Engine):
    """An image classifier: the top label and its softmax score for each image."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        super().__init__(source, revision, dtype)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModelForImageClassification)
        self.labels = self.model.config.id2label

    def __call__(self, images: list[Any]) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.processor(images=images, return_tensors="pt").to(self.device)
            logits = self.model(**batch).logits
        return top_labels(logits, self.labels)


class ObjectDetector(Engine):
    """An object detector (DETR, YOLOS, ...): each object found with a score over
    `THRESHOLD`, best first, as `{label, score, box: {xmin, ymin, xmax, ymax}}` in the
    image's own pixels, as transformers' object-detection pipeline answers.

    One image per forward pass even in a batch: these models predict boxes relative to
    their input, which a batch pads to its largest image."""

    THRESHOLD = 0.5

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        super().__init__(source, revision, dtype)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModelForObjectDetection)
        self.labels = self.model.config.id2label

    def __call__(self, images: list[Any]) -> list[list[dict[str, Any]]]:
        return [self.detect(image) for image in images]

    def detect(self, image: Any) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.processor(images=[image], return_tensors="pt").to(self.device)
            outputs = self.model(**batch)
            (found,) = self.processor.post_process_object_detection(
                outputs, threshold=self.THRESHOLD, target_sizes=[(image.height, image.width)]
            )
        objects = []
        for score, label, box in zip(
            found["scores"].tolist(),
            found["labels"].tolist(),
            found["boxes"].int().tolist(),
            strict=True,
        ):
            corners = dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
            name = str(self.labels.get(int(label), label))
            objects.append({"label": name, "score": float(score), "box": corners})
        return sorted(objects, key=lambda found: -found["score"])

"""Images and audio: drawing an image from text, and the routes that take an uploaded
image or audio file."""

from __future__ import annotations

import asyncio
import base64
import math
import secrets
import threading
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.tasks.calls import Calls
from endpointgen.runtime.tasks.checks import DRAWN_PIXELS, DRAWN_STEPS, MAX_CHARS
from endpointgen.runtime.tasks.schemas import IMAGE_TYPES, ImageRequest, ImageResponse


async def decoded(content: bytes, max_pixels: int | None) -> Any:
    """An uploaded image, decoded in a worker thread (a large one never holds up the event
    loop); 413 when it declares more than `max_pixels` (None: `engines.MAX_PIXELS`)."""
    from endpointgen.runtime.engines.vision import MAX_PIXELS, open_image

    cap = MAX_PIXELS if max_pixels is None else max_pixels
    return await asyncio.to_thread(open_image, content, cap)


class Media(Calls):
    """A model's routes on images and audio: `draw`, and those that take an upload."""

    async def draw(
        self,
        body: ImageRequest,
        max_pixels: int = DRAWN_PIXELS,
        max_steps: int = DRAWN_STEPS,
        max_chars: int = MAX_CHARS,
    ) -> http.Response:
        """An image from a text-to-image model (`engines.ImageGenerator`): its bytes as
        `format` says, or `ImageResponse` with `base64`. Without a seed one is drawn and
        given back (`X-Seed`, or `seed`), so a good image can be made again. A request
        over the route's ceilings (size, steps, prompt length) is a 422 before any work."""
        if body.width * body.height > max_pixels:
            side = math.isqrt(max_pixels) // 8 * 8
            raise http.reject(
                "width",
                f"width x height must be at most {max_pixels} pixels (e.g. {side}x{side})",
            )
        if body.steps > max_steps:
            raise http.reject("steps", f"must be at most {max_steps}")
        for field in ("prompt", "negative_prompt"):
            text = getattr(body, field)
            if text is not None and len(text) > max_chars:
                raise http.reject(field, f"must be at most {max_chars} characters")
        if body.seed is None:
            body = body.model_copy(update={"seed": secrets.randbelow(2**32)})
        # An engine here stops denoising when its caller goes (a cancelled job); one in
        # another container is stopped by Modal cancelling its input.
        stop = None if hasattr(self.engine, "ask") else threading.Event()
        try:
            content = await self.ask("__call__", body, *([stop] if stop else []))
        except asyncio.CancelledError:
            if stop is not None:
                stop.set()
            raise
        media = IMAGE_TYPES[body.format]
        if body.base64:
            encoded = base64.b64encode(content).decode()
            answer = ImageResponse(image=encoded, media_type=media, seed=int(body.seed or 0))
            return http.JSONResponse(answer.model_dump())
        return http.Response(content, media_type=media, headers={"X-Seed": str(body.seed)})

    async def classify_image(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The image's top label; 413 when it declares more than `max_pixels` (None: the
        default cap, `engines.MAX_PIXELS`)."""
        (result,) = await self.run([await decoded(content, max_pixels)])
        return dict(result)

    async def detect_objects(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The objects found in the image (`engines.ObjectDetector`); 413 past
        `max_pixels`, as `classify_image`."""
        (objects,) = await self.run([await decoded(content, max_pixels)])
        return {"objects": objects}

    async def transcribe(self, content: bytes, timestamps: bool = False) -> dict[str, Any]:
        """The speech in an audio file as `{text, seconds}`, and `chunks` of it with their
        times when `timestamps` (`engines.SpeechRecognizer`); decoded in the model's own
        worker, 422 when it is no audio."""
        (result,) = await self.run([(content, timestamps)])
        return dict(result)

    async def embed_image(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The image's vector in the model's text-and-image space (`embed` gives texts'),
        and its dimension; 413 past `max_pixels`, as `classify_image`."""
        (vector,) = await self.run([await decoded(content, max_pixels)])
        return {"embedding": vector, "dim": len(vector)}

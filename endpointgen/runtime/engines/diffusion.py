"""Text to image with `diffusers` (`ImageGenerator`)."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any

from endpointgen.runtime.engine import Engine
from endpointgen.runtime.handlers import image_bytes


class ImageGenerator(Engine):
    """Text to image with `diffusers`: whatever pipeline the model's `model_index.json`
    names (Stable Diffusion, SDXL, ...), on the engine's device and dtype. One image per
    call, seeded by the request, encoded as it asks."""

    ROOT_FILE = "model_index.json"  # a diffusers pipeline: its parts are in folders

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from diffusers import AutoPipelineForText2Image

        super().__init__(source, revision, dtype)
        dtype = self.dtype
        if dtype == "auto":  # half precision where it is fast
            dtype = self.torch.float16 if self.device == "cuda" else self.torch.float32
        load: Any = AutoPipelineForText2Image.from_pretrained  # untyped in diffusers
        self.pipe = self.hub_load(load, dtype=dtype, **self.variant)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.accepts = set(inspect.signature(self.pipe.__call__).parameters)

    def __call__(self, request: Any, stop: threading.Event | None = None) -> bytes:
        """`request`: a `tasks.ImageRequest` with its seed set. Once `stop` is set (no one
        waits for the image any more) the denoising ends at the next step, and the
        answer is empty."""

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            if stop is not None and stop.is_set():
                pipe._interrupt = True  # diffusers' own way out: the remaining steps skip
            return tensors

        options: dict[str, Any] = {}
        if stop is not None and "callback_on_step_end" in self.accepts:
            options["callback_on_step_end"] = step_end
        generator = self.torch.Generator(device="cpu").manual_seed(int(request.seed))
        with self.lock, self.torch.inference_mode():
            image = self.pipe(
                request.prompt,
                negative_prompt=request.negative_prompt,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generator,
                **options,
            ).images[0]
        if stop is not None and stop.is_set():
            return b""
        return image_bytes(image, f"image/{request.format}")

"""The engines that run a model, one per task: transformers on torch (diffusers for
images), loaded once per container.

`engine` holds what they share; text generation is `text`; the others are here by what
they take in: `embeddings`, `classify` (texts), `vision` (images), `speech` (audio) and
`diffusion` (text to image). `ENGINES` names the engine of each task.

torch and transformers are imported when an engine is made, inside `@modal.enter`, never
when this package is: building, deploying and `endpointgen openapi` need neither.
"""

from __future__ import annotations

from endpointgen.runtime.engine import (
    Engine,
    Loading,
    best_device,
    device_and_dtype,
    hub_cached,
    placed,
    top_labels,
)
from endpointgen.runtime.engines.classify import (
    Classifier,
    Pipelined,
    Reranker,
    TokenClassifier,
    ZeroShotClassifier,
)
from endpointgen.runtime.engines.diffusion import ImageGenerator
from endpointgen.runtime.engines.embeddings import POOLING_MODES, Embedder, ImageTextEmbedder
from endpointgen.runtime.engines.speech import (
    AUDIO_BLOCK,
    MAX_CHANNELS,
    MAX_RATE,
    MAX_SAMPLES,
    MIN_RATE,
    SpeechRecognizer,
    read_audio,
)
from endpointgen.runtime.engines.vision import (
    MAX_ASPECT,
    MAX_PIXELS,
    ImageClassifier,
    ObjectDetector,
    open_image,
)
from endpointgen.runtime.text.interface import (
    GREEDY_BELOW,
    TEXT_ENGINE,
    Generation,
    OnText,
    TextBase,
    TextEngine,
    Watcher,
)
from endpointgen.runtime.text.transformers import Seq2SeqGenerator, TextGenerator

__all__ = [
    "AUDIO_BLOCK",
    "ENGINES",
    "GREEDY_BELOW",
    "MAX_ASPECT",
    "MAX_CHANNELS",
    "MAX_PIXELS",
    "MAX_RATE",
    "MAX_SAMPLES",
    "MIN_RATE",
    "POOLING_MODES",
    "TEXT_ENGINE",
    "Classifier",
    "Embedder",
    "Engine",
    "Generation",
    "ImageClassifier",
    "ImageGenerator",
    "ImageTextEmbedder",
    "Loading",
    "ObjectDetector",
    "OnText",
    "Pipelined",
    "Reranker",
    "Seq2SeqGenerator",
    "SpeechRecognizer",
    "TextBase",
    "TextEngine",
    "TextGenerator",
    "TokenClassifier",
    "Watcher",
    "ZeroShotClassifier",
    "best_device",
    "device_and_dtype",
    "hub_cached",
    "open_image",
    "placed",
    "read_audio",
    "top_labels",
]

ENGINES: dict[str, type[Engine]] = {
    "text-generation": TextGenerator,
    "text2text-generation": Seq2SeqGenerator,
    "embeddings": Embedder,
    "image-text-embeddings": ImageTextEmbedder,
    "text-classification": Classifier,
    "zero-shot-classification": ZeroShotClassifier,
    "token-classification": TokenClassifier,
    "rerank": Reranker,
    "image-classification": ImageClassifier,
    "object-detection": ObjectDetector,
    "automatic-speech-recognition": SpeechRecognizer,
    "text-to-image": ImageGenerator,
}

"""Speech to text (`SpeechRecognizer`), and uploaded audio read within bounds
(`read_audio`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from endpointgen.runtime.engine import Engine


class SpeechRecognizer(Engine):
    """Speech to text with transformers' automatic-speech-recognition pipeline: Whisper
    (an encoder-decoder) or a CTC model such as wav2vec2. Audio comes as the uploaded
    file's bytes: WAV, FLAC, OGG or MP3, decoded with libsndfile (`soundfile`), mixed to
    mono and resampled to the model's rate. Audio longer than `CHUNK_SECONDS` is cut into
    overlapping chunks, as the pipeline does. With timestamps, `chunks` gives each
    segment (Whisper) or word (CTC) with its start and end in seconds."""

    CHUNK_SECONDS = 30
    MAX_SECONDS = 4 * 3600

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import transformers

        super().__init__(source, revision, dtype)
        config = self.pretrained(transformers.AutoConfig)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        kind = "AutoModelForSpeechSeq2Seq" if self.seq2seq else "AutoModelForCTC"
        self.model = self.weights(getattr(transformers, kind))
        self.tokenizer = self.pretrained(transformers.AutoTokenizer)
        self.features = self.pretrained(transformers.AutoFeatureExtractor)
        self.rate = int(self.features.sampling_rate)
        make: Any = transformers.pipeline
        self.pipe = make(
            "automatic-speech-recognition",
            model=self.model,
            tokenizer=self.tokenizer,
            feature_extractor=self.features,
            device=None if self.spread else self.device,
        )

    def __call__(self, items: list[tuple[bytes, bool]]) -> list[dict[str, Any]]:
        return [self.transcribe(content, timestamps) for content, timestamps in items]

    def transcribe(self, content: bytes, timestamps: bool) -> dict[str, Any]:
        audio = read_audio(content, self.rate, self.MAX_SECONDS)
        options: dict[str, Any] = {}
        if len(audio) > self.CHUNK_SECONDS * self.rate:
            options["chunk_length_s"] = self.CHUNK_SECONDS
        if timestamps:
            options["return_timestamps"] = True if self.seq2seq else "word"
        with self.lock, self.torch.inference_mode():
            found = self.pipe({"raw": audio, "sampling_rate": self.rate}, **options)
        answer: dict[str, Any] = {
            "text": str(found["text"]).strip(),
            "seconds": round(len(audio) / self.rate, 3),
        }
        if timestamps:
            answer["chunks"] = [
                {
                    "text": str(chunk["text"]).strip(),
                    "start": _seconds(chunk["timestamp"][0]),
                    "end": _seconds(chunk["timestamp"][1]),
                }
                for chunk in found.get("chunks", [])
            ]
        return answer


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


MIN_RATE, MAX_RATE = 8_000, 192_000  # Hz: telephone audio to studio audio
MAX_CHANNELS = 8  # 7.1 sound
MAX_SAMPLES = 1 << 28  # decoded mono samples, float32: 1 GiB (4 hours at 16 kHz fit)
AUDIO_BLOCK = 1 << 20  # frames decoded at a time, mixed to mono as they come


def read_audio(content: bytes, rate: int, max_seconds: float) -> Any:
    """The uploaded bytes as mono float32 samples at `rate`; 422 when they are no audio
    libsndfile reads, or its header gives a sample rate outside `MIN_RATE`-`MAX_RATE` or
    channels outside 1-`MAX_CHANNELS`; 413 when the file says it lasts more than
    `max_seconds` or holds more than `MAX_SAMPLES` frames (checked from its header,
    before anything is decoded: a 132-byte FLAC can declare 273 GiB of samples). It is
    decoded in blocks, each mixed to mono at once, and stops with a 413 should it decode
    past those limits after all (a header that leaves its length out, or lies)."""
    import numpy as np
    import soundfile

    too_long = HTTPException(
        413,
        f"the audio is longer than {max_seconds:.0f} seconds or {MAX_SAMPLES} samples, "
        "the most accepted",
    )
    try:
        with soundfile.SoundFile(io.BytesIO(content)) as audio:
            given, channels, frames = audio.samplerate, audio.channels, audio.frames
            if not MIN_RATE <= given <= MAX_RATE:
                raise HTTPException(
                    422,
                    f"the audio's sample rate is {given} Hz; {MIN_RATE} to {MAX_RATE} are accepted",
                )
            if not 1 <= channels <= MAX_CHANNELS:
                raise HTTPException(
                    422, f"the audio has {channels} channels; 1 to {MAX_CHANNELS} are accepted"
                )
            most = min(MAX_SAMPLES, int(max_seconds * given))
            if frames > most:
                raise too_long
            mono = np.empty(max(frames, 0), dtype=np.float32)
            count = 0
            for block in audio.blocks(AUDIO_BLOCK, dtype="float32", always_2d=True):
                end = count + len(block)
                if end > most:
                    raise too_long
                if end > len(mono):  # more than the header said
                    mono = np.concatenate([mono[:count], np.empty(end - count, np.float32)])
                mono[count:end] = block.mean(axis=1)
                count = end
    except (RuntimeError, ValueError, TypeError, soundfile.LibsndfileError):
        raise HTTPException(422, "the file is not readable audio (WAV, FLAC, OGG or MP3)") from None
    mono = mono[:count]
    if given != rate:
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(rate, given)
        mono = resample_poly(mono, rate // common, given // common).astype(np.float32)
    if not len(mono):
        raise HTTPException(422, "the audio file holds no samples")
    return mono

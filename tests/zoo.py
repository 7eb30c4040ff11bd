"""Models people ship, built from small configs with random weights (no downloads), with
the call their documentation shows. Shared by tests/models/test_zoo.py and bench/zoo.py.

Each entry: name -> (build() -> model in eval mode, example kwargs). transformers
models are called with ``use_cache=False``: their default returns a KV cache object
(a package returns tensors; aotpack says so, naming use_cache).
"""

from __future__ import annotations

import torch


def _ids(vocab=100, length=8, batch=1):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=512, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg), {"input_ids": _ids(), "use_cache": False}


def bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, vocab_size=100,
                     max_position_embeddings=512)
    return BertModel(cfg), {"input_ids": _ids()}


def llama(layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, hidden_size=32,
                      intermediate_size=64, vocab_size=100, max_position_embeddings=512)
    return LlamaForCausalLM(cfg), {"input_ids": _ids(), "use_cache": False}


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=32,
                      intermediate_size=64, vocab_size=100, max_position_embeddings=512)
    return Qwen2ForCausalLM(cfg), {"input_ids": _ids(), "use_cache": False}


def t5():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(num_layers=2, num_decoder_layers=2, num_heads=2, d_model=32, d_kv=16, d_ff=64, vocab_size=100,
                   decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg), {"input_ids": _ids(), "decoder_input_ids": _ids(length=4),
                                             "use_cache": False}


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, image_size=32,
                    patch_size=8, num_labels=10)
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return ViTForImageClassification(cfg), {"pixel_values": pixels}


def whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                        d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, num_mel_bins=16,
                        max_source_positions=16, max_target_positions=32, pad_token_id=0, bos_token_id=0,
                        eos_token_id=0, decoder_start_token_id=0)
    features = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(3))
    return WhisperForConditionalGeneration(cfg), {"input_features": features, "decoder_input_ids": _ids(length=4),
                                                  "use_cache": False}


MODELS = {"gpt2": gpt2, "bert": bert, "llama": llama, "qwen2": qwen2, "t5": t5, "vit": vit, "whisper": whisper}


def build(name: str, device: str = "cpu", dtype: torch.dtype | None = None, **config):
    """(model in eval mode, example kwargs), the same weights in every process; on
    ``device``, and with its parameters and floating inputs in ``dtype`` if given;
    ``config``: what its builder takes (``layers=1`` for a one-layer llama)."""
    torch.manual_seed(0)
    model, kwargs = MODELS[name](**config)
    model = model.eval().requires_grad_(False).to(device)
    if dtype is not None:
        model = model.to(dtype)
    kwargs = {k: v.to(device, dtype if dtype is not None and v.is_floating_point() else v.dtype)
              if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return model, kwargs

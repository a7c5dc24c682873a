"""Random-weight models and an offline tokenizer, for tests, benchmarks and GPU checks: nothing is downloaded.

Random weights say nothing about quality, but they exercise every shape, dtype and code path the real models do,
and `randomize_adapter` makes the δ-mem corrections large enough that a wrong formula changes the logits.
"""

from __future__ import annotations

import warnings

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from deltamem.config import DeltaMemConfig, OffTrainedDefaultsWarning
from deltamem.model import DeltaMemModel
from deltamem.rendering import CHATML_TEMPLATE
from deltamem.shapes import BackboneShape, qwen3_config

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def random_backbone(shape: BackboneShape | str, *, dtype: torch.dtype = torch.float32, attn: str = "sdpa",
                    device: str | torch.device = "cpu", seed: int = 0, **overrides: object) -> nn.Module:
    """A `Qwen3ForCausalLM` of that shape with seeded random weights, in eval mode.

    The weights are made in `dtype` directly: made in float32 and cast, the real Qwen3-4B shape would need 16 GB
    for a moment to end up in 8.
    """
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = qwen3_config(shape, attn, **overrides)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.to(dtype).eval()


@torch.no_grad()
def randomize_adapter(model: nn.Module, *, seed: int = 0, gain: float = 0.5) -> None:
    """Give a δ-mem model random adapter weights large enough to move the logits (trained ones are not at hand).

    Memory projections get the usual fan-in scale; correction matrices `gain` / sqrt(rank) so that a read of norm
    one changes the corrected activations by about `gain`; gate biases stay at their initial values.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.adapter_state_dict().items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("_bias") or leaf in ("delta_o_rmsnorm_weight", "delta_scale_raw"):
            continue
        scale = gain / param.shape[1] ** 0.5 if leaf.startswith("delta_") else 1 / param.shape[1] ** 0.5
        noise = torch.randn(param.shape, generator=generator) * scale
        param.copy_(noise.to(device=param.device, dtype=param.dtype))


def byte_chatml_tokenizer(vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """256 byte tokens plus the three ChatML specials (ids 256-258); `<|im_end|>` is the end-of-turn token.

    `vocab_size` pads the vocabulary with filler tokens (`[259]`, `[260]`, …) so that a random model with a real
    model's vocabulary can sample any id and still be decoded; text never encodes to them.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    for index in range(len(vocab), vocab_size or 0):
        vocab[f"[{index}]"] = index
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def random_delta_model(attn: str = "eager", dtype: torch.dtype = torch.float32, seed: int = 0,
                     shape: BackboneShape | str = "tiny", **config: object) -> DeltaMemModel:
    """A tiny random backbone with a random δ-mem adapter (released settings unless overridden)."""
    backbone = random_backbone(shape, attn=attn, dtype=dtype, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = DeltaMemModel(backbone, DeltaMemConfig.released(**config))
    randomize_adapter(model, seed=seed + 1)
    return model



def printable_only(backbone: torch.nn.Module) -> torch.nn.Module:
    """Make a random byte-level model emit printable ASCII or end-of-turn only, so its replies round-trip."""
    tokenizer = byte_chatml_tokenizer()
    head = backbone.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.fill_(-1e4)
        allowed = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(chr(c)))[0] for c in range(32, 127)]
        biased.bias[allowed] = 0.0
        biased.bias[tokenizer.eos_token_id] = 0.0
    backbone.lm_head = biased
    return backbone



"""Named backbone shapes: the real models' (copied from their published configs) and small ones for tests and the CPU
benchmark. `deltamem.testing` builds random-weight models of them, so benchmarks and GPU checks need no download.

The real shapes are copied from the published configs; `tiny` is for tests and `cpu-bench` is the smallest shape
the CPU benchmark targets are stated for (8 layers, hidden 512).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class BackboneShape:
    """The few numbers that fix a Qwen3-architecture model's compute and memory."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tie_embeddings: bool = False


SHAPES: dict[str, BackboneShape] = {
    "tiny": BackboneShape(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=300),
    "cpu-bench": BackboneShape(layers=8, hidden=512, heads=8, kv_heads=4, head_dim=64, ffn=1536, vocab=4096),
    "qwen3-4b": BackboneShape(layers=36, hidden=2560, heads=32, kv_heads=8, head_dim=128, ffn=9728, vocab=151936,
                              tie_embeddings=True),
    "qwen3-8b": BackboneShape(layers=36, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=12288, vocab=151936),
}


def qwen3_config(shape: BackboneShape | str, attn: str = "sdpa", **overrides: object):
    """A `Qwen3Config` of that shape (full attention everywhere, as in the released models); `overrides` replace
    any setting."""
    from transformers import Qwen3Config

    if isinstance(shape, str):
        shape = SHAPES[shape]
    settings = dict(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim, max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=shape.tie_embeddings, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    config = Qwen3Config(**(settings | overrides))
    config._attn_implementation = attn
    return config


def resolve(name: str, layers: int | None = None, vocab: int | None = None) -> BackboneShape:
    """The named shape, with fewer (or more) decoder layers or another vocabulary where asked.

    A real width with a few layers measures what one layer of the real model costs in minutes on a small machine.
    """
    shape = SHAPES[name]
    return replace(shape, layers=layers or shape.layers, vocab=vocab or shape.vocab)


def describe(shape: BackboneShape | str, name: str | None = None) -> dict[str, object]:
    """The shape as plain data, for reports: its name, and what differs from the named shape (`layers_of`,
    `vocab_of`: the named shape's own values) when it was resolved with overrides."""
    if isinstance(shape, str):
        return {"name": shape, **asdict(SHAPES[shape])}
    out: dict[str, object] = {"name": name, **asdict(shape)} if name else asdict(shape)
    named = SHAPES.get(name) if name else None
    if named is not None:
        if named.layers != shape.layers:
            out["layers_of"] = named.layers
        if named.vocab != shape.vocab:
            out["vocab_of"] = named.vocab
    return out


def label(shape: BackboneShape, name: str) -> str:
    """`qwen3-4b`, or `qwen3-4b (4 of 36 layers, vocab 4096)` when resolved with overrides."""
    named, notes = SHAPES[name], []
    if named.layers != shape.layers:
        notes.append(f"{shape.layers} of {named.layers} layers")
    if named.vocab != shape.vocab:
        notes.append(f"vocab {shape.vocab} of {named.vocab}")
    return f"{name} ({', '.join(notes)})" if notes else name

"""A byte-level tokenizer with a ChatML chat template, built in memory: no download, any text round-trips.

Used where the weights are random anyway (tests, benchmarks, the GPU check), so that the whole runtime, chat
template included, runs without the hub.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: Qwen's ChatML layout: `<|im_start|>role\ncontent<|im_end|>\n` per message, then the generation prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


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

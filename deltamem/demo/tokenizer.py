"""The demo's word-level tokenizer: one id per word or punctuation mark, `<unk>` for anything else.

Lower-cased, split on whitespace and around each punctuation mark; decoding joins words with spaces and then
closes up the space before `. , ? !` (the WordPiece decoder's clean-up). The generator never emits the other
contractions that clean-up rewrites (apostrophes, "do not"), so decoded replies re-tokenise to the same ids and the
engine can keep its KV cache from turn to turn. Text outside the vocabulary becomes `<unk>`, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from deltamem.rendering import CHATML_TEMPLATE, ROLES

PAD, IM_START, IM_END, UNK = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, UNK)

#: ChatML as Qwen writes it; the word-level pre-tokenizer drops the newlines, so a message costs its words + 3.
CHAT_TEMPLATE = CHATML_TEMPLATE


def _pieces() -> tuple[normalizers.Normalizer, pre_tokenizers.PreTokenizer]:
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])
    return normalizer, pre


def words_of(texts: Iterable[str]) -> list[str]:
    """The sorted vocabulary (words and punctuation marks) of some texts, as the tokenizer splits them."""
    normalizer, pre = _pieces()
    found: set[str] = set()
    for text in texts:
        found.update(piece for piece, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    return sorted(found)


def build_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is the specials, the roles and every word of `texts` (sorted: reproducible)."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words_of([*texts, *ROLES]):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer, core.pre_tokenizer = _pieces()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=IM_END, pad_token=PAD, unk_token=UNK,
                                        clean_up_tokenization_spaces=False, model_max_length=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


__all__ = ["CHAT_TEMPLATE", "IM_END", "IM_START", "PAD", "SPECIAL_TOKENS", "UNK", "build_tokenizer", "words_of"]

"""A conversation as token ids, exactly as the tokenizer's chat template prints it, and which of them are old.

Chat templates are not always concatenative. Qwen3's hybrid template prints an empty `<think>\\n\\n</think>\\n\\n`
in the last assistant turn and drops it once a user message follows; SmolLM3-style templates print an empty think
block in the generation prompt only. So a new render need not extend the old one, and "the tokens of the messages
read so far" cannot be measured by rendering those messages alone. `ChatRenderer.read_part` finds them in the new
render itself: where the last message read so far ends (its content located with a marker character), plus the
closing that the template printed after it when it was the newest message (that closing was read then).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: The roles of chat messages, in the order messages about them list them.
ROLES = ("system", "user", "assistant")

#: Qwen's ChatML layout: `<|im_start|>role\ncontent<|im_end|>\n` per message, then the generation prompt. The demo
#: model and the offline test tokenizer use it.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: A private-use character appended to a message's content to find where that content ends in a render.
MARK = "\ue000"

Message = dict[str, str]


class ChatRenderer:
    """Renders chat messages with a tokenizer's template (thinking off), and measures what is old in a render."""

    def __init__(self, tokenizer, cache_size: int = 200_000) -> None:
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self._lengths: dict[tuple[str, str], int] = {}

    def text(self, messages: Sequence[Message], generation_prompt: bool = False) -> str:
        """The template's text for `messages` (`enable_thinking=False`: templates without the flag ignore it)."""
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=generation_prompt, enable_thinking=False)

    def encode(self, text: str) -> list[int]:
        # verbose=False: a long message is meant to pass the model's length (it is read in chunks), no warning.
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def ids(self, messages: Sequence[Message], generation_prompt: bool = False) -> list[int]:
        return self.encode(self.text(messages, generation_prompt))

    def length(self, message: Message) -> int:
        """Tokens of one message rendered on its own: what a context window charges for it (cached)."""
        key = (message["role"], message["content"])
        if key not in self._lengths:
            if len(self._lengths) >= self.cache_size:
                self._lengths.clear()
            self._lengths[key] = len(self.ids([message]))
        return self._lengths[key]

    def read_part(self, messages: Sequence[Message], read: int, generation_prompt: bool) -> int:
        """How many leading tokens of `ids(messages, generation_prompt)` belong to `messages[:read]`.

        Those are the tokens of messages that were read before, as this render prints them, followed by the
        closing the template printed after the last of them when it was the newest message (`closing`: read then
        too); everything after them (the next message's header, new messages, the generation prompt) is new.
        """
        if read <= 0:
            return 0
        messages = list(messages)
        text = self.text(messages, generation_prompt)
        end = _content_end(self, messages, read, generation_prompt, text)
        alone = self.text(messages[:read])
        boundary = end + common_prefix(text[end:], alone[_content_end(self, messages[:read], read, False, alone):])
        return self._tokens_before(text, boundary)

    def closing(self, messages: Sequence[Message]) -> list[int]:
        """The tokens the template prints after the last message's content (`<|im_end|>\n` in ChatML).

        A generated reply ends where the model stopped, before this closing; feeding it afterwards leaves the cache
        holding what the template would print, whatever the template does to the tokens before.
        """
        messages = list(messages)
        text = self.text(messages)
        ids = self.encode(text)
        return ids[self._tokens_before(text, _content_end(self, messages, len(messages), False, text)):]

    def _tokens_before(self, text: str, boundary: int) -> int:
        """How many tokens of `text` start before character `boundary`."""
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        except NotImplementedError:      # a slow tokenizer has no offsets: count the prefix on its own
            return len(self.encode(text[:boundary]))
        return bisect_left([start for start, _ in encoded["offset_mapping"]], boundary)


def _content_end(renderer: ChatRenderer, messages: list[Message], read: int, generation_prompt: bool,
                 text: str) -> int:
    """Where the content of `messages[read - 1]` ends in `text` (its render): the first character that changes
    when a marker is appended to that content."""
    marked = list(messages)
    last = marked[read - 1]
    marked[read - 1] = {**last, "content": last["content"] + MARK}
    return common_prefix(text, renderer.text(marked, generation_prompt))


def common_prefix(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix of two sequences (strings or token lists)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


__all__ = ["CHATML_TEMPLATE", "ROLES", "MARK", "ChatRenderer", "common_prefix"]

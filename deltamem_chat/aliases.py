"""The names users type for models (`--adapter qwen3-4b`, `--base qwen3-8b`), resolved once into what to load.

An alias names a base model and, where one is released, its δ-mem adapter, with the context window the chat opens
with and, for the shipped demo, an introduction and the names recorded in sessions instead of install folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltamem import demo
from deltamem.context import ContextPolicy
from deltamem.hub import is_cached


class AliasError(ValueError):
    """`--adapter`/`--base` name nothing loadable; the message says what to pass instead."""


@dataclass(frozen=True)
class Alias:
    """A short name for a base model and, where one is released, its δ-mem adapter."""

    name: str
    base: str
    adapter: str | None
    note: str
    context: ContextPolicy = ContextPolicy(1024)
    intro: str | None = None                 # shown in the chat when a conversation starts
    labels: tuple[str, str] | None = None    # names recorded for (base, adapter) instead of their folders
    retrieval: str | None = None             # the retrieval lanes' settings its window needs (None: the default)

    def intro_for(self, policy: ContextPolicy) -> str | None:
        """The introduction, under the alias's own context only (what it says holds for that window)."""
        return self.intro if policy == self.context else None


ALIASES: dict[str, Alias] = {
    "qwen3-4b": Alias("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", "declare-lab/delta-mem_qwen3_4b-instruct",
                      "the released TSW adapter (rank 8, q/o corrections, trained on 8,192-token write histories)"),
    "qwen3-8b": Alias("qwen3-8b", "Qwen/Qwen3-8B", None, "no released adapter: pass --adapter with a local folder"),
    "smollm3-3b": Alias("smollm3-3b", "HuggingFaceTB/SmolLM3-3B", None,
                        "no released adapter: pass --adapter with a local folder"),
    "demo": Alias(
        "demo", str(demo.BASE_DIR), str(demo.ADAPTER_DIR),
        "offline toy shipped in the package: a 4-layer Qwen3 with a word-level vocabulary and its δ-mem adapter, "
        "trained here on synthetic chats", context=ContextPolicy(demo.DEMO_WINDOW),
        intro=(f"demo model: the prompt keeps only the last {demo.DEMO_WINDOW} tokens (about two exchanges), so a "
               "fact you state soon falls out of it and only the δ-mem lane can still answer. It knows a few hundred "
               "lower-case words; others show as <unk>. Try: my dog is called rex. / i baked a cake today. / "
               "it is raining this morning. / what is my dog called?"),
        labels=("deltamem demo backbone", "deltamem demo adapter"),
        # Half the window: a quarter of 48 tokens holds no retrieved line (the block's header and one fact take
        # about 17 of the demo's tokens).
        retrieval=f"k=3,tokens={demo.DEMO_WINDOW // 2}"),
}


@dataclass(frozen=True)
class Models:
    """What `--adapter` and `--base` resolved to: folders or hub ids to load, and the names to record."""

    adapter: str
    base: str
    alias: Alias | None                      # the adapter's alias, when it was one
    names: tuple[str, str] | None            # (base, adapter) names recorded instead of the folders

    @property
    def context(self) -> ContextPolicy | None:
        """The context the alias suggests, if the adapter was an alias."""
        return self.alias.context if self.alias is not None else None

    @property
    def label(self) -> str:
        """What loads, as the user named it: the alias, else the adapter."""
        return self.alias.name if self.alias is not None else self.adapter


#: What the chat and the replay open with when no `--adapter` is given: the released model where it is here.
RELEASED = "qwen3-4b"
OFFLINE = "demo"


def default_adapter() -> tuple[str, str | None]:
    """The released model's alias when its base and adapter are in the hub cache, else the offline demo's, with a
    sentence saying why and what fetches the released one. No download starts unasked (it is about 8 GB)."""
    released = ALIASES[RELEASED]
    if all(is_cached(repo) for repo in (released.base, released.adapter) if repo):
        return RELEASED, None
    return OFFLINE, (f"the released model {RELEASED} is not downloaded: `deltamem-chat download {RELEASED}` fetches "
                     f"it (about 8 GB) and `--adapter {RELEASED}` downloads it on start; opening the offline demo "
                     f"(`--adapter {OFFLINE}`)")


def resolve_base(base: str) -> str:
    """An alias's base model, or the folder or hub id as given."""
    alias = ALIASES.get(base)
    return alias.base if alias is not None else base


def resolve_models(adapter: str, base: str | None) -> Models:
    """`--adapter` (alias, folder or hub id) and `--base` (alias, folder, hub id or None for the alias's own)."""
    alias = ALIASES.get(adapter)
    if alias is not None and alias.adapter is None:
        raise AliasError(f"{alias.name}: {alias.note}")
    if base is None and alias is None:
        raise AliasError(f"adapter {adapter!r} is not an alias (one of {', '.join(ALIASES)}), so its base model is "
                         "unknown: pass --base")
    base_spec = resolve_base(base) if base is not None else alias.base
    adapter_spec = alias.adapter if alias is not None else adapter
    names = alias.labels if alias is not None and alias.labels and base_spec == alias.base else None
    return Models(adapter_spec, base_spec, alias, names)

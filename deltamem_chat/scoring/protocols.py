"""The scoring protocols by name: `ours` (the default, for our own transcripts), `locomo` and `mab`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from deltamem_chat.scoring.interface import ScoringProtocol
from deltamem_chat.scoring.locomo import LocomoProtocol
from deltamem_chat.scoring.mab import MabProtocol
from deltamem_chat.scoring.ours import OursProtocol

DEFAULT_PROTOCOL = "ours"

PROTOCOLS: Mapping[str, ScoringProtocol] = MappingProxyType(
    {"ours": OursProtocol(), "locomo": LocomoProtocol(), "mab": MabProtocol()}
)


def get_protocol(name: str) -> ScoringProtocol:
    """The protocol called `name`; a ValueError that lists the known names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown scoring protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None

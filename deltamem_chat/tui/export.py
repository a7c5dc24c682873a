"""A conversation as Markdown: the run's identity, then each lane's messages, so both sides can be read later."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from deltamem.runtime.contract import LaneView


def conversation_markdown(lanes: Mapping[str, LaneView], titles: Mapping[str, str], info: Mapping[str, str],
                          votes: Mapping[int, str] | None = None, when: datetime | None = None) -> str:
    """Both lanes' messages under one heading each, after a list of what produced them and the votes cast (turn
    number → the vote's label)."""
    when = when or datetime.now()
    lines = ["# deltamem-chat conversation", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    for name, lane in lanes.items():
        if lane.memory:
            lines.append(f"- {titles.get(name, name)} memory: {lane.written_total:,} tokens written")
    lines += [f"- exported: {when:%Y-%m-%d %H:%M:%S}", ""]
    if votes:
        lines += ["## Votes", ""] + [f"- turn {turn}: {label}" for turn, label in sorted(votes.items())] + [""]
    for name, lane in lanes.items():
        lines += [f"## {titles.get(name, name)}", ""]
        for message in lane.messages:
            lines += [f"**{message['role']}**", "", message["content"] or "*(empty)*", ""]
    return "\n".join(lines)

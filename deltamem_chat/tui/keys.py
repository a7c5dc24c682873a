"""Rebindable keys: a `keys.json` in the user's config folder maps binding ids to keys, e.g.

    {"keys": {"copy_reply": "f2", "regenerate": "ctrl+g,f12"}}

The ids are the `id`s of the screens' bindings (an unknown one is refused with the list). Textual applies the map
(`App.set_keymap`), so the footer and the command palette show the keys in use. JSON, since the standard library
reads no TOML on the oldest Python we support.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import platformdirs

from deltamem.files import read_json

FILE_NAME = "keys.json"


class KeymapError(ValueError):
    """The keys file is not what this module reads; the message names the file and the field."""


def keymap_path() -> Path:
    """Where the keys file is looked for: the user's config folder for deltamem-chat."""
    return Path(platformdirs.user_config_dir("deltamem-chat")) / FILE_NAME


def read_keymap(path: Path, known: Iterable[str]) -> dict[str, str]:
    """The `keys` object of `path` (binding id → comma-separated keys); no file is an empty map."""
    if not path.exists():
        return {}
    data = read_json(path, KeymapError, "no keys file")
    if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(data["keys"], dict):
        raise KeymapError(f'{path}: expected {{"keys": {{binding id: keys}}}} and nothing else')
    ids = sorted(set(known))
    keymap: dict[str, str] = {}
    for name, keys in data["keys"].items():
        if name not in ids:
            raise KeymapError(f"{path}: keys.{name} is not a binding id (one of {', '.join(ids)})")
        if not isinstance(keys, str) or not keys.strip() or " " in keys.strip():
            raise KeymapError(f'{path}: keys.{name} must be keys like "f2" or "ctrl+g,f12"')
        keymap[name] = keys.strip()
    return keymap

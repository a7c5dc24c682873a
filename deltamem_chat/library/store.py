"""The session library: every chat kept as a session folder under one root, listed and searched through an index.

`<root>/sessions/<id>/` is an ordinary saved session (`Engine.save`: session.json and its memory file, written as one
unit), so a crash leaves the last whole save; its title and creation time ride in session.json's `extra`, under
`library`. `<root>/library.sqlite3` indexes them (`deltamem_chat.library.index`); every listing first brings the
index up to date with the folders (new, changed or removed session.json files), so the folders stay the truth.
The root is the user's data folder unless `DELTAMEM_CHAT_DATA` or the caller names another.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from deltamem.files import read_json
from deltamem.runtime.contract import Engine, SessionIdentity
from deltamem_chat.library.index import LibraryEntry, SessionIndex
from deltamem_chat.text import one_line

#: Names the library's root folder instead of the user's data folder (tests, portable setups).
ROOT_VARIABLE = "DELTAMEM_CHAT_DATA"
SESSION_JSON = "session.json"
INDEX_FILE = "library.sqlite3"
TITLE_LENGTH = 60

_SESSION_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


class LibraryError(ValueError):
    """A library operation that cannot be done; the message says which session and why."""


def default_root() -> Path:
    """`$DELTAMEM_CHAT_DATA`, else the platform's data folder for deltamem-chat."""
    named = os.environ.get(ROOT_VARIABLE)
    if named:
        return Path(named).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("deltamem-chat"))


def _now() -> str:
    """Microseconds, so that the newest of several saves in one second (autosave after a quick turn) lists first."""
    return datetime.now().isoformat(timespec="microseconds")


def _title(messages: list[dict[str, Any]]) -> str:
    """A session's default title: its first user message, on one line."""
    first = next((m["content"] for m in messages if m.get("role") == "user" and str(m.get("content")).strip()), "")
    return one_line(str(first), TITLE_LENGTH) or "untitled"


class SessionLibrary:
    """Saved sessions under `root`: save (a new one or over an existing one), list and search, open, delete."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.sessions = self.root / "sessions"
        self.index = SessionIndex(self.root / INDEX_FILE)

    def folder(self, session_id: str) -> Path:
        """The session's folder; an id that is not one of ours is refused (it would name a path elsewhere)."""
        if not _SESSION_ID.fullmatch(session_id):
            raise LibraryError(f"{session_id!r} is not a session of the library")
        return self.sessions / session_id

    @staticmethod
    def new_id() -> str:
        """A fresh id: when it was made, then random digits so two sessions of one second differ."""
        return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"

    # ------------------------------------------------------------------------------------------ saving
    def save(self, engine: Engine, identity: SessionIdentity, session_id: str | None = None, *,
             title: str | None = None, extra: dict[str, Any] | None = None) -> LibraryEntry:
        """Save the engine's conversation and memory as session `session_id` (a new one when None) and index it.

        Saving over a session keeps its title (unless `title` is given) and its creation time. Raises what
        `Engine.save` raises when the disk refuses; the session's previous save is then still whole.
        """
        session_id = session_id or self.new_id()
        folder = self.folder(session_id)
        known = self._entry(session_id)
        messages = [dict(m) for name in engine.lane_names for m in engine.lane(name).messages]
        meta = {"title": title or (known.title if known else _title(messages)),
                "created": known.created if known else _now(), "saved": _now()}
        engine.save(folder, identity, {**(extra or {}), "library": meta})
        entry = self._read(folder)
        if entry is None:
            raise LibraryError(f"{folder / SESSION_JSON}: saved, but cannot be read back")
        return entry

    def _entry(self, session_id: str) -> LibraryEntry | None:
        """The session as indexed, else as its folder says (an index rebuilt since), else None (a new one)."""
        folder = self.folder(session_id)
        return self.index.get(session_id) or (self._read(folder) if (folder / SESSION_JSON).exists() else None)

    # ------------------------------------------------------------------------------------------ reading
    def _read(self, folder: Path) -> LibraryEntry | None:
        """Index one session folder from its session.json; None (and no row) when it cannot be read."""
        path = folder / SESSION_JSON
        try:
            data = read_json(path, LibraryError, "no saved session here")
            mtime_ns = path.stat().st_mtime_ns
            entry, body = _describe(folder.name, data, mtime_ns)
        except (LibraryError, OSError, TypeError, ValueError, AttributeError):
            self.index.remove([folder.name])
            return None
        self.index.put(entry, body, mtime_ns)
        return entry

    def sync(self) -> None:
        """Bring the index up to date with the folders: index new and changed sessions, drop removed ones."""
        stamps = self.index.stamps()
        present = set()
        if self.sessions.is_dir():
            for folder in self.sessions.iterdir():
                if not _SESSION_ID.fullmatch(folder.name):
                    continue
                try:
                    mtime_ns = (folder / SESSION_JSON).stat().st_mtime_ns
                except OSError:
                    continue
                present.add(folder.name)
                if stamps.get(folder.name) != mtime_ns and self._read(folder) is None:
                    present.discard(folder.name)
        self.index.remove(set(stamps) - present)

    def search(self, query: str = "") -> list[LibraryEntry]:
        """Sessions whose title or message text holds every word of `query`, newest first (all with no words)."""
        self.sync()
        return self.index.search(query)

    def open(self, session_id: str, engine: Engine, identity: SessionIdentity) -> dict[str, Any]:
        """Load a session into the engine (checked in full first, see `Engine.load`); returns its `extra`."""
        folder = self.folder(session_id)
        if not (folder / SESSION_JSON).exists():
            raise LibraryError(f"{folder}: the session is gone (deleted, or moved away)")
        return engine.load(folder, identity)

    def delete(self, session_id: str) -> None:
        """Remove a session's folder and its index row."""
        folder = self.folder(session_id)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LibraryError(f"{folder}: could not be deleted ({exc.strerror or exc})") from None
        finally:
            self.index.remove([session_id])

    def close(self) -> None:
        self.index.close()


def _describe(session_id: str, data: Any, mtime_ns: int) -> tuple[LibraryEntry, str]:
    """An index entry and the searchable text of a session.json's data (TypeError or KeyError when it is not one)."""
    identity = data["identity"]
    lanes = data["lanes"]
    meta = data.get("extra", {}).get("library", {})
    texts: dict[str, None] = {}                 # every message once, in order (the lanes share the user's)
    for lane in lanes.values():
        for message in lane["messages"]:
            texts.setdefault(str(message["content"]), None)
    messages = [m for lane in lanes.values() for m in lane["messages"]]
    saved = datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="microseconds")
    entry = LibraryEntry(
        session_id=session_id,
        title=str(meta.get("title") or _title(messages)),
        created=str(meta.get("created") or saved),
        updated=str(meta.get("saved") or saved),
        base=str(identity["base"]),
        adapter=str(identity["adapter"]),
        messages=max((len(lane["messages"]) for lane in lanes.values()), default=0),
        written=max((int(lane.get("written_total", 0)) for lane in lanes.values()), default=0),
    )
    return entry, "\n".join(texts)

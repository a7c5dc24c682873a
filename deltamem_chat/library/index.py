"""The library's search index: one SQLite file over the session folders, which stay the truth.

The index only makes listing and searching fast. It is rebuilt from the folders whenever it is missing, damaged,
of another schema or cannot be written, and if no file can hold it at all it lives in memory for the run: an index
problem never stops the chat. Full-text search uses SQLite's FTS5 where the build has it, otherwise `LIKE`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Bumped whenever the tables change: an index of another version is rebuilt.
SCHEMA = 1

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class LibraryEntry:
    """One saved session as listed: what it is called, when, with which models, how long."""

    session_id: str
    title: str
    created: str                     # ISO 8601, local time
    updated: str
    base: str
    adapter: str
    messages: int                    # messages of the longest lane
    written: int                     # tokens written into the memory lanes' memory, the largest


_ENTRY_COLUMNS = "id, title, created, updated, base, adapter, messages, written"


class SessionIndex:
    """The index file: entries, their session.json's modification time (to tell a stale row), and their text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = self._open()

    # ------------------------------------------------------------------------------------------ opening
    def _open(self) -> sqlite3.Connection:
        """The index at `path` if it is whole and of this schema, else a fresh one there (or in memory)."""
        try:
            db = sqlite3.connect(self.path)
            if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA and self._tables_whole(db):
                self._tune(db)
                return db
            db.close()
        except sqlite3.DatabaseError:  # not a database, damaged, or a folder in its place
            pass
        return self._fresh()

    @staticmethod
    def _tables_whole(db: sqlite3.Connection) -> bool:
        try:
            db.execute(f"SELECT {_ENTRY_COLUMNS}, mtime_ns FROM sessions LIMIT 1").fetchall()
            db.execute("SELECT id, title, body FROM texts LIMIT 1").fetchall()
            return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            return False

    def _fresh(self) -> sqlite3.Connection:
        try:
            self.path.unlink(missing_ok=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path)
            self._create(db)
            self._tune(db)
        except (OSError, sqlite3.DatabaseError):  # a read-only or full disk: keep the index for this run only
            db = sqlite3.connect(":memory:")
            self._create(db)
        return db

    @staticmethod
    def _tune(db: sqlite3.Connection) -> None:
        """A write-ahead log: a crash cannot damage the index, and a commit waits for one sync, not several."""
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        with db:
            db.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, title TEXT, created TEXT, updated TEXT, "
                       "base TEXT, adapter TEXT, messages INTEGER, written INTEGER, mtime_ns INTEGER)")
            try:
                db.execute("CREATE VIRTUAL TABLE texts USING fts5(id UNINDEXED, title, body)")
            except sqlite3.OperationalError:  # SQLite built without FTS5
                db.execute("CREATE TABLE texts (id TEXT PRIMARY KEY, title TEXT, body TEXT)")
            db.execute(f"PRAGMA user_version = {SCHEMA}")

    @property
    def full_text(self) -> bool:
        """Whether searches go through FTS5 (else `LIKE`)."""
        row = self.db.execute("SELECT sql FROM sqlite_master WHERE name = 'texts'").fetchone()
        return row is not None and "fts5" in row[0].lower()

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        """Run `statements` in one transaction; an index that fails to take them is rebuilt by the next sync."""
        try:
            with self.db:
                for sql, parameters in statements:
                    self.db.execute(sql, parameters)
        except sqlite3.DatabaseError:
            self.db.close()
            self.db = self._fresh()

    # ------------------------------------------------------------------------------------------ rows
    def stamps(self) -> dict[str, int]:
        """Each indexed session's session.json modification time, as indexed."""
        try:
            return dict(self.db.execute("SELECT id, mtime_ns FROM sessions").fetchall())
        except sqlite3.DatabaseError:
            self.db.close()
            self.db = self._fresh()
            return {}

    def put(self, entry: LibraryEntry, body: str, mtime_ns: int) -> None:
        self._write([("DELETE FROM sessions WHERE id = ?", (entry.session_id,)),
                     ("DELETE FROM texts WHERE id = ?", (entry.session_id,)),
                     (f"INSERT INTO sessions ({_ENTRY_COLUMNS}, mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (entry.session_id, entry.title, entry.created, entry.updated, entry.base, entry.adapter,
                       entry.messages, entry.written, mtime_ns)),
                     ("INSERT INTO texts (id, title, body) VALUES (?, ?, ?)", (entry.session_id, entry.title, body))])

    def get(self, session_id: str) -> LibraryEntry | None:
        try:
            row = self.db.execute(f"SELECT {_ENTRY_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return None if row is None else LibraryEntry(*row)

    def remove(self, session_ids: Iterable[str]) -> None:
        self._write([statement for session_id in session_ids
                     for statement in (("DELETE FROM sessions WHERE id = ?", (session_id,)),
                                       ("DELETE FROM texts WHERE id = ?", (session_id,)))])

    def search(self, query: str = "") -> list[LibraryEntry]:
        """Entries whose title or messages hold every word of `query` (as a word prefix), newest first."""
        words = _WORD.findall(query)
        columns = ", ".join(f"s.{c}" for c in _ENTRY_COLUMNS.split(", "))
        sql, parameters = f"SELECT {columns} FROM sessions s", []
        if words and self.full_text:
            sql += " WHERE s.id IN (SELECT id FROM texts WHERE texts MATCH ?)"
            parameters.append(" ".join(f'"{word}"*' for word in words))
        elif words:
            sql += " JOIN texts t ON t.id = s.id WHERE " + " AND ".join(
                "(t.title LIKE ? ESCAPE '\\' OR t.body LIKE ? ESCAPE '\\')" for _ in words)
            for word in words:
                pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                parameters += [pattern, pattern]
        sql += " ORDER BY s.updated DESC, s.id DESC"
        try:
            rows = self.db.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError:
            return []
        return [LibraryEntry(*row) for row in rows]

    def close(self) -> None:
        self.db.close()

"""The session library: save, list, search, reopen and delete; the index rebuilt from the folders whenever it is
missing, damaged or stale, never in the way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from deltamem.runtime.contract import GenerationSettings, SessionIdentity
from deltamem_chat.library import LibraryError, SessionLibrary, default_root
from deltamem_chat.library.index import SessionIndex
from tests.conftest import make_engine
from tests.doubles import ScriptedEngine

IDENTITY = SessionIdentity(base="tiny", adapter="random")


def _chat(*messages: str) -> ScriptedEngine:
    engine = ScriptedEngine()
    for text in messages:
        list(engine.turn(text))
    return engine


def test_the_session_saved_last_lists_first_within_one_second(tmp_path: Path) -> None:
    """Saves a moment apart are told apart by time, not by the ids' random digits (here the other id sorts higher)."""
    library = SessionLibrary(tmp_path)
    first, second = "20260101-000000-000001", "20260101-000000-ffffff"
    library.save(_chat("my name is Ada"), IDENTITY, first)
    library.save(_chat("call me Bob"), IDENTITY, second)
    library.save(_chat("my name is Ada", "I live in Lisbon"), IDENTITY, first)
    assert [e.session_id for e in library.search()] == [first, second]


def test_save_list_search_reopen_delete(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    ada = library.save(_chat("my name is Ada", "I live in Lisbon"), IDENTITY)
    bob = library.save(_chat("call me Bob"), IDENTITY, title="Bob's chat")
    assert ada.title == "my name is Ada" and bob.title == "Bob's chat"
    assert (ada.base, ada.adapter, ada.messages) == ("tiny", "random", 4)
    assert ada.created and ada.updated and ada.written > 0
    assert {e.session_id for e in library.search()} == {ada.session_id, bob.session_id}
    assert [e.session_id for e in library.search("lisbon")] == [ada.session_id]   # message text, any case
    assert [e.session_id for e in library.search("chat")] == [bob.session_id]     # the title
    assert [e.session_id for e in library.search("Lis")] == [ada.session_id]      # a word's beginning
    assert library.search("Ada Bob") == []                                        # every word must be there
    assert library.search('"; DROP TABLE sessions; --') == []
    engine = ScriptedEngine()
    extra = library.open(ada.session_id, engine, IDENTITY)
    assert [m["content"] for m in engine.lane("delta").messages][::2] == ["my name is Ada", "I live in Lisbon"]
    assert extra["library"]["title"] == "my name is Ada"
    library.delete(bob.session_id)
    assert [e.session_id for e in library.search()] == [ada.session_id]
    assert not library.folder(bob.session_id).exists()


def test_saving_over_a_session_keeps_its_title_and_creation(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    engine = _chat("first words")
    entry = library.save(engine, IDENTITY)
    list(engine.turn("second words"))
    again = library.save(engine, IDENTITY, entry.session_id)
    assert (again.title, again.created, again.messages) == ("first words", entry.created, 4)
    assert [e.session_id for e in library.search("second")] == [entry.session_id]
    assert len(library.search()) == 1


@pytest.mark.parametrize("damage", ["missing", "garbage", "other schema", "dropped table"])
def test_a_missing_or_damaged_index_is_rebuilt_from_the_folders(tmp_path: Path, damage: str) -> None:
    library = SessionLibrary(tmp_path)
    entry = library.save(_chat("the cat is called Tom"), IDENTITY)
    library.close()
    index = tmp_path / "library.sqlite3"
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"not a database at all" * 100)
    else:
        db = sqlite3.connect(index)
        db.execute("PRAGMA user_version = 99" if damage == "other schema" else "DROP TABLE sessions")
        db.commit()
        db.close()
    reopened = SessionLibrary(tmp_path)
    assert [e.session_id for e in reopened.search("Tom")] == [entry.session_id]


def test_the_index_follows_the_folders(tmp_path: Path) -> None:
    """Sessions copied in, changed or removed behind the library's back are listed as the folders say."""
    library = SessionLibrary(tmp_path)
    kept = library.save(_chat("apples"), IDENTITY)
    gone = library.save(_chat("pears"), IDENTITY)
    other = SessionLibrary(tmp_path)              # a second app on the same library
    other.save(_chat("apples and plums"), IDENTITY, kept.session_id)
    library.folder(gone.session_id).joinpath("session.json").unlink()
    (library.sessions / "not-a-session").mkdir()
    broken = library.folder(library.new_id())
    broken.mkdir()
    (broken / "session.json").write_text("{ torn")
    assert [e.session_id for e in library.search()] == [kept.session_id]
    assert [e.session_id for e in library.search("plums")] == [kept.session_id]


def test_an_unwritable_index_lives_in_memory(tmp_path: Path) -> None:
    (tmp_path / "library.sqlite3").mkdir()        # a folder where the file should be, which cannot be removed
    (tmp_path / "library.sqlite3" / "keep").write_text("x")
    library = SessionLibrary(tmp_path)
    entry = library.save(_chat("still works"), IDENTITY)
    assert [e.session_id for e in library.search("works")] == [entry.session_id]


def test_search_without_full_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SQLite lacks FTS5 the same searches run through LIKE, with its wildcards taken literally."""
    monkeypatch.setattr(SessionIndex, "full_text", property(lambda self: False))
    library = SessionLibrary(tmp_path)
    ada = library.save(_chat("my name is Ada", "100% sure"), IDENTITY)
    library.save(_chat("call me Bob"), IDENTITY)
    assert [e.session_id for e in library.search("ada")] == [ada.session_id]
    assert [e.session_id for e in library.search("100")] == [ada.session_id]
    assert len(library.search("_")) == 0


def test_ids_that_are_not_sessions_are_refused(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    for bad in ("../escape", "/etc", "20250101-000000-zzzzzz"):
        with pytest.raises(LibraryError, match="is not a session of the library"):
            library.folder(bad)
    with pytest.raises(LibraryError, match="the session is gone"):
        library.open(library.new_id(), ScriptedEngine(), IDENTITY)


def test_the_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DELTAMEM_CHAT_DATA", str(tmp_path / "mine"))
    assert default_root() == tmp_path / "mine"
    monkeypatch.delenv("DELTAMEM_CHAT_DATA")
    assert default_root().name == "deltamem-chat"


def test_a_real_engine_round_trip(tmp_path: Path) -> None:
    """The library over the engine's own session files: memory and messages come back exactly."""
    torch.set_num_threads(1)
    identity = SessionIdentity(base="tiny", adapter="random")
    engine = make_engine()
    list(engine.turn("hello there", GenerationSettings(max_new_tokens=3)))
    library = SessionLibrary(tmp_path)
    entry = library.save(engine, identity)
    assert any(p.name.startswith("memory-") for p in library.folder(entry.session_id).iterdir())
    fresh = make_engine()
    library.open(entry.session_id, fresh, identity)
    assert fresh.lane("delta").messages == engine.lane("delta").messages
    assert fresh.lane("delta").written_total == engine.lane("delta").written_total == entry.written > 0
    for key, value in engine.lanes["delta"].state.items():
        assert torch.equal(fresh.lanes["delta"].state[key], value)

"""Sessions on disk as one unit: a save killed at any moment leaves one whole save, a torn or damaged session is
refused with one sentence, and a load that fails leaves the open conversation and memory exactly as they were."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from deltamem.files import SaveError
from deltamem.runtime.contract import GenerationSettings, SessionIdentity
from deltamem.runtime.session_io import MEMORY_FILE, SESSION_JSON, SessionError, load_session, save_session
from tests.conftest import make_engine

IDENTITY = SessionIdentity(base="tiny", adapter="random")
SHORT = GenerationSettings(max_new_tokens=4)
KILLS = 20


def _engine_after(*turns: str, **kwargs):
    engine = make_engine(**kwargs)
    for text in turns:
        list(engine.turn(text, SHORT))
    return engine


def _fingerprint(engine) -> dict:
    """Everything a load could change: settings, and per lane messages, token ids, counters, turns and memory."""
    return {
        "policy": str(engine.policy),
        "turn_index": engine.turn_index,
        "caches": {key: id(group.cache) for key, group in engine._groups.items()},
        "lanes": {name: (list(map(dict, lane.messages)), list(lane.processed), lane.written_total, lane.read_upto,
                         lane.window_start, len(lane.turns),
                         {layer: state.clone() for layer, state in lane.state.items()})
                  for name, lane in engine.lanes.items()},
    }


def _same(a: dict, b: dict) -> bool:
    if {k: v for k, v in a.items() if k != "lanes"} != {k: v for k, v in b.items() if k != "lanes"}:
        return False
    for name, lane in a["lanes"].items():
        other = b["lanes"][name]
        if lane[:6] != other[:6] or set(lane[6]) != set(other[6]):
            return False
        if not all(torch.equal(lane[6][layer], other[6][layer]) for layer in lane[6]):
            return False
    return True


def _memory_file(folder: Path) -> Path:
    return folder / json.loads((folder / SESSION_JSON).read_text())["memory"]["file"]


@pytest.fixture(scope="module")
def engines() -> list:
    """Three conversations of one turn each, told apart by the cat's name (tests save them, never change them)."""
    return [_engine_after(f"My cat is called {name}.") for name in ("Pixel", "Rex", "Tiger")]


@pytest.fixture(scope="module")
def open_engine():
    """The conversation open in the app while sessions fail to load: it must not change."""
    return _engine_after("My name is Ada.", "I live in Lisbon.")


def _same_conversation(engine, original) -> bool:
    state, saved = engine.lanes["delta"].state, original.lanes["delta"].state
    return (all(engine.lanes[n].messages == original.lanes[n].messages for n in original.lanes)
            and set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved))


def test_a_save_is_one_session_file_and_one_memory_file_named_by_its_hash(engines, tmp_path: Path) -> None:
    save_session(engines[0], tmp_path, IDENTITY)
    data = json.loads((tmp_path / SESSION_JSON).read_text())
    memory = tmp_path / data["memory"]["file"]
    assert hashlib.sha256(memory.read_bytes()).hexdigest() == data["memory"]["sha256"]
    save_session(engines[1], tmp_path, IDENTITY)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SESSION_JSON, _memory_file(tmp_path).name])
    fresh = make_engine()
    load_session(fresh, tmp_path, IDENTITY)
    assert _same_conversation(fresh, engines[1])


def test_a_version_1_session_still_loads(engines, tmp_path: Path) -> None:
    engine = engines[0]
    save_session(engine, tmp_path, IDENTITY)
    data = json.loads((tmp_path / SESSION_JSON).read_text())
    _memory_file(tmp_path).rename(tmp_path / MEMORY_FILE)
    data["version"] = 1
    del data["memory"]
    (tmp_path / SESSION_JSON).write_text(json.dumps(data))
    fresh = make_engine()
    load_session(fresh, tmp_path, IDENTITY)
    assert fresh.lanes["delta"].messages == engine.lanes["delta"].messages
    save_session(fresh, tmp_path, IDENTITY)       # saving over it writes version 2 and drops the old memory file
    assert not (tmp_path / MEMORY_FILE).exists() and _memory_file(tmp_path).exists()


def test_a_torn_pair_is_refused_with_one_sentence(engines, open_engine, tmp_path: Path) -> None:
    save_session(engines[0], tmp_path / "a", IDENTITY)
    save_session(engines[1], tmp_path / "b", IDENTITY)
    # The memory of one save under the name the other save's session.json gives.
    _memory_file(tmp_path / "b").replace(_memory_file(tmp_path / "a"))
    engine = open_engine
    before = _fingerprint(engine)
    with pytest.raises(SessionError, match=r"does not match the hash session\.json gives, so the two files are not "
                                           r"one save"):
        load_session(engine, tmp_path / "a", IDENTITY)
    assert _same(_fingerprint(engine), before)


def _corrupt_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        data = json.loads((folder / SESSION_JSON).read_text())
        change(data)
        (folder / SESSION_JSON).write_text(json.dumps(data))
    return apply


def _corrupt_memory(change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Callable[[Path], None]:
    """Rewrite the memory states and the hash session.json gives for them, so only the states are wrong."""
    def apply(folder: Path) -> None:
        path = _memory_file(folder)
        tensors = change(load_file(str(path)))
        save_file(tensors, str(path))
        _rehash(folder, path)
    return apply


def _rehash(folder: Path, path: Path) -> None:
    data = json.loads((folder / SESSION_JSON).read_text())
    data["memory"]["sha256"] = digest = hashlib.sha256(path.read_bytes()).hexdigest()
    data["memory"]["file"] = f"memory-{digest[:16]}.safetensors"
    path.rename(folder / data["memory"]["file"])
    (folder / SESSION_JSON).write_text(json.dumps(data))


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content)


def _set(path: str, value: object) -> Callable[[Path], None]:
    """Set a field by its dotted path (lanes.delta.messages.0.role); the value `...` deletes it."""
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is ...:
            del node[key]
        else:
            node[key] = value
    return _corrupt_json(change)


def _first_state(change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def edit(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = sorted(tensors)[0]
        return tensors | {key: change(tensors[key])}
    return _corrupt_memory(edit)


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _inf(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[-1] = float("-inf")
    return t


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "no session.json": (lambda f: (f / SESSION_JSON).unlink(), "no saved session here"),
    "session.json not JSON": (_write(SESSION_JSON, b'{"format": '), "not valid JSON"),
    "session.json not UTF-8": (_write(SESSION_JSON, b'{"format": "\xff"}'), "not UTF-8"),
    "session.json a folder": (lambda f: ((f / SESSION_JSON).unlink(), (f / SESSION_JSON).mkdir()), "is a folder"),
    "session.json nested deep": (_write(SESSION_JSON, b"[" * 3000 + b"]" * 3000), "nested more than"),
    "a 5,000-digit number": (_write(SESSION_JSON, b'{"turn_index": ' + b"7" * 5000 + b"}"), "5,000 digits"),
    "a lone surrogate": (_write(SESSION_JSON, b'{"format": "\\ud800"}'), "lone surrogate"),
    "not a session": (_set("format", "something else"), "not a deltamem-chat session file"),
    "a later version": (_set("version", 3), "session format version 3"),
    "version as text": (_set("version", "2"), 'session format version "2"'),
    "version true": (_set("version", True), "session format version true"),
    "no identity": (_set("identity", ...), '"identity" must be an object'),
    "another base": (_set("identity.base", "Qwen/Qwen3-4B"), "made with base 'Qwen/Qwen3-4B'"),
    "no lanes": (_set("lanes", ...), "do not match this app's"),
    "lanes a list": (_set("lanes", []), "do not match this app's"),
    "a lane missing": (_set("lanes.frozen", ...), r"lanes \['delta'\] do not match"),
    "no policy": (_set("policy", ...), '"policy" must be "full" or "window:N"'),
    "a Unicode digit in the policy": (_set("policy", "window:²"), '"policy": context policy'),
    "policy a number": (_set("policy", 5), '"policy" must be'),
    "turn_index as text": (_set("turn_index", "x"), "turn_index must be an integer"),
    "turn_index negative": (_set("turn_index", -1), "turn_index must be at least 0"),
    "turn_index a float": (_set("turn_index", 1.5), "turn_index must be an integer"),
    "extra a list": (_set("extra", [1]), '"extra" must be an object'),
    "no memory field": (_set("memory", ...), '"memory" must name the memory file'),
    "a bad memory hash": (_set("memory.sha256", "0" * 64), '"memory" must name the memory file'),
    "memory file missing": (lambda f: _memory_file(f).unlink(), "missing, so the session is incomplete"),
    "memory file changed": (lambda f: _memory_file(f).write_bytes(b"x" * 10), "does not match the hash"),
    "memory file empty, hash agreeing": (lambda f: (_memory_file(f).write_bytes(b""), _rehash(f, _memory_file(f))),
                                         "cannot read the memory states"),
    "memory file garbage, hash agreeing": (lambda f: (_memory_file(f).write_bytes(os.urandom(64)),
                                                      _rehash(f, _memory_file(f))), "cannot read the memory states"),
    "a lane not an object": (_set("lanes.delta", 3), "lanes.delta must be an object"),
    "messages not a list": (_set("lanes.delta.messages", "hi"), "lanes.delta.messages must be an array"),
    "a message without role": (_set("lanes.delta.messages.0.role", ...), r'messages\[0\] "role" must be one of '
                                                                        r"system, user, assistant \(got nothing\)"),
    "a message with role tool": (_set("lanes.frozen.messages.1.role", "tool"), '"role" must be one of'),
    "a message without content": (_set("lanes.delta.messages.0.content", None), '"content" must be a string'),
    "a message that is text": (_set("lanes.delta.messages.0", "hello"), "must be an object with a role"),
    "processed not a list": (_set("lanes.delta.processed", 5), "processed must be an array"),
    "a negative token id": (_set("lanes.delta.processed.0", -1), r"processed\[0\] must be 0\.\.299"),
    "a token id past the vocabulary": (_set("lanes.delta.processed.0", 10**6), r"must be 0\.\.299"),
    "a token id as text": (_set("lanes.delta.processed.0", "1"), "must be an integer"),
    "written_total missing": (_set("lanes.delta.written_total", ...), "written_total must be an integer"),
    "written_total negative": (_set("lanes.delta.written_total", -5), "written_total must be at least 0"),
    "read_upto past the messages": (_set("lanes.delta.read_upto", 99), "read_upto must be 0..2"),
    "window_start as text": (_set("lanes.delta.window_start", "a"), "window_start must be an integer"),
    "memory flag changed": (_set("lanes.frozen.memory", True), '"memory" is true, but this lane has its memory off'),
    "a missing layer": (_corrupt_memory(lambda t: {k: v for k, v in t.items() if k != sorted(t)[0]}),
                        "memory has no state for layer"),
    "no tensors": (_corrupt_memory(lambda t: {}), "tokens were written into this lane's memory, but the memory"),
    "integer states": (_first_state(lambda t: t.to(torch.int32)), "holds int32 numbers"),
    "a NaN state": (_first_state(_nan), "NaN or infinite values"),
    "an infinite state": (_first_state(_inf), "NaN or infinite values"),
    "a state of the wrong shape": (_first_state(lambda t: t[:, :4]), "has shape"),
    "a state for another lane": (_corrupt_memory(lambda t: t | {"other/x": torch.zeros(1)}), "a lane this app does"),
    "a state for the frozen lane": (_corrupt_memory(lambda t: t | {f"frozen/{k.split('/', 1)[1]}": v.clone()
                                                                   for k, v in t.items()}), "whose memory is off"),
    "a state for an unknown layer": (_corrupt_memory(lambda t: t | {"delta/nowhere": next(iter(t.values())).clone()}),
                                     "a layer this model does not have"),
}


@pytest.fixture(scope="module")
def saved_pair(engines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved session, copied for each corruption."""
    folder = tmp_path_factory.mktemp("session")
    save_session(engines[0], folder, IDENTITY)
    return folder


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_each_corrupted_session_is_one_sentence_and_leaves_the_open_conversation_untouched(
        case: str, saved_pair: Path, open_engine, tmp_path: Path) -> None:
    import shutil

    corrupt, message = CORRUPTIONS[case]
    folder = tmp_path / "s"
    shutil.copytree(saved_pair, folder)
    corrupt(folder)
    before = _fingerprint(open_engine)
    with pytest.raises(SessionError, match=message) as error:
        load_session(open_engine, folder, IDENTITY)
    assert "\n" not in str(error.value)
    assert _same(_fingerprint(open_engine), before)


def test_a_failed_save_keeps_the_previous_save_and_leaves_nothing_behind(engines, tmp_path: Path,
                                                                         monkeypatch) -> None:
    from deltamem.runtime import session_io

    save_session(engines[0], tmp_path / "kept", IDENTITY)
    before = {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()}
    engine = engines[1]

    def full_disk(path, text):
        raise SaveError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(session_io, "atomic_write_text", full_disk)
    with pytest.raises(SaveError, match="No space left"):
        save_session(engine, tmp_path / "kept", IDENTITY)
    assert {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()} == before
    with pytest.raises(SaveError):
        save_session(engine, tmp_path / "new", IDENTITY)
    assert not (tmp_path / "new").exists()


def _overwrite_forever(engines: list, folder: Path, ready: int) -> None:
    """The child: save each engine's session in turn over the same folder, until killed; say when the first is done."""
    try:
        while True:
            for engine in engines:
                save_session(engine, folder, IDENTITY, extra={"which": engine.lanes["delta"].messages[0]["content"]})
                if ready >= 0:
                    os.write(ready, b"x")
                    os.close(ready)
                    ready = -1
    finally:
        os._exit(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_save_killed_at_random_moments_always_leaves_one_whole_save(engines, tmp_path: Path) -> None:
    expected = {e.lanes["delta"].messages[0]["content"]: e for e in engines}
    folder = tmp_path / "session"
    save_session(engines[0], folder, IDENTITY, extra={"which": engines[0].lanes["delta"].messages[0]["content"]})
    start = time.perf_counter()
    for _ in range(3):                           # how long one save takes here, to spread the kills over saves
        save_session(engines[1], tmp_path / "timing", IDENTITY)
    one_save = (time.perf_counter() - start) / 3
    rng = random.Random(19)
    loaded = set()
    engine = make_engine()
    for _ in range(KILLS):
        read, write = os.pipe()
        forked = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _overwrite_forever(engines, folder, write)
        os.close(write)
        os.read(read, 1)                         # the child is past its first save, into the overwriting
        os.close(read)
        child_save = max(one_save, time.perf_counter() - forked)     # a forked child may save slower
        time.sleep(rng.uniform(0, 4 * child_save))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        extra = load_session(engine, folder, IDENTITY)
        assert _same_conversation(engine, expected[extra["which"]])
        loaded.add(extra["which"])
    assert len(loaded) > 1                       # the kills did land in different saves
    save_session(engines[0], folder, IDENTITY)  # the next save removes whatever the killed ones left
    assert sorted(p.name for p in folder.iterdir()) == sorted([SESSION_JSON, _memory_file(folder).name])

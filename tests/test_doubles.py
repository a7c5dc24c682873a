"""The tests' engine double and the remote engine implement the engine contract: checked by mypy, statically, and
at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deltamem.runtime.contract import Engine
from tests.doubles import ScriptedEngine

ROOT = Path(__file__).resolve().parent.parent


def test_the_double_and_the_remote_engine_type_check_against_the_engine_contract() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    result = subprocess.run([sys.executable, "-m", "mypy", "tests/doubles.py", "deltamem_chat/remote/engine.py",
                             "deltamem/runtime/contract.py"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_double_is_an_engine_at_run_time() -> None:
    assert isinstance(ScriptedEngine(), Engine)
    assert ScriptedEngine(lanes=("frozen", "delta", "delta-2")).lane_names == ("frozen", "delta", "delta-2")


def test_the_double_saves_and_loads_a_session(tmp_path: Path) -> None:
    from deltamem.runtime.contract import SessionIdentity

    identity = SessionIdentity("base", "adapter")
    engine = ScriptedEngine(pieces=["hi"], prompt_written=3)
    list(engine.turn("hello"))
    engine.save(tmp_path, identity, {"note": 1})
    other = ScriptedEngine()
    assert other.load(tmp_path, identity) == {"note": 1}
    assert other.lane("delta") == engine.lane("delta") and other.lane("delta").written_total == 4
    with pytest.raises(ValueError, match="saved with"):
        other.load(tmp_path, SessionIdentity("base", "another"))
    with pytest.raises(ValueError, match="no saved session"):
        other.load(tmp_path / "nowhere", identity)

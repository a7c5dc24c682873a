"""The retrieval lanes: BM25 over the messages a window dropped, the block's budget and place, and the lanes'
equalities (rag = frozen under `full`, batched = sequential, delta+rag writes what delta writes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltamem.retrieval import (
    MessageIndex,
    RetrievalError,
    RetrievalSettings,
    block_line,
    block_message,
    dates_of,
)
from deltamem.runtime.contract import ALL_LANES, GenerationSettings, LaneDone, TurnDone, parse_lanes
from deltamem_chat.transcripts import Message, Probe, load_transcript
from tests.conftest import make_engine
from tests.tui_harness import one_torch_thread  # noqa: F401 (an autouse fixture: the tiny model wants one thread)

ROOT = Path(__file__).resolve().parent.parent
FACTS = ["My cat is called Pixel.", "I live in Lisbon.", "The sky was grey.", "My sister plays cello.",
         "What is my cat called?", "Who plays cello?"]
FIXED = GenerationSettings(max_new_tokens=2, stop_at_eos=False)
WINDOW = "window:120"
RETRIEVAL = RetrievalSettings(3, 100)   # room for the block's header and a fact or two, in the test's byte tokens


def _chat(engine, turns=FACTS, settings=FIXED) -> list[dict[str, LaneDone]]:
    """Every turn's `LaneDone` per lane."""
    out = []
    for text in turns:
        events = list(engine.turn(text, settings))
        assert isinstance(events[-1], TurnDone)
        out.append({e.lane: e for e in events if isinstance(e, LaneDone)})
    return out


def test_bm25_finds_the_evidence_of_the_shipped_transcripts_probes() -> None:
    """Each probe asked against every message before it: its `depends_on` message among the top 3."""
    index, found, missed = MessageIndex(), 0, []
    for path in sorted((ROOT / "transcripts").glob("*.jsonl")):
        messages: list[str] = []
        for item in load_transcript(path).items:
            if isinstance(item, Message):
                messages.append(item.content)
            elif isinstance(item, Probe) and item.depends_on is not None:
                if item.depends_on in index.search(messages, item.question, 3):
                    found += 1
                else:
                    missed.append(f"{path.name}: {item.question}")
    assert found >= 25 and found >= 0.85 * (found + len(missed)), missed


def test_search_needs_a_shared_term_and_keeps_k() -> None:
    index = MessageIndex()
    texts = ["my cat is called pixel", "the weather is grey", "pixel sleeps on the cat bed"]
    assert index.search(texts, "what is my cat called?", 1) == [0]
    assert set(index.search(texts, "cat", 5)) == {0, 2}
    assert index.search(texts, "the is", 3) == [], "stop words alone match nothing"
    assert index.search([], "cat", 3) == []


def test_settings_parse_and_refuse_in_one_sentence() -> None:
    assert RetrievalSettings.parse("k=5,tokens=100") == RetrievalSettings(5, 100)
    assert RetrievalSettings.parse("tokens=auto").budget(1024) == 256
    for bad in ("k=0", "tokens=-1", "depth=3", "k=auto"):
        with pytest.raises(RetrievalError, match="retrieval"):
            RetrievalSettings.parse(bad)
    assert parse_lanes("rag, delta+rag") == ("rag", "delta+rag")
    for bad in ("frozen,frozen", "memory", ""):
        with pytest.raises(ValueError, match="lanes"):
            parse_lanes(bad)


def test_block_lines_carry_their_session_dates() -> None:
    contents = ["DATE: 8 May 2023\nHi there.", "How are you?", "DATE: 9 May 2023\nBack again."]
    dates = dates_of(contents)
    assert dates == ["8 May 2023", "8 May 2023", "9 May 2023"]
    assert block_line("user", contents[1], dates[1]) == "[8 May 2023] user: How are you?"
    assert block_line("user", contents[2], dates[2]) == "[9 May 2023] user: Back again."


def test_the_block_stays_in_budget_and_holds_only_dropped_messages() -> None:
    budget = RETRIEVAL.tokens
    engine = make_engine(WINDOW, lanes=("frozen", "rag"), retrieval=RETRIEVAL)
    retrieved_any, turns = False, _chat(engine)
    for turn in turns:
        stats = turn["rag"].stats
        assert turn["frozen"].stats.retrieved == []
        if not stats.retrieved:
            continue
        retrieved_any = True
        messages = engine.lanes["rag"].messages
        assert all(r["index"] < stats.window_start for r in stats.retrieved), "a message still in the window"
        assert [r["index"] for r in stats.retrieved] == sorted(r["index"] for r in stats.retrieved)
        dates = dates_of([m["content"] for m in messages])
        block = block_message([block_line(r["role"], r["content"], dates[r["index"]]) for r in stats.retrieved])
        assert engine.renderer.length(block) <= budget
    assert retrieved_any
    asked = FACTS.index("What is my cat called?")
    assert FACTS[0] in [r["content"] for r in turns[asked]["rag"].stats.retrieved]


def test_rag_equals_frozen_under_full() -> None:
    engine = make_engine("full", lanes=("frozen", "rag"))
    for turn in _chat(engine, FACTS[:4], GenerationSettings(max_new_tokens=4)):
        assert turn["rag"].text == turn["frozen"].text and turn["rag"].stats.retrieved == []
    assert engine.lanes["rag"].processed == engine.lanes["frozen"].processed


@pytest.mark.parametrize("lanes", [("frozen", "delta", "rag"), ALL_LANES], ids=["three-lanes", "four-lanes"])
def test_batched_lanes_equal_sequential_lanes(lanes: tuple[str, ...]) -> None:
    settings = GenerationSettings(max_new_tokens=3)
    batched = _chat(make_engine(WINDOW, batched=True, lanes=lanes, retrieval=RETRIEVAL), settings=settings)
    sequential = _chat(make_engine(WINDOW, batched=False, lanes=lanes, retrieval=RETRIEVAL), settings=settings)
    assert [{k: (v.text, v.stats.retrieved) for k, v in t.items()} for t in batched] == \
        [{k: (v.text, v.stats.retrieved) for k, v in t.items()} for t in sequential]
    assert any(t["rag"].stats.retrieved for t in batched), "retrieval should take part"


def test_delta_rag_writes_each_token_once() -> None:
    """Same messages, same reply lengths: the retrieved block is read with writes off, so the counts agree."""
    engine = make_engine(WINDOW, lanes=("delta", "delta+rag"), retrieval=RETRIEVAL)
    turns = _chat(engine)
    assert any(t["delta+rag"].stats.retrieved for t in turns)
    assert [t["delta+rag"].stats.written for t in turns] == [t["delta"].stats.written for t in turns]
    assert engine.lane("delta+rag").written_total == engine.lane("delta").written_total > 0


@pytest.mark.parametrize("option", [["--lanes", "frozen,memory"], ["--batching", "rows"], ["--retrieval", "k=0"]])
def test_lane_options_are_refused_in_one_sentence_before_loading(option: list[str]) -> None:
    from typer.testing import CliRunner

    from deltamem_chat.cli import app

    result = CliRunner().invoke(app, ["replay", str(ROOT / "transcripts" / "demo_1.jsonl"), "--headless", *option])
    assert result.exit_code == 2 and option[0] in result.output and "Traceback" not in result.output


def test_without_retrieval_settings_an_alias_brings_its_own_else_the_default() -> None:
    from deltamem_chat.aliases import resolve_models
    from deltamem_chat.commands.options import retrieval_from

    demo = resolve_models("demo", None)
    assert (retrieval_from(None, demo).k, retrieval_from(None, demo).tokens) == (3, 24)   # half the demo's window
    assert retrieval_from(None, resolve_models("qwen3-4b", None)).tokens is None          # a quarter of the window
    assert retrieval_from("k=2,tokens=50", demo).tokens == 50

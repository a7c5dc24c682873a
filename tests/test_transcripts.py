"""The transcript format: shipped files validate, broken lines are reported by file and line, writing round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deltamem.context import ContextPolicy
from deltamem_chat.scoring import is_hit
from deltamem_chat.transcripts import (
    Message,
    Probe,
    Transcript,
    TranscriptError,
    TranscriptMeta,
    iter_transcript_items,
    load_transcript,
    write_transcript,
    write_transcripts,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "transcripts").glob("*.jsonl"))
EXPECTED_SHIPPED = {"org_chart", "preferences", "fact_update", "long_document", "long_history"}

HI = '{"role": "user", "content": "hi"}'
OK = '{"role": "assistant", "content": "hello"}'


def _write(tmp_path: Path, lines: list[str], name: str = "case.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_five_shipped_transcripts_exist() -> None:
    assert EXPECTED_SHIPPED <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_transcript_validates_and_has_probes(path: Path) -> None:
    transcript = load_transcript(path)
    assert transcript.probes, "a shipped transcript needs at least one probe"
    assert transcript.meta.licence == "CC0-1.0"
    assert transcript.meta.source == "deltamem-chat"
    assert transcript.meta.title and transcript.meta.description
    assert transcript.meta.context is not None
    assert path.stat().st_size < 200_000


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_probe_answers_are_in_the_message_they_depend_on(path: Path) -> None:
    """Catches a probe whose `depends_on` points at the wrong message or whose answer was mistyped."""
    transcript = load_transcript(path)
    for probe in transcript.probes:
        assert probe.depends_on is not None, probe.question
        source = transcript.messages[probe.depends_on].content
        assert is_hit(source, probe.answer, probe.aliases), (probe.question, source)


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_probes_come_after_a_bounded_window(path: Path) -> None:
    """With the suggested window, each probed fact should lie outside the context the frozen model keeps."""
    transcript = load_transcript(path)
    context = transcript.meta.context
    if context is None or context.is_full:
        pytest.skip("no window suggested")
    for before, probe in transcript.probe_positions():
        assert probe.depends_on is not None
        source = transcript.messages[probe.depends_on]
        later = transcript.messages[probe.depends_on + 1 : before]
        words_after = sum(len(message.content.split()) for message in later)
        if source.document is not None:      # a document is cut to its tail: count what follows the fact in it
            words_after += len(source.content[source.content.index(probe.answer):].split())
        # about 0.75 English words per BPE token: the fact is at least a window's worth of tokens back
        assert words_after >= 0.75 * context.tokens, probe.question


def test_long_history_is_longer_than_an_8k_context() -> None:
    transcript = load_transcript(ROOT / "transcripts" / "long_history.jsonl")
    words = sum(len(message.content.split()) for message in transcript.messages)
    assert words >= 9000


def test_fact_update_expects_the_newer_value() -> None:
    transcript = load_transcript(ROOT / "transcripts" / "fact_update.jsonl")
    probe = transcript.probes[0]
    assert is_hit("It is on Thursday.", probe.answer, probe.aliases)
    assert not is_hit("It is on Tuesday.", probe.answer, probe.aliases)


BROKEN_CASES = [
    # (lines, 1-based line of the error, what the message must say)
    ([HI, '{"role": "user", "content": }'], 2, "invalid JSON"),
    (["[1, 2]"], 1, "expected a JSON object, got an array"),
    (['"just text"'], 1, "expected a JSON object, got a string"),
    (['{"role": "user"}'], 1, 'missing "content"'),
    (['{"role": "user", "content": "   "}'], 1, '"content" is empty'),
    (['{"role": "user", "text": ""}'], 1, '"text" is empty'),
    (['{"content": "hi"}'], 1, 'missing "role"'),
    (
        ['{"role": "robot", "content": "beep"}'],
        1,
        '"role" must be one of system, user, assistant (got "robot")',
    ),
    (['{"role": 1, "content": "hi"}'], 1, '"role" must be a string (got a number)'),
    (['{"role": "user", "content": 5}'], 1, '"content" must be a string (got a number)'),
    (['{"role": "user", "content": "hi", "session": true}'], 1, '"session" must be an integer or a string'),
    (['{"role": "user", "content": "hi", "time": 12}'], 1, '"time" must be a string (got a number)'),
    (['{"role": "user", "content": "hi", "text": "hi"}'], 1, '"content" and "text" both given'),
    (['{"type": "note", "text": "hi"}'], 1, '"type" must be one of meta, message, probe (got "note")'),
    ([HI, '{"type": "meta", "title": "late"}'], 2, 'the "meta" line must be the first line'),
    (['{"type": "meta", "title": 3}', HI], 1, '"title" must be a string'),
    (['{"type": "meta", "context": "window"}', HI], 1, '"context" must be "full", "window:N"'),
    (['{"type": "meta", "context": {"policy": "window", "tokens": 0}}', HI], 1, "positive integer"),
    (['{"type": "meta", "licence": "MIT", "license": "CC0-1.0"}', HI], 1, '"licence" and "license" disagree'),
    ([HI, '{"type": "probe", "answer": "x"}'], 2, 'missing "question"'),
    ([HI, '{"type": "probe", "question": "q?"}'], 2, 'missing "answer"'),
    ([HI, '{"type": "probe", "question": "q?", "answer": 4}'], 2, '"answer" must be a string (got a number)'),
    ([HI, '{"type": "probe", "question": "q?", "answer": "The"}'], 2, "has no words left"),
    ([HI, '{"type": "probe", "question": "q?", "answer": "x", "aliases": "y"}'], 2, '"aliases" must be a list'),
    ([HI, '{"type": "probe", "question": "q?", "answer": "x", "aliases": ["y", 2]}'], 2, "non-empty strings"),
    (
        [HI, OK, '{"type": "probe", "question": "q?", "answer": "x", "depends_on": 2}'],
        3,
        '"depends_on" must be the 0-based index of an earlier message, 0..1 here (got 2)',
    ),
    ([HI, '{"type": "probe", "question": "q?", "answer": "x", "depends_on": -1}'], 2, "earlier message"),
    ([HI, '{"type": "probe", "question": "q?", "answer": "x", "depends_on": "0"}'], 2, "a message index"),
    (['{"type": "probe", "question": "q?", "answer": "x"}', HI], 1, "after at least one message"),
    ([HI, '{"question": "q?", "answer": "x"}'], 2, 'a probe line needs "type": "probe"'),
    (
        [HI, '{"type": "probe", "id": "a", "question": "q?", "answer": "x"}', OK]
        + ['{"type": "probe", "id": "a", "question": "r?", "answer": "y"}'],
        4,
        'probe "id" "a" is already used on line 2',
    ),
    (["", HI, "   ", '{"role": "user", "content": "hi"'], 4, "invalid JSON"),  # blank lines still count
]


@pytest.mark.parametrize(("lines", "line", "complaint"), BROKEN_CASES)
def test_broken_line_is_reported_with_file_and_line(
    tmp_path: Path, lines: list[str], line: int, complaint: str
) -> None:
    path = _write(tmp_path, lines, "broken.jsonl")
    with pytest.raises(TranscriptError) as caught:
        load_transcript(path)
    message = str(caught.value)
    assert "broken.jsonl" in message
    assert f":{line}: " in message
    assert complaint in message
    assert (caught.value.path, caught.value.line) == (path, line)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("", "no messages"),
        ('{"type": "meta", "title": "only meta"}\n\n', "no messages"),
    ],
)
def test_file_without_messages_is_rejected(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TranscriptError, match=complaint) as caught:
        load_transcript(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.line is None


def test_missing_file_and_directory_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="absent.jsonl: no such file"):
        load_transcript(tmp_path / "absent.jsonl")
    with pytest.raises(TranscriptError, match="is a directory"):
        load_transcript(tmp_path)


def test_non_utf8_line_is_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(HI.encode() + b'\n{"role": "user", "content": "caf\xe9"}\n')
    with pytest.raises(TranscriptError, match=r"latin1\.jsonl:2: not UTF-8"):
        load_transcript(path)


def test_tolerant_spellings_parse(tmp_path: Path) -> None:
    lines = [
        '{"type": "meta", "title": "Spellings", "license": "CC0-1.0", "context": "window:512"}',
        '{"from": "human", "value": "one"}',
        '{"speaker": "gpt", "text": "two"}',
        '{"role": "Bot", "message": "three"}',
        '{"type": "message", "role": "model", "content": "four", "session": "s-2", "time": "Mon 9:00"}',
        '{"role": "System", "content": "five", "session": 3}',
    ]
    path = tmp_path / "tolerant.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # a BOM and no final newline
    transcript = load_transcript(path)
    expected_meta = TranscriptMeta(title="Spellings", licence="CC0-1.0", context=ContextPolicy(512))
    assert transcript.meta == expected_meta
    assert transcript.messages == [
        Message("user", "one"),
        Message("assistant", "two"),
        Message("assistant", "three"),
        Message("assistant", "four", session="s-2", time="Mon 9:00"),
        Message("system", "five", session=3),
    ]


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ('"full"', ContextPolicy()),
        ('{"policy": "full"}', ContextPolicy()),
        ('"window:1024"', ContextPolicy(1024)),
        ('{"policy": "window", "tokens": 2048}', ContextPolicy(2048)),
    ],
)
def test_context_policy_spellings(tmp_path: Path, context: str, expected: ContextPolicy) -> None:
    path = _write(tmp_path, [f'{{"type": "meta", "context": {context}}}', HI])
    assert load_transcript(path).meta.context == expected


def test_transcript_helpers(tmp_path: Path) -> None:
    lines = [
        '{"role": "system", "content": "Be brief."}',
        HI,
        '{"type": "probe", "question": "What did I say?", "answer": "hi", "depends_on": 1, "id": 7}',
        OK,
        '{"type": "probe", "question": "And you?", "answer": "hello", "aliases": ["hullo"], "depends_on": 2}',
    ]
    transcript = load_transcript(_write(tmp_path, lines))
    assert transcript.meta == TranscriptMeta()
    assert [type(item).__name__ for item in transcript.items] == ["Message", "Message", "Probe", "Message", "Probe"]
    assert transcript.probes[0] == Probe("What did I say?", "hi", depends_on=1, id="7")
    assert transcript.probes[1].aliases == ("hullo",)
    assert [(before, probe.question) for before, probe in transcript.probe_positions()] == [
        (2, "What did I say?"),
        (3, "And you?"),
    ]


def test_iteration_streams_items_before_reaching_a_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path, ['{"type": "meta", "title": "Stream"}', HI, OK, "not json"])
    items = iter_transcript_items(path)
    assert next(items) == TranscriptMeta(title="Stream")
    assert next(items) == Message("user", "hi")
    assert next(items) == Message("assistant", "hello")
    with pytest.raises(TranscriptError, match=":4: invalid JSON"):
        next(items)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    original = Transcript(
        path=None,
        meta=TranscriptMeta(title="Round trip", licence="CC0-1.0", context=ContextPolicy(256)),
        items=[
            Message("user", "Naïve café — ünïcode stays", session=1, time="2024-01-01"),
            Message("assistant", "Noted.", session=1),
            Probe("What stays?", "ünïcode", aliases=("unicode",), depends_on=0, id="p1"),
        ],
    )
    out = tmp_path / "round.jsonl"
    write_transcript(original, out)
    assert "ünïcode" in out.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["type"] == "meta"
    loaded = load_transcript(out)
    assert (loaded.meta, loaded.items) == (original.meta, original.items)
    assert [p.name for p in tmp_path.iterdir()] == ["round.jsonl"]  # no temporary file left behind


def test_write_refuses_an_invalid_transcript_and_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.jsonl"
    out.write_text(HI + "\n", encoding="utf-8")
    bad = Transcript(path=None, items=[Message("user", "hi"), Probe("Which?", "x", depends_on=5)])
    with pytest.raises(TranscriptError, match=r"keep\.jsonl:2: would be invalid: \"depends_on\""):
        write_transcript(bad, out)
    with pytest.raises(TranscriptError, match="no messages"):
        write_transcript(Transcript(path=None), out)
    assert out.read_text(encoding="utf-8") == HI + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


def test_write_many_checks_them_all_before_writing_any(tmp_path: Path) -> None:
    good = Transcript(path=None, items=[Message("user", "hi")])
    bad = Transcript(path=None, items=[Message("user", "hi"), Probe("Which?", "the")])
    targets = {tmp_path / "new" / "a.jsonl": good, tmp_path / "new" / "b.jsonl": bad}
    with pytest.raises(TranscriptError, match=r"b\.jsonl:2: would be invalid: \"answer\""):
        write_transcripts(targets)
    assert list(tmp_path.iterdir()) == []  # not even the folder
    write_transcripts({tmp_path / "new" / "a.jsonl": good, tmp_path / "new" / "c.jsonl": good})
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["a.jsonl", "c.jsonl"]


def test_the_documented_example_is_a_valid_transcript(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "transcripts.md").read_text(encoding="utf-8")
    example = docs.split("```jsonl\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.jsonl"
    path.write_text(example, encoding="utf-8")
    transcript = load_transcript(path)
    assert transcript.meta.context == ContextPolicy(1024)
    probe = transcript.probes[0]
    assert "Thursday" in transcript.messages[probe.depends_on].content

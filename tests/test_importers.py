"""Importers on small hand-written fixtures, and the `import` command end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from deltamem_chat.commands.importing import register
from deltamem_chat.transcripts import (
    ImportFormatError,
    Message,
    Probe,
    Transcript,
    import_locomo,
    import_longmemeval,
    import_openai,
    import_sharegpt,
    load_transcript,
    write_transcript,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "importers"


def test_openai_single_conversation_keeps_text_and_drops_tool_traffic() -> None:
    transcript = import_openai(FIXTURES / "openai_chat.json")
    assert transcript.items == [
        Message("system", "You are a helpful gardening assistant."),
        Message("user", "My tomato plant is called Gertrude.\nHer leaves are curling."),
        Message("assistant", "Curling leaves often mean heat stress; water Gertrude in the morning."),
    ]
    assert transcript.meta.source == "OpenAI messages (openai_chat.json)"


def test_openai_jsonl_of_conversations_becomes_sessions() -> None:
    transcript = import_openai(FIXTURES / "openai_sessions.jsonl")
    assert transcript.items == [
        Message("user", "I am repainting the shed blue.", session=1),
        Message("assistant", "Blue will look lovely.", session=1),
        Message("system", "Answer briefly.", session=2),
        Message("user", "What colour is my shed going to be?", session=2),
        Message("assistant", "Blue.", session=2),
    ]


def test_openai_jsonl_of_messages_is_one_conversation() -> None:
    transcript = import_openai(FIXTURES / "openai_lines.jsonl")
    assert transcript.items == [
        Message("user", "Remind me: the locker code is 4417."),
        Message("assistant", "Noted, 4417."),
    ]


def test_openai_rejects_unknown_role(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text('[{"role": "narrator", "content": "Once upon a time"}]', encoding="utf-8")
    with pytest.raises(ImportFormatError, match="message 1 has unknown \"role\" 'narrator'"):
        import_openai(path)


def test_sharegpt_list_becomes_sessions_and_skips_empty_turns() -> None:
    transcript = import_sharegpt(FIXTURES / "sharegpt.json")
    assert transcript.items == [
        Message("system", "You help plan walks.", session=1),
        Message("user", "I want a loop walk near Pellow Ridge.", session=1),
        Message("assistant", "Try the six-mile Heron Loop; it starts at the old mill.", session=1),
        Message("user", "Did you say the Heron Loop starts at the mill?", session=2),
        Message("assistant", "Yes, at the old mill car park.", session=2),
    ]


def test_sharegpt_single_object_has_no_session(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{"conversations": [{"from": "human", "value": "Hi"}]}', encoding="utf-8")
    assert import_sharegpt(path).items == [Message("user", "Hi")]


def test_locomo_first_sample_by_default() -> None:
    transcript = import_locomo(FIXTURES / "locomo.json")
    messages = transcript.messages
    assert messages[0].role == "system" and "Imogen and Tobias" in messages[0].content
    # session_1 comes before session_2 although the file lists session_2 first
    assert messages[1:] == [
        Message("user", "Imogen: I started a pottery class on Mondays.", 1, "4:02 pm on 28 May, 2023"),
        Message("user", "Tobias: Nice. I adopted a greyhound called Biscuit.", 1, "4:02 pm on 28 May, 2023"),
        Message("user", "Imogen: Biscuit is a great name.", 1, "4:02 pm on 28 May, 2023"),
        Message("user", "Tobias: Did the kiln firing go well?", 2, "9:15 am on 3 June, 2023"),
        Message(
            "user",
            "Imogen: Yes! Seven bowls survived. [shares a photo of blue bowls on a shelf]",
            2,
            "9:15 am on 3 June, 2023",
        ),
    ]
    # categories 1-4 in file order; the category-5 (adversarial) question is skipped
    assert transcript.probes == [
        Probe("What is the name of Tobias's dog?", "Biscuit", depends_on=2, id="conv-x1-qa0"),
        Probe("How many bowls survived the firing?", "7", depends_on=5, id="conv-x1-qa1"),
        Probe("What day is Imogen's pottery class?", "Mondays", depends_on=1, id="conv-x1-qa2"),
        Probe("Would Imogen enjoy a ceramics museum?", "Likely yes", depends_on=None, id="conv-x1-qa4"),
    ]
    assert isinstance(transcript.items[-1], Probe) and isinstance(transcript.items[-5], Message)
    assert transcript.meta.title == "LoCoMo conv-x1: Imogen and Tobias"


@pytest.mark.parametrize("sample", ["conv-x2", "1", 1])
def test_locomo_sample_by_id_or_index(sample: str | int) -> None:
    transcript = import_locomo(FIXTURES / "locomo.json", sample=sample)
    rosa = Message("user", "Rosa: I finally fixed my bike's gears.", 1, "8:00 pm on 1 July, 2023")
    assert transcript.messages[1] == rosa
    assert transcript.probes == [Probe("What did Rosa fix?", "her bike's gears", depends_on=1, id="conv-x2-qa0")]


def test_locomo_category_filter() -> None:
    transcript = import_locomo(FIXTURES / "locomo.json", categories=[2, 3])
    assert [probe.id for probe in transcript.probes] == ["conv-x1-qa1", "conv-x1-qa4"]


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"sample": "conv-zz"}, "no sample has sample_id 'conv-zz' (the file has: conv-x1, conv-x2)"),
        ({"sample": 9}, "sample 9 is out of range (the file has 2: 0..1)"),
        ({"categories": [5]}, "categories must be among 1-4"),
    ],
)
def test_locomo_bad_choices(kwargs: dict[str, object], complaint: str) -> None:
    with pytest.raises(ImportFormatError) as caught:
        import_locomo(FIXTURES / "locomo.json", **kwargs)
    assert complaint in str(caught.value)


def test_longmemeval_first_instance() -> None:
    transcript = import_longmemeval(FIXTURES / "longmemeval.json")
    assert transcript.messages == [
        Message("user", "Any tips for a crisp risotto crust?", 1, "2023/08/01 (Tue) 09:12"),
        Message("assistant", "Press it into a hot pan and leave it alone.", 1, "2023/08/01 (Tue) 09:12"),
        Message("user", "I restored an old reading lamp this weekend.", 2, "2023/08/05 (Sat) 18:40"),
        Message("assistant", "What a nice project!", 2, "2023/08/05 (Sat) 18:40"),
        Message("user", "I painted it mustard yellow to match the armchair.", 2, "2023/08/05 (Sat) 18:40"),
    ]
    # depends_on is the turn marked has_answer, not just the start of the answer session
    assert transcript.items[-1] == Probe(
        "What colour did I paint the reading lamp?", "Mustard yellow", depends_on=4, id="q-lamp"
    )
    assert transcript.meta.description == "question type single-session-user; asked on 2023/08/14 (Mon) 10:00"


@pytest.mark.parametrize("instance", ["q-count", "1"])
def test_longmemeval_instance_by_id_or_index(instance: str) -> None:
    transcript = import_longmemeval(FIXTURES / "longmemeval.json", instance=instance)
    # without a has_answer turn, the first turn of the answer session is the evidence; 3 becomes "3"
    assert transcript.probes == [Probe("How many plants do I own now?", "3", depends_on=0, id="q-count")]


@pytest.mark.parametrize(
    ("importer", "fixture"),
    [
        (import_openai, "openai_chat.json"),
        (import_openai, "openai_sessions.jsonl"),
        (import_sharegpt, "sharegpt.json"),
        (import_locomo, "locomo.json"),
        (import_longmemeval, "longmemeval.json"),
    ],
)
def test_imported_transcripts_write_and_read_back(
    tmp_path: Path, importer: Callable[[Path], Transcript], fixture: str
) -> None:
    transcript = importer(FIXTURES / fixture)
    out = tmp_path / "out.jsonl"
    write_transcript(transcript, out)
    loaded = load_transcript(out)
    assert (loaded.meta, loaded.items) == (transcript.meta, transcript.items)


def test_invalid_json_input_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"messages": [\n  {"role": "user", "content": "hi"},\n  oops\n]}', encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"bad\.json:3: invalid JSON"):
        import_openai(path)


def test_invalid_jsonl_input_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"role": "user", "content": "hi"}\n{"role": "assistant", "content": "yo"\n', encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        import_openai(path)


@pytest.mark.parametrize("content", ["[]", '{"messages": [{"role": "assistant", "content": null}]}'])
def test_input_without_conversation_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"empty\.json: contains no user or assistant messages"):
        import_openai(path)


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="absent.json: no such file"):
        import_sharegpt(tmp_path / "absent.json")


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for the real CLI, so `import` is a sub-command as it will be there."""

    register(app)
    return app


def test_import_command_writes_a_valid_transcript(tmp_path: Path) -> None:
    out = tmp_path / "lamp.jsonl"
    result = CliRunner().invoke(
        _cli(), ["import", "longmemeval", str(FIXTURES / "longmemeval.json"), str(out), "--instance", "q-lamp"]
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}: 5 messages, 1 probe." in result.output
    assert load_transcript(out).probes[0].answer == "Mustard yellow"


def test_import_command_locomo_categories(tmp_path: Path) -> None:
    out = tmp_path / "locomo.jsonl"
    args = ["import", "locomo", str(FIXTURES / "locomo.json"), str(out), "--sample", "conv-x1", "--category", "1"]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert [probe.answer for probe in load_transcript(out).probes] == ["Biscuit"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["openai", "{broken}"], "invalid JSON"),
        (["sharegpt", "{missing}"], "no such file"),
        (["openai", "{broken}", "--sample", "0"], "--sample only applies to the locomo format"),
        (["locomo", str(FIXTURES / "locomo.json"), "--instance", "0"], "--instance only applies"),
        (["locomo", str(FIXTURES / "locomo.json"), "--sample", "nope"], "no sample has sample_id 'nope'"),
    ],
)
def test_import_command_errors_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], complaint: str) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"messages": [', encoding="utf-8")
    args = [a.format(broken=broken, missing=tmp_path / "missing.json") for a in args]
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(_cli(), ["import", args[0], args[1], str(out), *args[2:]])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], result.stderr
    assert result.stdout == ""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json"]  # no temporary file either


def test_import_command_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    source = str(FIXTURES / "openai_lines.jsonl")
    refused = CliRunner().invoke(_cli(), ["import", "openai", source, str(out)])
    assert refused.exit_code == 1 and "already exists; pass --force" in refused.stderr
    assert out.read_text(encoding="utf-8") == "keep me\n"
    forced = CliRunner().invoke(_cli(), ["import", "openai", source, str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(load_transcript(out).messages) == 2

"""Importers on small invented fixtures shaped like the real releases, and the `import` command end to end."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem_chat.cli import app
from deltamem_chat.transcripts import (
    ImportFormatError,
    Message,
    Probe,
    Transcript,
    import_locomo,
    import_longmemeval,
    import_memoryagentbench,
    import_openai,
    import_sharegpt,
    load_transcript,
    read_locomo,
    read_longmemeval,
    read_memoryagentbench,
    write_transcript,
)
from deltamem_chat.transcripts.importers.chunking import chunk_text, estimate_tokens, sentence_spans
from deltamem_chat.transcripts.importers.locomo import evidence_turns
from deltamem_chat.transcripts.importers.longmemeval import date_order

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "importers"
RELEASE = "data/multimodal_dialog/locomo10_v2"


def _write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


# --- OpenAI and ShareGPT ---------------------------------------------------------------------------------------


def test_openai_keeps_tool_calls_and_results_as_assistant_text() -> None:
    transcript = import_openai(FIXTURES / "openai_chat.json")
    assert transcript.items == [
        Message("system", "You are a helpful gardening assistant."),
        Message("user", "My tomato plant is called Gertrude.\nHer leaves are curling."),
        Message("assistant", '[tool call] read_sensor({"sensor": "humidity"})'),
        Message(
            "assistant",
            '[tool result] read_sensor: {"humidity": 41}\n'
            "Curling leaves often mean heat stress; water Gertrude in the morning.",
        ),
    ]
    assert transcript.meta.source == "OpenAI messages (openai_chat.json)"


def test_openai_legacy_function_calls_and_a_result_no_assistant_follows(tmp_path: Path) -> None:
    path = _write_json(
        tmp_path / "legacy.json",
        [
            {"role": "user", "content": "Book the 9:40 ferry."},
            {"role": "assistant", "content": "Booking it.", "function_call": {"name": "book", "arguments": '{"t": 1}'}},
            {"role": "function", "name": "book", "content": "confirmed, seat 12"},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c9", "type": "function"}]},
            {"role": "tool", "tool_call_id": "c9", "content": [{"type": "text", "text": "ok"}]},
        ],
    )
    assert import_openai(path).items == [
        Message("user", "Book the 9:40 ferry."),
        Message("assistant", 'Booking it.\n[tool call] book({"t": 1})'),
        Message("assistant", "[tool result] book: confirmed, seat 12"),
        Message("user", "Thanks!"),
        Message("assistant", '[tool call] {"id": "c9", "type": "function"}'),
        Message("assistant", "[tool result] ok"),
    ]


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


def test_sharegpt_function_call_and_observation_turns_are_folded_in_order() -> None:
    assert import_sharegpt(FIXTURES / "sharegpt_tools.json").items == [
        Message("user", "What's the weather in Tromsø?"),
        Message("assistant", '[tool call] get_weather({"city": "Tromsø"})'),
        Message("assistant", '[tool result] {"temp_c": -4}\nIt is -4 °C in Tromsø.'),
        Message("user", "Save that to my notes."),
        Message("assistant", "[tool call] not json: save_note"),
        Message("assistant", "[tool result] save_note: saved"),
    ]


def test_sharegpt_single_object_has_no_session(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{"conversations": [{"from": "human", "value": "Hi"}]}', encoding="utf-8")
    assert import_sharegpt(path).items == [Message("user", "Hi")]


def test_sharegpt_rejects_unknown_speaker(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "odd.json", {"conversations": [{"from": "narrator", "value": "Once"}]})
    with pytest.raises(ImportFormatError, match="conversation 1, turn 1 has unknown \"from\" 'narrator'"):
        import_sharegpt(path)


# --- LoCoMo ----------------------------------------------------------------------------------------------------

X1_PROBES = [
    Probe("What is the name of Tobias's dog?", "Biscuit", depends_on=2, id="conv-x1-qa0", category=1),
    Probe("How many bowls survived the firing?", "7", depends_on=5, id="conv-x1-qa1", category=2),
    Probe("What day is Imogen's pottery class?", "Mondays", depends_on=1, id="conv-x1-qa2", category=4),
    Probe("What is Imogen's cat called?", "", depends_on=2, id="conv-x1-qa3", category=5, abstain=True,
          distractor="Biscuit"),
    Probe("Would Imogen enjoy a ceramics museum?", "Likely yes", id="conv-x1-qa4", category=3),
    Probe("Who likes the dog's name?", "Imogen", depends_on=3, id="conv-x1-qa5", category=1),
]


def test_locomo_first_sample_by_default() -> None:
    transcript = import_locomo(FIXTURES / "locomo.json")
    messages = transcript.messages
    assert messages[0].role == "system" and "Imogen and Tobias" in messages[0].content
    # session_1 comes before session_2 although the file lists session_2 first; session_3 has only a date
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
    # every QA, in file order: the int answer becomes text, evidence "D2:02" is D2:2, "D2:2; D1:1" depends on the
    # earlier D1:1, "D:1:3" reads as D1:3, and category 5 is an abstention with its adversarial answer
    assert transcript.probes == X1_PROBES
    assert isinstance(transcript.items[-1], Probe) and isinstance(transcript.items[-7], Message)
    assert transcript.meta.title == "LoCoMo conv-x1: Imogen and Tobias"
    assert transcript.meta.description == "2 sessions; QA categories 1, 2, 3, 4, 5."


@pytest.mark.parametrize("sample", ["conv-x2", "1", 1])
def test_locomo_sample_by_id_or_index(sample: str | int) -> None:
    transcript = import_locomo(FIXTURES / "locomo.json", sample=sample)
    rosa = Message("user", "Rosa: I finally fixed my bike's gears.", 1, "8:00 pm on 1 July, 2023")
    assert transcript.messages[1] == rosa
    # a category-5 QA that also carries an "answer" still expects none: LoCoMo offers that one as a wrong choice
    assert transcript.probes == [
        Probe("What did Rosa fix?", "her bike's gears", depends_on=1, id="conv-x2-qa0", category=1),
        Probe("Did Rosa ride to Larkfield?", "", depends_on=2, id="conv-x2-qa1", category=5, abstain=True,
              distractor="Yes"),
    ]


def test_locomo_whole_file_is_one_transcript_per_sample() -> None:
    transcripts = read_locomo(FIXTURES / "locomo.json")
    assert list(transcripts) == ["conv-x1", "conv-x2"]
    assert transcripts["conv-x1"].probes == X1_PROBES


def test_locomo_category_filter() -> None:
    transcript = import_locomo(FIXTURES / "locomo.json", categories=[2, 3, 5])
    assert [probe.id for probe in transcript.probes] == ["conv-x1-qa1", "conv-x1-qa3", "conv-x1-qa4"]


@pytest.mark.parametrize(
    ("evidence", "turns"),
    [
        (["D1:3"], [(1, 3)]),
        (["D30:05"], [(30, 5)]),
        (["D8:6; D9:17"], [(8, 6), (9, 17)]),
        (["D9:1 D4:4 D4:6"], [(9, 1), (4, 4), (4, 6)]),
        (["D:11:26", "D", "D1:2:3", "X4:1"], [(11, 26)]),
        ("D2:1", [(2, 1)]),
        ([None, 7], []),
    ],
)
def test_locomo_evidence_ids_are_read_robustly(evidence: object, turns: list[tuple[int, int]]) -> None:
    assert evidence_turns(evidence) == turns


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"sample": "conv-zz"}, "no sample has sample_id 'conv-zz' (the file has: conv-x1, conv-x2)"),
        ({"sample": 9}, "sample 9 is out of range (the file has 2: 0..1)"),
        ({"categories": [6]}, "categories must be among 1-5, not [6]"),
    ],
)
def test_locomo_bad_choices(kwargs: dict[str, object], complaint: str) -> None:
    with pytest.raises(ImportFormatError) as caught:
        import_locomo(FIXTURES / "locomo.json", **kwargs)
    assert complaint in str(caught.value)


def _conversation(first: str, second: str, fact: str) -> dict[str, object]:
    """A per-conversation file of the snap-research release: no "conversation" wrapper and no sample_id."""
    return {
        "speaker_a": first,
        "speaker_b": second,
        "session_1_date_time": "1:00 pm on 2 May, 2023",
        "session_1": [
            {"speaker": first, "dia_id": "D1:1", "text": fact},
            {"speaker": second, "dia_id": "D1:2", "text": "Good to know."},
        ],
        "session_2_date_time": "3:30 pm on 9 May, 2023",
        "events_session_1": {first: [fact], second: [], "date": "2 May, 2023"},
        "session_1_observation": {first: [[fact, "D1:1"]]},
        "session_1_summary": f"{first} tells {second}: {fact}",
        "qa": [
            {"question": f"What did {first} say?", "answer": fact, "evidence": ["D1:1"], "category": 4},
            {"question": f"What is {second}'s job?", "adversarial_answer": "pilot", "evidence": [], "category": 5},
        ],
    }


def _release_zip(path: Path, members: dict[str, object]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{RELEASE}/", "")
        for name, value in members.items():
            archive.writestr(f"{RELEASE}/{name}", value if isinstance(value, str) else json.dumps(value))
    return path


def test_locomo_release_zip_is_read_in_place(tmp_path: Path) -> None:
    members = {"12.json": _conversation("Ana", "Bo", "My locker is 12."), "7.json": _conversation("Cy", "Di", "I sing")}
    path = _release_zip(tmp_path / "locomo10.zip", members)
    transcripts = read_locomo(path)
    assert list(transcripts) == ["conv-7", "conv-12"]  # numbered files in number order
    conv7 = transcripts["conv-7"]
    assert conv7.messages[1:] == [
        Message("user", "Cy: I sing", 1, "1:00 pm on 2 May, 2023"),
        Message("user", "Di: Good to know.", 1, "1:00 pm on 2 May, 2023"),
    ]
    assert conv7.probes == [
        Probe("What did Cy say?", "I sing", depends_on=1, id="conv-7-qa0", category=4),
        Probe("What is Di's job?", "", id="conv-7-qa1", category=5, abstain=True, distractor="pilot"),
    ]
    assert conv7.meta.source == f"LoCoMo (locomo10.zip/{RELEASE}/7.json)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locomo10.zip"]  # nothing extracted


def test_locomo_release_file_and_folder(tmp_path: Path) -> None:
    _write_json(tmp_path / "26.json", _conversation("Ana", "Bo", "My locker is 12."))
    _write_json(tmp_path / "30.json", _conversation("Cy", "Di", "I sing."))
    (tmp_path / "notes.txt").write_text("not a conversation", encoding="utf-8")
    single = import_locomo(tmp_path / "26.json")
    assert single.meta.title == "LoCoMo conv-26: Ana and Bo" and single.probes[0].id == "conv-26-qa0"
    assert list(read_locomo(tmp_path)) == ["conv-26", "conv-30"]
    assert import_locomo(tmp_path, sample="conv-30").meta.title == "LoCoMo conv-30: Cy and Di"


def test_locomo_zip_errors_name_the_member(tmp_path: Path) -> None:
    path = _release_zip(tmp_path / "r.zip", {"7.json": _conversation("Cy", "Di", "I sing."), "9.json": "{oops"})
    with pytest.raises(ImportFormatError, match=rf"r\.zip/{RELEASE}/9\.json:1: invalid JSON"):
        read_locomo(path)
    broken = _conversation("Cy", "Di", "I sing.")
    broken["session_1"][1]["speaker"] = None  # type: ignore[index]
    path = _release_zip(tmp_path / "s.zip", {"7.json": broken})
    with pytest.raises(ImportFormatError, match=r'7\.json: sample conv-7, session_1 turn 2 "speaker" should be a str'):
        read_locomo(path)


def test_locomo_refuses_a_category_outside_1_to_5(tmp_path: Path) -> None:
    conversation = _conversation("Cy", "Di", "I sing.")
    conversation["qa"][0]["category"] = 6  # type: ignore[index]
    with pytest.raises(ImportFormatError, match='sample conv-3, qa 0 "category" should be 1-5'):
        import_locomo(_write_json(tmp_path / "3.json", conversation))


# --- LongMemEval -----------------------------------------------------------------------------------------------


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
        "What colour did I paint the reading lamp?", "Mustard yellow", depends_on=4, id="q-lamp",
        category="single-session-user", date="2023/08/14 (Mon) 10:00",
    )
    assert transcript.meta.description == "question type single-session-user; asked on 2023/08/14 (Mon) 10:00"


@pytest.mark.parametrize("instance", ["q-count", "1"])
def test_longmemeval_instance_by_id_or_index(instance: str) -> None:
    transcript = import_longmemeval(FIXTURES / "longmemeval.json", instance=instance)
    # without a has_answer turn, the first turn of the answer session is the evidence; 3 becomes "3"
    assert transcript.probes == [
        Probe("How many plants do I own now?", "3", depends_on=0, id="q-count", category="multi-session",
              date="2023/09/02 (Sat) 12:00")
    ]


def test_longmemeval_sessions_in_date_order_and_knowledge_update_depends_on_the_newest_value() -> None:
    transcript = import_longmemeval(FIXTURES / "longmemeval.json", instance="q-city")
    messages = transcript.messages
    assert [(m.session, m.time) for m in messages] == [
        (1, "2023/03/02 (Thu) 18:30"),
        (1, "2023/03/02 (Thu) 18:30"),
        (2, "2023/04/15 (Sat) 12:00"),
        (2, "2023/04/15 (Sat) 12:00"),
        (3, "2023/06/10 (Sat) 09:00"),
        (3, "2023/06/10 (Sat) 09:00"),
        (3, "2023/06/10 (Sat) 09:00"),
    ]
    probe = transcript.probes[0]
    # the newest session holding evidence, at the turn where the new value is first given (not Porto, the old one)
    assert probe.depends_on == 4 and messages[4].content == "Big news: I just moved to Lisbon!"
    assert (probe.category, probe.answer, probe.abstain) == ("knowledge-update", "Lisbon", False)


def test_longmemeval_abstention_instance() -> None:
    probe = import_longmemeval(FIXTURES / "longmemeval.json", instance="q-boat_abs").probes[0]
    assert probe.abstain and probe.answer.startswith("You did not mention a boat")
    assert probe.depends_on == 0  # the related fact it is easy to confuse with


def test_longmemeval_date_order_is_stable_and_keeps_undated_sessions_in_place() -> None:
    dates = ["2023/05/20 (Sat) 02:21", "sometime", "2023/05/01 (Mon) 10:00", "2023/05/20 (Sat) 02:21", None]
    assert date_order(dates) == [2, 1, 0, 3, 4]
    assert date_order(["2023/5/2", "2023/05/01 (Mon) 23:59"]) == [1, 0]


def test_longmemeval_whole_file_is_one_transcript_per_instance() -> None:
    transcripts = read_longmemeval(FIXTURES / "longmemeval.json")
    assert list(transcripts) == ["q-lamp", "q-count", "q-city", "q-boat_abs"]
    assert [t.probes[0].abstain for t in transcripts.values()] == [False, False, False, True]


def test_longmemeval_rejects_dates_that_do_not_match_sessions(tmp_path: Path) -> None:
    record = json.loads((FIXTURES / "longmemeval.json").read_text(encoding="utf-8"))[1]
    record["haystack_dates"] = []
    with pytest.raises(ImportFormatError, match='instance q-count "haystack_dates" has 0 dates for 1 sessions'):
        import_longmemeval(_write_json(tmp_path / "lme.json", record))


# --- MemoryAgentBench ------------------------------------------------------------------------------------------

MAB_CONTEXT = (
    "Fact 1: The lighthouse keeper is Orla. Fact 2: The ferry leaves at noon.\n\n"
    "Fact 3: The lighthouse keeper is now Mr. Penhale. Fact 4: The bakery sells rye."
)


def _parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _mab_rows() -> list[dict[str, object]]:
    metadata = {"source": "factconsolidation_sh_6k", "qa_pair_ids": ["fc-0", "fc-1"], "question_dates": None,
                "question_ids": None}
    return [
        {
            "context": MAB_CONTEXT,
            "questions": ["Who is the lighthouse keeper?", "When does the ferry leave?"],
            "answers": [["Penhale", "Mr. Penhale", "Penhale"], ["noon", "12 pm"]],
            "metadata": metadata,
        },
        {
            "context": "I keep bees on the roof. The hives face south.",
            "questions": ["Where are the hives?", "What colour is my car?"],
            "answers": [["on the roof"], ["You never said what car you drive."]],
            "metadata": {"source": "longmemeval_s*", "qa_pair_ids": None,
                         "question_dates": ["2023/05/30 (Tue) 23:40", "2023/06/01 (Thu) 08:00"],
                         "question_ids": ["q1", "q2_abs"]},
        },
    ]


def test_memoryagentbench_row_becomes_chunks_then_probes(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "Conflict_Resolution-00000-of-00001.parquet", _mab_rows())
    transcript = import_memoryagentbench(path, chunk_tokens=12)
    assert transcript.messages[0].role == "system" and "memorize" in transcript.messages[0].content
    assert transcript.messages[1:] == [
        Message("user", "Fact 1: The lighthouse keeper is Orla."),
        Message("user", "Fact 2: The ferry leaves at noon."),
        Message("user", "Fact 3: The lighthouse keeper is now Mr. Penhale."),
        Message("user", "Fact 4: The bakery sells rye."),
    ]
    assert transcript.probes == [
        Probe("Who is the lighthouse keeper?", "Penhale", aliases=("Mr. Penhale",), id="fc-0",
              category="Conflict_Resolution"),
        Probe("When does the ferry leave?", "noon", aliases=("12 pm",), id="fc-1", category="Conflict_Resolution"),
    ]
    assert transcript.meta.title == "MemoryAgentBench Conflict_Resolution-0 (factconsolidation_sh_6k)"
    assert "4 chunks of at most 12 tokens" in (transcript.meta.description or "")
    # with the official 4,096-token chunks the whole context is one message, its text kept as it was
    assert import_memoryagentbench(path).messages[1] == Message("user", MAB_CONTEXT)


def test_memoryagentbench_dates_abstentions_split_and_row_names(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "rows.parquet", _mab_rows())
    transcript = import_memoryagentbench(path, row="1", split="Accurate_Retrieval")
    assert transcript.probes == [
        Probe("Where are the hives?", "on the roof", id="Accurate_Retrieval-1-q0", category="Accurate_Retrieval",
              date="2023/05/30 (Tue) 23:40"),
        Probe("What colour is my car?", "You never said what car you drive.", id="Accurate_Retrieval-1-q1",
              category="Accurate_Retrieval", abstain=True, date="2023/06/01 (Thu) 08:00"),
    ]
    assert list(read_memoryagentbench(path)) == ["rows-0", "rows-1"]
    assert import_memoryagentbench(path, row="rows-1").meta.title == "MemoryAgentBench rows-1 (longmemeval_s*)"


def test_memoryagentbench_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _mab_rows()
    rows[1]["answers"] = [["on the roof"]]
    path = _parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(ImportFormatError, match="row bad-1 has 2 questions but 1 answers"):
        read_memoryagentbench(path)
    assert import_memoryagentbench(path).probes[0].answer == "Penhale"  # the good row alone still imports
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("hello", encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"x\.parquet: not a readable parquet file"):
        import_memoryagentbench(not_parquet)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportFormatError, match=r"needs pyarrow \(pip install 'deltamem-chat\[benchmarks\]'\)"):
        import_memoryagentbench(path)


def test_sentences_end_at_punctuation_but_not_after_abbreviations_or_initials() -> None:
    text = '  Dr. Vale met J. R. Ames at 9 a.m. on Monday. "Really?" she asked! It rained...  Then it stopped'
    assert [text[start:end] for start, end in sentence_spans(text)] == [
        "Dr. Vale met J. R. Ames at 9 a.m. on Monday.",
        '"Really?"',
        "she asked!",
        "It rained...",
        "Then it stopped",
    ]


def test_chunks_pack_whole_sentences_and_a_long_sentence_stands_alone() -> None:
    text = "One two three. Four five. " + "word " * 20 + "end. Six seven."
    assert chunk_text(text, 7) == ["One two three. Four five.", ("word " * 20 + "end.").strip(), "Six seven."]
    assert chunk_text("", 5) == [] and chunk_text("   ", 5) == []


def test_token_estimate_counts_like_a_bpe_pre_tokenizer() -> None:
    assert estimate_tokens("Hello, world!") == 4  # Hello , world !
    assert estimate_tokens("I'm fine") == 2
    assert estimate_tokens("code 9545877") == 5  # code, space, 954 587 7
    assert estimate_tokens("internationalisation") == 2  # a long word is usually split


# --- shared behaviour ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("importer", "fixture"),
    [
        (import_openai, "openai_chat.json"),
        (import_openai, "openai_sessions.jsonl"),
        (import_sharegpt, "sharegpt.json"),
        (import_sharegpt, "sharegpt_tools.json"),
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


# --- the command -----------------------------------------------------------------------------------------------


def _run(*args: str | Path) -> object:
    return CliRunner().invoke(app, ["import", *map(str, args)])


def test_import_locomo_file_into_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run("locomo", FIXTURES / "locomo.json", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"Wrote {out / 'conv-x1.jsonl'}: 6 messages, 6 probes.",
        f"Wrote {out / 'conv-x2.jsonl'}: 3 messages, 2 probes.",
        f"Wrote 2 transcripts to {out}: 9 messages, 8 probes.",
    ]
    assert load_transcript(out / "conv-x1.jsonl").probes == X1_PROBES


@pytest.mark.parametrize("target", ["picked.jsonl", "folder"])
def test_import_one_sample_to_a_file_or_into_a_folder(tmp_path: Path, target: str) -> None:
    out = tmp_path / target
    result = _run("locomo", FIXTURES / "locomo.json", out, "--sample", "conv-x2", "--category", "1")
    assert result.exit_code == 0, result.output
    written = out if target.endswith(".jsonl") else out / "conv-x2.jsonl"
    assert result.stdout == f"Wrote {written}: 3 messages, 1 probe.\n"
    assert [probe.answer for probe in load_transcript(written).probes] == ["her bike's gears"]


def test_import_release_zip_and_longmemeval_instance(tmp_path: Path) -> None:
    zipped = _release_zip(tmp_path / "locomo10.zip", {"26.json": _conversation("Ana", "Bo", "My locker is 12.")})
    assert _run("locomo", zipped, tmp_path / "conv26.jsonl").exit_code == 0  # one conversation may go to a file
    assert load_transcript(tmp_path / "conv26.jsonl").meta.title == "LoCoMo conv-26: Ana and Bo"
    result = _run("longmemeval", FIXTURES / "longmemeval.json", tmp_path / "lme", "--instance", "q-city")
    assert result.exit_code == 0, result.output
    assert load_transcript(tmp_path / "lme" / "q-city.jsonl").probes[0].depends_on == 4


def test_import_memoryagentbench_rows(tmp_path: Path) -> None:
    source = _parquet(tmp_path / "Test_Time_Learning-00000-of-00001.parquet", _mab_rows())
    result = _run("memoryagentbench", source, tmp_path / "mab", "--chunk-tokens", "12")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "mab").iterdir())
    assert names == ["Test_Time_Learning-0.jsonl", "Test_Time_Learning-1.jsonl"]
    assert len(load_transcript(tmp_path / "mab" / "Test_Time_Learning-0.jsonl").messages) == 5
    result = _run("memoryagentbench", source, tmp_path / "one.jsonl", "--row", "1", "--split", "Accurate_Retrieval")
    assert result.exit_code == 0, result.output
    assert load_transcript(tmp_path / "one.jsonl").probes[0].category == "Accurate_Retrieval"


def test_import_refuses_existing_files_without_force_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "conv-x2.jsonl").write_text("keep me\n", encoding="utf-8")
    refused = _run("locomo", FIXTURES / "locomo.json", out)
    assert refused.exit_code == 1
    assert refused.stderr == f"Cannot import: {out / 'conv-x2.jsonl'} already exists; pass --force to replace it.\n"
    assert sorted(p.name for p in out.iterdir()) == ["conv-x2.jsonl"]  # conv-x1 was not written either
    assert (out / "conv-x2.jsonl").read_text(encoding="utf-8") == "keep me\n"
    forced = _run("locomo", FIXTURES / "locomo.json", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert len(load_transcript(out / "conv-x2.jsonl").probes) == 2


def test_import_writes_nothing_when_one_conversation_fails(tmp_path: Path) -> None:
    samples = json.loads((FIXTURES / "locomo.json").read_text(encoding="utf-8"))
    samples[1]["qa"][0]["question"] = " "  # the reader would refuse this probe
    source = _write_json(tmp_path / "in.json", samples)
    result = _run("locomo", source, tmp_path / "out")
    assert result.exit_code == 1
    assert 'conv-x2.jsonl:5: would be invalid: "question" is empty' in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["openai", "{broken}"], "invalid JSON"),
        (["sharegpt", "{missing}"], "no such file"),
        (["openai", "{broken}", "--sample", "0"], "--sample only applies to the locomo format."),
        (["locomo", str(FIXTURES / "locomo.json"), "--instance", "0"], "--instance only applies to the longmemeval "
         "format (use --sample for locomo)."),
        (["locomo", str(FIXTURES / "locomo.json"), "--row", "0"], "--row only applies to the memoryagentbench"),
        (["longmemeval", str(FIXTURES / "longmemeval.json"), "--category", "1"], "--category only applies"),
        (["locomo", str(FIXTURES / "locomo.json"), "--sample", "nope"], "no sample has sample_id 'nope'"),
        (["locomo", str(FIXTURES / "locomo.json")], "holds 2 conversations; give a folder as OUT, or pick one "
         "with --sample."),
    ],
)
def test_import_command_errors_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], complaint: str) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"messages": [', encoding="utf-8")
    args = [a.format(broken=broken, missing=tmp_path / "missing.json") for a in args]
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["import", args[0], args[1], str(out), *args[2:]])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json"]  # no output, no temporary file


def test_import_command_refuses_to_overwrite_a_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    source = FIXTURES / "openai_lines.jsonl"
    refused = _run("openai", source, out)
    assert refused.exit_code == 1 and "already exists; pass --force" in refused.stderr
    assert out.read_text(encoding="utf-8") == "keep me\n"
    forced = _run("openai", source, out, "--force")
    assert forced.exit_code == 0, forced.output
    assert len(load_transcript(out).messages) == 2

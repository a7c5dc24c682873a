"""Hostile input: any bytes given to a reader end in a valid object or one sentence naming the file, never a traceback.

A committed corpus of the cases that once crashed (tests/fixtures/fuzz, `cases.json` saying which reader and which
sentence) is replayed; property-based tests (hypothesis) throw arbitrary bytes and arbitrary JSON values into every
field at the transcript reader and each importer; the adapter and command-line cases are checked with their words.

`DELTAMEM_FUZZ_EXAMPLES=5000 pytest tests/test_hostile.py` hunts longer, with fresh random inputs each run; the
suite's own run is short and the same every time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from deltamem.adapter import ADAPTER_PT, AdapterError, attach_adapter, read_tensors
from deltamem.config import ConfigError, DeltaMemConfig
from deltamem.files import SaveError, atomic_write_text
from deltamem.hub import LoadError
from deltamem.runtime.loading import RuntimeChoice, check_fits
from deltamem.testing import random_backbone
from deltamem_chat.cli import app
from deltamem_chat.transcripts import (
    ImportFormatError,
    TranscriptError,
    import_openai,
    import_sharegpt,
    load_transcript,
    read_locomo,
    read_longmemeval,
    write_transcripts,
)
from deltamem_chat.transcripts.importers import memoryagentbench

FUZZ = Path(__file__).resolve().parent / "fixtures" / "fuzz"
IMPORTERS = Path(__file__).resolve().parent / "fixtures" / "importers"
CASES = json.loads((FUZZ / "cases.json").read_text(encoding="utf-8"))

HUNT = int(os.environ.get("DELTAMEM_FUZZ_EXAMPLES", "0"))


def examples(count: int) -> settings:
    """The suite's short, repeatable run; or, with DELTAMEM_FUZZ_EXAMPLES, a longer random hunt."""
    return settings(max_examples=HUNT or count, derandomize=not HUNT, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------ the corpus
def _read_base_config(path: Path) -> None:
    folder = path.parent / f"{path.stem}-base"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    shutil.copy(path, folder / "config.json")
    check_fits(folder, RuntimeChoice("cpu", torch.float32, "sdpa"))


def _read_adapter_config(path: Path) -> None:
    DeltaMemConfig.load(path, warn=False)


READERS: dict[str, tuple[Callable[[Path], object], tuple[type[Exception], ...]]] = {
    "transcript": (load_transcript, (TranscriptError,)),
    "openai": (import_openai, (ImportFormatError,)),
    "sharegpt": (import_sharegpt, (ImportFormatError,)),
    "locomo": (read_locomo, (ImportFormatError,)),
    "longmemeval": (read_longmemeval, (ImportFormatError,)),
    "adapter_config": (_read_adapter_config, (ConfigError,)),
    "adapter_tensors": (read_tensors, (AdapterError,)),
    "base_config": (_read_base_config, (LoadError,)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_corpus_case_gives_its_sentence(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    path = tmp_path / name
    shutil.copy(FUZZ / name, path)
    read, errors = READERS[case["reader"]]
    if case["expect"] is None:                  # read as it is: a valid object
        result = read(path)
        if case["reader"] in ("openai", "sharegpt", "locomo", "longmemeval"):
            targets = result if isinstance(result, dict) else {"one": result}
            write_transcripts({tmp_path / f"out-{i}.jsonl": t for i, t in enumerate(targets.values())})
            for i in range(len(targets)):
                load_transcript(tmp_path / f"out-{i}.jsonl")
        return
    with pytest.raises(errors) as error:
        read(path)
    message = str(error.value)
    assert case["expect"] in message, message
    assert "\n" not in message and len(message) < 600
    assert str(path) in message or str(path.parent) in message


# ------------------------------------------------------------------------------------ property tests
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(st.characters(exclude_categories=()), max_size=12) | st.text(SURROGATES, min_size=1, max_size=2)
LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(10**700), max_value=10**700)
          | st.floats(allow_nan=True, allow_infinity=True) | TEXT)
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
DEEP = st.integers(min_value=90, max_value=220).map(lambda depth: json.loads("[" * depth + "]" * depth))
VALUES = JSON | DEEP
READER_KEYS = st.sampled_from(["type", "role", "from", "speaker", "content", "text", "message", "value", "session",
                               "time", "question", "answer", "aliases", "depends_on", "id", "category", "abstain",
                               "distractor", "date", "title", "context", "licence", "license", "source"])
KINDS = st.sampled_from(["message", "probe", "meta", None])


def _dumps(value: object) -> str:
    """JSON text as a file holds it: a lone surrogate as its \\u escape (it cannot be UTF-8)."""
    return json.dumps(value, ensure_ascii=True)


@st.composite
def transcript_lines(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        record: dict[str, object] = {"role": "user", "content": "My cat is called Pixel."}
        kind = draw(KINDS)
        if kind is not None:
            record["type"] = kind
        if kind == "probe":
            record = {"type": "probe", "question": "What is my cat called?", "answer": "Pixel"}
        for key in draw(st.lists(READER_KEYS | TEXT, max_size=3)):
            record[key] = draw(VALUES)
        lines.append(_dumps(record) if draw(st.integers(0, 9)) else _dumps(draw(VALUES)))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _never_crashes(read: Callable[[], object], errors: tuple[type[Exception], ...]) -> None:
    try:
        read()
    except errors as error:
        assert "\n" not in str(error), str(error)


@examples(100)
@given(data=st.binary(max_size=300))
def test_the_transcript_reader_takes_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    _never_crashes(lambda: load_transcript(path), (TranscriptError,))


@examples(200)
@given(data=transcript_lines())
def test_the_transcript_reader_takes_any_json_in_any_field(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        transcript = load_transcript(path)
    except TranscriptError as error:
        assert "\n" not in str(error)
        return
    # What was read is text a tokenizer takes: UTF-8, no lone surrogates.
    for item in transcript.items:
        for value in vars(item).values():
            if isinstance(value, str):
                value.encode("utf-8")


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value (the value itself, every element, every member)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: object) -> object:
    """`document` with one to three of its values replaced by arbitrary JSON values, or removed."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(document)
        place = draw(st.sampled_from(places))
        if not place:
            document = draw(VALUES)
            continue
        parent = document
        try:
            for step in place[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[place[-1]]
            else:
                parent[place[-1]] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    return document


def _import_and_write(tmp_path: Path, read: Callable[[Path], object], path: Path) -> None:
    """Import as the command does: read, then write every transcript; what is written reads back cleanly."""
    try:
        result = read(path)
    except ImportFormatError as error:
        assert "\n" not in str(error), str(error)
        return
    transcripts = result if isinstance(result, dict) else {"one": result}
    out = tmp_path / "out"
    targets = {out / f"{i}.jsonl": t for i, t in enumerate(transcripts.values())}
    try:
        write_transcripts(targets)
    except (TranscriptError, SaveError) as error:
        assert "\n" not in str(error), str(error)
        return
    for target in targets:
        load_transcript(target)


FORMATS: dict[str, tuple[Callable[[Path], object], str]] = {
    "openai": (import_openai, "openai_chat.json"),
    "openai-sessions": (import_openai, "openai_sessions.jsonl"),
    "sharegpt": (import_sharegpt, "sharegpt_tools.json"),
    "locomo": (read_locomo, "locomo.json"),
    "longmemeval": (read_longmemeval, "longmemeval.json"),
}


def _fixture(name: str) -> object:
    text = (IMPORTERS / name).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_importer_takes_any_json_in_any_field(fmt: str, tmp_path: Path) -> None:
    read, fixture = FORMATS[fmt]
    original = _fixture(fixture)
    lines = fixture.endswith(".jsonl")

    @examples(60)
    @given(document=mutated(original))
    def run(document: object) -> None:
        path = tmp_path / ("in.jsonl" if lines else "in.json")
        if lines and isinstance(document, list):
            path.write_text("\n".join(_dumps(record) for record in document) + "\n", encoding="utf-8")
        else:
            path.write_text(_dumps(document), encoding="utf-8")
        _import_and_write(tmp_path, read, path)

    run()


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "locomo", "longmemeval"])
def test_each_importer_takes_any_bytes(fmt: str, tmp_path: Path) -> None:
    read = FORMATS[fmt][0]

    @examples(30)
    @given(data=st.binary(max_size=200))
    def run(data: bytes) -> None:
        path = tmp_path / "in.json"
        path.write_bytes(data)
        _import_and_write(tmp_path, read, path)

    run()


MAB_ROW = {"context": "I keep bees on the roof. The hives face south.", "questions": ["Where are the hives?"],
           "answers": [["on the roof"]], "metadata": {"source": "s", "qa_pair_ids": ["a"], "question_dates": None,
                                                      "question_ids": ["q1"]}}


@examples(80)
@given(row=mutated(MAB_ROW))
def test_the_memoryagentbench_importer_takes_any_value_in_any_field(tmp_path: Path, row: object) -> None:
    # A parquet file gives each row as a dict of plain values; the row is where a wrong value can be.
    path = tmp_path / "rows.parquet"
    try:
        record = memoryagentbench.as_object(path, row, "row Split-0")
        transcript = memoryagentbench._transcript(path, record, "Split-0", "Split", 16)
    except ImportFormatError as error:
        assert "\n" not in str(error)
        return
    try:
        write_transcripts({tmp_path / "out.jsonl": transcript})
    except (TranscriptError, SaveError) as error:
        assert "\n" not in str(error)
        return
    load_transcript(tmp_path / "out.jsonl")


# ----------------------------------------------------------------------------------- importer refusals
def _import(*args: str):
    return CliRunner().invoke(app, ["import", *map(str, args)])


@pytest.mark.parametrize(("fmt", "fixture", "option"), [("locomo", "locomo.json", "--sample"),
                                                        ("longmemeval", "longmemeval.json", "--instance")])
@pytest.mark.parametrize("digit", ["²", "³", "١", "1" * 5000])
def test_unicode_and_endless_digits_pick_nothing(fmt: str, fixture: str, option: str, digit: str,
                                                 tmp_path: Path) -> None:
    result = _import(fmt, IMPORTERS / fixture, tmp_path / "out", option, digit)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Cannot import: " in result.output and "(the file has: " in result.output
    assert len(result.output) < 400


def test_an_import_never_writes_over_its_input(tmp_path: Path) -> None:
    source = tmp_path / "chat.jsonl"
    shutil.copy(IMPORTERS / "openai_lines.jsonl", source)
    before = source.read_bytes()
    result = _import("openai", source, source, "--force")
    assert result.exit_code == 1 and "is the input file itself" in result.output
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    result = _import("openai", source, link, "--force")
    assert result.exit_code == 1 and "is the input file itself" in result.output
    assert source.read_bytes() == before


def test_an_import_replaces_only_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    result = _import("openai", IMPORTERS / "openai_lines.jsonl", fifo, "--force")
    assert result.exit_code == 1 and "is not a regular file" in result.output
    assert fifo.is_fifo()
    if Path("/dev/full").exists():
        device = tmp_path / "full.jsonl"
        device.symlink_to("/dev/full")
        result = _import("openai", IMPORTERS / "openai_lines.jsonl", device, "--force")
        assert result.exit_code == 1 and "/dev/full: it is not a regular file" in result.output
        assert Path("/dev/full").is_char_device()


def test_atomic_writes_refuse_folders_and_devices(tmp_path: Path) -> None:
    with pytest.raises(SaveError, match="it is a folder"):
        atomic_write_text(tmp_path, "x")
    if Path("/dev/full").exists():
        with pytest.raises(SaveError, match="not a regular file"):
            atomic_write_text("/dev/full", "x")
    with pytest.raises(SaveError, match="lone surrogate"):
        atomic_write_text(tmp_path / "a.txt", "\ud800")
    assert not (tmp_path / "a.txt").exists()


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    dead = max(2**22, 4_194_304) + 12345            # above the usual pid_max: no such process
    leftover = tmp_path / f".report.json.{dead}-0123abcd.tmp"
    leftover.write_text("half")
    alive = tmp_path / f".report.json.{os.getpid()}-0123abcd.tmp"   # this process's own, possibly in use
    alive.write_text("being written")
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole" and not leftover.exists() and alive.exists()


def test_an_eval_shard_in_unicode_digits_is_one_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(tmp_path), "--shard", "²/3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "expected K/N" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------ adapters
@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deltamem import save_adapter
    from deltamem.testing import random_delta_model

    folder = tmp_path_factory.mktemp("adapter")
    save_adapter(random_delta_model(), folder, formats=("pt",))
    return folder


def _poke(key: str, value: float) -> Callable[[dict], dict]:
    def change(tensors: dict) -> dict:
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = value
        return tensors
    return change


ADAPTER_CASES: dict[str, tuple[Callable[[dict], dict | None], Callable[[Path], None] | None, str]] = {
    "a missing key": (lambda t: {k: v for k, v in t.items() if k != "model.layers.1.self_attn.beta_proj"}, None,
                      "missing key 'model.layers.1.self_attn.beta_proj' (1 in all)"),
    "an extra key": (lambda t: t | {"model.layers.1.self_attn.surprise": torch.zeros(1)}, None,
                     "unexpected key 'model.layers.1.self_attn.surprise' (1 in all)"),
    "renamed keys": (lambda t: {k.replace("memory_q_proj", "mem_q"): v for k, v in t.items()}, None,
                     "unexpected key 'model.layers.0.self_attn.mem_q' (2 in all)"),
    "a wrong shape": (lambda t: t | {"model.layers.0.self_attn.beta_bias": torch.zeros(9)}, None,
                      "key 'model.layers.0.self_attn.beta_bias' has shape [9] where [8] is needed"),
    "integer weights": (lambda t: t | {"model.layers.0.self_attn.beta_bias": torch.zeros(8, dtype=torch.long)}, None,
                        "holds int64 numbers, expected floating-point weights"),
    "a NaN weight": (_poke("model.layers.0.self_attn.delta_q_proj", math.nan), None,
                     "key 'model.layers.0.self_attn.delta_q_proj' holds 1 NaN value (of 512): the weights are "
                     "damaged"),
    "an infinite weight": (_poke("model.layers.1.self_attn.beta_bias", -math.inf), None,
                           "key 'model.layers.1.self_attn.beta_bias' holds 1 infinite value (of 8)"),
    "a config that is a folder": (lambda t: t, lambda d: ((d / "delta_mem_config.json").unlink(),
                                                          (d / "delta_mem_config.json").mkdir()),
                                  "delta_mem_config.json: is a folder, not a JSON file"),
    "an empty .pt": (lambda t: None, lambda d: (d / ADAPTER_PT).write_bytes(b""),
                     "not a readable adapter file (it is empty)"),
}


def _adapter_case(adapter_dir: Path, tmp_path: Path, case: str) -> Path:
    change, touch, _ = ADAPTER_CASES[case]
    folder = tmp_path / "adapter"
    shutil.copytree(adapter_dir, folder)
    tensors = change(torch.load(folder / ADAPTER_PT, weights_only=True))
    if tensors is not None:
        torch.save(tensors, folder / ADAPTER_PT)
    if touch is not None:
        touch(folder)
    return folder


@pytest.mark.parametrize("case", list(ADAPTER_CASES))
def test_inspect_and_loading_refuse_each_broken_adapter_with_the_same_sentence(
        case: str, adapter_dir: Path, tmp_path: Path) -> None:
    folder = _adapter_case(adapter_dir, tmp_path, case)
    expected = ADAPTER_CASES[case][2]
    with pytest.raises((AdapterError, ConfigError)) as loading:
        attach_adapter(random_backbone("tiny", attn="eager"), folder)
    assert expected in str(loading.value)
    result = CliRunner().invoke(app, ["inspect", str(folder)], terminal_width=400)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    said = " ".join(result.output.split()).split("error: ", 1)[1]
    assert expected in said
    # The same sentence, up to the hint, which names the base when loading has one.
    assert said.split(": the file")[0] == str(loading.value).split(": the file")[0]


def test_a_config_missing_every_key_fails_on_the_first_shape_its_defaults_do_not_fit(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    shutil.copytree(Path(__file__).resolve().parent.parent / "deltamem" / "demo" / "assets" / "adapter", folder)
    (folder / "__init__.py").unlink(missing_ok=True)
    (folder / "delta_mem_config.json").write_text("{}")
    result = CliRunner().invoke(app, ["inspect", str(folder)], terminal_width=400)
    assert result.exit_code == 2
    assert "key 'model.layers.0.self_attn.memory_q_proj' has shape [32, 128] where [8, 128] is needed" in " ".join(
        result.output.split())


def test_a_float16_adapter_on_a_float32_model_says_it_is_converted(adapter_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    shutil.copytree(adapter_dir, folder)
    tensors = torch.load(folder / ADAPTER_PT, weights_only=True)
    torch.save({k: v.half() for k, v in tensors.items()}, folder / ADAPTER_PT)
    from deltamem.adapter import AdapterDtypeWarning

    with pytest.warns(AdapterDtypeWarning, match="the adapter's weights are float16; they are converted to float32"):
        attach_adapter(random_backbone("tiny", attn="eager"), folder)
    result = CliRunner().invoke(app, ["inspect", str(folder)], terminal_width=400)
    assert result.exit_code == 0 and "the weights are float16; loading converts them" in result.output


def test_score_never_writes_over_its_predictions(tmp_path: Path) -> None:
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"question": "Which city?", "answer": "Paris", "prediction": "Paris"}) + "\n")
    before = predictions.read_bytes()
    result = CliRunner().invoke(app, ["score", str(predictions), "--out", str(predictions), "--force"])
    assert result.exit_code != 0 and "is the predictions file itself" in result.output
    assert predictions.read_bytes() == before

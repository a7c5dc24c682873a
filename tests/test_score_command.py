"""`deltamem-chat score` end to end: scored lines out, per-category means printed, bad input refused whole.

Expected scores are worked out by hand in the comments (LoCoMo's rules: see tests/test_scoring.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem_chat.cli import app
from deltamem_chat.commands.score import ProtocolName
from deltamem_chat.scoring import PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]

LOCOMO_LINES = [
    # [adoption, agenc] both sides -> 1.0
    {"question": "What did Caroline research?", "category": 4, "answer": "Adoption agencies",
     "prediction": "adoption agencies", "id": "conv-26:q1"},
    # [lisbon] vs [paris] -> 0.0
    {"question": "Which city?", "category": 4, "answer": "Paris", "prediction": "Lisbon"},
    # [may, 2023] vs [7, may, 2023]: 2 shared, P = 1, R = 2/3 -> 0.8
    {"question": "When did she go?", "category": 2, "answer": "7 May 2023", "prediction": "May 2023"},
    # gold parts hiking / pottery / camping best-matched 0 / 1 / 0 -> 1/3
    {"question": "Her hobbies?", "category": 1, "answer": "hiking, pottery, camping",
     "prediction": "pottery, swimming"},
    # int answer 2022 -> "2022": [in, 2022] vs [2022]: P = 1/2, R = 1 -> 2/3
    {"question": "Which year?", "category": 3, "answer": 2022, "prediction": "In 2022."},
    # LoCoMo's category 5 has no "answer": abstention found -> 1.0
    {"question": "What did the dog eat?", "category": 5, "adversarial_answer": "a shoe",
     "prediction": "Not mentioned in the conversation"},
]
LOCOMO_SCORES = [1.0, 0.0, 0.8, 1 / 3, 2 / 3, 1.0]


def _write(path: Path, records: list[object], *, blank_after: int | None = None) -> Path:
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _score(*args: str):
    return CliRunner().invoke(app, ["score", *args], terminal_width=120)


def _row(output: str, *cells: str) -> bool:
    """True when some table row holds these cells, in order, each a whole cell."""
    pattern = r"\s*[│|┃]\s*".join(re.escape(cell) for cell in cells)
    return any(re.search(rf"(^|[│|┃])\s*{pattern}\s*([│|┃]|$)", line) for line in output.splitlines())


def test_protocol_choices_match_the_registry() -> None:
    assert [choice.value for choice in ProtocolName] == list(PROTOCOLS)


def test_locomo_scores_every_line_and_prints_category_means(tmp_path: Path) -> None:
    source = _write(tmp_path / "predictions.jsonl", LOCOMO_LINES, blank_after=2)  # a blank line is skipped
    out = tmp_path / "scored.jsonl"
    result = _score(str(source), "--protocol", "locomo", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(LOCOMO_LINES)
    for row, line, expected in zip(rows, LOCOMO_LINES, LOCOMO_SCORES):
        assert row == {**line, "score": pytest.approx(expected)}  # the input object plus "score", nothing else
    # Per category: 4 -> (1 + 0) / 2 = 0.5 over 2; 2 -> 0.8; 1 -> 0.3333; 3 -> 0.6667; 5 -> 1.
    # All: (1 + 0 + 0.8 + 1/3 + 2/3 + 1) / 6 = 3.8 / 6 = 0.6333.
    assert _row(result.output, "1", "multi-hop", "1", "0.3333")
    assert _row(result.output, "2", "temporal", "1", "0.8000")
    assert _row(result.output, "3", "open-domain", "1", "0.6667")
    assert _row(result.output, "4", "single-hop", "2", "0.5000")
    assert _row(result.output, "5", "adversarial", "1", "1.0000")
    assert _row(result.output, "all", "", "6", "0.6333")
    assert f"Wrote {out}: 6 scored lines." in result.output


def test_mab_writes_every_metric_and_takes_answer_lists(tmp_path: Path) -> None:
    line = {"question": "Where?", "answers": ["New York City", "NYC"], "prediction": "I think NYC",
            "category": "ruler_qa1"}
    source = _write(tmp_path / "mab.jsonl", [line])
    out = tmp_path / "out.jsonl"
    result = _score(str(source), "-p", "mab", "-o", str(out))
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text(encoding="utf-8"))
    # "nyc" occurs in "i think nyc": substring exact match 1 (the score); exact match 0; F1 against "nyc":
    # P = 1/3, R = 1 -> 0.5.
    assert row["score"] == 1.0
    assert row["metrics"]["exact_match"] == 0.0 and row["metrics"]["f1"] == pytest.approx(0.5)
    assert set(row["metrics"]) == set(PROTOCOLS["mab"].metric_names)
    assert _row(result.output, "ruler_qa1", "1", "1.0000")


def test_default_protocol_is_ours_without_categories(tmp_path: Path) -> None:
    source = _write(tmp_path / "p.jsonl", [{"question": "Which city?", "answer": "Lisbon", "prediction": "Lisbon."},
                                           {"question": "Which city?", "answer": "Lisbon", "prediction": "Porto"}])
    result = _score(str(source))
    assert result.exit_code == 0, result.output
    assert "mean hit" in result.output and _row(result.output, "all", "2", "0.5000")  # one hit of two


def test_canonical_cuts_the_reply_first(tmp_path: Path) -> None:
    line = {"question": "Where?", "category": 4, "answer": "Paris", "prediction": "Answer: Paris\nShe moved."}
    source = _write(tmp_path / "p.jsonl", [line])
    raw, cut = tmp_path / "raw.jsonl", tmp_path / "cut.jsonl"
    assert _score(str(source), "-p", "locomo", "-o", str(raw)).exit_code == 0
    assert _score(str(source), "-p", "locomo", "--canonical", "-o", str(cut)).exit_code == 0
    # Raw: [answer, paris, she, move] vs [paris]: P = 1/4, R = 1 -> 0.4. Cut: "Paris" -> 1.0.
    assert json.loads(raw.read_text())["score"] == pytest.approx(0.4)
    assert json.loads(cut.read_text()) == {**line, "score": 1.0, "canonical": "Paris"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", ':3: not valid JSON'),
        ('["a list"]', ":3: must be a JSON object (got a list)"),
        ({"question": "Q?", "category": 4, "answer": "A"}, ':3: missing "prediction"'),
        ({"question": "Q?", "category": 4, "prediction": "A"}, ':3: missing "answer"'),
        ({"question": "Q?", "answer": "A", "prediction": "A"}, ':3: missing "category" (--protocol locomo needs one'),
        ({"question": "Q?", "category": 6, "answer": "A", "prediction": "A"}, ':3: "category" must be one of 1, 2, 3'),
        ({"question": "Q?", "category": 4, "answer": "A", "prediction": ["A"]}, ':3: "prediction" must be a string'),
        ({"question": "", "category": 4, "answer": "A", "prediction": "A"}, ':3: "question" is empty'),
    ],
)
def test_a_bad_line_names_file_line_and_field_and_nothing_is_written(tmp_path: Path, bad: object,
                                                                      message: str) -> None:
    source = _write(tmp_path / "predictions.jsonl", [*LOCOMO_LINES[:2], bad, *LOCOMO_LINES[2:]])
    out = tmp_path / "scored.jsonl"
    result = _score(str(source), "--protocol", "locomo", "--out", str(out))
    assert result.exit_code == 1
    assert f"Cannot score: {source}{message}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [source]  # no temporary file left either


def test_missing_and_empty_files(tmp_path: Path) -> None:
    result = _score(str(tmp_path / "nowhere.jsonl"))
    assert result.exit_code == 1 and "nowhere.jsonl: no such file" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    result = _score(str(empty))
    assert result.exit_code == 1 and "empty.jsonl: no predictions" in result.stderr


def test_out_is_not_replaced_without_force(tmp_path: Path) -> None:
    source = _write(tmp_path / "predictions.jsonl", LOCOMO_LINES)
    out = tmp_path / "scored.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    result = _score(str(source), "-p", "locomo", "--out", str(out))
    assert result.exit_code == 1 and "already exists; pass --force" in result.stderr
    assert out.read_text(encoding="utf-8") == "keep me\n"
    result = _score(str(source), "-p", "locomo", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == pytest.approx(LOCOMO_SCORES)


def test_full_app_has_score_too() -> None:
    from deltamem_chat.cli import app

    result = CliRunner().invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "--protocol" in result.output


def test_score_runs_without_torch_or_transformers(tmp_path: Path) -> None:
    source = _write(tmp_path / "predictions.jsonl", LOCOMO_LINES)
    out = tmp_path / "scored.jsonl"
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "deltamem_chat.cli", "score", str(source),
                          "--protocol", "locomo", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time")}
    assert "deltamem_chat.commands.score" in imported and "nltk" in imported  # the scoring really ran
    assert not {name for name in imported if name.split(".")[0] in ("torch", "transformers")}
    assert out.exists()

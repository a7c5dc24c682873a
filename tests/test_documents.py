"""Documents: read from a file with one-sentence refusals, kept in transcripts, read by the lanes under their title."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deltamem_chat.documents import MAX_BYTES, DocumentError, read_document
from deltamem_chat.transcripts import Message, Transcript, load_transcript, write_transcript
from deltamem_chat.transcripts.reading import document_text, read_texts

ROOT = Path(__file__).resolve().parent.parent


def test_a_text_file_is_a_document_named_after_it(tmp_path: Path) -> None:
    path = tmp_path / "handbook.md"
    path.write_bytes("\ufeff# Handbook\nThe key is under the pot.\n".encode())
    document = read_document(path)
    assert (document.title, document.text, document.size) == ("handbook.md", "# Handbook\nThe key is under the pot.\n",
                                                              "37 characters")


@pytest.mark.parametrize("make,words", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "not a regular file"),
    (lambda p: (p.write_bytes(b"\xff\xfe\x00bad"), p)[1], r"not UTF-8 text \(bad byte at offset 0\)"),
    (lambda p: (p.write_text("  \n"), p)[1], "the file is empty"),
    (lambda p: (p.write_text("a\x00b"), p)[1], "NUL characters"),
])
def test_what_is_not_a_document_is_one_sentence(tmp_path: Path, make, words: str) -> None:
    path = make(tmp_path / "doc.txt")
    with pytest.raises(DocumentError, match=words) as caught:
        read_document(path)
    assert str(caught.value).startswith(str(path))


def test_a_document_too_large_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 100)
    monkeypatch.setattr("deltamem_chat.documents.MAX_BYTES", 10)
    with pytest.raises(DocumentError, match="100 bytes, more than the 10 a document may have"):
        read_document(path)
    assert MAX_BYTES >= 2**20


def test_a_document_line_round_trips_and_is_read_under_its_title(tmp_path: Path) -> None:
    items = [Message("user", "Here it is."), Message("user", "Section 1. The key is under the pot.", document="Rules")]
    path = tmp_path / "t.jsonl"
    write_transcript(Transcript(path=None, items=items), path)
    assert json.loads(path.read_text().splitlines()[1])["document"] == "Rules"
    assert load_transcript(path).items == items
    assert read_texts(items)[1] == document_text("Rules", items[1].content) == \
        "Document: Rules\n\nSection 1. The key is under the pot."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"role": "user", "content": "x", "document": 3}\n')
    with pytest.raises(ValueError, match=r'bad.jsonl:1: "document" must be a string'):
        load_transcript(bad)


def test_the_long_document_transcript_gives_its_handbook_as_one_document() -> None:
    transcript = load_transcript(ROOT / "transcripts" / "long_document.jsonl")
    documents = [m for m in transcript.messages if m.document is not None]
    assert len(documents) == 1 and len(documents[0].content.split()) > 2 * (transcript.meta.context.tokens or 0)
    assert {p.depends_on for p in transcript.probes} == {transcript.messages.index(documents[0])}

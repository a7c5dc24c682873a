"""Probe scoring on hand-worked cases, so a change to normalisation or F1 shows up as a concrete number."""

from __future__ import annotations

import unicodedata

import pytest

from deltamem_chat.transcripts import (
    Probe,
    ProbeOutcome,
    ProbeScore,
    is_hit,
    normalize_answer,
    score_probe,
    summarise,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat, and a hat!", "cat hat"),  # articles and "and" go, punctuation goes, case folds
        ("  lots   of\tspace\n", "lots of space"),
        ("don't", "dont"),  # SQuAD deletes punctuation inside words
        ("Thursday—after lunch", "thursday after lunch"),  # an em dash separates words instead
        ("Anna and the theme", "anna theme"),  # whole words only: "theme" keeps its "the"
        ("“Quoted”, «guillemets»", "quoted guillemets"),  # Unicode punctuation goes too
        ("Café", unicodedata.normalize("NFD", "cafe\u0301")),  # NFD, accents kept as combining marks
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_answer_treats_composed_and_decomposed_alike() -> None:
    assert normalize_answer("Zoë") == normalize_answer("Zoe\u0308")


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        # pred [cat, sat] vs gold [cat, sat, down]: 2 shared; P = 2/2, R = 2/3, F1 = 2PR/(P+R) = 0.8
        ("the cat sat", "cat sat down", 0.8),
        # pred [red, red, blue] vs gold [red, blue, blue]: shared red×1 + blue×1 = 2; P = R = 2/3, F1 = 2/3
        ("red red blue", "red blue blue", 2 / 3),
        # pred [it, is, on, thursday] vs gold [thursday]: 1 shared; P = 1/4, R = 1, F1 = 0.5/1.25 = 0.4
        ("It is on Thursday.", "Thursday", 0.4),
        ("Paris", "London", 0.0),  # nothing shared
        ("Paris!", "paris", 1.0),  # identical once normalised
        ("", "", 1.0),  # both empty agree
        ("", "cat", 0.0),
        ("the", "cat", 0.0),  # "the" normalises to nothing
    ],
)
def test_token_f1(prediction: str, gold: str, expected: float) -> None:
    assert token_f1(prediction, gold) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answer", "aliases", "expected"),
    [
        ("The meeting moved to Thursday.", "Thursday", (), True),
        ("It is on thursdays now", "Thursday", (), False),  # a different word, not a substring match
        ("She lives in New York City.", "york city", (), True),  # a run of words inside the reply
        ("She lives in New York City.", "city new york", (), False),  # order matters
        ("Ask Bob.", "Robert", ("Bob",), True),  # an alias is enough
        ("Ask Bobby.", "Robert", ("Bob",), False),
        ("The answer is the Eiffel Tower", "Eiffel tower!", (), True),  # both sides normalised
        ("anything at all", "the", (), False),  # an answer with no words never hits
    ],
)
def test_is_hit(prediction: str, answer: str, aliases: tuple[str, ...], expected: bool) -> None:
    assert is_hit(prediction, answer, aliases) is expected


def test_score_probe_takes_best_f1_over_answer_and_aliases() -> None:
    probe = Probe(question="When is the meeting?", answer="Thursday afternoon", aliases=("Thursday",))
    score = score_probe("It is on Thursday now", probe)
    # pred [it, is, on, thursday, now] (5 tokens).
    # vs "thursday afternoon": 1 shared, P = 1/5, R = 1/2 -> F1 = 0.2/0.7 = 2/7.
    # vs "thursday": 1 shared, P = 1/5, R = 1 -> F1 = 0.4/1.2 = 1/3, the larger.
    assert score == ProbeScore(hit=True, f1=pytest.approx(1 / 3))


def test_score_probe_miss() -> None:
    probe = Probe(question="Which city?", answer="Lisbon")
    assert score_probe("I don't know.", probe) == ProbeScore(hit=False, f1=0.0)


def _outcome(index: int, frozen: str, delta: str) -> ProbeOutcome:
    probe = Probe(question=f"Question {index}?", answer="Lisbon")
    return ProbeOutcome.from_answers(index, probe, {"frozen": frozen, "delta": delta})


def test_summarise_lists_disagreements_first_and_totals_each_lane() -> None:
    outcomes = [
        _outcome(0, "Lisbon", "It was Lisbon"),  # both hit; F1 frozen 1, delta [it, was, lisbon] -> 0.5
        _outcome(1, "Porto", "Lisbon"),  # only delta hits
        _outcome(2, "Porto", "Faro"),  # both miss
        _outcome(3, "Lisbon", "Porto"),  # only frozen hits
    ]
    summary = summarise(reversed(outcomes))  # input order must not matter
    assert [o.probe_index for o in summary.outcomes] == [1, 3, 0, 2]
    assert [o.probe_index for o in summary.disagreements] == [1, 3]
    assert list(summary.lanes) == ["frozen", "delta"]
    frozen, delta = summary.lanes["frozen"], summary.lanes["delta"]
    assert (frozen.probes, frozen.hits, frozen.recall) == (4, 2, 0.5)
    assert (delta.probes, delta.hits, delta.recall) == (4, 2, 0.5)
    # frozen F1s: 1, 0, 0, 1 -> mean 0.5.
    # delta F1s: 0.5 (P = 1/3, R = 1: 2·(1/3)/(4/3) = 0.5), 1, 0, 0 -> mean 1.5/4 = 0.375.
    assert frozen.mean_f1 == pytest.approx(0.5)
    assert delta.mean_f1 == pytest.approx(0.375)


def test_outcome_keeps_answers_and_scores_per_lane() -> None:
    outcome = _outcome(7, "Lisbon, I think", "No idea")
    assert outcome.expected == "Lisbon"
    assert outcome.answers == {"frozen": "Lisbon, I think", "delta": "No idea"}
    assert outcome.scores["frozen"].hit and not outcome.scores["delta"].hit
    assert outcome.disagrees


def test_summarise_of_nothing_is_empty() -> None:
    summary = summarise([])
    assert summary.lanes == {} and summary.outcomes == []

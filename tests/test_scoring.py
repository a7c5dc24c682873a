"""Probe scoring on hand-worked cases, so a change to normalisation, F1 or a protocol's rules shows up as a number.

Every expected value is worked out by hand in the comment beside it, never taken from the code under test.
"""

from __future__ import annotations

import unicodedata

import pytest

from deltamem_chat.scoring import (
    ABSTENTION_PHRASES,
    PROTOCOLS,
    LocomoProtocol,
    ProbeOutcome,
    ProbeScore,
    ScoringProtocol,
    abstains,
    get_protocol,
    is_hit,
    locomo,
    mab,
    normalize_answer,
    score_probe,
    summarise,
    token_f1,
)
from deltamem_chat.transcripts import Probe


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
    third = pytest.approx(1 / 3)
    assert score == ProbeScore(hit=True, f1=third, score=1.0, metrics={"hit": 1.0, "f1": third})


def test_score_probe_miss() -> None:
    probe = Probe(question="Which city?", answer="Lisbon")
    miss = ProbeScore(hit=False, f1=0.0, score=0.0, metrics={"hit": 0.0, "f1": 0.0})
    assert score_probe("I don't know.", probe) == miss


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


# --- ours: abstention -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("I don't know.", True),  # "i dont know" holds the phrase "dont know"
        ("I do not know", True),
        ("No information available.", True),  # LoCoMo's abstention option
        ("That is not mentioned in our chat.", True),
        ("I don’t know", True),  # a curly apostrophe is punctuation too
        ("Lisbon", False),
        ("I know it: Lisbon", False),  # "know" alone is no abstention
        ("She doesn't know", False),  # "doesnt know" is not on the list: the list is literal
        ("unmentioned", False),  # whole words only
    ],
)
def test_abstains(reply: str, expected: bool) -> None:
    assert abstains(reply) is expected


def test_abstention_phrases_are_the_documented_four() -> None:
    assert ABSTENTION_PHRASES == ("no information available", "not mentioned", "don't know", "do not know")


def test_ours_abstention_probe_is_a_hit_when_the_reply_abstains() -> None:
    # The answer only explains why; matching it would reward a reply that repeats the explanation.
    probe = Probe(question="What is Ana's cat called?", answer="The chat never names it", abstain=True)
    assert score_probe("I don't know what it is called.", probe) == ProbeScore(
        hit=True, f1=1.0, score=1.0, metrics={"hit": 1.0, "f1": 1.0}
    )
    assert score_probe("The chat never names it", probe) == ProbeScore(
        hit=False, f1=0.0, score=0.0, metrics={"hit": 0.0, "f1": 0.0}
    )


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_names_and_lookup() -> None:
    assert list(PROTOCOLS) == ["ours", "locomo", "mab"]
    for name, protocol in PROTOCOLS.items():
        assert get_protocol(name) is protocol
        assert protocol.name == name
        assert isinstance(protocol, ScoringProtocol)
        assert protocol.headline in protocol.metric_names


def test_unknown_protocol_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown scoring protocol 'squad'; choose one of ours, locomo, mab"):
        get_protocol("squad")


@pytest.mark.parametrize("name", ["ours", "locomo", "mab"])
def test_hit_and_f1_follow_our_rule_under_every_protocol(name: str) -> None:
    probe = Probe(question="Which city?", answer="Lisbon", category=4)
    # ours: "lisbon" occurs as a word -> hit; F1 against [it, was, lisbon]: P = 1/3, R = 1 -> 0.5.
    score = get_protocol(name).score("It was Lisbon", probe)
    assert (score.hit, score.f1) == (True, pytest.approx(0.5))
    assert set(score.metrics) == set(get_protocol(name).metric_names)


def test_ours_and_mab_ask_the_question_as_written_and_keep_the_reply() -> None:
    probe = Probe(question="When was it?", answer="May", category=2)
    for name in ("ours", "mab"):
        assert get_protocol(name).question(probe) == "When was it?"
        assert get_protocol(name).canonical(" (a) May\nmore ", probe) == " (a) May\nmore "


# --- LoCoMo: the official score -----------------------------------------------------------------------------------


def _locomo(prediction: str, answer: str, category: int | None, **probe: object) -> float:
    return LocomoProtocol().score(prediction, Probe(question="Q?", answer=answer, category=category, **probe)).score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The cat, and a hat!", "cat hat"),  # commas go first, then case, punctuation, a/an/the/and
        ("don't", "dont"),
        ("U.S.A.", "usa"),
        ("“Zoe”", "“zoe”"),  # only ASCII punctuation goes
        ("Café", "café"),  # no NFD: the composed é stays one character
    ],
)
def test_locomo_normalisation(text: str, expected: str) -> None:
    assert locomo.normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "answer", "category", "expected"),
    [
        # Porter stems: running -> run, runs -> run: [run] vs [run], F1 1.
        ("runs", "running", 4, 1.0),
        # hikes -> hike; gold [went, hike]: 1 shared, P = 1/1, R = 1/2 -> 2·(1/2)/(3/2) = 2/3.
        ("hikes", "went hiking", 2, 2 / 3),
        # Articles and punctuation: both [eiffel, tower].
        ("eiffel tower!", "The Eiffel Tower", 4, 1.0),
        # "and" and commas go: both [salt, pepper].
        ("Salt, pepper.", "salt and pepper", 4, 1.0),
        # Curly quotes are not ASCII punctuation: [“zoe”] vs [zoe] share nothing.
        ("“Zoe”", "Zoe", 4, 0.0),
        # No NFD: "cafe" + combining acute is not the composed "café".
        ("cafe\u0301", "café", 4, 0.0),
        # An int answer as text: [in, 2022] vs [2022]: P = 1/2, R = 1 -> 2/3.
        ("In 2022.", "2022", 2, 2 / 3),
        # Nothing predicted, nothing shared.
        ("", "Paris", 4, 0.0),
    ],
)
def test_locomo_single_answer_f1(prediction: str, answer: str, category: int, expected: float) -> None:
    assert _locomo(prediction, answer, category) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        # Gold parts hiking, pottery, camping; prediction parts pottery, swimming. Best F1 per gold part:
        # hiking 0, pottery 1, camping 0 -> mean 1/3.
        ("pottery, swimming", "hiking, pottery, camping", 1 / 3),
        # One prediction part "the beach and the mountains" -> [beach, mountain]. Gold "beach" -> [beach]:
        # P = 1/2, R = 1 -> 2/3; gold "mountains" -> [mountain]: 2/3 too. Mean 2/3.
        ("the beach and the mountains", "beach, mountains", 2 / 3),
        # Order does not matter: each gold part finds its own best: (1 + 1) / 2.
        ("camping, hiking", "hiking, camping", 1.0),
        # A trailing comma leaves an empty gold part that nothing matches: (1 + 0) / 2 = 0.5, as the official code
        # gives (the δ-mem copy drops empty parts and would give 1.0).
        ("hiking", "hiking,", 0.5),
        ("", "hiking, camping", 0.0),
    ],
)
def test_locomo_category_1_is_multi_answer_f1(prediction: str, answer: str, expected: float) -> None:
    assert _locomo(prediction, answer, 1) == pytest.approx(expected)


def test_locomo_category_4_does_not_split_on_commas() -> None:
    # Commas are deleted instead: [potteri, swim] vs [hike, potteri, camp]: 1 shared, P = 1/2, R = 1/3 ->
    # 2·(1/6)/(5/6) = 0.4.
    assert _locomo("pottery, swimming", "hiking, pottery, camping", 4) == pytest.approx(0.4)


def test_locomo_category_3_keeps_the_answer_up_to_the_first_semicolon() -> None:
    answer = "Likely yes; she enjoys outdoor activities"
    # Cut: [like, ye] vs [like, ye] -> 1.
    assert _locomo("likely yes", answer, 3) == pytest.approx(1.0)
    # Uncut (category 4): gold has 6 distinct stems, 2 shared: P = 1, R = 1/3 -> 2·(1/3)/(4/3) = 0.5.
    assert _locomo("likely yes", answer, 4) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("Not mentioned in the conversation", 1.0),
        ("No information available.", 1.0),
        ("NO INFORMATION AVAILABLE", 1.0),  # the check lower-cases the reply
        ("She ate a shoe", 0.0),
        ("I don't know", 0.0),  # LoCoMo's rule knows only its two phrases
        ("", 0.0),
    ],
)
def test_locomo_category_5_scores_abstention(prediction: str, expected: float) -> None:
    assert _locomo(prediction, "", 5, abstain=True, distractor="a shoe") == expected


def test_locomo_treats_any_abstention_probe_like_category_5() -> None:
    assert _locomo("Not mentioned.", "", None, abstain=True) == 1.0
    assert _locomo("Paris", "", "temporal-reasoning", abstain=True) == 0.0


def test_locomo_score_is_not_rounded_and_hit_stays_ours() -> None:
    score = LocomoProtocol().score("pottery, swimming", Probe(question="Q?", answer="hiking, pottery, camping",
                                                              category=1))
    assert score.score == 1 / 3 and score.metrics == {"locomo_f1": 1 / 3}
    # Ours: "hiking pottery camping" is not a run of words in "pottery swimming" -> miss. F1: pred [pottery,
    # swimming], gold [hiking, pottery, camping]: P = 1/2, R = 1/3 -> 0.4.
    assert (score.hit, score.f1) == (False, pytest.approx(0.4))


def test_locomo_i_dont_know_hits_by_our_rule_but_scores_zero() -> None:
    score = LocomoProtocol().score("I don't know", Probe(question="Q?", answer="", category=5, abstain=True))
    assert (score.hit, score.score) == (True, 0.0)


# --- LoCoMo: questions and canonical replies ----------------------------------------------------------------------


def test_locomo_category_2_question_gets_the_date_hint() -> None:
    probe = Probe(question="When did Ana move?", answer="2021", category=2)
    hint = " Use DATE of CONVERSATION to answer with an approximate date."
    assert LocomoProtocol().question(probe) == "When did Ana move?" + hint


def _adversarial(probe_id: str) -> Probe:
    return Probe(question="What did Ana's dog eat?", answer="", id=probe_id, category=5, abstain=True,
                 distractor="a shoe")


def test_locomo_category_5_question_offers_two_options() -> None:
    protocol = LocomoProtocol()
    probe = _adversarial("conv-26:q7")
    first, second = protocol.options(probe)
    assert {first, second} == {"No information available", "a shoe"}
    assert protocol.question(probe) == (
        f"What did Ana's dog eat? (a) {first} (b) {second}. Select the correct answer by writing (a) or (b)."
    )
    assert protocol.options(probe) == (first, second)  # the same order every time


def test_locomo_option_order_is_seeded_and_even() -> None:
    ids = [f"conv-{n}" for n in range(400)]
    first = [LocomoProtocol(seed=0).options(_adversarial(i))[0] == "No information available" for i in ids]
    other_seed = [LocomoProtocol(seed=1).options(_adversarial(i))[0] == "No information available" for i in ids]
    # A fair coin over 400 probes lands within 150..250 heads with probability above 0.999999.
    assert 150 <= sum(first) <= 250
    assert first != other_seed  # the seed changes the draw


def test_locomo_question_without_distractor_is_unchanged() -> None:
    probe = Probe(question="What did Ana's dog eat?", answer="", category=5, abstain=True)
    assert LocomoProtocol().question(probe) == "What did Ana's dog eat?"
    assert LocomoProtocol().options(probe) is None


@pytest.mark.parametrize(
    ("reply", "option"),
    [("(a)", 0), ("A", 0), ("a) it is that one", 0), ("The answer is (b).", 1), ("b", 1), ("(B) that", 1)],
)
def test_locomo_canonical_maps_option_letters_back(reply: str, option: int) -> None:
    protocol = LocomoProtocol()
    probe = _adversarial("conv-26:q7")
    assert protocol.canonical(reply, probe) == protocol.options(probe)[option]


def test_locomo_canonical_abstention_without_a_letter() -> None:
    probe = _adversarial("conv-26:q7")
    assert LocomoProtocol().canonical("It is not mentioned.", probe) == "No information available"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Paris\nBecause she said so.", "Paris"),  # first line only
        ("\n\n  Paris  \nmore", "Paris"),  # first non-empty line
        ("Answer: Paris", "Paris"),
        ("(b) Paris", "Paris"),  # a leading option marker goes
        ("a) Paris", "Paris"),
        # The δ-mem harness deletes "a)" anywhere, which would leave "yes (in canad"; only a leading marker goes.
        ("Yes (in Canada)", "Yes (in Canada)"),
        ('She said \\"hi\\"', "She said 'hi'"),  # escaped quotes become single quotes
        ("", ""),
    ],
)
def test_locomo_canonical_reply(reply: str, expected: str) -> None:
    probe = Probe(question="Where?", answer="Canada", category=4)
    assert LocomoProtocol().canonical(reply, probe) == expected


# --- MemoryAgentBench ---------------------------------------------------------------------------------------------


def test_mab_normalisation_keeps_and() -> None:
    # lower, punctuation deleted ("u.s." -> "us"), a/an/the dropped but not "and".
    assert mab.normalize_answer("The U.S. Army, and friends") == "us army and friends"


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "sub", "f1"),
    [
        ("Paris.", "paris", 1.0, 1.0, 1.0),
        # [i, think, it, is, paris] vs [paris]: P = 1/5, R = 1 -> 2·(1/5)/(6/5) = 1/3.
        ("I think it is Paris", "Paris", 0.0, 1.0, 1 / 3),
        # A substring need not be whole words ("parisian" holds "paris"); no token is shared.
        ("Parisian food", "Paris", 0.0, 1.0, 0.0),
        # "yes" against a different text scores F1 0 (plain token F1 would be 2·(1/3)/(4/3) = 0.5).
        ("yes it is", "yes", 0.0, 1.0, 0.0),
        ("no", "no", 1.0, 1.0, 1.0),
        ("", "Paris", 0.0, 0.0, 0.0),
    ],
)
def test_mab_exact_substring_and_f1(prediction: str, gold: str, em: float, sub: float, f1: float) -> None:
    metrics = mab.mab_metrics(prediction, [gold])
    assert (metrics["exact_match"], metrics["substring_exact_match"]) == (em, sub)
    assert metrics["f1"] == pytest.approx(f1)


@pytest.mark.parametrize(
    ("prediction", "gold", "f1", "recall"),
    [
        # Tokens: 6 predicted, 3 gold; longest common subsequence "paris in may" = 3: P = 1/2, R = 1 -> F 2/3.
        ("Alice went to Paris in May", "Paris in May", 2 / 3, 1.0),
        # Same words, reversed order: the longest common subsequence is one token: P = R = 1/3 (token F1 would be 1).
        ("May in Paris", "Paris in May", 1 / 3, 1 / 3),
        # rouge_score's Porter stemming (on tokens over 3 letters): running -> run, runs -> run. [she, was, run] vs
        # [run]: LCS 1, P = 1/3, R = 1 -> F 0.5.
        ("She was running", "runs", 0.5, 1.0),
    ],
)
def test_mab_rouge_l(prediction: str, gold: str, f1: float, recall: float) -> None:
    metrics = mab.mab_metrics(prediction, [gold])
    assert metrics["rougeL_f1"] == pytest.approx(f1)
    assert metrics["rougeL_recall"] == pytest.approx(recall)
    assert metrics["rougeLsum_f1"] == pytest.approx(f1)  # one line: the summary-level LCS is the same


def test_mab_takes_the_better_of_the_raw_and_the_parsed_reply() -> None:
    # Raw: "answer paris it is capital" is not "paris"; parsed (after "Answer:"): "Paris" is.
    metrics = mab.mab_metrics("Answer: Paris\nIt is the capital.", ["Paris"])
    assert metrics["exact_match"] == 1.0 and metrics["f1"] == 1.0
    assert mab.parse_output("Answer: Paris\nIt is the capital.") == "Paris"
    assert mab.parse_output("Paris\nIt is the capital.") == "Paris"  # no "Answer:": the first line


def test_mab_best_over_answer_and_aliases() -> None:
    probe = Probe(question="Where?", answer="New York City", aliases=("NYC",))
    score = get_protocol("mab").score("NYC", probe)
    assert score.metrics["exact_match"] == 1.0  # via the alias
    assert score.score == score.metrics["substring_exact_match"] == 1.0


def test_mab_deltamem_accuracy_can_differ() -> None:
    # MemoryAgentBench deletes punctuation: "U.S." -> "us" = "us": exact match. δ-mem turns it into spaces:
    # "u s" does not occur in "us".
    metrics = mab.mab_metrics("US", ["U.S."])
    assert (metrics["exact_match"], metrics["deltamem_accuracy"]) == (1.0, 0.0)
    # And both agree on a plain substring.
    assert mab.mab_metrics("It is Paris", ["Paris"])["deltamem_accuracy"] == 1.0


def test_mab_abstention_probe_scores_by_our_phrases() -> None:
    probe = Probe(question="Q?", answer="", abstain=True)
    assert set(get_protocol("mab").score("I don't know.", probe).metrics.values()) == {1.0}
    assert set(get_protocol("mab").score("Paris", probe).metrics.values()) == {0.0}


# --- summaries ----------------------------------------------------------------------------------------------------


def test_summary_totals_per_category_in_order() -> None:
    locomo_protocol = get_protocol("locomo")
    probes = [
        (Probe(question="A?", answer="Lisbon", category=4), "Lisbon", "Porto"),  # locomo 1 / 0
        (Probe(question="B?", answer="hiking, camping", category=1), "hiking", "camping, hiking"),  # 0.5 / 1
        (Probe(question="C?", answer="", category=5, abstain=True), "Not mentioned", "Paris"),  # 1 / 0
        (Probe(question="D?", answer="May", category=4), "It was in May", "May"),  # [may] in 4 tokens: 0.4 / 1
    ]
    outcomes = [ProbeOutcome.from_answers(i, probe, {"frozen": f, "delta": d}, locomo_protocol)
                for i, (probe, f, d) in enumerate(probes)]
    summary = summarise(outcomes)
    assert summary.protocol == "locomo"
    frozen, delta = summary.lanes["frozen"], summary.lanes["delta"]
    assert list(frozen.categories) == [1, 4, 5]
    # frozen: category 4 -> (1 + 0.4) / 2 = 0.7 with hits Lisbon and May (2); category 1: 0.5, "hiking camping" is
    # not in "hiking": no hit; category 5: 1, hit.
    assert (frozen.categories[4].probes, frozen.categories[4].hits) == (2, 2)
    assert frozen.categories[4].mean_score == pytest.approx(0.7)
    assert frozen.categories[1].mean_score == pytest.approx(0.5) and frozen.categories[1].hits == 0
    # overall: (1 + 0.5 + 1 + 0.4) / 4 = 0.725; recall 3/4.
    assert frozen.mean_score == pytest.approx(0.725) and frozen.recall == 0.75
    # delta: 0, 1, 0, 1 -> 0.5; hits: "camping hiking" does not hold "hiking camping" -> no; May yes -> 1 of 4.
    assert delta.mean_score == pytest.approx(0.5) and delta.hits == 1
    assert delta.categories[5].mean_score == 0.0


def test_summary_has_no_categories_when_no_probe_has_one() -> None:
    summary = summarise([_outcome(0, "Lisbon", "Porto")])
    assert summary.lanes["frozen"].categories == {}
    assert summary.lanes["frozen"].mean_score == 1.0 and summary.lanes["delta"].mean_score == 0.0


def test_summary_puts_uncategorised_probes_last() -> None:
    with_category = ProbeOutcome.from_answers(1, Probe(question="Q?", answer="Lisbon", category="single-hop"),
                                              {"frozen": "Lisbon"})
    outcomes = [with_category, ProbeOutcome.from_answers(0, Probe(question="Q?", answer="Lisbon"), {"frozen": "No"}),
                ProbeOutcome.from_answers(2, Probe(question="Q?", answer="Lisbon", category=3), {"frozen": "No"})]
    categories = summarise(outcomes).lanes["frozen"].categories
    assert list(categories) == [3, "single-hop", None]
    assert categories[None].probes == 1 and categories["single-hop"].hits == 1


def test_summary_refuses_mixed_protocols() -> None:
    probe = Probe(question="Q?", answer="Lisbon")
    outcomes = [ProbeOutcome.from_answers(0, probe, {"frozen": "Lisbon"}),
                ProbeOutcome.from_answers(1, probe, {"frozen": "Lisbon"}, get_protocol("mab"))]
    with pytest.raises(ValueError, match="different protocols"):
        summarise(outcomes)


def test_outcome_scores_the_canonical_reply_and_keeps_the_raw_one() -> None:
    probe = Probe(question="Where?", answer="Paris", category=4)
    outcome = ProbeOutcome.from_answers(0, probe, {"delta": "Paris\nShe moved there in May."}, get_protocol("locomo"))
    assert outcome.answers == {"delta": "Paris\nShe moved there in May."}
    assert outcome.scores["delta"].score == 1.0  # the first line only: [paris] vs [paris]
    assert (outcome.category, outcome.protocol) == (4, "locomo")

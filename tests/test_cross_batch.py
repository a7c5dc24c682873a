"""Cross-session decode: turns of several engines decoding at once through one `CrossBatch` answer token for token
what each answers alone, write what it writes alone, and keep their memories apart."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass, field

import pytest
import torch

from deltamem.context import ContextPolicy
from deltamem.model import DeltaMemModel
from deltamem.runtime.contract import GenerationSettings, LaneDone, TokenEvent, TurnDone
from deltamem.runtime.cross_batch import CrossBatch
from deltamem.runtime.engine import ABEngine
from deltamem.testing import byte_chatml_tokenizer, printable_only, random_delta_model
from deltamem_chat.server.fair_lock import FairLock
from tests.tui_harness import one_torch_thread  # noqa: F401 (an autouse fixture: the tiny model wants one thread)

POLICY = ContextPolicy.parse("window:1024")


@dataclass
class Script:
    """One session: messages said before (different cache lengths), then the turn that runs concurrently."""

    history: list[str]
    text: str
    max_new_tokens: int = 14
    cancel_after: int | None = None          # cancel once the delta lane has streamed this many tokens
    lanes: tuple[str, ...] = ("frozen", "delta")


@dataclass
class Outcome:
    tokens: dict[str, list[int]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    cancelled: dict[str, bool] = field(default_factory=dict)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    messages: dict[str, list[str]] = field(default_factory=dict)


SCRIPTS = [
    Script(["my name is Ada"], "what is my name?"),
    Script(["I live in Oslo, by the fjord, in a house with a red door and a small garden", "it rains a lot"],
           "where do I live?", max_new_tokens=20),
    Script([], "hello", max_new_tokens=3),                                   # finishes early
    Script(["the dog is Rex"], "tell me about the dog", max_new_tokens=30, cancel_after=4),
    Script(["one", "two", "three"], "count on", lanes=("delta",)),
]


@pytest.fixture(scope="module")
def model() -> DeltaMemModel:
    built = random_delta_model(attn="sdpa", seed=5)
    printable_only(built.backbone)
    return built


def prepared(model: DeltaMemModel, script: Script, decoder: CrossBatch | None) -> ABEngine:
    engine = ABEngine(model, byte_chatml_tokenizer(), policy=POLICY, lanes=script.lanes, decoder=None)
    for text in script.history:
        list(engine.turn(text, GenerationSettings(max_new_tokens=4)))
    engine.decoder = decoder
    return engine


def turn(engine: ABEngine, script: Script, lock: FairLock | None) -> Outcome:
    cancel = threading.Event()
    outcome = Outcome(tokens={name: [] for name in script.lanes})
    settings = GenerationSettings(max_new_tokens=script.max_new_tokens)
    with lock.held() if lock is not None else nullcontext():
        for event in engine.turn(script.text, settings, cancel=cancel):
            if isinstance(event, TokenEvent):
                outcome.tokens[event.lane].append(event.token_id)
                if script.cancel_after is not None and len(outcome.tokens["delta"]) >= script.cancel_after:
                    cancel.set()
            elif isinstance(event, LaneDone):
                outcome.texts[event.lane] = event.text
                outcome.cancelled[event.lane] = event.stats.cancelled
            elif isinstance(event, TurnDone):
                outcome.written = event.written_total
    for name in script.lanes:
        outcome.states[name] = dict(engine.lanes[name].state)
        outcome.messages[name] = [m["content"] for m in engine.lanes[name].messages]
    return outcome


def concurrently(model: DeltaMemModel, scripts: list[Script], decoder: CrossBatch, lock: FairLock,
                 models: list[DeltaMemModel] | None = None) -> list[Outcome]:
    engines = [prepared(m, s, decoder) for m, s in zip(models or [model] * len(scripts), scripts)]
    outcomes: list[Outcome | None] = [None] * len(scripts)
    failures: list[BaseException] = []
    start = threading.Barrier(len(scripts))

    def run(index: int) -> None:
        try:
            start.wait()
            outcomes[index] = turn(engines[index], scripts[index], lock)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(scripts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def alone(model: DeltaMemModel, script: Script) -> Outcome:
    return turn(prepared(model, script, None), script, None)


def assert_same(together: Outcome, by_itself: Outcome, script: Script) -> None:
    assert together.tokens == by_itself.tokens, f"{script.text!r}: the tokens part"
    assert together.texts == by_itself.texts and together.cancelled == by_itself.cancelled
    assert together.written == by_itself.written, f"{script.text!r}: the memory written parts"
    assert together.messages == by_itself.messages
    for name, states in by_itself.states.items():
        assert set(together.states[name]) == set(states)
        for layer, state in states.items():
            torch.testing.assert_close(together.states[name][layer], state, rtol=1e-5, atol=1e-6,
                                       msg=f"{script.text!r}: lane {name}, layer {layer}'s memory")


def test_sessions_decoding_together_answer_what_each_answers_alone(model: DeltaMemModel) -> None:
    expected = [alone(model, s) for s in SCRIPTS]
    assert expected[3].cancelled["delta"] and len(expected[3].tokens["delta"]) == 4
    assert len(expected[2].tokens["delta"]) <= 3 < len(expected[1].tokens["delta"])
    lock = FairLock()
    decoder = CrossBatch(lock)
    outcomes = concurrently(model, SCRIPTS, decoder, lock)
    for script, together, by_itself in zip(SCRIPTS, outcomes, expected):
        assert_same(together, by_itself, script)
    assert decoder.joined_steps > 0, "no step held two sessions: nothing was batched"
    texts = {s.text for s in SCRIPTS} | {h for s in SCRIPTS for h in s.history}
    for script, outcome in zip(SCRIPTS, outcomes):         # no session holds another's messages
        own = {script.text, *script.history}
        held = {m for messages in outcome.messages.values() for m in messages} & texts
        assert held <= own


def test_without_room_to_join_each_session_decodes_alone(model: DeltaMemModel) -> None:
    scripts = SCRIPTS[:3]
    expected = [alone(model, s) for s in scripts]
    lock = FairLock()
    decoder = CrossBatch(lock, free_bytes=lambda device: 0)
    for script, together, by_itself in zip(scripts, concurrently(model, scripts, decoder, lock), expected):
        assert_same(together, by_itself, script)
    assert decoder.steps > 0 and decoder.joined_steps == 0


def test_sessions_of_other_models_never_share_a_step(model: DeltaMemModel) -> None:
    other = random_delta_model(attn="sdpa", seed=9)
    printable_only(other.backbone)
    scripts, models = SCRIPTS[:2] + SCRIPTS[:1], [model, model, other]
    expected = [alone(m, s) for m, s in zip(models, scripts)]
    assert expected[0].tokens != expected[2].tokens, "the two models must answer differently for the test to tell"
    lock = FairLock()
    decoder = CrossBatch(lock)
    for script, together, by_itself in zip(scripts, concurrently(model, scripts, decoder, lock, models), expected):
        assert_same(together, by_itself, script)

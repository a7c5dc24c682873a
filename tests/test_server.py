"""`deltamem-chat serve`: OpenAI's endpoints on the lanes, sessions with their own memory, refusals in one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from deltamem.runtime.contract import ALL_LANES, LaneDone
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem_chat.server.background import free_port
from deltamem_chat.server.completions import new_messages
from deltamem_chat.server.fair_lock import FairLock
from deltamem_chat.server.security import is_loopback
from tests.server_harness import (
    FACTS,
    RETRIEVAL,
    ROOT,
    SETTINGS,
    SMALL_WINDOW,
    chat_body,
    client,
    live_server,
    local_replies,
    sse_events,
    store,
    tiny_loaded,
)


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return tiny_loaded()


def test_models_are_the_lanes(loaded: LoadedModel, tmp_path: Path) -> None:
    with client(loaded, tmp_path) as test:
        listed = test.get("/v1/models").json()
        assert [m["id"] for m in listed["data"]] == ["frozen", "delta"]
        assert test.get("/v1/models/delta").json()["deltamem"]["memory"] is True
        assert test.get("/v1/models/gpt-4").status_code == 404


def test_the_models_are_the_lanes_it_serves(loaded: LoadedModel, tmp_path: Path) -> None:
    served = ("rag", "delta", "delta+rag")
    with client(loaded, tmp_path, lanes=served) as test:
        listed = test.get("/v1/models").json()["data"]
        assert [m["id"] for m in listed] == list(served)
        assert [(m["deltamem"]["memory"], m["deltamem"]["retrieval"]) for m in listed] == [
            (False, True), (True, False), (True, True)]
        for unserved in ("frozen", "gpt-4"):
            for refused in (test.get(f"/v1/models/{unserved}"),
                            test.post("/v1/chat/completions", json=chat_body(unserved, "hi"))):
                assert refused.status_code == 404, refused.text
                error = refused.json()["error"]
                assert error["message"] == f"model {unserved!r} is not served here: use one of rag, delta, delta+rag"
                assert error["code"] == "model_not_found" and error["param"] == "model"
        created = test.post("/v1/sessions", headers={"X-Session-Id": "s"}).json()
        assert list(created["lanes"]) == list(served) and created["lanes"]["rag"]["retrieval"] is True
        bad = test.post("/v1/sessions/s/engine/run", json={"op": "read", "lanes": ["frozen"]})
        assert bad.status_code == 400 and "lanes 'frozen' is not served here" in bad.json()["error"]["message"]
        bad = test.post("/v1/sessions/s/documents", json={"text": "a note", "lanes": ["frozen"]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "lanes"


def test_a_rag_reply_through_the_openai_client_equals_the_local_rag_lane(loaded: LoadedModel, tmp_path: Path) -> None:
    """Greedy, with a window the first facts leave: the retrieved messages and the replies are the local lane's."""
    local = ABEngine(loaded.model, loaded.tokenizer, policy=SMALL_WINDOW, lanes=ALL_LANES, retrieval=RETRIEVAL)
    expected = [next(e for e in local.turn(text, SETTINGS, lanes=["rag"]) if isinstance(e, LaneDone))
                for text in FACTS]
    assert any(done.stats.retrieved for done in expected), "the test's window drops nothing worth retrieving"
    sessions = store(loaded, tmp_path, lanes=ALL_LANES, retrieval=RETRIEVAL)
    with live_server(sessions) as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused-on-loopback")
        assert [m.id for m in api.models.list().data] == list(ALL_LANES)
        httpx.post(f"{url}/v1/sessions", json={"policy": str(SMALL_WINDOW)}, headers={"X-Session-Id": "r"})
        replies = [api.chat.completions.create(model="rag", messages=[{"role": "user", "content": text}],
                                               max_tokens=SETTINGS.max_new_tokens,
                                               extra_headers={"X-Session-Id": "r"}) for text in FACTS]
        with pytest.raises(openai.NotFoundError, match="use one of frozen, delta, rag, delta\\+rag"):
            api.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert [r.choices[0].message.content for r in replies] == [done.text for done in expected]
    assert [r.model for r in replies] == ["rag"] * len(FACTS)
    assert [r.usage.model_extra["deltamem"]["retrieved"] for r in replies] == [done.stats.retrieved
                                                                               for done in expected]


@pytest.mark.parametrize("lane", ["frozen", "delta"])
def test_a_stateless_reply_equals_the_local_engine(loaded: LoadedModel, tmp_path: Path, lane: str) -> None:
    with client(loaded, tmp_path) as test:
        body = test.post("/v1/chat/completions", json=chat_body(lane, "my name is Ada")).json()
    assert body["choices"][0]["message"]["content"] == local_replies(loaded, lane, ["my name is Ada"])[0]
    assert body["model"] == lane and body["usage"]["completion_tokens"] >= 1
    assert body["usage"]["prompt_tokens"] > len("my name is Ada")
    assert set(body["usage"]["deltamem"]) >= {"written", "written_total", "ttft_s", "diagnostics", "budget"}
    assert (body["usage"]["deltamem"]["written"] > 0) == (lane == "delta")
    assert list(tmp_path.iterdir()) == []            # nothing kept


def test_a_stream_says_what_the_reply_says(loaded: LoadedModel, tmp_path: Path) -> None:
    request = chat_body("delta", "hello there", stream=True, stream_options={"include_usage": True})
    with client(loaded, tmp_path) as test, test.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == local_replies(loaded, "delta", ["hello there"])[0]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_a_session_remembers_whether_sent_whole_or_new_only(loaded: LoadedModel, tmp_path: Path) -> None:
    users = ["my name is Ada", "what is my name?"]
    expected = local_replies(loaded, "delta", users)
    with client(loaded, tmp_path) as test:
        new_only = [test.post("/v1/chat/completions", json=chat_body("delta", text),
                              headers={"X-Session-Id": "a"}).json()["choices"][0]["message"]["content"]
                    for text in users]
        history: list[dict[str, str]] = []
        whole = []
        for text in users:
            history.append({"role": "user", "content": text})
            body = {**chat_body("delta", text), "messages": history, "user": "someone@example.org"}
            reply = test.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
            history.append({"role": "assistant", "content": reply})
            whole.append(reply)
        view = test.get("/v1/sessions/a").json()
    assert new_only == whole == expected
    assert [m["content"] for m in view["lanes"]["delta"]["messages"]] == [users[0], expected[0], users[1],
                                                                         expected[1]]
    assert view["lanes"]["frozen"]["messages"] == [] and view["lanes"]["delta"]["written_total"] > 0


def test_new_messages_drop_the_prefix_the_lane_holds() -> None:
    held = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert new_messages(held, [*held, {"role": "user", "content": "c"}]) == [{"role": "user", "content": "c"}]
    assert new_messages(held, [{"role": "user", "content": "c"}]) == [{"role": "user", "content": "c"}]
    assert new_messages([], held) == held


def test_sessions_survive_a_restart_and_an_eviction(loaded: LoadedModel, tmp_path: Path) -> None:
    users = {"s1": ["I live in Oslo", "where do I live?"], "s2": ["my dog is Rex", "what is my dog called?"]}
    expected = {sid: local_replies(loaded, "delta", texts) for sid, texts in users.items()}
    with client(loaded, tmp_path, live_sessions=1) as test:     # one engine in memory: the other is evicted
        for sid in users:
            created = test.post("/v1/sessions", json={"policy": "window:1024", "budget": {"horizon": 100}},
                                headers={"X-Session-Id": sid})
            assert created.status_code == 201, created.text
        for sid in users:
            reply = test.post("/v1/chat/completions", json=chat_body("delta", users[sid][0]),
                              headers={"X-Session-Id": sid}).json()
            assert reply["choices"][0]["message"]["content"] == expected[sid][0]
        assert (tmp_path / "s1" / "session.json").is_file()
    # A loaded session rebuilds its cache in one forward, so its next reply is compared with a local engine that
    # loads the same folder (float rounding may part it from a conversation that never stopped).
    again = {sid: local_replies(loaded, "delta", users[sid][1:], session=tmp_path / sid) for sid in users}
    with client(loaded, tmp_path, live_sessions=1) as test:     # a new server on the same folder
        assert test.get("/v1/sessions").json()["data"] == ["s1", "s2"]
        for sid in users:
            reply = test.post("/v1/chat/completions", json=chat_body("delta", users[sid][1]),
                              headers={"X-Session-Id": sid}).json()
            assert reply["choices"][0]["message"]["content"] == again[sid][0]
            assert test.get(f"/v1/sessions/{sid}").json()["budget"]["horizon"] == 100


def test_memory_reset_document_and_delete(loaded: LoadedModel, tmp_path: Path) -> None:
    with client(loaded, tmp_path) as test:
        session = test.post("/v1/sessions").json()["id"]
        assert len(session) >= 24                                # server-made ids are unguessable
        read = test.post(f"/v1/sessions/{session}/documents",
                         json={"text": "Ada lives in Oslo. " * 20, "title": "notes", "lanes": ["delta"]}).json()
        written = read["lanes"]["delta"]["written_total"]
        view = test.get(f"/v1/sessions/{session}").json()["lanes"]["delta"]
        assert written > 0 and view["written_total"] == written
        assert [m["role"] for m in view["messages"]] == ["user"] and "notes" in view["messages"][0]["content"]
        assert test.post(f"/v1/sessions/{session}/reset_memory").json()["lanes"]["delta"]["written_total"] == 0
        assert test.post(f"/v1/sessions/{session}/load").json()["lanes"]["delta"]["written_total"] == 0
        assert test.delete(f"/v1/sessions/{session}").json()["deleted"] is True
        assert test.get(f"/v1/sessions/{session}").status_code == 404
        assert not (tmp_path / session).exists()


@pytest.mark.parametrize(("request_kwargs", "status", "words"), [
    ({"content": b'{"model": "delta", "messages": [', "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ({"json": {"model": "delta", "messages": "hello"}}, 400, "messages"),
    ({"json": {"model": "delta", "messages": [{"role": "user", "content": 5}]}}, 400, "messages[0].content"),
    ({"json": {"model": "delta", "messages": [{"role": "robot", "content": "hi"}]}}, 400, "role"),
    ({"json": {"messages": [{"role": "user", "content": "hi"}]}}, 400, "model"),
    ({"json": chat_body("delta", "hi", max_tokens=10**9)}, 400, "limit"),
    ({"json": chat_body("gpt-4", "hi")}, 404, "gpt-4"),
    ({"json": chat_body("delta", "x" * (10 * 2**20))}, 413, "limit"),
    ({"json": chat_body("delta", "hi"), "headers": {"X-Session-Id": "../etc"}}, 400, "session id"),
])
def test_bad_requests_get_one_sentence(loaded: LoadedModel, tmp_path: Path, request_kwargs: dict, status: int,
                                       words: str) -> None:
    with client(loaded, tmp_path) as test:
        response = test.post("/v1/chat/completions", **request_kwargs)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert words in message and "\n" not in message and "Traceback" not in message


def test_unknown_sessions_and_endpoints(loaded: LoadedModel, tmp_path: Path) -> None:
    with client(loaded, tmp_path) as test:
        for response in (test.get("/v1/sessions/nobody"), test.post("/v1/sessions/nobody/reset_memory"),
                         test.delete("/v1/sessions/nobody"), test.get("/v2/nothing")):
            assert response.status_code == 404 and "\n" not in response.json()["error"]["message"]
        assert test.post("/v1/sessions", json={"policy": "wide"}).status_code == 400
        assert test.post("/v1/sessions", json={"budget": {"horizon": "big"}}).status_code == 400


def test_the_api_key_is_required_when_set(loaded: LoadedModel, tmp_path: Path) -> None:
    with client(loaded, tmp_path, api_key="sesame") as test:
        assert test.get("/v1/models").status_code == 401
        wrong = test.get("/v1/models", headers={"Authorization": "Bearer open"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert test.get("/v1/models", headers={"Authorization": "Bearer sesame"}).status_code == 200


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "example.org"]))


def test_the_lock_serves_in_arrival_order() -> None:
    lock, order = FairLock(), []

    def take(n: int) -> None:
        with lock.held():
            order.append(n)

    threads = []
    with lock.held():
        for n in range(6):
            threads.append(threading.Thread(target=take, args=(n,)))
            threads[-1].start()
            while lock.waiting < n + 1:          # each thread queues before the next starts
                threading.Event().wait(0.001)
        assert order == []
    for thread in threads:
        thread.join(5)
    assert order == list(range(6))


@pytest.mark.parametrize("cross_batch", [True, False], ids=["cross-batch", "one-at-a-time"])
def test_concurrent_clients_stay_isolated_and_the_openai_client_works(loaded: LoadedModel, tmp_path: Path,
                                                                      cross_batch: bool) -> None:
    facts = [f"my name is {name}" for name in ("Ada", "Bo", "Cy", "Di")]
    expected = {fact: local_replies(loaded, "delta", [fact, "what is my name?"]) for fact in facts}
    got: dict[str, list[str]] = {}
    with live_server(store(loaded, tmp_path, cross_batch=cross_batch)) as url:
        def converse(fact: str) -> None:
            with httpx.Client(base_url=url, headers={"X-Session-Id": f"c{facts.index(fact)}"}, timeout=30) as http:
                got[fact] = [http.post("/v1/chat/completions", json=chat_body("delta", text)).json()[
                    "choices"][0]["message"]["content"] for text in (fact, "what is my name?")]
        threads = [threading.Thread(target=converse, args=(fact,)) for fact in facts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        official = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        reply = official.chat.completions.create(model="delta", max_tokens=6,
                                                 messages=[{"role": "user", "content": facts[0]}])
        streamed = official.chat.completions.create(model="delta", max_tokens=6, stream=True,
                                                    messages=[{"role": "user", "content": facts[0]}])
        pieces = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert got == expected
    assert reply.choices[0].message.content == pieces == expected[facts[0]][0]
    assert json.loads(reply.usage.model_dump_json())["deltamem"]["written"] > 0


def test_requests_on_one_session_wait_for_its_turn_and_busy_sessions_stay_live(loaded: LoadedModel,
                                                                             tmp_path: Path) -> None:
    """With turns decoding without the model's lock, a session still serves one request at a time, and eviction
    passes over a session whose turn is in flight."""
    users = ["my name is Ada", "what is my name?"]
    expected = local_replies(loaded, "delta", users)
    sessions = store(loaded, tmp_path, live_sessions=1)
    replies: dict[str, str] = {}
    with live_server(sessions) as url:
        def ask(sid: str, text: str) -> None:
            body = chat_body("delta", text, max_tokens=SETTINGS.max_new_tokens)
            replies[f"{sid}:{text}"] = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                                                  headers={"X-Session-Id": sid}).json()["choices"][0]["message"][
                                                      "content"]
        threads = [threading.Thread(target=ask, args=(sid, users[0])) for sid in ("a", "b", "c")]
        threads += [threading.Thread(target=ask, args=("d", text)) for text in users]     # one session, twice
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        views = {sid: httpx.get(f"{url}/v1/sessions/{sid}").json()["lanes"]["delta"]["messages"] for sid in "ad"}
    assert {sid: replies[f"{sid}:{users[0]}"] for sid in "abc"} == {sid: expected[0] for sid in "abc"}
    assert [m["content"] for m in views["a"]] == [users[0], expected[0]]
    assert [m["role"] for m in views["d"]] == ["user", "assistant"] * 2, "two turns of one session interleaved"
    assert sorted(m["content"] for m in views["d"][::2]) == sorted(users)
    assert sorted(p.parent.name for p in tmp_path.glob("*/session.json")) == ["a", "b", "c", "d"]


def test_shutdown_saves_every_live_session(loaded: LoadedModel, tmp_path: Path) -> None:
    sessions = store(loaded, tmp_path)
    with live_server(sessions) as url:
        assert httpx.post(f"{url}/v1/sessions", headers={"X-Session-Id": "kept"}).status_code == 201
        sessions.engine("kept").add_message("user", "not saved by any request")
    saved = json.loads((tmp_path / "kept" / "session.json").read_text(encoding="utf-8"))
    assert saved["lanes"]["delta"]["messages"][-1]["content"] == "not saved by any request"


#: A server in a child process whose replies to "slow" take a while, so it can be killed in the middle of one.
CHILD = """
import sys, time
import uvicorn
import deltamem_chat.server.sessions as sessions
from deltamem.runtime.contract import TokenEvent
from deltamem.runtime.engine import ABEngine
from deltamem_chat.server.app import create_app
from tests.server_harness import store, tiny_loaded

class Slow(ABEngine):
    def respond(self, *args, **kwargs):
        slow = self.lanes["delta"].messages[-1]["content"] == "slow"
        for event in super().respond(*args, **kwargs):
            if slow and isinstance(event, TokenEvent):
                time.sleep(0.05)
            yield event

sessions.ABEngine = Slow
uvicorn.run(create_app(store(tiny_loaded(), __import__("pathlib").Path(sys.argv[1]))), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""


def test_a_kill_mid_turn_loses_only_that_turn(loaded: LoadedModel, tmp_path: Path) -> None:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(port)], cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the child server did not start"
                time.sleep(0.05)
        replies = {}
        for sid in ("k1", "k2"):
            replies[sid] = httpx.post(f"{url}/v1/chat/completions", json=chat_body("delta", f"I am {sid}"),
                                      headers={"X-Session-Id": sid}, timeout=60).json()["choices"][0]["message"]
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60, headers={"X-Session-Id": "k1"},
                          json=chat_body("delta", "slow", max_tokens=400, stream=True)) as response:
            for line in response.iter_lines():
                if '"content":"' in line.replace(" ", "") and '"content":""' not in line.replace(" ", ""):
                    os.kill(child.pid, signal.SIGKILL)
                    break
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with client(loaded, tmp_path) as test:                  # the restarted server reads every saved session
        assert test.get("/v1/sessions").json()["data"] == ["k1", "k2"]
        for sid in ("k1", "k2"):
            messages = test.get(f"/v1/sessions/{sid}").json()["lanes"]["delta"]["messages"]
            assert messages == [{"role": "user", "content": f"I am {sid}"}, replies[sid]]
        follow = test.post("/v1/chat/completions", json=chat_body("delta", "hello"), headers={"X-Session-Id": "k1"})
        assert follow.status_code == 200


def test_serve_on_a_reachable_address_makes_a_key_and_refuses_requests_without_it(
        tiny_model_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from deltamem_chat.cli import app

    served: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda asgi, **options: served.update(app=asgi, **options))
    base, adapter = tiny_model_dirs
    result = CliRunner().invoke(app, ["serve", "--adapter", str(adapter), "--base", str(base), "--device", "cpu",
                                      "--host", "0.0.0.0", "--sessions-dir", str(tmp_path / "s")],
                                env={"DELTAMEM_API_KEY": ""})
    assert result.exit_code == 0, result.output
    key = result.output.split("Bearer KEY): ")[1].split()[0]
    assert served["host"] == "0.0.0.0" and len(key) > 40
    with TestClient(served["app"]) as test:
        assert test.get("/v1/models").status_code == 401
        assert test.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    refused = CliRunner().invoke(app, ["serve", "--sessions-dir", str(tiny_model_dirs[0] / "config.json")])
    assert refused.exit_code == 2 and "not a folder" in refused.output


def test_serve_takes_the_chats_lanes_and_retrieval(tiny_model_dirs: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from deltamem_chat.cli import app

    served: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda asgi, **options: served.update(app=asgi, **options))
    base, adapter = tiny_model_dirs
    common = ["serve", "--adapter", str(adapter), "--base", str(base), "--device", "cpu",
              "--sessions-dir", str(tmp_path / "s")]
    result = CliRunner().invoke(app, [*common, "--lanes", "delta+rag,frozen", "--retrieval", "k=2,tokens=50"])
    assert result.exit_code == 0, result.output
    with TestClient(served["app"]) as test:
        assert [m["id"] for m in test.get("/v1/models").json()["data"]] == ["delta+rag", "frozen"]
        assert test.post("/v1/sessions").json()["retrieval"] == "k=2,tokens=50"
    assert served["app"].state.store.decoder is not None                   # --cross-batch on by default
    assert CliRunner().invoke(app, [*common, "--cross-batch", "off"]).exit_code == 0
    assert served["app"].state.store.decoder is None
    for option, value in (("--lanes", "frozen,memory"), ("--retrieval", "depth=3"), ("--cross-batch", "maybe")):
        refused = CliRunner().invoke(app, [*common, option, value])
        assert refused.exit_code == 2 and f"error: {option}" in refused.output, refused.output
    assert "--lanes" in CliRunner().invoke(app, ["serve", "--help"]).output

"""The ``openai`` backend against a scripted local server: mapping, concurrency, retries, errors."""

import logging
import socket
import time

import pytest
from fake_openai import FakeServer

from sys2distill.backends import REGISTRY
from sys2distill.backends.base import SamplingParams
from sys2distill.backends.openai_compat import OpenAIBackend, retry_after
from sys2distill.errors import UserError

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def make(server, **kw):
    b = OpenAIBackend(base_url=server.base_url, **{"max_retries": 3, **kw})
    b.backoff_base = 0.01  # keep the backoff sleeps short; Retry-After is still honoured in full
    return b


def test_registry_and_model_from_server(server):
    assert REGISTRY["openai"] is OpenAIBackend
    b = make(server)
    assert b.served == "fake-model" and b.model_id == "openai:fake-model"  # 'embedded' = the server's one model
    assert make(server, model="fake-model").served == "fake-model"
    with pytest.raises(UserError, match=r"serves \['fake-model'\]: set model=<one of its model names>"):
        make(server, model="Qwen/Qwen2.5-7B-Instruct")  # a name the server does not hold fails at setup


def test_request_mapping_usage_and_samples(server):
    b = make(server)
    params = SamplingParams(n=3, temperature=0.7, top_p=0.9, max_tokens=20, stop=("\n\n",), seed=5)
    out = b.generate([HI, [{"role": "user", "content": "Yo"}]], params)
    assert [len(cs) for cs in out] == [3, 3]
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 6  # one request per sample: exact per-sample usage
    assert all(x["n"] == 1 and x["temperature"] == 0.7 and x["top_p"] == 0.9 and x["max_tokens"] == 20
               and x["stop"] == ["\n\n"] and x["model"] == "fake-model" for x in bodies)
    assert len({x["seed"] for x in bodies}) == 6  # each sample its own seed
    c = out[0][0]
    assert c.completion_tokens == 2 and c.prompt_tokens > 0 and c.finish_reason == "stop"
    assert c.text.startswith("reply seed=")
    # Sample j's seed depends on (seed, prompt, j) only: the same prompt alone gets the same seeds.
    server.requests.clear()
    again = b.generate([HI], params)
    assert [c.text for c in again[0]] == [c.text for c in out[0]]


def test_logprobs_are_asked_for_only_when_wanted_and_summed(server):
    b = make(server)
    (plain,), (asked,) = (b.generate([HI], SamplingParams(max_tokens=20, logprobs=want)) for want in (False, True))
    first, second = (r["body"] for r in server.requests)
    assert "logprobs" not in first and second == {**first, "logprobs": True}  # the one field added
    assert plain[0].logprob is None and asked[0].logprob == -0.25 * len(asked[0].text.split())


def test_greedy_is_one_request_copied(server):
    out = make(server).generate([HI], SamplingParams(n=4, temperature=0, max_tokens=2))
    assert len(server.requests) == 1 and len(out[0]) == 4 and len({c.text for c in out[0]}) == 1
    assert out[0][0].finish_reason == "length"


def test_concurrency_is_bounded(server):
    server.delay = 0.15
    start = time.monotonic()
    make(server, max_concurrency=3).generate([HI] * 9, SamplingParams(max_tokens=5))
    assert server.peak == 3
    assert time.monotonic() - start < 9 * 0.15  # in parallel, not one by one


def test_retries_on_429_and_5xx_then_succeeds(server):
    server.script = [429, 500, 503, "drop"]
    out = make(server, max_retries=4).generate([HI], SamplingParams(max_tokens=5))
    assert out[0][0].text.startswith("reply") and len(server.requests) == 5


def test_retry_after_is_honoured(server):
    server.script = [("429", 1)]
    make(server).generate([HI], SamplingParams(max_tokens=5))
    first, second = server.requests
    assert second["time"] - first["time"] >= 0.95  # backoff alone would wait ~0.01 s


def test_gives_up_after_max_retries(server):
    server.script = [500] * 10
    with pytest.raises(UserError, match=r"kept answering HTTP 500 \(3 tries\): lower backend.max_concurrency"):
        make(server, max_retries=2).generate([HI], SamplingParams(max_tokens=5))
    assert len(server.requests) == 3


def test_slow_server_times_out_then_retries(server):
    server.script = [("slow", 1.0)]
    out = make(server, timeout=0.3).generate([HI], SamplingParams(max_tokens=5))
    assert out[0][0].text and len(server.requests) == 2
    server.script = [("slow", 1.0)] * 2
    with pytest.raises(UserError, match=r"did not answer within backend.timeout=0.3s \(2 tries\)"):
        make(server, timeout=0.3, max_retries=1).generate([HI], SamplingParams(max_tokens=5))


def test_bad_request_is_not_retried(server):
    server.script = [400]
    with pytest.raises(UserError, match="rejected the request .HTTP 400"):
        make(server).generate([HI], SamplingParams(max_tokens=5))
    assert len(server.requests) == 1


def test_api_key_from_env_sent_but_never_shown(server, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_KEY", secret)
    caplog.set_level(logging.DEBUG)
    b = make(server, api_key_env="MY_KEY")
    b.generate([HI], SamplingParams(max_tokens=5))
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    server.script = [401]
    with pytest.raises(UserError) as e:
        b.generate([HI], SamplingParams(max_tokens=5))
    assert "refused the API key (HTTP 401): set $MY_KEY" in str(e.value)
    assert secret not in str(e.value) and secret not in caplog.text and secret not in repr(vars(b).get("model_id"))


def test_refused_key_at_setup(server):
    server.status_models = 401
    with pytest.raises(UserError, match=r"refused the API key .* set \$OPENAI_API_KEY"):
        make(server)


def test_unreachable_server_is_one_line_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UserError, match=f"^cannot reach {url}: start the server or fix backend.base_url$"):
        OpenAIBackend(base_url=url)


def test_base_url_from_env(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    assert OpenAIBackend().base_url == server.base_url


def test_retry_after_parsing():
    assert retry_after("2") == 2.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now


def test_a_server_that_is_not_openai_compatible_is_one_line(tmp_path):
    """A plain web server on the port (here Python's file server: HTML for every GET) fails at setup."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text("<html>not an API</html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        with pytest.raises(UserError, match=rf"^{url}/models answered HTTP 200 with a body that is not JSON .*: point "
                                            r"backend.base_url at an OpenAI-compatible API"):
            OpenAIBackend(base_url=url, model="some-model")
    finally:
        httpd.shutdown()
        httpd.server_close()

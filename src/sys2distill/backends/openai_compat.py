"""Backend for any OpenAI-compatible chat-completions server (issue 5, part 1).

vLLM, SGLang, the llama.cpp server, Ollama, TGI and hosted APIs all speak
``POST {base_url}/chat/completions``. Requests run concurrently on asyncio (at most
``max_concurrency`` in flight); 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and full jitter, or after the server's ``Retry-After``.

Each sample is its own request (``n=1``, seed derived from (seed, prompt, sample index)):
the server's ``usage`` then counts each sample's tokens exactly (with ``n`` it gives only the
sum), sample j is reproducible whatever the batch (the ``backends.base`` contract), servers
that ignore ``n`` (llama.cpp, Ollama) still return n samples, and the cache can ask for just
the samples it lacks. Engines with prefix caching (vLLM, SGLang) share the prompt's KV cache
across these requests. The API key is read from the environment, sent only as a header and
never stored in config, logs or errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from sys2distill.backends import register_backend
from sys2distill.backends.base import Messages, SamplingParams
from sys2distill.backends.hf import sample_seed
from sys2distill.errors import UserError
from sys2distill.models import EMBEDDED
from sys2distill.records import Completion

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # vLLM's and llama.cpp's default port
DEFAULT_KEY_ENV = "OPENAI_API_KEY"  # may be unset: local servers (llama.cpp, vLLM) take no key
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}  # overload and transient server faults


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay in seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):  # unparseable: fall back to our own backoff
        return None


def run_sync(coro):
    """Run a coroutine from sync code, also where a loop already runs (Jupyter, Ray async actors)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@register_backend("openai")
class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server at ``base_url``."""

    backoff_base, backoff_cap = 0.5, 30.0  # seconds: 0.5, 1, 2, 4 … capped, times a uniform jitter

    def __init__(self, model: str = EMBEDDED, base_url: str | None = None, api_key_env: str = DEFAULT_KEY_ENV,
                 max_concurrency: int = 16, timeout: float = 120.0, max_retries: int = 5):
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env, self.timeout, self.max_retries = api_key_env, timeout, max_retries
        self.max_concurrency = max_concurrency
        key = os.environ.get(api_key_env)
        if key is None and api_key_env != DEFAULT_KEY_ENV:  # a variable named on purpose but not set: a typo, or the key itself
            raise UserError(f"backend.api_key_env names ${api_key_env}, which is not set: `export {api_key_env}=<key>`, "
                            "or set backend.api_key_env to the variable that holds the key")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.served = self._check(model)  # fail at setup, not after the first chunk
        self.model_id = f"openai:{self.served}"

    def _check(self, model: str) -> str:
        """Ask the server for its models: unreachable or refused is a ``UserError`` now."""
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers, timeout=min(self.timeout, 10.0))
        except httpx.TransportError:
            raise UserError(f"cannot reach {self.base_url}: start the server or fix backend.base_url") from None
        if r.status_code in (401, 403):
            raise self._refused(r)
        try:
            served = [m.get("id") for m in self._json(r).get("data", [])] if r.status_code == 200 else []
        except AttributeError:  # JSON of another shape: no model list to check against
            raise self._not_api(r, "a JSON body without a model list") from None
        if model == EMBEDDED and len(served) == 1:  # 'embedded' = the one model the server holds (e.g. the GGUF)
            return served[0]
        if model == EMBEDDED or (served and model not in served):  # llama.cpp would answer any name with its own model
            raise UserError(f"{self.base_url} serves {served or 'no listed model'}: set model=<one of its model names>")
        return model

    def _json(self, r: httpx.Response) -> dict:
        """The body of a 200 answer as a JSON object; anything else (a proxy's or web server's HTML page)
        means ``base_url`` is not the API."""
        try:
            data = r.json()
        except ValueError:  # json.JSONDecodeError, or a body that is not text
            raise self._not_api(r, "a body that is not JSON") from None
        if not isinstance(data, dict):
            raise self._not_api(r, "JSON that is not an object")
        return data

    def _not_api(self, r: httpx.Response, what: str) -> UserError:
        start = " ".join(r.text[:60].split())
        return UserError(f"{r.request.url} answered HTTP {r.status_code} with {what} (it starts {start!r}): point "
                         "backend.base_url at an OpenAI-compatible API, usually ending in /v1")

    def _refused(self, r: httpx.Response) -> UserError:
        if r.status_code in (401, 403):
            return UserError(f"{self.base_url} refused the API key (HTTP {r.status_code}): "
                             f"set ${self.api_key_env} or fix backend.api_key_env")
        if r.status_code == 404:
            return UserError(f"{self.base_url}/chat/completions not found (HTTP 404): fix backend.base_url "
                             f"(usually ends in /v1) or model={self.served!r}")
        return UserError(f"{self.base_url} rejected the request (HTTP {r.status_code}: {r.text[:200]}): "
                         "check the generation settings and model name")

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        n = 1 if params.temperature == 0 else params.n  # greedy samples are identical: ask once, copy
        bodies = [[self._body(m, params, params.first_sample + j) for j in range(n)] for m in prompts]
        flat = run_sync(self._gather([b for row in bodies for b in row]))
        return [flat[i * n:(i + 1) * n] * (params.n // n) for i in range(len(prompts))]

    def _body(self, messages: Messages, params: SamplingParams, j: int) -> dict:
        body = {"model": self.served, "messages": messages, "n": 1, "temperature": params.temperature,
                "top_p": params.top_p, "max_tokens": params.max_tokens,
                # 31 bits: llama.cpp takes a uint32 seed, OpenAI an int64
                "seed": sample_seed(params.seed, json.dumps(messages, sort_keys=True), j) % 2**31}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.logprobs:
            body["logprobs"] = True
        return body

    async def _gather(self, bodies: list[dict]) -> list[Completion]:
        limit = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self.timeout,
                                     limits=httpx.Limits(max_connections=self.max_concurrency)) as client:
            async def one(body: dict) -> Completion:
                async with limit:
                    return self._completion(await self._post(client, body))

            tasks = [asyncio.create_task(one(b)) for b in bodies]
            try:
                return await asyncio.gather(*tasks)
            finally:  # the first failure stops the rest instead of leaving them running
                for t in tasks:
                    t.cancel()

    async def _post(self, client: httpx.AsyncClient, body: dict) -> dict:
        """POST with retries; a request that keeps failing becomes one ``UserError`` line."""
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                r = await client.post("/chat/completions", json=body)
            except httpx.TransportError as e:  # refused or dropped connection, timeout
                why = "timeout" if isinstance(e, httpx.TimeoutException) else "connect"
            else:
                if r.status_code == 200:
                    return self._json(r)
                if r.status_code not in RETRY_STATUS:
                    raise self._refused(r)
                why, wait = f"HTTP {r.status_code}", retry_after(r.headers.get("retry-after"))
            if attempt < self.max_retries:
                backoff = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
                await asyncio.sleep(wait if wait is not None else backoff)
        tries = self.max_retries + 1
        if why == "connect":
            raise UserError(f"cannot reach {self.base_url}: start the server or fix backend.base_url")
        if why == "timeout":
            raise UserError(f"{self.base_url} did not answer within backend.timeout={self.timeout}s ({tries} tries): "
                            "raise backend.timeout or lower backend.max_concurrency")
        raise UserError(f"{self.base_url} kept answering {why} ({tries} tries): "
                        "lower backend.max_concurrency or raise backend.max_retries")

    def _completion(self, data: dict) -> Completion:
        usage = data.get("usage") or {}
        if "prompt_tokens" not in usage or "completion_tokens" not in usage:
            raise UserError(f"{self.base_url} returned no token `usage`: use a server that reports it "
                            "(token counts are part of every result)")
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise UserError(f"{self.base_url} returned a completion without choices[0].message: use an OpenAI-compatible "
                            "chat-completions server (backend.base_url)") from None
        return Completion(text=text.strip(), prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                          logprob=_summed_logprob(choice))


def _summed_logprob(choice: dict) -> float | None:
    """The sum of a chat choice's token log-probs (OpenAI's ``logprobs.content[].logprob``); None without them."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    if not content:
        return None
    try:
        return float(sum(t["logprob"] for t in content))
    except (KeyError, TypeError, ValueError):
        return None

"""A scripted OpenAI-compatible server on 127.0.0.1 (stdlib ``http.server`` in a thread).

``server.script`` is a list of faults served to the next requests in order: an int status
(``429``, ``500``…), ``("429", retry_after)``, ``("slow", seconds)`` or ``"drop"`` (close the
connection without answering); an empty script answers 200 with a fixed completion. Every
request's body, headers and arrival time are recorded, as is the peak number in flight.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        s = self.server
        if s.status_models:
            return self._send(s.status_models, {"error": {"message": "no"}})
        self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self):
        s = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with s.lock:
            s.requests.append({"body": body, "headers": dict(self.headers), "time": time.monotonic()})
            fault = s.script.pop(0) if s.script else None
            s.in_flight += 1
            s.peak = max(s.peak, s.in_flight)
        try:
            if isinstance(fault, tuple) and fault[0] == "slow":
                time.sleep(fault[1])
                fault = None
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if isinstance(fault, tuple):
                return self._send(int(fault[0]), {"error": {"message": "busy"}}, {"Retry-After": str(fault[1])})
            if fault is not None:
                return self._send(int(fault), {"error": {"message": f"fault {fault}"}})
            time.sleep(s.delay)
            text = f"reply seed={body['seed']}"
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": "length" if body["max_tokens"] <= 3 else "stop"}
            if body.get("logprobs"):  # OpenAI's shape: one entry per token, a quarter nat each here
                choice["logprobs"] = {"content": [{"token": w, "logprob": -0.25, "bytes": None, "top_logprobs": []}
                                                  for w in text.split()]}
            self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                             "choices": [choice],
                             "usage": {"prompt_tokens": len(json.dumps(body["messages"])) // 4,
                                       "completion_tokens": len(text.split()), "total_tokens": 0}})
        finally:
            with s.lock:
                s.in_flight -= 1


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.delay = 0.0  # seconds every successful answer takes
        self.status_models = 0  # non-zero: GET /models answers this status
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

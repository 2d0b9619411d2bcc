"""HTTP between the containers of one pod: a tiny server helper and a client.

The trainer and rollout workers each serve a few POST routes; the checkpoint engine calls
them. Work runs in a thread so /healthz answers while a long phase is in progress. Bodies
are JSON, except batches of samples, which travel as binary buffers (seesaw.wire): a
handler given or returning `bytes` speaks application/octet-stream.
"""
from __future__ import annotations

import asyncio
import json
import logging
import traceback
from typing import Any, Awaitable, Callable

import requests
import urllib3
from aiohttp import web

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any] | bytes], Any]
BINARY = "application/octet-stream"


class WorkerUnavailable(RuntimeError):
    """The worker did not answer: it crashed, or never started."""


class WorkerError(RuntimeError):
    """The worker answered with an error; the message carries its reason."""


def json_route(handler: Handler, lock: asyncio.Lock) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        body = await read_body(request)
        async with lock:  # one engine call at a time: engines are not re-entrant
            try:
                result = await asyncio.to_thread(handler, body)
            except Exception as err:  # the caller gets the reason, the log gets the traceback
                log.error("%s failed:\n%s", request.path, traceback.format_exc())
                return web.json_response({"error": f"{type(err).__name__}: {err}"}, status=500)
        if isinstance(result, bytes):
            return web.Response(body=result, content_type=BINARY)
        return web.json_response(result, dumps=lambda o: json.dumps(o, default=_jsonable))
    return route


async def read_body(request: web.Request) -> dict[str, Any] | bytes:
    """A JSON body as a dict, a binary one as bytes, none as {}."""
    if not request.can_read_body:
        return {}
    return await request.read() if request.content_type == BINARY else await request.json()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def build_app(routes: dict[str, Handler], health: dict[str, Callable[[], dict[str, Any]]]) -> web.Application:
    """POST routes, one engine call at a time, and GET health routes that always answer."""
    lock = asyncio.Lock()
    app = web.Application(client_max_size=1024 ** 3)
    for path, handler in routes.items():
        app.router.add_post(path, json_route(handler, lock))

    def health_route(check: Callable[[], dict[str, Any]]):
        async def healthz(_: web.Request) -> web.Response:
            state = await asyncio.to_thread(check)
            return web.json_response(state, status=200 if state.get("ready") else 503)
        return healthz

    for path, check in health.items():
        app.router.add_get(path, health_route(check))
    return app


def serve(routes: dict[str, Handler], port: int, health: Callable[[], dict[str, Any]],
          hosts: list[str] | None = None) -> None:
    """Serve POST routes plus GET /healthz on `hosts` (loopback alone by default) until the
    process is stopped."""
    web.run_app(build_app(routes, {"/healthz": health}), host=hosts or ["127.0.0.1"], port=port, print=None,
                handle_signals=True)


class WorkerClient:
    """Calls one worker's routes; every failure names the worker and the route."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        # a pod's workers and the gang's checkpoint engines are reached directly, never through an
        # HTTP proxy of the environment; reading the environment's proxy settings on each call
        # was also most of the caller's CPU time at a thousand engines (bench/scale_sim.py)
        self.session.trust_env = False

    def call(self, route: str, payload: dict[str, Any] | bytes | None = None, timeout: float = 600.0) -> Any:
        """The route's JSON answer, or its bytes where it answers with a binary body; a bytes
        payload goes as a binary body."""
        if isinstance(payload, bytes):
            response, content = self._post(route, timeout, data=payload, headers={"Content-Type": BINARY})
        else:
            response, content = self._post(route, timeout, json=payload or {})
        if response.status_code != 200:
            try:
                reason = json.loads(content).get("error", content.decode(errors="replace"))
            except (ValueError, AttributeError):
                reason = content.decode(errors="replace")
            raise WorkerError(f"{self.name} failed {route}: {reason}")
        if response.headers.get("Content-Type", "").startswith(BINARY):
            return content
        return json.loads(content)

    def forward(self, route: str, body: bytes, content_type: str, timeout: float) -> tuple[int, bytes, str]:
        """Pass a request body through unread (a relay): the worker's status, body and content type."""
        response, content = self._post(route, timeout, data=body, headers={"Content-Type": content_type or "application/json"})
        return response.status_code, content, response.headers.get("Content-Type", "application/json")

    def _post(self, route: str, timeout: float, **body: Any) -> tuple[requests.Response, bytes]:
        """POST to a route: the response and its whole body; a timeout or a worker that does not
        answer is named."""
        try:
            response = self.session.post(f"{self.base_url}{route}", timeout=timeout, stream=True, **body)
            # in one read: requests reads a body 10 KiB at a time, a rollout's sample buffer in
            # thousands of Python calls (most of pod 0's CPU in receiving them, bench/scale_sim.py)
            return response, response.raw.read(decode_content=True)
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            raise TimeoutError(f"{self.name} did not answer {route} within {timeout:.0f}s") from None
        except (requests.ConnectionError, urllib3.exceptions.ProtocolError) as err:
            raise WorkerUnavailable(f"{self.name} at {self.base_url} is not answering {route}: {_reason(err)}") from None

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The worker's health document, or None if it does not answer."""
        try:
            response = self.session.get(f"{self.base_url}/healthz", timeout=timeout)
            return response.json()
        except (requests.RequestException, ValueError):
            return None


def _reason(err: Exception) -> str:
    text = str(err)
    if "Connection refused" in text:
        return "connection refused (the process is gone or not listening)"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "connection closed mid-request (the process died)"
    return text.splitlines()[0][:200]

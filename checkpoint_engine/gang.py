"""The gang: pod 0's checkpoint engine conducts; every other pod's checkpoint engine joins it
and relays its commands to its own pod's trainer and rollout engine.

Pod 0 listens on the gang port (SEESAW_GANG_PORT on SEESAW_RENDEZVOUS, the headless
Service's name for pod 0). A follower binds a port of its own, joins with its URL, and
serves `/trainer/<route>` and `/rollout/<route>` for the conductor, so the conductor speaks
to every pod's workers through the same WorkerClient. Every phase runs on all pods at
once and is a barrier: a pod that fails or does not finish in the phase's time is named.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import requests
from aiohttp import web

from seesaw.checkpoint_engine.phases import Phase, PhaseError
from seesaw.rpc import WorkerClient, WorkerError, WorkerUnavailable
from seesaw.worker_env import WorkerEnv

T = TypeVar("T")
RELAY_TIMEOUT = 24 * 3600.0  # the conductor's phase timeout governs; the relay only forwards


@dataclass
class PodWorkers:
    index: int
    trainer: WorkerClient
    rollouts: list[WorkerClient]  # the pod's vLLM engines, one per rollout tensor-parallel group
    relay_url: str = ""  # a follower's checkpoint engine; pod 0 has none
    engine: WorkerClient | None = None  # a follower's checkpoint engine's own routes (/score)


@dataclass
class ReplicaWorkers:
    """A rollout-only pod (spec.rollout.replicas): vLLM engines and a relaying checkpoint
    engine, no trainer. It may join, leave or be replaced at any time."""

    index: int
    rollouts: list[WorkerClient]
    relay_url: str


class PodFailed(PhaseError):
    """One pod of the gang failed or missed a phase's barrier; the message names it."""


def on_every_pod(pods: list[PodWorkers], phase: Phase, work: Callable[[PodWorkers], T], timeout: float) -> list[T]:
    """Run `work` on every pod at once; the results in pod order, or PodFailed naming the pod."""
    if len(pods) == 1:
        return [work(pods[0])]
    started = time.monotonic()
    with ThreadPoolExecutor(len(pods), thread_name_prefix=f"gang-{phase.value}") as pool:
        futures = {pool.submit(work, pod): pod.index for pod in pods}
        done, missing = wait(futures, timeout=max(0.0, timeout))
        for future in sorted(done, key=lambda f: futures[f]):
            err = future.exception()
            if err is not None:
                raise PodFailed(phase, f"pod {futures[future]}: {err}") from err
        if missing:
            late = sorted(futures[f] for f in missing)
            raise PodFailed(phase, f"pod(s) {late} did not finish {phase.value} within "
                                   f"{time.monotonic() - started:.0f}s (spec.timeouts)")
        return [future.result() for future in sorted(done, key=lambda f: futures[f])]


def on_each(items: list, work: Callable[[Any], T]) -> list[T]:
    """`work` on every item at once (a pod's rollout engines), results in order; the first error raises."""
    if len(items) == 1:
        return [work(items[0])]
    with ThreadPoolExecutor(len(items), thread_name_prefix="engine") as pool:
        return list(pool.map(work, items))


def on_each_guarded(items: list, work: Callable[[Any], T]) -> list[T | Exception]:
    """`work` on every item at once; an item's error is returned in its place (rollout
    replicas: one that fails is dropped, the job goes on)."""
    def guarded(item: Any) -> T | Exception:
        try:
            return work(item)
        except Exception as err:  # noqa: BLE001 - handed back to the caller, which names it
            return err

    return on_each(items, guarded) if items else []


# --- pod 0: accept the followers ---------------------------------------------------------------
class GangServer:
    """Pod 0's gang port: followers join with their URL; `wait_for` returns them all."""

    def __init__(self, port: int, expected: int) -> None:
        self.expected = expected
        self.joined: dict[int, str] = {}
        self.new_replicas: dict[int, str] = {}  # joined (or re-joined) since the conductor last took them
        self._changed = threading.Condition()
        app = web.Application()
        app.router.add_post("/join", self._join)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "0.0.0.0", port).start())
        threading.Thread(target=self._loop.run_forever, name="gang-server", daemon=True).start()

    async def _join(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("replica") is not None:  # a rollout replica: welcome at any time
            with self._changed:
                self.new_replicas[int(body["replica"])] = str(body["url"])
            return web.json_response({"ok": True})
        index = int(body["pod"])
        if not 0 < index <= self.expected:
            return web.json_response({"error": f"pod index {index} is not a follower of a {self.expected + 1}-pod gang"}, status=400)
        with self._changed:
            self.joined[index] = str(body["url"])
            self._changed.notify_all()
        return web.json_response({"ok": True})

    def take_new_replicas(self) -> dict[int, str]:
        """The rollout replicas that joined since the last call: index -> relay URL."""
        with self._changed:
            taken, self.new_replicas = self.new_replicas, {}
            return taken

    def wait_for(self, timeout: float) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.joined) < self.expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(range(1, self.expected + 1)) - set(self.joined))
                    raise PodFailed(Phase.STARTING, f"pod(s) {missing} did not join the gang within {timeout:.0f}s")
                self._changed.wait(left)
            return dict(self.joined)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def rollout_clients(owner: str, engines: int, url_of: Callable[[int], str]) -> list[WorkerClient]:
    """A pod's rollout engines, named for errors: owner "pod 1's " gives "pod 1's rollout engine",
    or "pod 1's rollout engine 2" where a pod has several."""
    return [WorkerClient(f"{owner}rollout engine" + (f" {e}" if engines > 1 else ""), url_of(e)) for e in range(engines)]


def replica_workers(index: int, url: str, engines: int) -> ReplicaWorkers:
    return ReplicaWorkers(index, rollout_clients(f"rollout replica {index}'s ", engines,
                                                 lambda e: f"{url}/rollout-{e}"), relay_url=url)


def follower_workers(joined: dict[int, str], engines: int) -> list[PodWorkers]:
    return [PodWorkers(index, WorkerClient(f"pod {index}'s trainer", f"{url}/trainer"),
                       rollout_clients(f"pod {index}'s ", engines, lambda e, url=url: f"{url}/rollout-{e}"), relay_url=url,
                       engine=WorkerClient(f"pod {index}'s checkpoint engine", f"{url}/gang"))
            for index, url in sorted(joined.items())]


# --- pods 1..N-1: join, then relay ------------------------------------------------------------
def _relay_app(env: WorkerEnv, finished: threading.Event, score: Callable[[str, list], list[float]]) -> web.Application:
    workers = {f"rollout-{e}": WorkerClient(f"rollout engine {e}", url) for e, url in enumerate(env.rollout_urls)}
    if env.replica is None:  # a rollout replica has no trainer
        workers["trainer"] = WorkerClient("trainer", env.trainer_url)

    async def relay(request: web.Request) -> web.Response:
        worker = workers.get(request.match_info["worker"])
        if worker is None:
            return web.json_response({"error": f"no worker {request.match_info['worker']!r}"}, status=404)
        route = "/" + request.match_info["route"]
        body = await request.json() if request.can_read_body else {}
        try:
            result = await asyncio.to_thread(worker.call, route, body, RELAY_TIMEOUT)
        except (WorkerError, WorkerUnavailable, TimeoutError) as err:
            return web.json_response({"error": str(err)}, status=500)
        return web.json_response(result, dumps=json.dumps)

    async def health(request: web.Request) -> web.Response:
        worker = workers.get(request.match_info["worker"])
        state = await asyncio.to_thread(worker.health) if worker else None
        state = state or {"ready": False, "error": None}
        return web.json_response(state, status=200 if state.get("ready") else 503)

    async def finish(_: web.Request) -> web.Response:
        finished.set()
        return web.json_response({"ok": True})

    async def score_samples(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            return web.json_response(await asyncio.to_thread(score, body["split"], body["items"]))
        except Exception as err:  # a verifier's failure reaches the conductor, named
            return web.json_response({"error": f"scoring failed: {type(err).__name__}: {err}"}, status=500)

    app = web.Application(client_max_size=1024 ** 3)
    app.router.add_post("/gang/finish", finish)
    app.router.add_post("/gang/score", score_samples)
    app.router.add_get("/{worker}/healthz", health)
    app.router.add_post("/{worker}/{route:.+}", relay)
    return app


def follow(env: WorkerEnv, log: Callable[[str], None], score: Callable[[str, list], list[float]]) -> int:
    """A follower's checkpoint engine: join pod 0's gang, relay (and score its pod's samples)
    until told the job finished."""
    finished = threading.Event()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_relay_app(env, finished, score))
    loop.run_until_complete(runner.setup())
    with socket.socket() as probe:  # a port of our own: on one machine every pod shares the host's ports
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    loop.run_until_complete(web.TCPSite(runner, "0.0.0.0", port).start())
    threading.Thread(target=loop.run_forever, name="relay", daemon=True).start()
    url = f"http://{env.pod_ip}:{port}"
    me, join = ((f"pod {env.pod_index}", {"pod": env.pod_index}) if env.replica is None
                else (f"rollout replica {env.replica}", {"replica": env.replica}))
    deadline = time.monotonic() + env.spec["timeouts"]["startupSeconds"]
    while True:
        try:
            requests.post(f"{env.gang_url}/join", json=dict(join, url=url), timeout=5).raise_for_status()
            break
        except requests.RequestException as err:
            if time.monotonic() > deadline:
                log(f"FAILED: {me} could not join the gang at {env.gang_url}: {err}")
                return 1
            time.sleep(0.5)
    log(f"{me} joined the gang at {env.gang_url}; relaying at {url}")
    finished.wait()
    log(f"{me}: the conductor finished the job")
    return 0


def release_followers(pods: list[PodWorkers]) -> None:
    """Tell the followers the job is over (their checkpoint engines exit, ending their pods)."""
    for pod in pods:
        if pod.relay_url:
            try:
                requests.post(f"{pod.relay_url}/gang/finish", timeout=5)
            except requests.RequestException:
                pass  # already gone: nothing left to stop

"""The gang: pod 0's checkpoint engine conducts; every other pod's checkpoint engine, and
every rollout replica's, joins it and relays its commands to its own pod's workers.

Pod 0 listens on the gang port (SEESAW_GANG_PORT on SEESAW_RENDEZVOUS, the headless
Service's name for pod 0). A follower binds a port of its own, joins with its URL, and
serves `/trainer/<route>` and `/rollout-<e>/<route>` for the conductor, so the conductor
speaks to every pod's workers through the same WorkerClient, and `/gang/<command>`: its pod's
part of a phase (its engines' rollout, the train step, the checkpoint, the weight sync) on one
call of pod 0's (checkpoint_engine/pod_commands.py). Every phase runs on all gang pods at once
and is a barrier: a pod that fails or does not finish in the phase's time is named.

A rollout replica (spec.rollout.replicas) outlives the gang: it re-joins when pod 0's gang
server changes (a restarted gang's new conductor), and on SIGTERM (scale-down) it refuses
new calls, finishes those under way and tells the gang it left.
"""
from __future__ import annotations

import asyncio
import functools
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import requests
from aiohttp import web

from seesaw import wire
from seesaw.checkpoint_engine.phases import Phase, PhaseError
from seesaw.checkpoint_engine.pod_commands import COMMANDS, Remaining, on_each, on_engines
from seesaw.interfaces import Sample
from seesaw.rpc import BINARY, WorkerClient, WorkerError, WorkerUnavailable, read_body
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


def on_pod_engines(pod: PodWorkers, route: str, body: dict[str, Any], timeout: float) -> list[Any]:
    """`route` with the same body on every rollout engine of a gang pod, answers in engine order.
    Pod 0 calls its own engines; a follower's checkpoint engine is asked once and calls its own
    (`/gang/engines/<route>`): pod 0's calls grow with the pods, not with their engines."""
    if pod.engine is None:
        return on_engines(pod.rollouts, route, body, lambda: timeout)
    return pod.engine.call(f"/engines{route}", body, timeout=timeout)


def on_pod(pod: PodWorkers, command: str, body: dict[str, Any] | bytes, remaining: Remaining) -> Any:
    """One of pod_commands' COMMANDS on a gang pod's own trainer and engines: pod 0 runs it here;
    a follower's checkpoint engine is asked once (`/gang/<command>`) and runs it on its pod."""
    if pod.engine is None:
        return COMMANDS[command](pod.trainer, pod.rollouts, body, remaining)
    return pod.engine.call(f"/{command}", body, timeout=remaining())


def generate_on_pod(pod: PodWorkers, prompts: list[list[int]], request: dict[str, Any], shares: list[tuple[Any, int, int]],
                    remaining: Remaining) -> tuple[list[Sample], list[float]]:
    """A gang pod's engines' samples for their adjacent shares [(engine slot, start, end)] of
    `prompts`, asked in one call (pod_commands.generate runs them on the pod), and the seconds
    each engine took."""
    lo, hi = shares[0][1], shares[-1][2]
    body = {"request": request, "prompt_ids": prompts[lo:hi],
            "shares": [[pod.rollouts.index(slot.client), end - start] for slot, start, end in shares]}
    samples, meta, _ = wire.decode_samples(on_pod(pod, "rollout", body, remaining))
    for sample in samples:
        sample.prompt_index += lo
    return samples, meta["seconds"]


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
    """Pod 0's gang port: followers join with their URL; `wait_for` returns them all. Rollout
    replicas join and leave at any time; the conductor takes their news at each sync."""

    def __init__(self, port: int, expected: int) -> None:
        self.expected = expected
        # a restarted gang's conductor has a new one: the rollout replicas that outlived the
        # old gang see it change and join again
        self.id = uuid.uuid4().hex
        self.joined: dict[int, str] = {}
        self.new_replicas: dict[int, str] = {}  # joined (or re-joined) since the conductor last took them
        self.left_replicas: set[tuple[int, str]] = set()  # (index, relay URL) scaled down since last taken
        self._changed = threading.Condition()
        app = web.Application()
        app.router.add_post("/join", self._join)
        app.router.add_post("/leave", self._leave)
        app.router.add_get("/gang", self._identity)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "0.0.0.0", port).start())
        threading.Thread(target=self._loop.run_forever, name="gang-server", daemon=True).start()

    async def _join(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("replica") is not None:  # a rollout replica: welcome at any time
            index, url = int(body["replica"]), str(body["url"])
            with self._changed:
                self.new_replicas[index] = url
                self.left_replicas.discard((index, url))
            return web.json_response({"ok": True, "id": self.id})
        index = int(body["pod"])
        if not 0 < index <= self.expected:
            return web.json_response({"error": f"pod index {index} is not a follower of a {self.expected + 1}-pod gang"}, status=400)
        with self._changed:
            self.joined[index] = str(body["url"])
            self._changed.notify_all()
        return web.json_response({"ok": True, "id": self.id})

    async def _leave(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("replica") is None:
            return web.json_response({"error": "only a rollout replica leaves the gang: body.replica is missing"}, status=400)
        index, url = int(body["replica"]), str(body["url"])
        with self._changed:
            self.left_replicas.add((index, url))
            if self.new_replicas.get(index) == url:  # it left before the conductor took its join
                del self.new_replicas[index]
        return web.json_response({"ok": True})

    async def _identity(self, _: web.Request) -> web.Response:
        return web.json_response({"id": self.id})

    def take_new_replicas(self) -> dict[int, str]:
        """The rollout replicas that joined since the last call: index -> relay URL."""
        with self._changed:
            taken, self.new_replicas = self.new_replicas, {}
            return taken

    def take_left(self) -> set[tuple[int, str]]:
        """The rollout replicas that left (scaled down) since the last call: (index, relay URL)."""
        with self._changed:
            taken, self.left_replicas = self.left_replicas, set()
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
        """Stop listening (the port is free for another gang server) and stop the loop."""
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
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


# --- pods 1..N-1 and rollout replicas: join, then relay ---------------------------------------
HEARTBEAT_SECONDS = 2.0  # how often a rollout replica checks that pod 0's gang is the one it joined
DRAINING = "is draining (scaled down): it takes no new calls"


def is_draining(err: BaseException) -> bool:
    """Whether an engine call failed because its rollout replica is being scaled down (the
    relay's 503 answer; WorkerClient keeps only its message)."""
    return DRAINING in str(err)


class Relay:
    """A follower's HTTP server: relays the conductor's calls to its pod's workers and scores
    its pod's samples, on an event loop of its own, while `follow` waits in the main thread."""

    def __init__(self, env: WorkerEnv, me: str, score: Callable[[str, list], list[float]],
                 log: Callable[[str], None]) -> None:
        # named as the conductor names them: a pod command's error reaches it with the name
        self.engines = rollout_clients(f"{me}'s ", len(env.rollout_urls), lambda e: env.rollout_urls[e])
        self.workers = {f"rollout-{e}": engine for e, engine in enumerate(self.engines)}
        self.trainer = None if env.replica is not None else WorkerClient(f"{me}'s trainer", env.trainer_url)
        if self.trainer:  # a rollout replica has none
            self.workers["trainer"] = self.trainer
        self.me, self.score, self.log = me, score, log
        self.ended = threading.Event()  # the conductor finished the job, or a scaled-down replica drained
        self.outcome = "the conductor finished the job"
        self.draining: asyncio.Task | None = None  # a rollout replica told to stop (SIGTERM)
        self.refusal: str | None = None  # while draining: the answer to every new call
        self.in_flight = 0  # calls being relayed; only the event loop touches it
        self.loop = asyncio.new_event_loop()
        # on closing, answers being written go out; a call still under way then is abandoned
        self.runner = web.AppRunner(self._app(), shutdown_timeout=5.0)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1024 ** 3)
        app.router.add_post("/gang/finish", self._finish)
        app.router.add_post("/gang/score", self._score_samples)
        app.router.add_post("/gang/engines/{route:.+}", self._on_every_engine)
        for command, run in COMMANDS.items():
            app.router.add_post(f"/gang/{command}", functools.partial(self._pod_command, run))
        app.router.add_get("/{worker}/healthz", self._health)
        app.router.add_post("/{worker}/{route:.+}", self._relay)
        return app

    def serve(self, host: str) -> str:
        """Listen on a port of our own, in a thread of its own; returns the URL to join with."""
        self.loop.run_until_complete(self.runner.setup())
        with socket.socket() as probe:  # on one machine every pod shares the host's ports
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        self.loop.run_until_complete(web.TCPSite(self.runner, "0.0.0.0", port).start())
        threading.Thread(target=self.loop.run_forever, name="relay", daemon=True).start()
        return f"http://{host}:{port}"

    def close(self) -> None:
        """Stop serving."""
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()

    # --- routes (on the relay's event loop) ---------------------------------------------
    async def _relay(self, request: web.Request) -> web.Response:
        worker = self.workers.get(request.match_info["worker"])
        if worker is None:
            return web.json_response({"error": f"no worker {request.match_info['worker']!r}"}, status=404)
        if self.refusal:
            return web.json_response({"error": self.refusal}, status=503)
        self.in_flight += 1  # from here on a drain waits for this call
        try:
            # passed through unread both ways: a batch is the trainer's to parse, not the relay's
            body = await request.read() if request.can_read_body else b"{}"
            status, answer, content_type = await asyncio.to_thread(
                worker.forward, "/" + request.match_info["route"], body, request.headers.get("Content-Type", ""),
                RELAY_TIMEOUT)
        except (WorkerUnavailable, TimeoutError) as err:
            return web.json_response({"error": str(err)}, status=500)
        finally:
            self.in_flight -= 1
        return web.Response(body=answer, status=status, headers={"Content-Type": content_type})

    async def _on_every_engine(self, request: web.Request) -> web.Response:
        """One call of pod 0's for all of this pod's rollout engines (`on_pod_engines`)."""
        route = "/" + request.match_info["route"]
        return await self._run_counted(request, lambda body: on_engines(self.engines, route, body, lambda: RELAY_TIMEOUT))

    async def _pod_command(self, run: Callable[..., Any], request: web.Request) -> web.Response:
        """One call of pod 0's for a step of a phase on this pod's trainer and engines (`on_pod`)."""
        return await self._run_counted(request, lambda body: run(self.trainer, self.engines, body, lambda: RELAY_TIMEOUT))

    async def _run_counted(self, request: web.Request, work: Callable[[dict[str, Any] | bytes], Any]) -> web.Response:
        """`work` on the request's body, in a thread: a drain waits for it as for a relayed call,
        and a worker's error answers 500 with the worker's message."""
        if self.refusal:
            return web.json_response({"error": self.refusal}, status=503)
        self.in_flight += 1
        try:
            answer = await asyncio.to_thread(work, await read_body(request))
        except (WorkerError, WorkerUnavailable, TimeoutError) as err:
            return web.json_response({"error": str(err)}, status=500)
        finally:
            self.in_flight -= 1
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type=BINARY)
        return web.json_response(answer)

    async def _health(self, request: web.Request) -> web.Response:
        if self.refusal:  # never admitted again while it drains
            return web.json_response({"ready": False, "error": self.refusal}, status=503)
        worker = self.workers.get(request.match_info["worker"])
        state = await asyncio.to_thread(worker.health) if worker else None
        state = state or {"ready": False, "error": None}
        return web.json_response(state, status=200 if state.get("ready") else 503)

    async def _finish(self, _: web.Request) -> web.Response:
        self.ended.set()
        return web.json_response({"ok": True})

    async def _score_samples(self, request: web.Request) -> web.Response:
        """The pod's samples (seesaw.wire, each named by its problem's index) -> their scores."""
        samples, meta, _ = wire.decode_samples(await request.read())
        try:
            items = [[sample.prompt_index, sample.response_ids] for sample in samples]
            return web.json_response(await asyncio.to_thread(self.score, meta["split"], items))
        except Exception as err:  # a verifier's failure reaches the conductor, named
            return web.json_response({"error": f"scoring failed: {type(err).__name__}: {err}"}, status=500)

    # --- a rollout replica's scale-down -------------------------------------------------
    def begin_drain(self, leave: Callable[[], None]) -> None:
        """From a signal handler: start the drain on the relay's loop (the handler must not block)."""
        self.loop.call_soon_threadsafe(self._start_drain, leave)

    def _start_drain(self, leave: Callable[[], None]) -> None:
        if self.draining is None:  # a second signal changes nothing
            # counted as the signal arrives: calls taken while the engines' health is read finish too
            self.log(f"{self.me}: told to stop; {self.in_flight} call(s) under way finish first")
            self.draining = self.loop.create_task(self._drain(leave))

    async def _drain(self, leave: Callable[[], None]) -> None:
        """Refuse new calls, let those under way finish, tell pod 0's gang, end. A replica
        whose engines no longer answer failed before it was told to stop: it says nothing,
        and its calls are refused as failed, so the conductor counts it lost, not scaled down."""
        alive = await asyncio.to_thread(self._engines_answer)
        if alive:
            self.refusal, self.outcome = f"{self.me} {DRAINING}", "left the gang (scaled down)"
        else:
            self.refusal = f"{self.me} is stopping: its rollout engine(s) do not answer"
            self.outcome = "stopped without leaving: its rollout engine(s) do not answer (the conductor counts it lost)"
        while self.in_flight:
            await asyncio.sleep(0.1)
        if alive:
            await asyncio.to_thread(leave)
        self.ended.set()

    def _engines_answer(self) -> bool:
        return all(worker.health() is not None for worker in self.workers.values())


def _join(gang_url: str, body: dict[str, Any]) -> str:
    """Join pod 0's gang; returns the gang's id."""
    response = requests.post(f"{gang_url}/join", json=body, timeout=5)
    response.raise_for_status()
    return response.json()["id"]


def _join_within(gang_url: str, body: dict[str, Any], timeout: float) -> str:
    """Join, retrying while pod 0 starts; the last error once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _join(gang_url, body)
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _stay_joined(relay: Relay, gang_url: str, join: dict[str, Any], gang_id: str) -> None:
    """A rollout replica until its relay ends: the operator keeps it across a restart of the
    gang, whose new conductor has a new gang server (a new id); join that one, so its next
    sync admits this replica. While pod 0 does not answer, wait quietly."""
    unreachable = False
    while not relay.ended.wait(HEARTBEAT_SECONDS):
        if relay.draining:
            continue
        try:
            seen = requests.get(f"{gang_url}/gang", timeout=5).json()["id"]
            if seen != gang_id:
                gang_id = _join(gang_url, join)
                relay.log(f"{relay.me} re-joined the gang at {gang_url} (a new conductor)")
            elif unreachable:
                relay.log(f"{relay.me}: the gang at {gang_url} answers again")
            unreachable = False
        except (requests.RequestException, ValueError, KeyError) as err:
            if not unreachable:
                relay.log(f"{relay.me}: the gang at {gang_url} does not answer ({str(err).splitlines()[0][:200]}); "
                          f"it joins again when pod 0 is back")
            unreachable = True


def _leave(relay: Relay, gang_url: str, body: dict[str, Any]) -> None:
    """Tell pod 0's gang this replica left; best effort (pod 0 may be restarting, and a new
    conductor never knew it)."""
    try:
        requests.post(f"{gang_url}/leave", json=body, timeout=5).raise_for_status()
    except requests.RequestException as err:
        relay.log(f"{relay.me}: could not tell the gang at {gang_url} that it left: {str(err).splitlines()[0][:200]}")


def _drain_on_signal(relay: Relay, leave: Callable[[], None]) -> None:
    """Kubernetes stops a scaled-down pod with SIGTERM to this container (its rollout container,
    a native sidecar, stops only after this one exits): drain, then leave."""
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: relay.begin_drain(leave))


def follow(env: WorkerEnv, log: Callable[[str], None], score: Callable[[str, list], list[float]]) -> int:
    """A follower's checkpoint engine: join pod 0's gang and relay (and score its pod's
    samples) until the conductor finishes the job. A rollout replica also re-joins a new
    conductor's gang, and ends early, having left, when it is scaled down (SIGTERM)."""
    me, join = ((f"pod {env.pod_index}", {"pod": env.pod_index}) if env.replica is None
                else (f"rollout replica {env.replica}", {"replica": env.replica}))
    relay = Relay(env, me, score, log)
    url = relay.serve(env.pod_ip)
    join = dict(join, url=url)
    try:
        gang_id = _join_within(env.gang_url, join, env.spec["timeouts"]["startupSeconds"])
    except requests.RequestException as err:
        log(f"FAILED: {me} could not join the gang at {env.gang_url}: {err}")
        return 1
    if env.replica is not None:  # once joined: a replica stopped before has nothing to leave
        _drain_on_signal(relay, lambda: _leave(relay, env.gang_url, join))
    log(f"{me} joined the gang at {env.gang_url}; relaying at {url}")
    if env.replica is None:  # a gang pod: the operator restarts the whole gang, never this pod alone
        relay.ended.wait()
    else:
        _stay_joined(relay, env.gang_url, join, gang_id)
    relay.close()
    log(f"{me}: {relay.outcome}")
    return 0


def release_followers(pods: list[PodWorkers]) -> None:
    """Tell the followers the job is over (their checkpoint engines exit, ending their pods)."""
    for pod in pods:
        if pod.relay_url:
            try:
                requests.post(f"{pod.relay_url}/gang/finish", timeout=5)
            except requests.RequestException:
                pass  # already gone: nothing left to stop

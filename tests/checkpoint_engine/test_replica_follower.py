"""A rollout replica's checkpoint engine (`follow` in checkpoint_engine/gang.py) in a process of
its own, against a real GangServer and a stand-in rollout engine: it re-joins a restarted
gang by itself, and on SIGTERM it drains, tells the gang it left and exits 0."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from aiohttp import web

from seesaw.checkpoint_engine.gang import GangServer, is_draining
from seesaw.rpc import WorkerClient, WorkerError

FOLLOWER = """
import sys, types
from seesaw.checkpoint_engine import gang
gang.HEARTBEAT_SECONDS = 0.2
env = types.SimpleNamespace(spec={"timeouts": {"startupSeconds": 30}}, rollout_urls=[sys.argv[1]], trainer_url="",
                            replica=0, pod_index=0, pod_ip="127.0.0.1", gang_url=sys.argv[2])
sys.exit(gang.follow(env, lambda line: print(line, flush=True), lambda split, items: []))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StandInEngine:
    """A rollout engine's routes: /generate echoes its prompt, and holds a "slow" one until
    `release` is set."""

    def __init__(self) -> None:
        self.arrived, self.release = threading.Event(), threading.Event()
        app = web.Application()
        app.router.add_get("/healthz", lambda _: web.json_response({"ready": True}))
        app.router.add_post("/generate", self._generate)
        self.loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        port = free_port()
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _generate(self, request: web.Request) -> web.Response:
        prompt = (await request.json())["prompt"]
        if prompt == "slow":
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, 30)
        return web.json_response({"answer": prompt[::-1]})


def until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"{what} within {timeout}s")


@pytest.fixture
def replica(tmp_path):
    """Start a replica's follower against a gang on `port`; yields a starter, kills what is left."""
    started: list[subprocess.Popen] = []

    def start(engine: StandInEngine, port: int) -> subprocess.Popen:
        # cwd: not the repository root, whose operator/ folder would shadow the standard library's
        process = subprocess.Popen([sys.executable, "-c", FOLLOWER, engine.url, f"http://127.0.0.1:{port}"],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        assert "joined the gang" in process.stdout.readline(), "it logs that it joined once it handles SIGTERM"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_replica_joins_a_restarted_gang_by_itself(replica):
    port = free_port()
    old = GangServer(port, expected=0)
    follower = replica(StandInEngine(), port)
    url = until(old.take_new_replicas, 10, "the replica joined")[0]
    old.close()
    time.sleep(1.0)  # pod 0 restarting: several heartbeats find no gang
    new = GangServer(port, expected=0)
    assert new.id != old.id
    assert until(new.take_new_replicas, 5, "the replica re-joined the new gang") == {0: url}
    requests.post(f"{url}/gang/finish", timeout=5)
    assert follower.wait(timeout=10) == 0
    lines = follower.stdout.read().splitlines()
    assert sum("does not answer" in line for line in lines) == 1, lines
    assert sum("re-joined the gang" in line for line in lines) == 1, lines


def test_sigterm_drains_the_replica_it_leaves_the_gang_and_exits_0(replica):
    port, engine = free_port(), StandInEngine()
    gang = GangServer(port, expected=0)
    follower = replica(engine, port)
    url = until(gang.take_new_replicas, 10, "the replica joined")[0]
    client = WorkerClient("rollout replica 0's rollout engine", f"{url}/rollout-0")
    answers: list = []
    in_flight = threading.Thread(target=lambda: answers.append(client.call("/generate", {"prompt": "slow"})))
    in_flight.start()
    assert engine.arrived.wait(10)

    follower.send_signal(signal.SIGTERM)

    def refused() -> tuple[int, str] | None:  # a call that came just before the signal took effect is answered
        answer = requests.post(f"{url}/rollout-0/generate", json={"prompt": "new"}, timeout=5)
        return None if answer.status_code == 200 else (answer.status_code, answer.json()["error"])

    status, error = until(refused, 5, "a new call refused")
    assert status == 503 and "draining" in error, error
    with pytest.raises(WorkerError) as err:
        client.call("/generate", {"prompt": "new"})
    assert is_draining(err.value), "the conductor sees it left, not that it failed"
    time.sleep(0.3)
    assert follower.poll() is None and gang.take_left() == set(), "it waits for the call under way"

    engine.release.set()
    in_flight.join(timeout=10)
    assert answers == [{"answer": "wols"}], "the call under way got its real answer"
    assert follower.wait(timeout=10) == 0
    assert gang.take_left() == {(0, url)}
    assert "left the gang (scaled down)" in follower.stdout.read()


def test_a_replica_whose_engine_is_gone_stops_without_saying_it_left(replica):
    port, engine = free_port(), StandInEngine()
    gang = GangServer(port, expected=0)
    engine.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: its engine died
    follower = replica(engine, port)
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(timeout=10) == 0
    assert gang.take_left() == set(), "a failed replica is lost to the conductor, not scaled down"
    assert "stopped without leaving" in follower.stdout.read()

"""A gang pod's part of a phase in one call of pod 0's (checkpoint_engine/pod_commands.py): a
follower's real relay (`/gang/rollout`, `/gang/sync...`) against stand-in workers that record
the calls they are given, and pod 0's roster and weight sync on top of it."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from aiohttp import web

from seesaw import wire
from seesaw.checkpoint_engine.engines import EngineRoster, EngineSlot, _record
from seesaw.checkpoint_engine.gang import PodFailed, Relay, ReplicaWorkers, follower_workers, generate_on_pod, on_pod
from seesaw.checkpoint_engine.phases import Phase
from seesaw.checkpoint_engine.weight_sync import WeightSync
from seesaw.interfaces import Sample
from seesaw.rpc import WorkerClient, WorkerError
from documented_calls import documented_sequences

ENGINES = 3
REQUEST = {"n": 2, "temperature": 1.0, "max_tokens": 2}


class StandInWorkers:
    """A pod's trainer (/trainer/...) and engines (/rollout-<e>/...), and a replica's engine
    (/replica/...), on one server: each call is recorded in order. An engine generates, for each
    prompt, n samples whose response is [its engine number, the prompt's token]."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.slow: dict[str, float] = {}  # worker -> seconds its /generate takes
        self.failing: set[str] = set()  # workers whose /generate fails
        self.versions: dict[str, int] = {}
        app = web.Application()
        app.router.add_post("/{worker}/{route:.+}", self._call)
        self.loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _call(self, request: web.Request) -> web.Response:
        worker, route = request.match_info["worker"], "/" + request.match_info["route"]
        body = await request.json() if request.can_read_body else {}
        hint = {"/offload": " keep_weights" if body.get("keep_weights") else "",
                "/wake_up": " " + " ".join(body.get("tags", []))}.get(route, "")
        self.calls.append(f"{worker} {route}{hint}")
        if route == "/generate":
            await asyncio.sleep(self.slow.get(worker, 0.0))
            if worker in self.failing:
                return web.json_response({"error": "RuntimeError: CUDA error: device lost"}, status=500)
            engine = int(worker.removeprefix("rollout-")) if worker.startswith("rollout-") else 9
            samples = [Sample(i, prompt, [engine, prompt[0]], [-0.5, -0.5])
                       for i, prompt in enumerate(body["prompt_ids"]) for _ in range(body["n"])]
            return web.Response(body=wire.encode_samples(samples), content_type=wire.CONTENT_TYPE)
        return web.json_response(self._answer(worker, route, body))

    def _answer(self, worker: str, route: str, body: dict) -> object:
        if route == "/offload":
            return {"bytes": 10 if body.get("keep_weights") else 20, "seconds": 0.0}
        if route == "/weights/handle":
            return {"receiver_init": {"channel": "stand-in"}, "weight_checksum": "c0ffee", "staging": {"peak_bytes": 5},
                    "total_bytes": 1, "bucket_count": 1}
        if route == "/logprobs":
            return [[-1.0] * len(response) for response in body["response_ids"]]
        if route == "/weights/update":
            self.versions[worker] = self.versions.get(worker, 0) + 1
            return {"weight_version": self.versions[worker], "weight_checksum": "c0ffee", "bytes": 1, "buckets": 1,
                    "seconds": 0.0}
        return {"ok": True, "bytes": 0, "seconds": 0.0}

    def sequence(self, since: int = 0) -> list[str]:
        """The pod's calls as the documented table writes them: its engines as "rollout", each
        step once (its engines are called at once); a replica's calls left out."""
        named = [call.replace(call.split()[0], "rollout", 1) if call.startswith("rollout-") else call
                 for call in self.calls[since:] if not call.startswith("replica")]
        return [call for i, call in enumerate(named) if i == 0 or call != named[i - 1]]


@pytest.fixture
def follower():
    """Pod 1 as pod 0 sees it (its relay in front of the stand-ins), the stand-ins and the relay."""
    workers = StandInWorkers()
    env = SimpleNamespace(rollout_urls=[f"{workers.url}/rollout-{e}" for e in range(ENGINES)],
                          trainer_url=f"{workers.url}/trainer", replica=None)
    relay = Relay(env, "pod 1", lambda split, items: [], lambda line: None)
    url = relay.serve("127.0.0.1")
    yield follower_workers({1: url}, ENGINES)[0], workers, relay
    relay.close()


def rollout_on_pod(pod, shares):
    """The pod's shares of prompts [[10], [11], ...] in one call, as the conductor asks for them."""
    samples, seconds = generate_on_pod(pod, [[10 + i] for i in range(100)], REQUEST, shares, lambda: 30.0)
    return [(sample.prompt_index, sample.response_ids.tolist()) for sample in samples], seconds


def test_a_pods_rollout_is_one_call_answering_its_engines_samples_in_order_with_their_seconds(follower):
    pod, workers, _ = follower
    workers.slow["rollout-1"] = 0.3
    roster = EngineRoster([pod], None, ENGINES, lambda line: None)
    calls = []
    answered = roster.run_shares(5, lambda *share: pytest.fail("a follower's engine was called alone"), Phase.ROLLOUT,
                                 timeout=30, call_pod=lambda pod, shares: calls.append(shares) or rollout_on_pod(pod, shares))
    assert len(calls) == 1, "one call for the pod's three engines"
    # shares of 5 prompts over 3 engines: 2, 2, 1; each prompt's two samples from the engine it went to
    assert answered == [(p, [engine, 10 + p]) for p, engine in [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)] for _ in range(2)]
    assert sorted(call for call in workers.calls) == [f"rollout-{e} /generate" for e in range(ENGINES)]
    assert [slot.served for slot in roster.slots] == [2, 2, 1]
    assert roster.slots[1].busy_seconds >= 0.3 > roster.slots[0].busy_seconds


def test_a_slow_engine_behind_a_relay_is_named_as_the_straggler(follower):
    pod, workers, _ = follower
    workers.slow["rollout-2"] = 0.5
    roster = EngineRoster([pod], None, ENGINES, lambda line: None)
    roster.count_served()
    roster.run_shares(6, None, Phase.ROLLOUT, timeout=30, call_pod=rollout_on_pod)
    slot, ratio = roster.slowest()
    assert slot.client.name == "pod 1's rollout engine 2" and ratio > 3


def test_a_gang_engines_failure_behind_a_relay_fails_the_rollout_naming_its_pod_and_engine(follower):
    pod, workers, _ = follower
    workers.failing.add("rollout-2")
    roster = EngineRoster([pod], None, ENGINES, lambda line: None)
    with pytest.raises(PodFailed, match=r"phase rollout: pod 1: pod 1's checkpoint engine failed /rollout: "
                                        r"pod 1's rollout engine 2 failed /generate: RuntimeError: CUDA error: device lost"):
        roster.run_shares(6, None, Phase.ROLLOUT, timeout=30, call_pod=rollout_on_pod)


def weight_sync_of(pod, workers, replicas: int):
    """Pod 1's weight sync as pod 0 runs it, with `replicas` rollout replicas fed by its trainer
    (replica 1 of a two-pod gang); pod 0's calls to pod 1's checkpoint engine are recorded."""
    roster = EngineRoster([pod], None, ENGINES, lambda line: None)
    for index in range(1, 2 * replicas, 2):
        client = WorkerClient(f"rollout replica {index}'s rollout engine", f"{workers.url}/replica")
        roster.slots.append(EngineSlot(ReplicaWorkers(index, [client], ""), client, _record(None, 0, replica=index)))
    spec = {"weightSync": {"bucketMiB": 1}, "model": {"dtype": "float32"}}
    probe = {"prompt_ids": [[3, 4]], "response_ids": [[5, 6, 7]]}
    asked: list[str] = []
    ask = pod.engine.call
    pod.engine.call = lambda route, *args, **kwargs: asked.append(route) or ask(route, *args, **kwargs)
    return WeightSync(spec, roster, probe, lambda: 30.0, lambda: 2), asked


def test_a_pods_sync_is_one_call_and_answers_what_each_engine_is_checked_on(follower):
    pod, workers, _ = follower
    sync, asked = weight_sync_of(pod, workers, replicas=0)
    checked = sync.on_pod(pod)
    assert asked == ["/sync"]
    assert workers.sequence() == documented_sequences()["first sync"]
    assert [slot.client.name for slot, _ in checked] == [f"pod 1's rollout engine {e}" for e in range(ENGINES)]
    for _, result in checked:  # check_engine passed: version, checksum, log-probs
        assert result["weight_version"] == 1 and result["probe_max_abs_logprob_diff"] == 0.0
        assert result["offloaded_bytes"] == 30 and result["staging_peak_bytes"] == 5
    WeightSync.summary(checked)  # the conductor records the versions proved
    since = len(workers.calls)
    sync.on_pod(pod)
    assert workers.sequence(since) == documented_sequences()["sync"], "the channel is opened once"


def test_replicas_fed_by_a_pod_pull_between_its_trainers_staging_and_release(follower):
    pod, workers, _ = follower
    sync, asked = weight_sync_of(pod, workers, replicas=1)
    checked = sync.on_pod(pod)
    assert asked == ["/sync/stage", "/sync/prove"]
    assert workers.sequence() == documented_sequences()["first sync"]
    order = workers.calls
    assert order.index("trainer /weights/handle") < order.index("replica /weights/update") < order.index("trainer /weights/release")
    assert order.index("trainer /logprobs") < order.index("replica /logprobs")
    assert [slot.client.name for slot, _ in checked][-1] == "rollout replica 1's rollout engine"
    assert checked[-1][1]["weight_version"] == 1 and checked[-1][1]["probe_max_abs_logprob_diff"] == 0.0


def test_a_draining_relay_waits_for_a_pod_command_under_way_and_refuses_new_ones(follower):
    pod, workers, relay = follower
    workers.slow["rollout-0"] = 0.5
    roster = EngineRoster([pod], None, ENGINES, lambda line: None)
    answered = []
    under_way = threading.Thread(target=lambda: answered.append(
        roster.run_shares(3, None, Phase.ROLLOUT, timeout=30, call_pod=rollout_on_pod)))
    under_way.start()
    deadline = time.monotonic() + 10
    while relay.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert relay.in_flight == 1, "a drain counts the pod command under way"
    relay.refusal = "pod 1 is draining"
    with pytest.raises(WorkerError, match="pod 1's checkpoint engine failed /sync: pod 1 is draining"):
        on_pod(pod, "sync", {"bucket_bytes": 1, "open_channel": True, "probe": {}}, lambda: 30.0)
    under_way.join(10)
    assert len(answered[0]) == 6 and relay.in_flight == 0
    assert json.dumps(workers.calls).count("/generate") == ENGINES

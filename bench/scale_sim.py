"""The control plane at 1 to 128 pods, by simulation: the real conductor against stand-in workers.

Pod 0's real checkpoint engine (the Conductor, its gang server, engine roster, sampler, reward
scoring of its own engines' samples, the weight-sync sequence and the HTTP clients) runs in this
process. A second process, forked after the imports, plays the rest of the cluster: every other
pod's real relay (checkpoint_engine/gang.py's Relay, joining pod 0's gang as a follower does)
and every pod's stand-in trainer and rollout engines, all on one event loop. The stand-ins do no
math: they answer with payloads of the real byte sizes (256 prompts x 8 samples x 4,096 tokens
of examples/qwen-math-gpu.yaml, by default), discard what they receive unread (a trainer reads
the prompt positions of its share where --verify asks), and sleep the given phase times.

Measured per iteration (after the first, a warm-up): pod 0's CPU seconds, its peak memory, the
bytes pod 0 sends to and receives from each other pod and the calls it makes to each, and the
wall time of the control plane outside the stand-ins' sleeps; and what each trainer pod's
weights serve (own engines and the rollout replicas it feeds). A follower's verifier runs on its own pod's cores: here the followers
score with a stand-in that reads nothing (pod 0 scores its own engines' samples for real).

Usage: python bench/scale_sim.py [--pods 1 8 32 128] [--replicas 0] [--iterations 3]
                                 [--response-tokens 4096] [--verify] [--protocol wire|json]
One point: python bench/scale_sim.py --one --pods 8 (prints one JSON line).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import requests
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "qwen-math-gpu.yaml"
VOCAB = 151_936  # Qwen2.5's: token ids of the real digit count
MODEL_BYTES = 15_231_233_024  # Qwen2.5-7B in bfloat16: what every engine pulls at a sync
ENGINES_PER_POD = 8


# --- the job ---------------------------------------------------------------------------------
def sim_spec(pods: int, replicas: int, iterations: int, response_tokens: int, prompts: int, samples: int,
             source: Path, checkpoints: Path) -> dict[str, Any]:
    """examples/qwen-math-gpu.yaml at `pods` nodes, one rollout engine per GPU, no partial rollouts
    (every response its whole length), no checkpoints until the last iteration."""
    from seesaw.spec import validate_manifest

    manifest = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    spec["cluster"]["nodes"] = pods
    spec["rollout"].update(tensorParallel=1, samplesPerPrompt=samples, maxTokens=response_tokens,
                           maxModelLen=max(8192, response_tokens + 1024), replicas=replicas)
    spec["rl"].update(iterations=iterations, promptsPerIteration=prompts, partialRollout={"enabled": False},
                      evaluation={"everyIterations": 0, "prompts": 8})
    spec["prompts"] = {"source": str(source)}
    spec["checkpoint"] = {"path": str(checkpoints), "everyIterations": 0}
    spec["logging"] = {"samplePrompts": 0}
    return validate_manifest(manifest)["spec"]


def write_problems(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"prompt": f"What is {i} plus {i + 7}?", "answer": str(2 * i + 7)}) + "\n")


def tokenizer_with_the_vocabulary(size: int = VOCAB):
    """A word-level tokenizer of `size` tokens: any id decodes, prompts encode, like a real one's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<unk>")


def data_parallel_ranks(spec: dict[str, Any], pod: int) -> dict[str, Any]:
    """What pod `pod`'s trainer reports at /start: its data-parallel ranks, of how many (Megatron's
    order: tensor-parallel ranks adjacent, so a rank's data-parallel index is rank // (tp * pp))."""
    gpus, tp = spec["cluster"]["gpusPerNode"], spec["trainer"]["tensorParallel"] * spec["trainer"]["pipelineParallel"]
    per_pod = max(1, gpus // tp)
    return {"ranks": list(range(pod * per_pod, (pod + 1) * per_pod)), "size": per_pod * spec["cluster"]["nodes"]}


# --- the stand-ins ---------------------------------------------------------------------------
class StandIns:
    """Every stand-in trainer and rollout engine of the cluster on one aiohttp app:
    /<owner>/<worker>/<route>, owner "p<pod>" or "r<replica>", worker "trainer" or "rollout-<e>"."""

    def __init__(self, spec: dict[str, Any], args: argparse.Namespace) -> None:
        self.spec, self.args = spec, args
        self.started: set[str] = set()
        self.versions: dict[str, int] = defaultdict(int)
        self.received: dict[str, int] = defaultdict(int)  # owner -> bytes its workers were sent
        self.answered: dict[str, int] = defaultdict(int)  # owner -> bytes its workers answered
        self.served: dict[int, int] = defaultdict(int)  # trainer pod -> bytes its engines and replicas pulled
        self.shares: list[dict[str, Any]] = []  # --verify: what each trainer was sent, per /train
        self.generated: dict[tuple, bytes] = {}  # one answer per request shape: the bytes matter, not the ids
        self.rng = np.random.default_rng(0)
        self.generation = 0  # --verify: the number of the last sample generated

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 ** 3)
        app.router.add_get("/{owner}/{worker}/healthz", self._health)
        app.router.add_post("/{owner}/{worker}/{route:.+}", self._call)
        app.router.add_get("/counters", self._counters)
        return app

    async def _counters(self, _: web.Request) -> web.Response:
        return web.json_response({"received": self.received, "answered": self.answered, "served": self.served,
                                  "shares": self.shares})

    async def _health(self, request: web.Request) -> web.Response:
        owner, worker = request.match_info["owner"], request.match_info["worker"]
        if worker == "trainer":
            return web.json_response(self._trainer_state(owner))
        return web.json_response({"ready": True, "error": None, "weight_version": self.versions[f"{owner}/{worker}"]})

    def _trainer_state(self, owner: str) -> dict[str, Any]:
        started = owner in self.started
        gpus, tp = self.spec["cluster"]["gpusPerNode"], self.spec["trainer"]["tensorParallel"]
        parallel = data_parallel_ranks(self.spec, int(owner[1:]))
        return {"ready": started, "startable": not started, "error": None, "memory": "onloaded",
                "ranks": gpus * self.spec["cluster"]["nodes"], "local_ranks": gpus,
                "layout": {"backend": "megatron", "device": "cuda", "tp": tp, "pp": 1, "dp": parallel["size"], "ep": 1},
                "data_parallel": parallel}

    async def _call(self, request: web.Request) -> web.Response:
        owner, worker, route = request.match_info["owner"], request.match_info["worker"], "/" + request.match_info["route"]
        body = await request.read()
        self.received[owner] += len(body)
        if worker == "trainer":
            answer = await self._trainer(owner, route, body)
        else:
            answer = await self._engine(owner, f"{owner}/{worker}", route, body)
        if isinstance(answer, bytes):
            self.answered[owner] += len(answer)
            return web.Response(body=answer, content_type="application/octet-stream")
        text = json.dumps(answer)
        self.answered[owner] += len(text)
        return web.Response(text=text, content_type="application/json")

    async def _trainer(self, owner: str, route: str, body: bytes) -> Any:
        if route == "/start":
            self.started.add(owner)
            return self._trainer_state(owner)
        if route in ("/onload", "/offload"):
            return {"bytes": 0, "seconds": 0.0}
        if route == "/train":
            if self.args.verify:
                self.shares.append(dict(self._share(body), pod=int(owner[1:])))
            await asyncio.sleep(self.args.train_seconds)
            return {"loss": 0.0, "tokens": 0, "seconds": self.args.train_seconds,
                    "extra": {"optimizer_steps": 1, "max_abs_logprob_diff": 0.0, "grad_norm": 0.0, "mean_log_ratio": 0.0}}
        if route == "/weights/handle":
            return {"receiver_init": {"channel": "stand-in", "pod": int(owner[1:])}, "total_bytes": MODEL_BYTES,
                    "bucket_count": MODEL_BYTES // (self.spec["weightSync"]["bucketMiB"] << 20) + 1,
                    "weight_checksum": "0" * 16, "staging": {"peak_bytes": 0}}
        if route == "/logprobs":
            return probe_logprobs(json.loads(body))
        if route in ("/weights/release", "/checkpoint/save", "/export"):
            return {"ok": True, "path": None}
        raise web.HTTPNotFound(text=f"no stand-in trainer route {route}")

    def _share(self, body: bytes) -> dict[str, Any]:
        """Which prompts (by position in the batch) and how many samples a trainer was sent."""
        from seesaw import wire

        if self.args.protocol == "json":
            samples = json.loads(body)["samples"]
            return {"prompts": None, "positions": sorted({s["prompt_index"] for s in samples}), "samples": len(samples)}
        samples, meta, positions = wire.decode_samples(body)
        return {"prompts": meta["prompts"], "positions": sorted(set(positions)), "samples": len(samples),
                "sample_keys": sorted({(int(s.prompt_index), int(s.response_ids[0])) for s in samples})}

    async def _engine(self, owner: str, name: str, route: str, body: bytes) -> Any:
        if route in ("/sleep", "/wake_up"):
            return {"bytes": 0, "seconds": 0.0}
        if route == "/weights/init":
            return {"ok": True}
        if route == "/weights/update":
            handle = json.loads(body)["handle"]
            self.served[handle["receiver_init"]["pod"]] += handle["total_bytes"]
            self.versions[name] += 1
            await asyncio.sleep(self.args.sync_seconds)
            return {"bytes": handle["total_bytes"], "seconds": self.args.sync_seconds, "buckets": handle["bucket_count"],
                    "weight_version": self.versions[name], "weight_checksum": handle["weight_checksum"]}
        if route == "/logprobs":
            return probe_logprobs(json.loads(body))
        if route == "/generate":
            request = json.loads(body)
            answer = self._generated(request)
            slow = name == slow_engine(self.args)
            await asyncio.sleep(self.args.generate_seconds + (self.args.slow_engine_seconds if slow else 0.0))
            return answer
        raise web.HTTPNotFound(text=f"no stand-in engine route {route}")

    def _generated(self, request: dict[str, Any]) -> Any:
        """n samples of max_tokens each for every prompt, made once per shape."""
        prompts, n, length = request["prompt_ids"], int(request["n"]), int(request["max_tokens"])
        key = (len(prompts), n, length, self.args.protocol)
        if key not in self.generated:
            from seesaw.interfaces import Sample

            samples = [Sample(i, list(prompt), self.rng.integers(3, VOCAB, length).tolist(),
                              (-self.rng.random(length)).tolist(), finished=False)
                       for i, prompt in enumerate(prompts) for _ in range(n)]
            if self.args.protocol == "json":
                self.generated[key] = [vars(s) for s in samples]
            else:
                from seesaw import wire

                self.generated[key] = wire.encode_samples(samples)
        answer = self.generated[key]
        if self.args.verify and self.args.protocol == "wire":  # distinct first tokens name each sample
            return self._numbered(answer)
        return answer

    def _numbered(self, answer: bytes) -> bytes:
        from seesaw import wire

        samples, meta, _ = wire.decode_samples(answer, as_lists=True)
        for sample in samples:
            self.generation += 1
            sample.response_ids[0] = self.generation
        return wire.encode_samples(samples, meta)


def slow_engine(args: argparse.Namespace) -> str:
    """--slow-engine-seconds: the last pod's last engine is the straggler."""
    return f"p{args.pods - 1}/rollout-{ENGINES_PER_POD - 1}" if args.slow_engine_seconds else ""


def probe_logprobs(body: dict[str, Any]) -> list[list[float]]:
    return [[-1.0] * len(response) for response in body["response_ids"]]


def serve_cluster(spec: dict[str, Any], args: argparse.Namespace, port_box: Any, gang_url: str) -> None:
    """The forked process: the stand-ins on one loop, and a real relay for every follower pod and
    rollout replica, joined to pod 0's gang."""
    from seesaw.checkpoint_engine.gang import Relay, _join_within

    stand_ins = StandIns(spec, args)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(stand_ins.app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    relays = []
    members = [(f"p{p}", {"pod": p}) for p in range(1, args.pods)] + [(f"r{r}", {"replica": r}) for r in range(args.replicas)]
    for owner, join in members:
        env = SimpleNamespace(rollout_urls=[f"{base}/{owner}/rollout-{e}" for e in range(ENGINES_PER_POD)],
                              trainer_url=f"{base}/{owner}/trainer", replica=join.get("replica"))
        relay = Relay(env, owner, lambda split, items: [0.0] * len(items), lambda line: None)
        url = relay.serve("127.0.0.1")
        _join_within(gang_url, dict(join, url=url), 120)
        relays.append(relay)
    port_box.put(base)
    threading.Event().wait()  # until pod 0's process ends this one


# --- pod 0 -----------------------------------------------------------------------------------
class Traffic:
    """Bytes pod 0's HTTP clients send to and receive from each pod (by the URL they call)."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = defaultdict(int)
        self.received: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.owner_of: dict[str, str] = {}  # a relay's URL (scheme, host and port) -> pod name
        self._lock = threading.Lock()
        original = requests.Session.send

        def send(session, request, **kwargs):
            response = original(session, request, **kwargs)
            owner = self._owner(request.url)
            with self._lock:
                self.calls[owner] += 1
                self.sent[owner] += len(request.body or b"")
                # from the header: the body of a streamed response is the caller's to read
                self.received[owner] += int(response.headers.get("Content-Length", 0))
            return response

        requests.Session.send = send

    def _owner(self, url: str) -> str:
        # a lookup, not a scan of every pod's prefix: this runs in pod 0's process, on every call
        return self.owner_of.get(url[:url.find("/", len("http://"))], "pod 0")

    def take(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Bytes sent, bytes received and calls made, by pod, since the last take."""
        with self._lock:
            taken = dict(self.sent), dict(self.received), dict(self.calls)
            for counter in (self.sent, self.received, self.calls):
                counter.clear()
            return taken


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_point(args: argparse.Namespace) -> dict[str, Any]:
    """One cluster size: the conductor's iterations, measured."""
    from seesaw.checkpoint_engine.conductor import Conductor
    from seesaw.checkpoint_engine.gang import GangServer, follower_workers, rollout_clients
    from seesaw.rpc import WorkerClient
    from seesaw.tasks import load_task

    work = Path(tempfile.mkdtemp(prefix="seesaw-scale-sim-"))
    write_problems(work / "problems.jsonl", max(400, args.prompts + 16))
    spec = sim_spec(args.pods, args.replicas, args.iterations, args.response_tokens, args.prompts, args.samples,
                    work / "problems.jsonl", work / "checkpoints")
    tokenizer = tokenizer_with_the_vocabulary()
    task = load_task(spec)
    traffic = Traffic()
    gang_port = free_port()
    gang = GangServer(gang_port, args.pods - 1)
    context = multiprocessing.get_context("fork")
    box = context.Queue()
    cluster = context.Process(target=serve_cluster, args=(spec, args, box, f"http://127.0.0.1:{gang_port}"), daemon=True)
    started = time.perf_counter()
    cluster.start()
    try:
        base = box.get(timeout=600)
        followers = follower_workers(gang.wait_for(600), ENGINES_PER_POD)
        progress(f"  {args.pods} pods: the cluster's stand-ins and relays up in {time.perf_counter() - started:.1f}s")
        for pod in followers:
            traffic.owner_of[pod.relay_url] = f"pod {pod.index}"
        pod0 = rollout_clients("pod 0's ", ENGINES_PER_POD, lambda e: f"{base}/p0/rollout-{e}")
        conductor = Conductor(spec, task, tokenizer, WorkerClient("trainer", f"{base}/p0/trainer"), pod0, work,
                              log=lambda line: progress(f"  conductor: {line}") if line.startswith("straggler") else None,
                              followers=followers, gang=gang)
        return measure(conductor, traffic, args, base)
    finally:
        cluster.kill()


class ThreadCount:
    """The most threads pod 0's process ran at once (the gang's fan-out is a thread per call)."""

    def __init__(self) -> None:
        self.most = threading.active_count()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.most = max(self.most, threading.active_count())
            time.sleep(0.02)


class ThreadProfiles:
    """--profile: every thread's CPU time by function (cProfile on thread_time, one per thread)."""

    def __init__(self) -> None:
        import cProfile

        self.profiles: list[Any] = []

        def start(*_: Any) -> None:
            profile = cProfile.Profile(time.thread_time)
            self.profiles.append(profile)
            profile.enable()

        threading.setprofile(start)
        start()

    def report(self, path: Path, top: int = 30) -> None:
        import pstats

        for profile in self.profiles:
            profile.disable()
        with path.open("w") as out:
            stats = pstats.Stats(*self.profiles, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumtime").print_stats(top)
        stats.dump_stats(path.with_suffix(".pstats"))  # for pstats' callers and callees


def measure(conductor: Any, traffic: Traffic, args: argparse.Namespace, base: str) -> dict[str, Any]:
    threads = ThreadCount()
    started = time.perf_counter()
    conductor.wait_ready()
    conductor._start_metrics_file()
    conductor.sync_weights(0)
    progress(f"  {args.pods} pods: started and synced in {time.perf_counter() - started:.1f}s")
    conductor.before = {"greedy": 0.0, "sampled": 0.0, "greedy_tokens": 0.0, "sampled_tokens": 0.0}
    sleeps = args.generate_seconds + args.train_seconds + args.sync_seconds
    rows = []
    profiles = ThreadProfiles() if args.profile else None
    for iteration in range(1, args.iterations + 1):
        traffic.take()
        cpu, wall = time.process_time(), time.perf_counter()
        conductor.iterate(iteration)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sent, received, calls = traffic.take()
        followers = [f"pod {p}" for p in range(1, args.pods)]
        rows.append({"iteration": iteration, "cpu_seconds": cpu, "wall_seconds": wall,
                     "control_plane_seconds": wall - sleeps,
                     "sent_per_pod": max((sent.get(f, 0) for f in followers), default=sent.get("pod 0", 0)),
                     "received_per_pod": max((received.get(f, 0) for f in followers), default=received.get("pod 0", 0)),
                     "calls_per_pod": max((calls.get(f, 0) for f in followers), default=0), "calls_total": sum(calls.values()),
                     "sent_total": sum(sent.values()), "received_total": sum(received.values())})
        progress(f"  {args.pods} pods, iteration {iteration}: pod 0 {cpu:.2f} CPU s, wall {wall:.2f} s")
    if profiles:
        profiles.report(args.profile)
    counters = requests.get(f"{base}/counters", timeout=60).json()
    measured = rows[1:] or rows  # the first iteration warms up
    point = {"pods": args.pods, "replicas": args.replicas, "engines": (args.pods + args.replicas) * ENGINES_PER_POD,
             "protocol": args.protocol, "peak_rss_mib": peak_rss_mib(),
             "threads": threads.most,
             **{key: float(np.median([r[key] for r in measured])) for key in
                ("cpu_seconds", "wall_seconds", "control_plane_seconds", "sent_per_pod", "received_per_pod", "calls_per_pod",
                 "calls_total", "sent_total", "received_total")},
             "straggler_ratio": [m.straggler_ratio for m in conductor.history],
             "served_bytes_per_trainer_pod": {int(k): v // max(1, args.iterations + 1) for k, v in counters["served"].items()},
             "iterations": rows}
    if args.verify:
        point["shares"] = counters["shares"]
        point["trained_samples"] = [m.trained_samples for m in conductor.history]
    return point


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the sweep -------------------------------------------------------------------------------
def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    points = []
    for pods in args.pods:
        progress(f"{pods} pod(s), {args.replicas} replica(s), {args.protocol} payloads ...")
        command = [sys.executable, __file__, "--one", "--pods", str(pods), *passed_on(args)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=args.point_timeout)
        if done.returncode != 0:
            progress(f"{pods} pods failed (exit {done.returncode}); see above")
            points.append({"pods": pods, "failed": done.returncode})
            continue
        points.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return points


def passed_on(args: argparse.Namespace) -> list[str]:
    return ["--replicas", str(args.replicas), "--iterations", str(args.iterations), "--response-tokens",
            str(args.response_tokens), "--prompts", str(args.prompts), "--samples", str(args.samples),
            "--protocol", args.protocol, "--generate-seconds", str(args.generate_seconds),
            "--train-seconds", str(args.train_seconds), "--sync-seconds", str(args.sync_seconds),
            "--slow-engine-seconds", str(args.slow_engine_seconds)]


def table(points: list[dict[str, Any]]) -> str:
    head = (f"{'pods':>5} {'engines':>7} {'pod 0 CPU s':>11} {'peak MiB':>9} {'to a pod MB':>11} {'from a pod MB':>13} "
            f"{'pod 0 out MB':>12} {'control s':>9} {'threads':>7} {'calls/pod':>9}")
    lines = [head]
    for p in points:
        if "failed" in p:
            lines.append(f"{p['pods']:>5} failed (exit {p['failed']})")
            continue
        lines.append(f"{p['pods']:>5} {p['engines']:>7} {p['cpu_seconds']:>11.2f} {p['peak_rss_mib']:>9.0f} "
                     f"{p['sent_per_pod'] / 1e6:>11.1f} {p['received_per_pod'] / 1e6:>13.1f} {p['sent_total'] / 1e6:>12.1f} "
                     f"{p['control_plane_seconds']:>9.2f} {p['threads']:>7} {p['calls_per_pod']:>9.0f}")
    return "\n".join(lines)


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [p for p in points if "failed" not in p]
    pods = [p["pods"] for p in ok]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot(pods, [p["cpu_seconds"] for p in ok], "o-", label="pod 0 CPU s / iteration")
    axes[0].plot(pods, [p["control_plane_seconds"] for p in ok], "s--", label="control-plane wall s")
    axes[0].axhline(2.0, color="grey", linestyle=":", label="target: 2 CPU s")
    axes[1].plot(pods, [p["sent_per_pod"] / 1e6 for p in ok], "o-", label="pod 0 -> a pod (MB)")
    axes[1].plot(pods, [p["sent_total"] / 1e6 for p in ok], "s--", label="pod 0 -> all (MB)")
    axes[2].plot(pods, [p["peak_rss_mib"] for p in ok], "o-", label="pod 0 peak RSS (MiB)")
    for axis in axes:
        axis.set_xscale("log", base=2)
        axis.set_xlabel("pods (8 engines each)")
        axis.legend(fontsize=8)
    figure.suptitle(f"Control plane by simulation ({ok[0]['protocol'] if ok else ''} payloads)")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--response-tokens", type=int, default=4096)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--generate-seconds", type=float, default=0.5)
    parser.add_argument("--train-seconds", type=float, default=0.5)
    parser.add_argument("--sync-seconds", type=float, default=0.2)
    parser.add_argument("--slow-engine-seconds", type=float, default=0.0,
                        help="the last pod's last engine takes this much longer to generate (a straggler)")
    parser.add_argument("--protocol", choices=("wire", "json"), default="wire",
                        help="json: stand-ins answering as the conductor before binary payloads expected")
    parser.add_argument("--verify", action="store_true", help="the trainers record the prompts they were sent")
    parser.add_argument("--profile", type=Path, help="with --one: pod 0's CPU by function, to this file")
    parser.add_argument("--point-timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scale-sim")
    parser.add_argument("--one", action="store_true", help="one cluster size (the first of --pods), as JSON")
    args = parser.parse_args()
    if args.one:
        args.pods = args.pods[0]
        print(json.dumps(run_point(args)), flush=True)
        os._exit(0)  # the relays' and gang server's threads are daemons of a finished measurement
    points = sweep(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scale-sim-{args.protocol}.json").write_text(json.dumps(points, indent=1))
    plot(points, args.out / f"scale-sim-{args.protocol}.png")
    print(table(points))
    print(f"wrote {args.out / f'scale-sim-{args.protocol}.json'} and .png")


if __name__ == "__main__":
    main()

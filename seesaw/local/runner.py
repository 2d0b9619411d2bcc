"""`seesaw run`: one pod's three containers as local processes, from the same RLJob spec.

The model is prepared first (generated and SFT-warmed, cached), then the trainer, the
rollout engine and the checkpoint engine start as separate processes that talk over
localhost, as the containers of a pod do. The runner supervises them: if one dies the
others are stopped, the error names the dead one, and no process is left behind.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from seesaw import pod_contract as pc
from seesaw.checkpoint_engine import checkpoints
from seesaw.local.paths import manifest_folder, resolve_paths
from seesaw.local.pods import StartFailed, died, log_prefix, pod_title
from seesaw.model.sources import prepare_model
from seesaw.backend_selection import Hardware
from seesaw.supervise import die_with_parent
from seesaw.spec import SpecError, restart_backoff_seconds, rollout_engines_per_pod, trainer_processes_per_pod
from seesaw.tasks import load_task

WORKERS = {
    "trainer": "seesaw.trainer.launch",  # one trainer rank per GPU of the pod
    "rollout": "seesaw.rollout.launch",  # one vLLM engine per tensor-parallel group of the pod
}
SIDECAR = "seesaw.checkpoint_engine.sidecar"
CONTAINERS = {"trainer": "trainer", "rollout": "rollout engine", "sidecar": "checkpoint engine"}
# A container whose process died stops its other processes first (seesaw.supervise): the
# conductor may see the failed call before the container is gone.
CONTAINER_EXIT_GRACE = 10


def _exit_reason(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.valid_signals():  # a container whose process died of a signal
        return f"exited with code {code} ({signal.Signals(code - 128).name} in one of its processes)"
    return f"exited with code {code}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (a pod's rollout engines serve on base + e)."""
    while True:
        base = free_port()
        try:
            for port in range(base + 1, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _echo(stream) -> None:
    for line in stream:
        print(line, end="", flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalPod:
    """Starts and supervises the pod's processes; stopping it leaves no process behind."""

    def __init__(self, run_dir: Path, env: dict[str, str], index: int = 0, replica: bool = False) -> None:
        self.run_dir = run_dir
        self.env = env
        self.index = index
        self.replica = replica  # a rollout replica: engines and a checkpoint engine, no trainer
        self.name = pod_title(index, replica)
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._echo: threading.Thread | None = None

    def start(self, name: str, module: str, stdout_to_log: bool = True) -> subprocess.Popen:
        log_path = self.run_dir / f"{log_prefix(self.index, self.replica)}{name}.log"
        self.logs[name] = log_path
        # appended: a restarted gang's logs follow the failed attempt's, which tell why it failed
        with log_path.open("a") as log:
            log.write(f"===== attempt {int(self.env.get(pc.RESTART_ATTEMPT, 0)) + 1} =====\n")
        out = log_path.open("a") if stdout_to_log else subprocess.PIPE
        # cwd = run dir, never the repository root: the repo's operator/ folder would shadow
        # the standard library module of that name for `python -m`.
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=self.run_dir, env=self.env, stdout=out,
            stderr=subprocess.STDOUT if stdout_to_log else log_path.open("a"),
            start_new_session=True, text=True, preexec_fn=die_with_parent,
        )
        self.processes[name] = process
        if not stdout_to_log:  # the conductor's lines are the run's output
            self._echo = threading.Thread(target=_echo, args=(process.stdout,), daemon=True)
            self._echo.start()
        return process

    def main_exit_code(self) -> int | None:
        """The checkpoint engine's exit code once it ended (the main container of the pod)."""
        return self.processes["sidecar"].poll()

    def wait_logs(self, timeout: float = 5) -> None:
        if self._echo:
            self._echo.join(timeout)

    def dead_worker(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            code = process.poll()
            if died(name, code, follower=self.index > 0 or self.replica):
                return name, code
        return None

    def stop(self) -> None:
        # Signal each whole process group, even when its leader is already gone: vLLM's engine
        # and worker processes would otherwise outlive a crashed rollout server.
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while time.monotonic() < deadline and any(_group_alive(p.pid) for p in self.processes.values()):
            time.sleep(0.2)
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def run_job(manifest: dict[str, Any], args: argparse.Namespace) -> int:
    manifest = copy.deepcopy(manifest)
    spec = manifest["spec"]
    asked = os.environ.get(pc.TRAINER_PROCESSES, "")
    if asked and not (asked.isdigit() and int(asked) > 0):
        raise SpecError(pc.TRAINER_PROCESSES, f"expected a positive number of trainer ranks per pod, got {asked!r}")
    if args.seed is not None:
        spec["rl"]["seed"] = args.seed
        if "generate" in spec["model"]:  # a generated model's init and SFT follow the seed too
            spec["model"]["generate"]["seed"] = args.seed
    if args.iterations is not None:
        spec["rl"]["iterations"] = args.iterations
    workdir = Path(args.workdir).resolve()
    name = manifest["metadata"].get("name", "rljob")
    stamp = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = workdir / stamp
    for attempt in itertools.count(1):  # two runs in one second from one process get two dirs
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:
            run_dir = workdir / f"{stamp}-{attempt}"
    spec["checkpoint"]["path"] = str(run_dir / "checkpoints")
    resolve_paths(spec, manifest_folder(args.job))
    started = time.time()

    # both name a missing prompt file or model directory here, before any worker starts
    task = load_task(spec)
    print(f"job {name}: {len(task.train)} training prompts, {len(task.eval)} held-out; run dir {run_dir}", flush=True)
    model_dir = prepare_model(spec, task, log=lambda line: print(line, flush=True))

    job_path = run_dir / "job.yaml"
    job_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    nodes = int(spec["cluster"]["nodes"])
    env = dict(os.environ)
    env.update({
        pc.JOB_CONFIG: str(job_path),
        pc.MODEL_DIR: str(model_dir),
        pc.RUN_DIR: str(run_dir),
        pc.NUM_PODS: str(nodes),
        pc.RENDEZVOUS: "127.0.0.1",
        pc.POD_IP: "127.0.0.1",
        pc.JOB_NAME: run_dir.name,
        # pod 0's Prometheus metrics: a free port unless the user chose one to scrape
        pc.JOB_METRICS_PORT: os.environ.get(pc.JOB_METRICS_PORT) or str(free_port()),
        "PYTHONUNBUFFERED": "1",
    })
    engines = rollout_engines_per_pod(spec)
    env[pc.ROLLOUT_ENGINES] = str(engines)
    # one rank per GPU as in a pod; on the CPU one, unless the environment asks for more
    # (data-parallel ranks sharing the pod's cores: the multi-process path without a GPU)
    trainer_ranks = int(asked or (trainer_processes_per_pod(spec) if Hardware.detect().gpu_count else 1))
    env[pc.TRAINER_PROCESSES] = str(trainer_ranks)
    pod_count = nodes + int(spec["rollout"]["replicas"])
    rollout_tp = spec["rollout"]["tensorParallel"]  # on the CPU: one vLLM worker process per TP rank
    if pod_count > 1 or engines > 1 or trainer_ranks > 1 or rollout_tp > 1:  # each pod's workers use their share of this machine's cores, as a pod's CPU limit would
        share = max(1, (os.cpu_count() or 1) // pod_count)
        env.update({pc.CPU_THREADS: str(share), "OMP_NUM_THREADS": str(share), "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
        # the CPU build reserves host memory for its KV cache: a small model needs little, and
        # every engine on this machine must fit beside the others
        # (vLLM reads this variable over its own argument: set only where the job sizes none)
        if not spec["rollout"]["cpuKVCacheGiB"]:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    resume = None
    if getattr(args, "resume_from", None):
        try:
            resume = str(checkpoints.resolve(Path(args.resume_from).resolve()))
        except checkpoints.CheckpointError as err:
            raise SpecError("--resume-from", str(err)) from None
    if args.summary_json:
        env[pc.SUMMARY_JSON] = str(Path(args.summary_json).resolve())
    if getattr(args, "keep_first_batch", False):
        env[pc.KEEP_FIRST_BATCH] = "1"

    runtime = _runtime(getattr(args, "runtime", "processes"), manifest, run_dir, model_dir, env)
    # Without this a SIGTERM ends the runner at once: its pods die with it (they have a
    # parent-death signal), but what they started in turn would be orphaned, and so would a
    # runtime's containers and network. With it, the pods stop as on Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = _play_with_restarts(runtime, spec, env, resume, args.job)
    except KeyboardInterrupt:  # between two attempts of the gang (play_gang handles those within one)
        print("interrupted", flush=True)
        code = 130
    except Terminated:
        print("terminated", flush=True)
        code = 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        runtime.close()
    if code not in (130, 143):
        print(f"job {name}: {'succeeded' if code == 0 else 'failed'} in {time.time() - started:.0f}s", flush=True)
    return code


def _play_with_restarts(runtime, spec: dict[str, Any], env: dict[str, str], resume: str | None, job: str) -> int:
    """The gang, restarted from its last checkpoint as spec.failurePolicy allows; the last exit code."""
    policy = spec["failurePolicy"]
    checkpoint_root = Path(spec["checkpoint"]["path"])
    # as the operator does: the rollout replicas outlive a restart of the gang and join its
    # next conductor; they stop when the job ends
    replicas = Replicas(runtime, int(spec["rollout"]["replicas"]))
    try:
        return _restart_gang_until_done(runtime, policy, checkpoint_root, env, resume, job, replicas)
    finally:
        replicas.stop()


def _restart_gang_until_done(runtime, policy: dict[str, Any], checkpoint_root: Path, env: dict[str, str],
                             resume: str | None, job: str, replicas: "Replicas") -> int:
    for restarts in itertools.count():
        if restarts:
            time.sleep(restart_backoff_seconds(policy, restarts))
        code, failure = play_gang(runtime, dict(env, **{pc.RESTART_ATTEMPT: str(restarts)}), resume, replicas)
        if code in (0, 130, 143):
            break
        latest = checkpoints.latest(checkpoint_root)
        if code == pc.EXIT_UNRECOVERABLE:
            break  # the checkpoint engine said why; a restart would fail the same way
        if restarts >= policy["maxRestarts"]:
            print(f"FAILED: {failure}; the gang was restarted {restarts} time(s), spec.failurePolicy.maxRestarts is "
                  f"{policy['maxRestarts']}", flush=True)
            if latest:
                print(f"to continue from its last checkpoint: seesaw run {job} --resume-from {latest}", flush=True)
            break
        # like the operator: the whole gang again, from the last checkpoint (else from where this run began)
        resume = str(latest) if latest else resume
        where = f"from {latest}" if latest else ("from " + resume if resume else "from the start (no checkpoint yet)")
        print(f"{failure}; restarting the gang {where} in {restart_backoff_seconds(policy, restarts + 1):.0f}s "
              f"(restart {restarts + 1} of {policy['maxRestarts']})", flush=True)
    return code


def _runtime(kind: str, manifest: dict[str, Any], run_dir: Path, model_dir: Path, env: dict[str, str]):
    if kind == "docker":
        from seesaw.local.docker_runtime import DockerRuntime

        return DockerRuntime(manifest, run_dir, model_dir, env)
    return ProcessRuntime(int(manifest["spec"]["cluster"]["nodes"]), run_dir)


def _dead_container(pods: list) -> str | None:
    """The first pod container that exited, reported with its log's last lines."""
    dead = next(((pod, *found) for pod in pods if (found := pod.dead_worker())), None)
    if not dead:
        return None
    pod, container, code = dead
    pods[0].wait_logs(timeout=1)
    failure = f"{pod.name}'s {CONTAINERS[container]} {_exit_reason(code)}"
    print(f"FAILED: {failure}; last lines of {pod.logs[container]}:\n{_tail(pod.logs[container])}", flush=True)
    return failure


class ProcessRuntime:
    """The embedded default: each pod's containers as local process groups on free ports."""

    def __init__(self, nodes: int, run_dir: Path) -> None:
        self.nodes, self.run_dir = nodes, run_dir
        # one for the whole run, as a Service's port is: the rollout replicas that outlive a
        # gang's attempt find the next one's conductor there (its server reuses the address)
        self.gang_port = free_port()

    def start_gang(self, env: dict[str, str], pods: list) -> None:
        """Start every gang pod into `pods` (filled as they start, so a failed start stops what
        did start); pod 0's checkpoint engine, the conductor, last."""
        # the trainers' rendezvous port is fresh per attempt: the last attempt's may linger in TIME_WAIT
        env.update({pc.GANG_PORT: str(self.gang_port), pc.TRAINER_DIST_PORT: str(free_port())})
        engines = int(env[pc.ROLLOUT_ENGINES])
        for i in range(self.nodes):
            pods.append(LocalPod(self.run_dir, dict(env, **{pc.POD_INDEX: str(i), pc.TRAINER_PORT: str(free_port()),
                                                            pc.ROLLOUT_PORT: str(free_port_block(engines))}), index=i))
        for pod in pods:
            for worker, module in WORKERS.items():
                pod.start(worker, module)
            if pod.index:
                pod.start("sidecar", SIDECAR)
        pods[0].start("sidecar", SIDECAR, stdout_to_log=False)

    def start_replica(self, index: int, env: dict[str, str]) -> LocalPod:
        engines = int(env[pc.ROLLOUT_ENGINES])
        pod = LocalPod(self.run_dir, dict(env, **{pc.ROLLOUT_REPLICA: str(index),
                                                  pc.ROLLOUT_PORT: str(free_port_block(engines))}),
                       index=index, replica=True)
        pod.start("rollout", WORKERS["rollout"])
        pod.start("sidecar", SIDECAR)
        return pod

    def close(self) -> None:
        pass


class Replicas:
    """The rollout replicas (spec.rollout.replicas): each a rollout container and a checkpoint
    engine that joins pod 0's gang. Started with the gang's first attempt, they outlive its
    restarts. One that dies is replaced, as the operator replaces a deleted pod; the job goes
    on without it meanwhile. One whose checkpoint engine ended well (it drained and left the
    gang when scaled down) ends as its pod does: its rollout engine stops, and it is not
    replaced."""

    def __init__(self, runtime, count: int) -> None:
        self.runtime, self.count = runtime, count
        self.env: dict[str, str] | None = None
        self.pods = []

    def start_once(self, env: dict[str, str]) -> None:
        """With the gang's first attempt (its env names pod 0's gang port); later attempts find them running."""
        if self.env is None:
            self.env = dict(env)
            for r in range(self.count):
                self.pods.append(self.runtime.start_replica(r, self.env))

    def replace_dead(self) -> None:
        for pod in list(self.pods):
            if pod.main_exit_code() == 0:
                print(f"{pod.name}'s checkpoint engine exited 0 (it left the gang): its rollout engine stops, "
                      f"and it is not replaced", flush=True)
                pod.stop()
                self.pods.remove(pod)
                continue
            dead = pod.dead_worker()
            if dead:
                container, code = dead
                print(f"{pod.name}'s {CONTAINERS[container]} {_exit_reason(code)}: starting a replacement "
                      f"(the job goes on without it meanwhile)", flush=True)
                pod.stop()
                self.pods[self.pods.index(pod)] = self.runtime.start_replica(pod.index, self.env)

    def stop(self) -> None:
        for pod in self.pods:
            pod.stop()


class Terminated(Exception):
    """SIGTERM reached the run (`kill`, a CI or batch system's stop): stop the pods as Ctrl-C does."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def play_gang(runtime, env: dict[str, str], resume: str | None, replicas: Replicas) -> tuple[int, str]:
    """Start every gang pod (and, the first time, the rollout replicas) on the runtime,
    supervise them until pod 0's checkpoint engine ends the attempt, then stop the gang's
    pods; returns (exit code, what failed)."""
    if resume:
        env[pc.RESUME_FROM] = resume
    pods: list = []
    try:
        try:
            runtime.start_gang(env, pods)
        except StartFailed as err:
            print(f"FAILED: {err}", flush=True)
            return 1, str(err)
        replicas.start_once(env)
        conductor = pods[0]
        while conductor.main_exit_code() is None:
            # the conductor would only notice at its next call (or its startup timeout)
            failure = _dead_container(pods)
            if failure:
                return 1, failure
            replicas.replace_dead()
            time.sleep(0.5)
        conductor.wait_logs(timeout=5)
        code = conductor.main_exit_code()
        if code not in (0, pc.EXIT_UNRECOVERABLE):
            # the conductor failed a call to a container that was dying: name the cause
            deadline = time.monotonic() + CONTAINER_EXIT_GRACE
            while time.monotonic() < deadline:
                failure = _dead_container(pods)
                if failure:
                    return code, failure
                time.sleep(0.5)
        if code != 0:
            for pod in pods:
                for worker in WORKERS:
                    print(f"--- last lines of {pod.logs[worker]} ---\n{_tail(pod.logs[worker], 8)}", flush=True)
        return code, f"pod 0's checkpoint engine {_exit_reason(code)}"
    except KeyboardInterrupt:
        print("interrupted: stopping the pods' processes", flush=True)
        return 130, "interrupted"
    except Terminated:
        print("terminated: stopping the pods' processes", flush=True)
        return 143, "terminated"
    finally:
        for pod in pods:
            pod.stop()

"""Helpers for tests that start real workers: a tiny generated model and a local pod."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from seesaw.spec import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def tiny_manifest(**rl_overrides) -> dict:
    manifest = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    manifest["spec"]["model"]["generate"]["sftSteps"] = 20
    manifest["spec"]["rl"]["evaluation"]["prompts"] = 32
    manifest["spec"]["rl"].update(rl_overrides)
    return manifest


def make_tiny_model(tmp_path_factory) -> tuple[dict, Path]:
    from seesaw.model.sources import prepare_model
    from seesaw.tasks import load_task

    manifest = tiny_manifest()
    cache = tmp_path_factory.mktemp("models")
    model_dir = prepare_model(manifest["spec"], load_task(manifest["spec"]), cache, log=lambda *_: None)
    return manifest, model_dir


def start_pod(manifest: dict, model_dir: Path, run_dir: Path, workers=("trainer", "rollout")):
    """Start the pod's worker processes exactly as `seesaw run` does; returns (pod, clients)."""
    from seesaw.local.runner import WORKERS, LocalPod, free_port
    from seesaw.rpc import WorkerClient

    job = run_dir / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    env = dict(os.environ, SEESAW_JOB_CONFIG=str(job), SEESAW_MODEL_DIR=str(model_dir), SEESAW_RUN_DIR=str(run_dir),
               SEESAW_TRAINER_PORT=str(free_port()), SEESAW_ROLLOUT_PORT=str(free_port()))
    pod = LocalPod(run_dir, env)
    for name in workers:
        pod.start(name, WORKERS[name])
    clients = {
        "trainer": WorkerClient("trainer", f"http://127.0.0.1:{env['SEESAW_TRAINER_PORT']}"),
        "rollout": WorkerClient("rollout engine", f"http://127.0.0.1:{env['SEESAW_ROLLOUT_PORT']}"),
    }
    return pod, {name: clients[name] for name in workers}


def wait_ready(pod, clients: dict, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(clients)
    while pending:
        dead = pod.dead_worker()
        assert dead is None, f"{dead[0]} exited: {pod.logs[dead[0]].read_text()[-3000:]}"
        for name, client in list(pending.items()):
            state = client.health()
            if state and state.get("error"):
                raise AssertionError(f"{name} failed to start: {state['error']}")
            if state and (state.get("ready") or state.get("startable")):
                del pending[name]
        assert time.monotonic() < deadline, f"not ready in {timeout}s: {list(pending)}"
        time.sleep(0.5)
    # the conductor's start order: every engine sleeps, then the trainer builds on its device
    for name, client in clients.items():
        if "trainer" not in name:
            client.call("/sleep", timeout=timeout)
    for name, client in clients.items():
        if "trainer" in name and not client.health().get("ready"):
            client.call("/start", timeout=timeout)


def start_until_first_iteration(argv: list[str], cwd: Path, env: dict | None = None):
    """Start a run (`argv`), read its output until its first iteration is logged; returns the
    running process and the lines so far (the test fails if the run ends before)."""
    import signal
    import subprocess

    # a shell starts background jobs with SIGINT ignored, and a child inherits that: give the
    # run the default (Python's KeyboardInterrupt) so a Ctrl-C reaches it
    runner = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    output: list[str] = []
    for line in runner.stdout:
        output.append(line)
        if line.startswith("iter   1/"):
            return runner, output
    runner.wait()
    pytest.fail("run ended before its first iteration:\n" + "".join(output[-50:]))


def kill_after_first_iteration(seesaw: str, job: Path, cwd: Path, is_victim,
                               timeout: float = 120, interrupt_when=None) -> tuple[int, str, float, list]:
    """Run `seesaw run job`, SIGKILL the first child process `is_victim(process)` picks once the
    first iteration is logged; returns (exit code, output, seconds from kill to exit, leftovers).
    With `interrupt_when(output so far)`, the run gets a SIGINT (Ctrl-C) once it is true:
    a test of what happens after the kill need not wait for the job's last iteration."""
    import signal

    import psutil

    runner, output = start_until_first_iteration([seesaw, "run", str(job), "--workdir", str(cwd / "runs")], cwd)
    try:
        children = psutil.Process(runner.pid).children(recursive=True)
        victim = next(p for p in children if is_victim(p))
        os.kill(victim.pid, signal.SIGKILL)
        started = time.monotonic()
        for line in runner.stdout:
            output.append(line)
            if interrupt_when and interrupt_when("".join(output)):
                runner.send_signal(signal.SIGINT)
                interrupt_when = None
            if time.monotonic() - started > timeout:
                break
        code = runner.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        seconds = time.monotonic() - started
    finally:
        if runner.poll() is None:
            runner.kill()
    time.sleep(1)
    leftovers = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return code, "".join(output), seconds, leftovers


def vllm_and_transformers_logprobs(model_dir: Path) -> tuple[list[list[float]], list[list[float]]]:
    """vLLM's and transformers' log-probs of the same sequences under the model in model_dir."""
    import json
    import subprocess
    import sys

    script = Path(__file__).with_name("exported_model_logprobs.py")
    result = subprocess.run([sys.executable, str(script), str(model_dir)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("LOGPROBS "))
    data = json.loads(line.removeprefix("LOGPROBS "))
    return data["served"], data["expected"]


def processes_of_run(run_dir: Path) -> list:
    """Live processes started for the run in run_dir (any attempt of its gang)."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SEESAW_RUN_DIR") == str(run_dir) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def run_to_completion(seesaw: str, job: Path, cwd: Path, timeout: float = 900):
    """`seesaw run job` in cwd/runs that must succeed: (its result, summary, metrics records, run dir)."""
    import json
    import subprocess

    summary_path = cwd / "summary.json"
    result = subprocess.run([seesaw, "run", str(job), "--workdir", str(cwd / "runs"), "--summary-json", str(summary_path)],
                            capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run_dir = next(p for p in (cwd / "runs").iterdir() if p.name != ".cache")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return result, json.loads(summary_path.read_text()), metrics, run_dir

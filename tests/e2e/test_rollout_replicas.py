"""Rollout replicas (spec.rollout.replicas) under `seesaw run` with real vLLM engines:
rollout-only pods that take the new weights after every step and a share of the prompts;
losing one never fails the job, and one scaled down (SIGTERM) drains, leaves and ends."""
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from pod_helpers import processes_of_run, start_until_first_iteration
from seesaw import pod_contract as pc
from seesaw.spec import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")


def replica_processes(runner: psutil.Process, replica: int) -> list[psutil.Process]:
    """Every live process of a replica's pod: its checkpoint engine, its vLLM server and every
    process below those (vLLM's engine processes retitle themselves, which hides their
    environment: they are found by descent)."""
    found = []
    for process in runner.children():  # the pods' containers
        try:
            if process.environ().get(pc.ROLLOUT_REPLICA) == str(replica):
                found += [process] + process.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def is_module(process: psutil.Process, module: str) -> bool:
    try:
        return module in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Output:
    """The run's output, read in a thread of its own so the test can act while it runs."""

    def __init__(self, runner, lines: list[str]) -> None:
        self.lines = lines
        threading.Thread(target=lambda: self.lines.extend(runner.stdout), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.text):
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s:\n{self.text[-4000:]}"
            time.sleep(0.2)


def wait_for_rollout_phase(metrics_url: str, timeout: float) -> None:
    """Until pod 0's conductor is in a rollout (its Prometheus phase gauge)."""
    session, deadline = requests.Session(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r'^seesaw_job_phase\{phase="rollout"\} 1\.0$', session.get(metrics_url, timeout=5).text, re.M):
            return
        time.sleep(0.01)
    pytest.fail(f"no rollout phase within {timeout:.0f}s")


def test_a_killed_replica_is_replaced_and_a_drained_one_leaves_and_the_job_goes_on(tmp_path):
    manifest = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    spec = manifest["spec"]
    spec["rollout"]["replicas"] = 2
    spec["model"]["generate"]["sftSteps"] = 20
    # more iterations than the test waits for: it stops the run (Ctrl-C) once the
    # replacement joined and served, and the drained replica left and ended
    # (a replacement's vLLM engine takes a minute here)
    spec["rl"].update(iterations=5000, promptsPerIteration=9)
    spec["rl"]["evaluation"].update(prompts=16, everyIterations=0)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))

    runner, lines = start_until_first_iteration([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs")], tmp_path)
    parent = psutil.Process(runner.pid)
    try:
        output = Output(runner, lines)
        metrics_url = re.search(r"prometheus metrics: (http://\S+/metrics)", output.text).group(1)
        # a replica's engine fails: SIGKILL
        victim = next(p for p in parent.children(recursive=True)
                      if is_module(p, "seesaw.rollout.server") and p.environ().get(pc.ROLLOUT_REPLICA) == "1")
        victim.kill()
        output.wait_for(lambda text: text.count("rollout replica 1 joined") == 2
                        and "\niter " in text.split("rollout replica 1 joined")[2], 600, "replacement that served")

        # the other is scaled down: SIGTERM to its checkpoint engine while a rollout is under way
        leaving = replica_processes(parent, 0)
        titles = [" ".join(p.cmdline()) for p in leaving]
        assert any("checkpoint_engine.sidecar" in t for t in titles) and any("seesaw.rollout." in t for t in titles) \
            and any("EngineCore" in t for t in titles), titles
        checkpoint_engine = next(p for p in leaving if is_module(p, "checkpoint_engine.sidecar"))
        wait_for_rollout_phase(metrics_url, timeout=60)
        checkpoint_engine.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        output.wait_for(lambda text: "rollout replica 0 left (scaled down)" in text, 120, "leave")
        left_after = time.monotonic() - signalled
        output.wait_for(lambda text: "\niter " in text.split("rollout replica 0 left (scaled down)")[-1], 120,
                        "iteration after the leave")
        deadline = time.monotonic() + 30
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in leaving) and time.monotonic() < deadline:
            time.sleep(0.5)
        still = [(p.pid, p.cmdline()[:3]) for p in leaving if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not still, f"the drained replica's processes outlived it: {still}"
        ended_after = time.monotonic() - signalled
        children = parent.children(recursive=True)
        runner.send_signal(signal.SIGINT)
        code = runner.wait(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    time.sleep(1)
    text = output.text
    print(f"drain: left {left_after:.1f}s and every process ended {ended_after:.1f}s after SIGTERM")
    assert code == 130 and "interrupted: stopping the pods' processes" in text, text[-4000:]
    assert "rollout replica 1's rollout engine was killed by SIGKILL: starting a replacement" in text, text[-3000:]
    assert "rollout replica 1 lost" in text, text[-3000:]
    assert text.count("rollout replica 1 joined") == 2, "the replacement joined the running job"
    assert "rollout replica 0's checkpoint engine exited 0 (it left the gang)" in text, text[-3000:]
    assert "starting a replacement" not in text.split("rollout replica 0 left")[-1], "a replica scaled down is not replaced"

    run_dir = next((tmp_path / "runs").glob("tiny-reverse-*"))
    drain_log = (run_dir / "replica-0-sidecar.log").read_text()
    under_way = int(re.search(r"rollout replica 0: told to stop; (\d+) call\(s\) under way finish first", drain_log).group(1))
    assert "rollout replica 0: left the gang (scaled down)" in drain_log, drain_log[-2000:]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == list(range(1, len(metrics) + 1)), "every iteration exactly once"
    first = metrics[0]["engines"]
    assert [(e["pod"], e.get("replica")) for e in first] == [(0, None), (None, 0), (None, 1)]
    assert [e["prompts"] for e in first] == [3, 3, 3], "the gang's engine and both replicas share the prompts"
    assert all(sum(e["prompts"] for e in m["engines"]) == 9 for m in metrics), "no prompt lost or served twice"
    # the replacement starts at weight version 0 and serves prompts once it joined
    replacement = [e for m in metrics for e in m["engines"]
                   if e.get("replica") == 1 and not e.get("lost") and e["weight_version"] < m["iteration"] + 1]
    assert replacement and any(e["prompts"] > 0 for e in replacement), "the replacement served prompts"
    for m in metrics:  # after every sync every engine loaded exactly the trainer's parameters
        assert {e["weight_checksum"] for e in m["engines"] if not e.get("lost") and not e.get("left")} == {m["params_checksum"]}

    # the drained replica: listed once, as left (never lost), in the iteration whose rollout it was
    # told to stop in; it answered the call under way then, and every prompt after went to the others
    gone = [(m["iteration"], e) for m in metrics for e in m["engines"] if e.get("replica") == 0 and (e.get("left") or e.get("lost"))]
    assert [e.get("left") for _, e in gone] == [True] and not gone[0][1].get("lost"), gone
    left_in = gone[0][0]
    drained = metrics[left_in - 1]
    print(f"drain: replica 0 left in iteration {left_in} ({under_way} call(s) under way): "
          f"{[(e.get('replica'), e['prompts'], e.get('left', False)) for e in drained['engines']]}")
    # a call under way is answered; told to stop before its call, the call is refused and its
    # share re-issued to the other engines in the same rollout
    assert gone[0][1]["prompts"] in ((3,) if under_way else (0, 3)), drained["engines"]
    if gone[0][1]["prompts"] == 0:
        assert "3 prompt(s) re-issued to the other engines" in text, text[-3000:]
    after = metrics[left_in:]
    assert after, "an iteration after the leave"
    for m in after:
        assert all(e.get("replica") != 0 for e in m["engines"]), "no call to the replica that left"
        assert [e["prompts"] for e in m["engines"]] in ([5, 4], [4, 5]), "its share went to the other two engines"
    leftovers = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] + processes_of_run(run_dir)
    assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"

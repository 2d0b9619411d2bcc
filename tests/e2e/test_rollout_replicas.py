"""Rollout replicas (spec.rollout.replicas) under `seesaw run`: rollout-only pods that take
the new weights after every step and a share of the prompts; losing one never fails the job."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import kill_after_first_iteration, processes_of_run
from seesaw import pod_contract as pc
from seesaw.spec import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")


def test_a_killed_replica_is_replaced_and_the_job_goes_on(tmp_path):
    manifest = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    spec = manifest["spec"]
    spec["rollout"]["replicas"] = 2
    spec["model"]["generate"]["sftSteps"] = 20
    # more iterations than the test waits for: it stops the run (Ctrl-C) once the
    # replacement joined and served a few iterations (its vLLM engine takes a minute here)
    spec["rl"].update(iterations=5000, promptsPerIteration=9)
    spec["rl"]["evaluation"].update(prompts=16, everyIterations=0)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))

    def replacement_served(text: str) -> bool:
        joined = text.split("rollout replica 1 joined")
        return len(joined) >= 3 and joined[2].count("\niter ") >= 3  # a third join fails the count below

    code, text, _, leftovers = kill_after_first_iteration(
        SEESAW, job, tmp_path, lambda p: "seesaw.rollout.server" in " ".join(p.cmdline())
        and p.environ().get(pc.ROLLOUT_REPLICA) == "1", timeout=900, interrupt_when=replacement_served)
    assert code == 130 and "interrupted: stopping the pods' processes" in text, text[-4000:]
    assert "rollout replica 1's rollout engine was killed by SIGKILL: starting a replacement" in text, text[-3000:]
    assert "rollout replica 1 lost" in text, text[-3000:]
    assert text.count("rollout replica 1 joined") == 2, "the replacement joined the running job"

    run_dir = next((tmp_path / "runs").glob("tiny-reverse-*"))
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
        assert {e["weight_checksum"] for e in m["engines"] if not e.get("lost")} == {m["params_checksum"]}
    leftovers += processes_of_run(run_dir)
    assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"

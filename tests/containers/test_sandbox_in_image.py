"""The code-reward sandbox inside the checkpoint-engine image, run with the settings the
operator gives a code job's checkpoint engine (the closest thing to its pod without a
kubelet): hostile snippets fail at each attack."""
import json
from pathlib import Path

import pytest

from seesaw.local.docker_runtime import RUN_LABEL, plan_pod
from seesaw.operator import build
from seesaw.spec import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_hostile_snippets_fail_in_the_code_jobs_checkpoint_engine(cpu_images, engine_left_clean, tmp_path):
    client, _ = engine_left_clean
    job = load_manifest(ROOT / "examples" / "tiny-code.yaml")
    plan = plan_pod(build.build_pods(job)[0], build.build_config_map(job), tmp_path / "pod", {}, {}, {}, "sandbox-test")
    (engine,) = [c for c in plan.containers if c.name == "checkpoint-engine"]
    assert "seccomp=unconfined" in engine.settings["security_opt"]  # what the operator asks for a code job
    secret = tmp_path / "secret"
    secret.write_text("the model's weights")
    secret.chmod(0o644)
    output = client.containers.run(
        cpu_images["checkpoint-engine"], entrypoint=["python", "/probe/sandbox_probe.py", "/secret/secret"],
        security_opt=engine.settings["security_opt"], group_add=engine.settings["group_add"],
        labels={RUN_LABEL: "sandbox-test"}, remove=True, stderr=True, network_mode="none",
        volumes={str(Path(__file__).parent): {"bind": "/probe", "mode": "ro"},
                 str(tmp_path): {"bind": "/secret", "mode": "ro"}})
    report = json.loads(output.decode().strip().splitlines()[-1])
    assert report["isolation"] == "complete", report
    results = report["results"]
    assert results["harmless"]["stdout"] == "45\n", results
    for attack in ("read_secret", "write_outside", "connect_to_the_pod", "allocate_4_gib"):
        assert results[attack]["returncode"] != 0, (attack, results[attack])
    # killing its parent: the snippet sees only its own PID namespace; the checkpoint engine's
    # stand-in lived on to run the snippets after it and write this report
    assert list(results)[-1] == "harmless" and results["harmless"]["returncode"] == 0
    assert "the model's weights" not in results["read_secret"]["stdout"]
    assert "connected" not in results["connect_to_the_pod"]["stdout"]
    assert results["fork_bomb"]["returncode"] != 0 or results["fork_bomb"]["timed_out"]
    assert results["print_100_mb"]["truncated"]
    assert not report["escaped_file_in_the_container"]

"""What a user sees with the real kubectl: `kubectl explain` shows every field's description,
`kubectl apply` takes the examples as written, `kubectl get` shows the printer columns and
`kubectl scale` drives the rollout replicas. kubectl talks to the tests' cluster: RLJobs on the
real API server, core resources on the fake, behind the router, which also publishes each
CRD's OpenAPI v3 document as kube-apiserver builds it (tests/fakes/api_router.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.operator_env import install_crd, start_fake_and_real, stop_environment  # noqa: E402
from seesaw.spec import crd_version_schema  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (the real client these tests drive)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = start_fake_and_real(tmp_path_factory.mktemp("kubectl"))
    try:
        install_crd(env.cluster)
        yield env
    finally:
        stop_environment(env)


def kubectl(cluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(cluster.workdir / "user.kubeconfig"), *args],
                          capture_output=True, text=True, input=stdin, timeout=60)


def explained(cluster, path: str) -> str:
    done = kubectl(cluster, "explain", path)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_kubectl_explain_shows_each_fields_description(cluster):
    spec = crd_version_schema()["properties"]["spec"]
    shown = explained(cluster, "rlj.spec.rollout.maxTokens")
    assert "KIND: RLJob" in shown and "FIELD: maxTokens <integer>" in shown and " ".join(spec["properties"]["rollout"]["properties"]["maxTokens"]["description"].split()) in shown
    # every section lists its fields with their descriptions (as far as kubectl's one-line summary goes)
    for section, schema in spec["properties"].items():
        if not schema.get("properties"):
            continue
        listing = explained(cluster, f"rlj.spec.{section}")
        for field, sub in schema["properties"].items():
            words = " ".join(sub["description"].split()[:6])
            assert f"{field} <" in listing and words in listing, f"spec.{section}.{field}: {words!r} not in kubectl explain"


def test_kubectl_applies_the_example_gets_its_columns_and_scales_it(cluster):
    done = kubectl(cluster, "apply", "-f", str(REPO / "examples" / "tiny-reverse.yaml"))
    assert done.returncode == 0 and "rljob.seesaw.dev/tiny-reverse created" in done.stdout, done.stderr
    header = kubectl(cluster, "get", "rlj").stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "ITERATION", "POD-PHASE", "REWARD", "RESTARTS", "REPLICAS", "REPLICAS-READY", "AGE"]
    done = kubectl(cluster, "scale", "rlj/tiny-reverse", "--replicas=2")
    assert done.returncode == 0, done.stderr
    assert kubectl(cluster, "get", "rlj", "tiny-reverse", "-o", "jsonpath={.spec.rollout.replicas}").stdout == "2"


def test_kubectl_reads_scalars_as_seesaw_validate_does_and_refuses_unknown_fields(cluster):
    manifest = """apiVersion: seesaw.dev/v1alpha1
kind: RLJob
metadata: {name: exponent}
spec:
  model: {generate: {}}
  trainer: {optimizer: {learningRate: 1e-6}}
"""
    done = kubectl(cluster, "apply", "-f", "-", stdin=manifest)
    assert done.returncode == 0, done.stderr
    assert kubectl(cluster, "get", "rlj", "exponent", "-o", "jsonpath={.spec.trainer.optimizer.learningRate}").stdout == "1e-06"
    done = kubectl(cluster, "apply", "-f", "-", stdin=manifest.replace("{name: exponent}", "{name: typo}")
                   .replace("learningRate", "learningrate"))
    assert done.returncode != 0 and 'unknown field "spec.trainer.optimizer.learningrate"' in done.stderr, done.stderr

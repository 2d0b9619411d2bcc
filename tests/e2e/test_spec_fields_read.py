"""Every leaf of the RLJob spec schema takes effect: some code reads it, or it is refused.

The reads are recorded (seesaw.spec_reads) in every process of a short local run (the
runner, trainer, rollout engine and checkpoint engine) and in the operator's decision and
builders for a GPU job, a paused job and a queued one. A grep for the name would not do:
a field can be named and still never reach the code that should honour it.
"""
import datetime as dt
import json
from pathlib import Path


from megatron_cases import case_spec, run_case, tiny_model
from seesaw.checkpoint_engine import tracking
from seesaw.model.gguf_package import GGUFPackage
from seesaw.model.hub import HubModel
from seesaw.interfaces import Sample
from seesaw.operator import constants as c
from seesaw.operator.build import build_children, build_pod
from seesaw.operator.handlers import _managed
from seesaw.operator.reconcile import decide
from seesaw.rl.objectives import objective_loss, training_samples
from seesaw.tasks import load_task
from seesaw.spec import SpecError, crd_version_schema, validate_manifest
from seesaw.spec_reads import ENV, schema_leaves
from seesaw import manifest_yaml

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

# Leaves no CPU run can read, each with the code that reads it where it does run.
NOT_READ_HERE = {
    "spec.rollout.gpuMemoryUtilization": "vLLM GPU backend: engine_args (the CPU build reserves host memory instead)",
}


def pod(index: int, phase: str = "Running") -> dict:
    labels = {c.LABEL_POD_INDEX: str(index), c.LABEL_ATTEMPT: "0"}
    return {"metadata": {"name": f"qwen-math-{index}", "labels": labels},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}


def operator_reads(monkeypatch, reads: Path) -> None:
    """The operator's decisions (create, fail and restart, finish) and builders on the GPU example."""
    monkeypatch.setenv(ENV, str(reads))
    gpu = manifest_yaml.load((ROOT / "examples" / "qwen-math-gpu.yaml").read_text())
    gpu["metadata"].update(namespace="ml", uid="u", generation=1)
    for spec_patch in ({}, {"suspend": True}, {"cluster": dict(gpu["spec"]["cluster"], gpuSharing="devicePlugin",
                                                                  gangScheduling="none")}):
        job = dict(gpu, spec=dict(gpu["spec"], **spec_patch))
        assert decide(job, [], NOW).status
        resolved = validate_manifest(job)
        build_children(resolved)
        build_pod(resolved, 0, attempt=0, resume_from=None)
        assert _managed(spec=resolved["spec"])
    running = decide(gpu, [pod(0), pod(1)], NOW).status
    restarted = decide(dict(gpu, status=running), [pod(0), pod(1, "Failed")], NOW)
    assert restarted.status["restarts"] == 1
    decide(dict(gpu, status=restarted.status), [], NOW)  # waits out the backoff
    finished = dict(gpu, spec=validate_manifest(gpu)["spec"], status={"phase": c.SUCCEEDED, "completionTime": "2030-01-01T00:00:00Z"})
    decide(finished, [], NOW)  # the TTL after finishing


def task_reads(monkeypatch, reads: Path, tmp_path: Path) -> None:
    """Tasks the local run does not use: the arithmetic builtin, JSONL code problems in the sandbox."""
    monkeypatch.setenv(ENV, str(reads))
    base = manifest_yaml.load((ROOT / "examples" / "tiny-reverse.yaml").read_text())
    arith = dict(base["spec"], prompts={"source": "builtin:arith"}, rl=dict(base["spec"]["rl"], evaluation={"prompts": 16}))
    load_task(validate_manifest(dict(base, spec=arith))["spec"])
    problems = tmp_path / "code.jsonl"
    problems.write_text("\n".join(json.dumps({"prompt": f"print {i}", "tests": [{"stdout": str(i)}]}) for i in range(8)))
    spec = dict(base["spec"], prompts={"source": str(problems)}, reward={"type": "code"})
    spec["rl"] = dict(spec["rl"], evaluation={"prompts": 2})
    load_task(validate_manifest(dict(base, spec=spec))["spec"])


def long2short_reads(monkeypatch, reads: Path) -> None:
    """The long2short task and the DPO objective (as `seesaw long2short` writes its jobs)."""
    monkeypatch.setenv(ENV, str(reads))
    base = manifest_yaml.load((ROOT / "examples" / "tiny-add-long.yaml").read_text())
    base["spec"]["rl"] = dict(base["spec"]["rl"], objective={"type": "dpo"}, evaluation={"prompts": 16})
    spec = validate_manifest(base)["spec"]
    load_task(spec)
    objective = spec["rl"]["objective"]
    objective_loss(objective)
    training_samples([Sample(0, [1], [3, 4], [-1.0, -1.0]), Sample(0, [1], [3], [-1.0])], [1.0, 0.0], objective)


def tracking_reads(monkeypatch, reads: Path, tmp_path: Path) -> None:
    """W&B and MLflow settings (the local run asks for neither), read before their packages are looked for."""
    monkeypatch.setenv(ENV, str(reads))
    base = manifest_yaml.load((ROOT / "examples" / "tiny-reverse.yaml").read_text())
    logging = {"secretName": "trackers", "wandb": {"project": "rl", "entity": "team", "mode": "offline"},
               "mlflow": {"trackingUri": "http://mlflow:5000", "experiment": "seesaw"}}
    spec = validate_manifest(dict(base, spec=dict(base["spec"], logging=logging)))["spec"]
    try:
        tracking.plan(spec, tmp_path)
    except SpecError:  # wandb or mlflow is not installed here: said after reading their fields
        pass


def model_source_reads(monkeypatch, reads: Path) -> None:
    """The Hub and package model sources (the local run generates its model): what the source
    reads before it fetches, and the operator's pod for a Hub model with a token."""
    monkeypatch.setenv(ENV, str(reads))
    base = manifest_yaml.load((ROOT / "examples" / "tiny-reverse.yaml").read_text())
    package = validate_manifest(manifest_yaml.load((ROOT / "examples" / "smollm2-math.yaml").read_text()))
    GGUFPackage.from_spec(package["spec"]["model"]["package"])
    hub = dict(base, metadata={"name": "hub", "namespace": "ml", "uid": "u"},
               spec=dict(base["spec"], model={"hub": {"repo": "org/m", "tokenSecret": "hf"}, "pvc": "models"}))
    resolved = validate_manifest(hub)
    HubModel.from_spec(resolved["spec"]["model"]["hub"])
    build_pod(dict(resolved, metadata=hub["metadata"]), 0, attempt=0, resume_from=None)


def megatron_reads(monkeypatch, reads: Path, tmp_path: Path) -> None:
    """The Megatron backend's layout and optimizer fields: two gloo ranks at TP=2 on the CPU."""
    monkeypatch.setenv(ENV, str(reads))
    model = tiny_model(tmp_path / "megatron-model")
    run_case(tmp_path / "megatron", model, "megatron", case_spec({"tensorParallel": 2}), world=2, steps=1)


def test_every_spec_leaf_is_read_by_some_code_or_listed_with_its_reason(partial_rollout_run, monkeypatch, tmp_path):
    _, _, reads_file = partial_rollout_run
    operator_reads(monkeypatch, reads_file)
    task_reads(monkeypatch, reads_file, tmp_path)
    tracking_reads(monkeypatch, reads_file, tmp_path)
    long2short_reads(monkeypatch, reads_file)
    model_source_reads(monkeypatch, reads_file)
    megatron_reads(monkeypatch, reads_file, tmp_path)
    read = set(reads_file.read_text().split())
    leaves = schema_leaves(crd_version_schema()["properties"]["spec"])
    assert set(NOT_READ_HERE) <= leaves, "the allow-list names a field the schema no longer has"
    unread = sorted(leaves - read - set(NOT_READ_HERE))
    assert not unread, f"spec fields nothing read: {unread} (wire them, refuse them, or remove them)"

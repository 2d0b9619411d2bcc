"""RLJob manifests are validated against the CRD's schema with errors that name the field."""
import copy
from pathlib import Path

import pytest
import yaml

from seesaw import manifest_yaml
from seesaw.spec import SpecError, load_manifest, validate_manifest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny-reverse.yaml"


def example() -> dict:
    return manifest_yaml.load(EXAMPLE.read_text())


def test_every_example_validates_against_the_crd():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in manifest_yaml.load_all(path.read_text()):
            if doc and doc.get("kind") == "RLJob":
                validate_manifest(doc, str(path))


def test_defaults_are_filled_in_from_the_schema():
    spec = load_manifest(EXAMPLE)["spec"]
    assert spec["rl"]["lengthPenalty"] == {"weight": 0.0, "warmupIterations": 0}
    assert spec["cluster"]["gpuSharing"] == "dra"
    assert spec["timeouts"]["syncSeconds"] == 600


@pytest.mark.parametrize("path, value, field, words", [
    (("spec", "rollout", "samplesPerPrompt"), "8", "spec.rollout.samplesPerPrompt", "expected integer"),
    (("spec", "rl", "tau"), 0, "spec.rl.tau", "greater than 0"),
    (("spec", "cluster", "gpuSharing"), "mps", "spec.cluster.gpuSharing", "expected one of"),
    (("spec", "rl", "iterations"), True, "spec.rl.iterations", "expected integer"),
    (("spec", "model", "generate", "numLayers"), 0, "spec.model.generate.numLayers", "at least 1"),
])
def test_wrong_values_name_the_field(path, value, field, words):
    doc = example()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SpecError) as err:
        validate_manifest(doc)
    assert err.value.field == field
    assert words in str(err.value)


def test_missing_required_field_is_named():
    doc = example()
    del doc["spec"]["model"]
    with pytest.raises(SpecError, match=r"spec\.model: is required"):
        validate_manifest(doc)


def test_unknown_field_is_refused_not_pruned():
    doc = example()
    doc["spec"]["rl"]["taus"] = 0.1
    with pytest.raises(SpecError, match=r"spec\.rl\.taus: unknown field"):
        validate_manifest(doc)


def test_cross_field_rule_rollout_tp_must_divide_gpus():
    doc = example()
    doc["spec"]["cluster"]["gpusPerNode"] = 6
    doc["spec"]["rollout"]["tensorParallel"] = 4
    with pytest.raises(SpecError, match="spec.rollout.tensorParallel: must divide"):
        validate_manifest(doc)


def test_a_cut_response_policy_is_refused_under_partial_rollouts():
    doc = example()
    doc["spec"]["rl"].update(truncated="mask", partialRollout={"enabled": True})
    with pytest.raises(SpecError, match=r"spec\.rl\.truncated: applies to responses cut at maxTokens; partial "
                                        r"rollouts continue them instead: leave it at score, got 'mask'"):
        validate_manifest(doc)
    doc["spec"]["rl"]["truncated"] = "score"
    assert validate_manifest(doc)["spec"]["rl"]["truncated"] == "score"


def test_rollout_replicas_need_a_weight_channel_that_leaves_the_pod():
    doc = example()
    doc["spec"]["rollout"]["replicas"] = 2
    assert validate_manifest(doc)["spec"]["rollout"]["replicas"] == 2
    doc["spec"]["weightSync"] = {"channel": "cuda-ipc"}
    with pytest.raises(SpecError, match=r"spec\.rollout\.replicas: rollout replicas take their weights over the Mooncake "
                                        r"transfer engine; weightSync.channel cuda-ipc cannot leave the pod"):
        validate_manifest(doc)


def test_the_torch_trainer_refuses_model_parallelism():
    doc = example()
    doc["spec"]["trainer"]["pipelineParallel"] = 2
    with pytest.raises(SpecError, match=r"spec\.trainer\.backend: the torch trainer is data parallel only, got pipelineParallel 2"):
        validate_manifest(doc)
    doc["spec"]["trainer"]["backend"] = "megatron"
    assert validate_manifest(doc)["spec"]["trainer"]["pipelineParallel"] == 2


def test_auto_picks_mooncake_when_rollout_replicas_need_the_weights():
    from seesaw.backend_selection import Hardware, choose_backends

    doc = manifest_yaml.load((ROOT / "examples" / "qwen-math-gpu.yaml").read_text())
    shared_gpu = Hardware(gpu_count=8, shared_gpu=True)
    assert choose_backends(validate_manifest(doc)["spec"], shared_gpu).weight_channel == "cuda-ipc"
    doc["spec"]["rollout"]["replicas"] = 1
    assert choose_backends(validate_manifest(doc)["spec"], shared_gpu).weight_channel == "mooncake-tcp"


def test_wrong_kind_and_api_version():
    doc = example()
    doc["apiVersion"] = "seesaw.dev/v1"
    with pytest.raises(SpecError, match="apiVersion"):
        validate_manifest(doc)
    doc = example()
    doc["kind"] = "Job"
    with pytest.raises(SpecError, match="kind"):
        validate_manifest(doc)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_manifest(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_manifest(bad)
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump_all([example(), copy.deepcopy(example())]))
    with pytest.raises(SpecError, match="exactly one RLJob"):
        load_manifest(two)


def test_cli_reports_the_field_and_exits_2(tmp_path, capsys):
    from seesaw.cli import main

    doc = example()
    doc["spec"]["rollout"]["temperature"] = "hot"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == 2
    assert "spec.rollout.temperature: expected number" in capsys.readouterr().err



def test_model_errors_name_the_field(tmp_path, capsys):
    from seesaw.cli import main

    doc = example()
    doc["spec"]["model"]["generate"]["numHeads"] = 3  # 128 is not a multiple of 3
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--workdir", str(tmp_path / "runs")]) == 2
    assert "spec.model.generate.hiddenSize: must be a multiple of numHeads (3), got 128" in capsys.readouterr().err
    doc = example()
    doc["spec"]["model"] = {"path": str(tmp_path / "nowhere")}
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--workdir", str(tmp_path / "runs")]) == 2
    assert "spec.model.path:" in capsys.readouterr().err

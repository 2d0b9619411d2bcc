"""`seesaw long2short` end to end: three of the four methods as real jobs from one long policy.

Shortest rejection sampling and DPO run through the vLLM engine, the verifier, the shared
training loop and the Mooncake weight sync; the merge averages the long policy with the
shortest-rejection result and measures it with an evaluation-only job. (long2short RL is an
ordinary RL job with other settings: tests/local checks its manifest.)
"""
import json
import subprocess
import sys
from pathlib import Path

import psutil
from safetensors.torch import load_file

from seesaw.model.generate import prepare_model
from seesaw.spec import load_manifest
from seesaw.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")


def small_long_job(tmp_path: Path) -> tuple[Path, dict]:
    manifest = load_manifest(ROOT / "examples" / "tiny-add-long.yaml")
    spec = manifest["spec"]
    spec["model"]["generate"].update(sftSteps=600)  # right often enough that a round has correct samples
    spec["prompts"]["digits"] = 2
    spec["rollout"].update(maxModelLen=80, maxTokens=64, samplesPerPrompt=4)
    spec["rl"].update(promptsPerIteration=8, miniBatchPrompts=0)
    spec["rl"]["evaluation"] = {"prompts": 32, "everyIterations": 0}
    job = tmp_path / "long.yaml"
    job.write_text(json.dumps(manifest))
    return job, manifest


def weights(model_dir: Path) -> dict:
    return {k: v for path in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(path).items()}


def test_long2short_runs_the_methods_as_jobs_and_reports_tokens_against_accuracy(tmp_path):
    job, manifest = small_long_job(tmp_path)
    # the long policy: the scratchpad warm-up itself (an RL run first would only add minutes)
    long_model = prepare_model(manifest["spec"], load_task(manifest["spec"]), tmp_path / "runs" / ".cache" / "models",
                               log=lambda *_: None)
    out = tmp_path / "out"
    result = subprocess.run([SEESAW, "long2short", str(job), "--long-model", str(long_model),
                             "--methods", "merge,dpo,shortest-rejection", "--rounds", "2", "--prompts", "16", "--epochs", "1",
                             "--workdir", str(tmp_path / "runs"), "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = result.stdout
    # progress: one header per job, shortest-rejection before the merge that uses its result
    headers = [line for line in log.splitlines() if line.startswith("[long2short ")]
    assert [h.split("] ")[1].split(":")[0] for h in headers] == ["shortest-rejection", "dpo", "merge"], headers
    assert log.count("iter   2/2") == 2  # the two training methods ran their rounds

    points = {p["policy"]: p for p in json.loads((out / "long2short.json").read_text())}
    assert list(points) == ["long-CoT", "shortest-rejection", "dpo", "merge"]
    for point in points.values():
        assert 0.0 <= point["accuracy"] <= 1.0 and 0.0 <= point["greedy_accuracy"] <= 1.0
        assert 4 <= point["mean_tokens"] <= 64  # at least ">NN" and the end token; at most maxTokens
    assert points["merge"]["iterations"] == 0
    table = log[log.index("long2short of tiny-add-long"):]
    assert all(policy in table for policy in points)
    assert (out / "long2short.png").stat().st_size > 10_000

    # what each objective trained on: at most one sample per prompt for shortest rejection;
    # for DPO a chosen sample and at least one rejected one per trained prompt
    for method, cap in (("shortest-rejection", 16), ("dpo", 16 * 4)):
        run = next((tmp_path / "runs").glob(f"tiny-add-long-{method}-*"))
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        trained = [r["trained_samples"] for r in records]
        assert len(trained) == 2 and all(0 <= n <= cap for n in trained), (method, trained)
        assert sum(trained) > 0, f"{method} found nothing to train on in 2 iterations: {trained}"
    # the merge is the average of the long policy and the shortest-rejection one
    shortest = Path(points["shortest-rejection"]["model"])
    long_w, short_w, merged_w = weights(long_model), weights(shortest), weights(Path(points["merge"]["model"]))
    name = "model.layers.0.mlp.down_proj.weight"
    assert not long_w[name].equal(short_w[name]), "shortest-rejection fine-tuning changed nothing"
    assert merged_w[name].allclose((long_w[name] + short_w[name]) / 2)

    # nothing of any job is left running
    leftover = [p for p in psutil.process_iter(["environ"]) if str(tmp_path) in str((p.info.get("environ") or {}).get("SEESAW_RUN_DIR", ""))]
    assert not leftover, leftover

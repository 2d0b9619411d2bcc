"""`seesaw long2short` end to end: the four methods as real jobs from one long policy.

Shortest rejection sampling, DPO and long2short RL run through the vLLM engine, the
verifier, the shared training loop and the Mooncake weight sync; the merge averages the
long policy with the shortest-rejection result and measures it with an evaluation-only job.
Each must leave a policy that writes less and answers about as well.
"""
import json
import subprocess
import sys
from pathlib import Path

import psutil
from safetensors.torch import load_file

from seesaw.model.sources import prepare_model
from seesaw.spec import load_manifest
from seesaw.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")
# the warm-up (2 min) is kept with the project's other caches; its key covers all that shapes it
MODEL_CACHE = Path.home() / ".cache" / "seesaw" / "models"


def small_long_job(tmp_path: Path) -> tuple[Path, dict]:
    manifest = load_manifest(ROOT / "examples" / "tiny-add-long.yaml")
    spec = manifest["spec"]
    spec["model"]["generate"].update(sftSteps=1200)  # right about two times in three
    spec["prompts"]["digits"] = 2
    spec["rollout"].update(maxModelLen=88, maxTokens=72)
    spec["rl"].update(promptsPerIteration=16, miniBatchPrompts=8)
    spec["rl"]["evaluation"] = {"prompts": 64, "everyIterations": 0}
    job = tmp_path / "long.yaml"
    job.write_text(json.dumps(manifest))
    return job, manifest


def weights(model_dir: Path) -> dict:
    return {k: v for path in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(path).items()}


def test_long2short_makes_the_long_policy_short_by_each_method(tmp_path):
    job, manifest = small_long_job(tmp_path)
    # the long policy: the scratchpad warm-up itself (an RL run first would only add minutes)
    long_model = prepare_model(manifest["spec"], load_task(manifest["spec"]), MODEL_CACHE, log=lambda *_: None)
    out = tmp_path / "out"
    result = subprocess.run([SEESAW, "long2short", str(job), "--long-model", str(long_model),
                             "--methods", "merge,rl,dpo,shortest-rejection", "--rounds", "2", "--prompts", "32", "--epochs", "2",
                             # a fifth of the long job's rate: at the full rate, steps of 8 prompts
                             # from a warm-up policy cost more accuracy than they shorten
                             "--iterations", "8", "--learning-rate", "1e-4", "--merge-weight", "0.3",
                             "--workdir", str(tmp_path / "runs"), "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = result.stdout
    # progress: one header per job, shortest-rejection before the merge that uses its result
    headers = [line for line in log.splitlines() if line.startswith("[long2short ")]
    assert [h.split("] ")[1].split(":")[0] for h in headers] == ["shortest-rejection", "dpo", "rl", "merge"], headers
    assert log.count("iter   2/2") == 2  # the two selecting methods ran their rounds
    assert "iter   8/8" in log

    points = {p["policy"]: p for p in json.loads((out / "long2short.json").read_text())}
    assert list(points) == ["long-CoT", "shortest-rejection", "dpo", "rl", "merge"]
    long = points.pop("long-CoT")
    assert long["accuracy"] >= 0.3, long  # a long policy that answers, or there is nothing to keep
    for method, point in points.items():
        # shorter, and still answering: truncated or emptied answers lose the accuracy
        assert point["mean_tokens"] < long["mean_tokens"], (method, point, long)
        assert point["accuracy"] >= 0.8 * long["accuracy"], (method, point, long)
    assert points["merge"]["iterations"] == 0
    table = log[log.index("long2short of tiny-add-long"):]
    assert all(policy in table for policy in [*points, "long-CoT"])
    assert (out / "long2short.png").stat().st_size > 10_000

    # what each objective trained on: at most one sample per prompt for shortest rejection;
    # for DPO a chosen sample and at least one rejected one per trained prompt
    for method, cap in (("shortest-rejection", 32), ("dpo", 32 * 8)):
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
    assert merged_w[name].allclose(0.3 * long_w[name] + 0.7 * short_w[name])

    # nothing of any job is left running
    leftover = [p for p in psutil.process_iter(["environ"]) if str(tmp_path) in str((p.info.get("environ") or {}).get("SEESAW_RUN_DIR", ""))]
    assert not leftover, leftover

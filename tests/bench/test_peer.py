"""`make bench-peer` at its smallest: one round of two iterations, Seesaw and TRL both generating
with vLLM, TRL in its own environment (`make trl-venv`), so a machine whose vLLM CPU build
breaks either side's weight sync fails here."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import tiny_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# vLLM's log-probs against TRL's trainer's after the last sync: about 1e-6 in float32 when the
# engine holds the trainer's weights; 0.3 when only the tied head was left stale, 3 with no sync
SYNCED_LOGP_GAP = 1e-4


def trl_python() -> Path:
    venv = Path(subprocess.run([ROOT / "tools" / "trl_venv.sh", "path"], capture_output=True, text=True,
                               check=True).stdout.strip())
    if not (venv / ".installed").exists():
        pytest.fail(f"TRL's environment is not built: run `make trl-venv` (it builds {venv} from "
                    f"requirements/bench-peer.txt, a few minutes once; `make test` does it first)")
    return venv / "bin" / "python"


def test_one_round_times_every_iteration_of_both_sides_and_trl_syncs_into_vllm(tmp_path):
    manifest = tiny_manifest(promptsPerIteration=16, miniBatchPrompts=8)
    manifest["spec"]["trainer"]["microBatchSize"] = 64
    # 2-digit strings: the 20-step warm-up gets about one in six right, so groups' rewards differ,
    # the loss has a gradient and the weights the sync carries change
    manifest["spec"]["prompts"]["digits"] = 2
    # tied, as most small pretrained models are: vLLM's reload never loads a tied head
    manifest["spec"]["model"]["generate"]["tieWordEmbeddings"] = True
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "out"

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "peer.py"), "--trl-python", str(trl_python()), "--vllm",
                           "--rounds", "1", "--iterations", "2", "--job", str(job), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert "CPU: " in done.stdout, done.stdout[-2000:]

    peer = json.loads((out / "peer.json").read_text())
    for side in ("Seesaw", "TRL"):
        iterations = peer["runs"][side][0]["iterations"]
        assert len(iterations) == 2, (side, iterations)
        assert all(it["iteration_seconds"] > 0 and it["rollout_seconds"] > 0 and it["train_seconds"] > 0
                   for it in iterations), (side, iterations)
    assert all(math.isfinite(ratio) and ratio > 0 for ratio in peer["ratios"].values()), peer["ratios"]
    trl = peer["runs"]["TRL"][0]
    assert trl["generation"] == "vLLM colocate (float32)"
    assert all(it["sync_seconds"] > 0 for it in trl["iterations"]), trl["iterations"]
    assert trl["probe_logp_gap"] < SYNCED_LOGP_GAP, trl["probe_logp_gap"]
    assert (out / "trl-1" / "trl.log").exists() and (out / "seesaw-1.log").exists()

"""`make bench-scale-sim` at a small size: the real conductor, gang server and relays of an
8-pod job (two data-parallel ranks a pod) against stand-in workers, for two iterations. Every
stand-in trainer must have been sent exactly its ranks' prompts, and every generated sample must
reach exactly one trainer: none lost, none doubled."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PODS, PROMPTS, SAMPLES, ITERATIONS = 8, 32, 2, 2


def test_each_pod_is_sent_its_data_parallel_share_and_every_sample_is_trained_once():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale_sim.py"), "--one", "--pods", str(PODS), "--iterations", str(ITERATIONS),
         "--prompts", str(PROMPTS), "--samples", str(SAMPLES), "--response-tokens", "16", "--verify",
         "--generate-seconds", "0", "--train-seconds", "0", "--sync-seconds", "0"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    point = json.loads(done.stdout.strip().splitlines()[-1])
    shares = point["shares"]
    assert len(shares) == PODS * ITERATIONS, [s["pod"] for s in shares]
    # the example's layout: 8 GPUs a pod, tensor parallel 4 -> data-parallel ranks 2p and 2p+1 on pod p
    dp_size = 2 * PODS
    for iteration in range(ITERATIONS):
        sent = shares[iteration * PODS: (iteration + 1) * PODS]
        assert sorted(s["pod"] for s in sent) == list(range(PODS))
        for share in sent:
            ranks = {2 * share["pod"], 2 * share["pod"] + 1}
            assert share["prompts"] == PROMPTS
            assert share["positions"] == [g for g in range(PROMPTS) if g % dp_size in ranks], share["pod"]
            assert share["samples"] == SAMPLES * len(share["positions"])
        # a sample is named by its prompt and the generation number the stand-in engine gave it
        trained = Counter(tuple(key) for share in sent for key in share["sample_keys"])
        assert max(trained.values()) == 1, "a sample was sent to two trainers"
        assert sum(trained.values()) == PROMPTS * SAMPLES == point["trained_samples"][iteration]
        assert {prompt for prompt, _ in trained} == set(range(PROMPTS))
    # each pod is sent 1/8 of the batch, not all of it
    assert point["sent_per_pod"] < point["sent_total"] / 4

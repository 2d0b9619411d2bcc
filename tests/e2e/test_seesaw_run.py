"""`seesaw run` end to end: real processes, real vLLM, Mooncake sync; and a worker crash mid-run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seesaw.checkpoint_engine import tracking
from pod_helpers import (kill_after_first_iteration, processes_of_run, run_to_completion, tiny_manifest,
                         vllm_and_transformers_logprobs)

pytestmark = pytest.mark.slow
SEESAW = str(Path(sys.executable).parent / "seesaw")


def write_job(tmp_path, iterations, max_restarts=0):
    manifest = tiny_manifest(iterations=iterations, promptsPerIteration=8)
    manifest["spec"]["failurePolicy"]["maxRestarts"] = max_restarts
    manifest["spec"]["checkpoint"]["everyIterations"] = 1
    manifest["spec"]["rl"]["evaluation"].update(everyIterations=1, passAtK=4)  # eval and checkpoint in one iteration
    manifest["spec"]["logging"] = {"samplePrompts": 8}  # every prompt of an iteration: the records add up to its metrics
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_run_writes_summary_metrics_and_plot(tmp_path):
    job = write_job(tmp_path, iterations=2)
    result, summary, metrics, run_dir = run_to_completion(SEESAW, job, tmp_path, timeout=600)
    assert "iter   1/2 | rollout" in result.stdout and "iter   2/2" in result.stdout
    assert summary["iterations"] == 2 and summary["eval_prompts"] == 32
    assert 0 < summary["wall_seconds"] < 900  # the run's seconds, not a clock reading
    assert 1 <= summary["mean_tokens_before"] <= 8 and 1 <= summary["mean_tokens_after"] <= 8  # maxTokens 8
    for key in ("accuracy_before", "accuracy_after", "wall_seconds"):
        assert isinstance(summary[key], float)
    assert 0.0 <= summary["accuracy_after"] <= 1.0
    assert summary["sync"]["bytes"] > 0 and summary["sync"]["seconds"] > 0
    assert summary["sync"]["max_abs_logprob_diff"] < 1e-4
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert all(m["rollout_trainer_logprob_diff"] < 1e-4 for m in metrics)
    assert (run_dir / "run.png").read_bytes()[:4] == b"\x89PNG"
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "iteration-000002"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iteration-000001", "iteration-000002", "latest"]
    exported = Path(summary["exported_model"])
    assert exported == checkpoints / "iteration-000002" / "model"
    # what the model wrote: every prompt's k responses, adding up to the iteration's metrics
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    k = yaml.safe_load(job.read_text())["spec"]["rollout"]["samplesPerPrompt"]
    for m in metrics:
        train = [r for r in samples if r["split"] == "train" and r["iteration"] == m["iteration"]]
        responses = [response for r in train for response in r["responses"]]
        assert len(train) == 8 and len(responses) == 8 * k
        assert sum(r["reward"] for r in responses) / len(responses) == pytest.approx(m["mean_reward"])
        assert sum(r["score"] for r in responses) / len(responses) == pytest.approx(m["accuracy"])
        assert sum(r["finish"] == "length" for r in responses) / len(responses) == pytest.approx(m["cut_fraction"])
        assert sum(r["tokens"] for r in responses) / len(responses) == pytest.approx(m["mean_response_length"])
        assert all(r["prompt"].endswith("=") and len(r["reference"]) == 4 for r in train)  # the reverse task's
    assert {r["split"] for r in samples if r["iteration"] == 0} == {"eval-greedy", "eval-sampled"}
    # pass@4 over the 4 samples of each held-out prompt: at least the accuracy of one (pass@1)
    assert summary["pass_at_k"]["k"] == 4
    assert summary["accuracy_before"] <= summary["pass_at_k"]["before"] <= 1.0
    assert summary["accuracy_after"] <= summary["pass_at_k"]["after"] <= 1.0

    # the exported policy is a Hugging Face model that vLLM serves as the trainer computes it
    served, expected = vllm_and_transformers_logprobs(exported)
    worst = max(abs(a - b) / max(1.0, abs(b)) for xs, ys in zip(served, expected) for a, b in zip(xs, ys))
    assert worst < 1e-3, f"vLLM {served} vs transformers {expected}"

    # a restarted job continues after its checkpoint's iteration (given the checkpoints directory: its latest)
    job = write_job(tmp_path, iterations=3)
    result = subprocess.run([SEESAW, "run", str(job), "--workdir", str(tmp_path / "resumed"), "--resume-from", str(checkpoints)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "continuing at iteration 3" in result.stdout
    assert "iter   3/3" in result.stdout and "iter   1/3" not in result.stdout
    resumed = next((tmp_path / "resumed").glob("tiny-reverse-*"))
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in records] == [1, 2, 3], "the checkpoint carries the metrics recorded before it"
    assert json.dumps(records[:2], sort_keys=True) == json.dumps(metrics, sort_keys=True)  # NaN-safe


def test_resume_from_a_path_without_a_checkpoint_is_refused_naming_the_option(tmp_path):
    job = write_job(tmp_path, iterations=1)
    result = subprocess.run([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs"), "--resume-from", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "--resume-from" in result.stderr and "latest" in result.stderr, result.stderr


def test_a_checkpoint_the_trainer_cannot_load_fails_the_start_once_naming_it(tmp_path):
    broken = tmp_path / "checkpoints" / "iteration-000001"
    (broken / "trainer").mkdir(parents=True)
    (broken / "trainer" / "state.pt").write_bytes(b"not a checkpoint")
    (broken / "conductor.json").write_text(json.dumps({"iteration": 1}))
    job = write_job(tmp_path, iterations=2, max_restarts=2)
    result = subprocess.run([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs"), "--resume-from", str(broken)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode != 0
    assert f"{broken}: the trainer could not load it" in result.stdout, result.stdout[-3000:]
    assert "not retried: a restart would fail the same way" in result.stdout
    assert "restarting the gang" not in result.stdout


def test_partial_rollouts_finish_long_responses_over_several_iterations(partial_rollout_run):
    _, run_dir, _ = partial_rollout_run
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(m["rollout_tokens_per_second"] > 0 for m in metrics)  # every iteration generated tokens
    # responses longer than one 2-token budget finished: they were continued across iterations
    assert max(m["mean_response_length"] for m in metrics) > 2
    trained = [m for m in metrics if m["loss"] > 0]
    assert trained, "no group finished in 4 iterations"
    assert all(m["rollout_trainer_logprob_diff"] < 1e-4 for m in trained)  # the newest segment is on-policy


def test_a_crashed_rollout_engine_fails_the_run_clearly_and_leaves_no_process(tmp_path):
    job = write_job(tmp_path, iterations=200)
    code, text, seconds, leftovers = kill_after_first_iteration(
        SEESAW, job, tmp_path, lambda p: "seesaw.rollout.server" in " ".join(p.cmdline()))
    assert code == 1, text[-3000:]
    assert seconds < 60
    assert "FAILED" in text and "rollout" in text.split("FAILED", 1)[1][:300], text[-3000:]
    assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"


def test_a_terminated_run_stops_every_process_it_started(tmp_path):
    """SIGTERM (`kill`, a batch system's stop) is handled as Ctrl-C is: without it the runner
    died at once and what its pods had started (multiprocessing's resource tracker) lived on."""
    job = write_job(tmp_path, iterations=200)
    runner = subprocess.Popen([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        output = []
        for line in runner.stdout:
            output.append(line)
            if line.startswith("iter   1/"):
                break
        run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.name != ".cache")
        assert processes_of_run(run_dir), "the run's processes were not found"
        runner.terminate()
        output.append(runner.communicate(timeout=60)[0])
    finally:
        if runner.poll() is None:
            runner.kill()
    text = "".join(output)
    assert runner.returncode == 143, text[-3000:]
    assert "terminated: stopping the pods' processes" in text
    leftovers = processes_of_run(run_dir)
    assert not leftovers, f"processes left behind: {[p.cmdline()[:4] for p in leftovers]}"


def test_every_iteration_is_in_tensorboard_and_prometheus_scraped_the_running_job(partial_rollout_run):
    result, run_dir, _ = partial_rollout_run
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m["iteration"] for m in metrics]
    events = EventAccumulator(str(run_dir / "tensorboard"))  # TensorBoard's own reader
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(tracking.SCALARS) | set(tracking.HELD_OUT)
    for tag in tracking.SCALARS:
        assert [e.step for e in events.Scalars(tag)] == steps, tag
    assert [e.value for e in events.Scalars("reward/mean")] == pytest.approx([m["mean_reward"] for m in metrics])
    assert [e.step for e in events.Scalars("accuracy/heldout_sampled")] == [0, steps[-1]]

    # scraped after the first iteration, while the job ran
    assert "prometheus metrics: http://127.0.0.1:" in result.stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(result.scraped_metrics) for s in family.samples}
    assert samples[("seesaw_job_iteration", ())] >= 1
    for phase in ("rollout", "train", "sync"):
        assert samples[("seesaw_job_phase_seconds_count", (("phase", phase),))] >= 1
    assert samples[("seesaw_job_sync_bytes_total", ())] >= metrics[0]["sync_bytes"]
    assert 0 <= samples[("seesaw_job_heldout_accuracy", (("sampling", "sampled"),))] <= 1
    assert samples[("seesaw_job_rollout_engines", ())] == 1

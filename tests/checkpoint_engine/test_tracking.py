"""Experiment tracking and the job's Prometheus metrics, fed as the conductor feeds them."""
from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seesaw.checkpoint_engine.job_metrics import JobMetrics
from seesaw.checkpoint_engine.tracking import HELD_OUT, SCALARS, Trackers, plan, switch_overhead_share
from seesaw.spec import SpecError, validate_manifest
from pod_helpers import tiny_manifest


def iteration(i: int, **changes) -> dict:
    """An iteration's metrics as the conductor reports them (IterationMetrics as a dict)."""
    metrics = {"iteration": i, "rollout_seconds": 1.5, "train_seconds": 0.5, "sync_seconds": 0.25, "mean_reward": 0.1 * i,
               "accuracy": 0.2, "mean_response_length": 5.0, "rollout_tokens_per_second": 800.0, "loss": 0.03,
               "sync_bytes": 500_000_000, "rollout_trainer_logprob_diff": 1e-6, "probe_max_abs_logprob_diff": 2e-6,
               "probe_share_of_sync": 0.1, "params_checksum": "x",
               "engines": [{"pod": 0, "engine": 0, "weight_version": i, "prompts": 4},
                           {"pod": None, "replica": 0, "engine": 0, "weight_version": i, "prompts": 4, "lost": True}],
               "eval_accuracy": None, "eval_greedy_accuracy": None,
               "iteration_seconds": 2.5, "scoring_seconds": 0.05, "trainer_compute_seconds": 0.2, "cut_fraction": 0.25}
    return metrics | changes


def spec(**logging) -> dict:
    manifest = tiny_manifest()
    manifest["spec"]["logging"] = logging
    return validate_manifest(manifest)["spec"]


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_scalar_at_every_iteration_and_held_out_accuracy_at_the_evaluations(tmp_path):
    trackers = Trackers.start(plan(spec(), tmp_path), "job", {})
    trackers.progress(0, "evaluated", {"sampled": 0.3, "greedy": 0.25})
    trackers.progress(0, "rollout", {})  # phase changes are not scalars
    for i in (1, 2, 3):
        trackers.progress(i, "iteration", iteration(i, rollout_trainer_logprob_diff=math.nan if i == 2 else 1e-6))
    trackers.progress(3, "evaluated", {"sampled": 0.8, "greedy": 0.9})
    trackers.close()
    logged = scalars(tmp_path / "tensorboard")
    assert set(logged) == set(SCALARS) | set(HELD_OUT)
    for tag in SCALARS:
        assert [step for step, _ in logged[tag]] == [1, 2, 3], tag
    assert [v for _, v in logged["reward/mean"]] == pytest.approx([0.1, 0.2, 0.3])
    assert [v for _, v in logged["sync/gb_per_second"]] == pytest.approx([2.0] * 3)  # 0.5 GB in 0.25 s
    assert math.isnan(logged["logprob/rollout_vs_trainer_max_abs_diff"][1][1])  # undefined: a gap, not a lost step
    assert logged["accuracy/heldout_greedy"] == [(0, pytest.approx(0.25)), (3, pytest.approx(0.9))]


def test_recorded_samples_are_text_at_their_iteration(tmp_path):
    trackers = Trackers.start(plan(spec(), tmp_path), "job", {})
    records = [{"iteration": 2, "split": "train", "prompt": "What is 3 + 4?", "reference": "7",
                "responses": [{"text": "The answer is 7.", "reward": 1.0, "score": 1.0, "tokens": 6, "finish": "stop"},
                              {"text": "It is | 8", "reward": 0.0, "score": 0.0, "tokens": 4, "finish": "length"}]}]
    trackers.samples(2, "train", records)
    trackers.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    (event,) = events.Tensors("samples/train/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 2 and "What is 3 + 4?" in text and "The answer is 7." in text and "| length |" in text
    assert "It is / 8" in text  # a '|' in a response cannot break the table


def test_the_switch_overhead_is_the_wall_less_generation_scoring_and_the_trainers_compute():
    # 2.5 s of wall: 1.5 generating, 0.05 scoring, 0.2 in the trainer's own steps
    assert switch_overhead_share(iteration(1)) == pytest.approx((2.5 - 1.5 - 0.05 - 0.2) / 2.5)
    assert math.isnan(switch_overhead_share(iteration(1, iteration_seconds=0.0)))  # a record from before it was timed


def test_a_resumed_attempt_replaces_the_steps_the_lost_one_logged_after_the_checkpoint(tmp_path):
    first = Trackers.start(plan(spec(), tmp_path), "job", {})
    for i in (1, 2, 3, 4):
        first.progress(i, "iteration", iteration(i, loss=1.0))
    first.close()  # lost after iteration 4; the checkpoint was of iteration 2
    resumed = Trackers.start(plan(spec(), tmp_path), "job", {})
    for i in (3, 4, 5):
        resumed.progress(i, "iteration", iteration(i, loss=2.0))
    resumed.close()
    assert scalars(tmp_path / "tensorboard")["loss/policy"] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]


def test_tensorboard_writes_to_the_checkpoint_volume_when_there_is_one(tmp_path):
    with_volume = spec()
    with_volume["checkpoint"].update(pvc="ckpt", path=str(tmp_path / "volume"))
    assert plan(with_volume, tmp_path / "run").tensorboard_dir == tmp_path / "volume" / "tensorboard"
    assert plan(spec(), tmp_path / "run").tensorboard_dir == tmp_path / "run" / "tensorboard"
    assert Trackers.start(plan(spec(tensorboard={"enabled": False}), tmp_path), "job", {}).trackers == []


@pytest.mark.parametrize("tracker, settings", [("wandb", {"project": "rl"}), ("mlflow", {"trackingUri": "http://mlflow:5000"})])
def test_a_tracker_whose_package_is_missing_is_an_error_naming_the_field(tmp_path, monkeypatch, tracker, settings):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    with pytest.raises(SpecError) as refused:
        plan(spec(**{tracker: settings}), tmp_path)
    assert f"spec.logging.{tracker}" in str(refused.value) and "not installed" in str(refused.value)


def test_the_job_serves_its_metrics_in_the_prometheus_text_format():
    metrics = JobMetrics(restarts=2)
    port = metrics.serve(0)
    metrics.progress(0, "evaluated", {"sampled": 0.3, "greedy": 0.25})
    metrics.progress(1, "train", {})
    for i in (1, 2):
        metrics.progress(i, "iteration", iteration(i))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("seesaw_job_iteration", ())] == 2
    assert samples[("seesaw_job_restarts", ())] == 2
    assert samples[("seesaw_job_sync_bytes_total", ())] == 1e9
    assert samples[("seesaw_job_phase_seconds_count", (("phase", "rollout"),))] == 2
    assert samples[("seesaw_job_phase_seconds_sum", (("phase", "sync"),))] == 0.5
    assert samples[("seesaw_job_phase", (("phase", "train"),))] == 1
    assert samples[("seesaw_job_phase", (("phase", "rollout"),))] == 0
    assert samples[("seesaw_job_heldout_accuracy", (("sampling", "greedy"),))] == 0.25
    assert samples[("seesaw_job_rollout_engines", ())] == 1  # the lost replica does not count
    assert samples[("seesaw_job_weight_version", ())] == 2

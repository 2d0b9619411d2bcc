"""`make bench-real`'s code at a tiny size: the PyTorch floors on a one-layer model, the verdict,
the table and the plot. The vLLM parts and `seesaw run` are left to the bench itself (each
starts a vLLM engine: minutes on this machine); their results enter here as numbers."""
import json
import math
import random
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from pod_helpers import tiny_manifest
from seesaw.checkpoint_engine.iteration_metrics import IterationMetrics

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import real_model  # noqa: E402


def one_layer_model(path: Path) -> Path:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def a_batch(prompts: int, samples: int) -> list[dict]:
    """Prompts and responses of different lengths, so the micro-batches need padding."""
    rng = random.Random(1)
    batch = []
    for index in range(prompts):
        prompt = [rng.randrange(1, 64) for _ in range(rng.randint(3, 9))]
        for _ in range(samples):
            response = [rng.randrange(1, 64) for _ in range(rng.randint(1, 12))]
            batch.append({"prompt_index": index, "prompt_ids": prompt, "response_ids": response,
                          "logprobs": [-1.0] * len(response), "reward": float(rng.random() < 0.5)})
    return batch


def iteration(number: int, rollout: float, train: float, sync: float) -> dict:
    return asdict(IterationMetrics(iteration=number, rollout_seconds=rollout, train_seconds=train, sync_seconds=sync,
                                   mean_reward=0.2, accuracy=0.2, mean_response_length=9.5, rollout_tokens_per_second=40.0,
                                   loss=0.1, sync_bytes=1, rollout_trainer_logprob_diff=0.0, probe_max_abs_logprob_diff=0.0,
                                   probe_share_of_sync=0.7, iteration_seconds=rollout + train + sync + 0.5,
                                   trainer_compute_seconds=train - 0.2, cut_fraction=0.25))


def test_the_floors_train_on_the_trainers_micro_batches_and_the_table_reports_finite_ratios(tmp_path, monkeypatch, capsys):
    spec = tiny_manifest(promptsPerIteration=4, miniBatchPrompts=4)["spec"]
    spec["trainer"]["microBatchSize"] = 8  # two prompts of 4 samples a micro-batch: two micro-batches
    spec["rollout"]["samplesPerPrompt"] = 4
    model_dir = str(one_layer_model(tmp_path / "model"))
    samples = a_batch(4, 4)

    floors = real_model.torch_floors({"spec": spec, "model_dir": model_dir, "samples": samples, "tau": 0.05,
                                      "threads": 1, "repeats": 2})

    # the floor's micro-batches are the trainer's own, padding and order included
    from seesaw.interfaces import Sample, backend
    from seesaw.trainer import torch_backend

    trained: list[list[int]] = []
    original = torch_backend.pad_batch
    monkeypatch.setattr(torch_backend, "pad_batch", lambda rows, pad: trained.append([len(rows), max(map(len, rows))])
                        or original(rows, pad))
    backend("trainer", "torch")(model_dir, spec, device="cpu").train_step([Sample(**s) for s in samples], tau=0.05)
    assert floors["micro_batches"] == trained and len(trained) == 2, (floors["micro_batches"], trained)
    assert floors["padded_tokens"] > floors["real_tokens"] == sum(len(s["prompt_ids"]) + len(s["response_ids"]) for s in samples)
    assert 0 < floors["forward_backward_seconds"] <= min(floors["forward_backward_runs"]) + 1e-12
    assert floors["train_step_seconds"] > 0 and floors["threads"] == 1

    settings = dict(real_model.SETTINGS, iterations=2, prompts=4, samples=4)
    base = {"greedy": {"accuracy": 0.4}, "sampled": [{"accuracy": a, "mean_tokens": 9.0, "cut_fraction": 0.2}
                                                     for a in (0.10, 0.16, 0.12)]}
    run = {"summary": {"accuracy_before": 0.14, "accuracy_after": 0.30, "greedy_accuracy_before": 0.4,
                       "greedy_accuracy_after": 0.5, "mean_tokens_before": 9.0, "mean_tokens_after": 8.0},
           "metrics": [iteration(1, 2.0, 3.0, 1.0), iteration(2, 1.5, 2.5, 1.0)], "run_dir": str(tmp_path),
           "wall_seconds": 60.0, "peak_rss_bytes": 3 * 2 ** 30}
    result = real_model.summarise(settings, base, run, floors, {"seconds": 1.0, "tokens": 300})
    print(real_model.table(result))
    real_model.plot(result, tmp_path / "real_model.png")

    for ratios in result["ratios"].values():
        assert all(math.isfinite(v) and v > 0 for v in ratios.values()), ratios
    assert result["ratios"]["iteration_1"]["train"] == pytest.approx(3.0 / floors["forward_backward_seconds"])
    assert result["ratios"]["iteration_1"]["iteration"] == pytest.approx(6.5 / (floors["forward_backward_seconds"] + 1.0))
    # the base model's spread is over its repeats and the job's own evaluation before RL
    assert result["accuracy"]["spread"] == pytest.approx(0.06) and result["accuracy"]["learned"]
    printed = capsys.readouterr().out
    for field in ("spread 0.060", "learned", "mean response tokens", "cut at maxTokens: 0.25", "peak memory",
                  "ratio to the floors", "floors (best of repeats)", "padded tokens"):
        assert field in printed, (field, printed)
    assert (tmp_path / "real_model.png").stat().st_size > 0


def test_a_gain_counts_only_beyond_the_base_models_spread():
    base = [0.10, 0.16, 0.12]  # mean 0.127, spread 0.06
    assert not real_model.learning_verdict(base, 0.18)["learned"]  # +0.053
    assert real_model.learning_verdict(base, 0.19)["learned"]  # +0.063


def test_the_job_trains_on_the_prompts_up_to_the_settings_difficulty_only(tmp_path):
    settings = dict(real_model.SETTINGS, max_difficulty=1.0)
    job, spec = real_model.write_job(real_model.JOB, settings, tmp_path)
    kept = [json.loads(line) for line in Path(spec["prompts"]["source"]).read_text().splitlines()]
    assert kept and all(row["difficulty"] <= 1.0 for row in kept)
    assert yaml.safe_load(job.read_text())["spec"]["prompts"]["source"] == str(tmp_path / "prompts.jsonl")
    assert spec["rollout"]["samplesPerPrompt"] == settings["samples"] and spec["rl"]["promptsPerIteration"] == settings["prompts"]
    with pytest.raises(SystemExit, match="--max-difficulty 0.5: none of the 400 prompts"):
        real_model.write_job(real_model.JOB, dict(settings, max_difficulty=0.5), tmp_path)


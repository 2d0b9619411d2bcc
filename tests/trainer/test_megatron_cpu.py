"""The Megatron backend executed: real Megatron-core (GPTModel, DDP, the 1F1B schedule, the
distributed optimizer, dist_checkpointing) on the CPU over gloo, against the torch backend
on the same HF weights and samples with the Kimi loss.

Each case starts its ranks as processes (tests/support/megatron_ranks.py) and compares
rank 0's per-token log-probs, each step's loss and the HF weights after two steps.
"""
from __future__ import annotations

import pytest

from megatron_cases import case_spec, max_difference, run_case, tiny_model

pytestmark = pytest.mark.slow
FP32 = 1e-5  # the bound for float32: summation order is all that differs
BF16 = 0.02  # bf16 rounding: measured 2e-3 (log-prob), 2e-4 (loss), 4e-3 (weights); docs/BENCHMARKS.md
SGD = {"optimizer": {"name": "sgd", "learningRate": 0.5, "distributed": False}}
ADAM = {"optimizer": {"name": "adamw", "learningRate": 0.01}}
# Adam's step is about lr * g / (|g| + eps) element by element: where a gradient is near eps,
# summation-order noise in it moves the step by up to lr times its relative size. Weights after
# two Adam steps: 1.36e-5 on an AVX2-only EPYC (under 1e-5 on an AVX-512 one), against lr 1e-2;
# the log-probs and losses, which the weights produce, stay within FP32 (2.4e-7, 7.5e-8).
ADAM_WEIGHTS = 1e-4


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("qwen2"), "qwen2")


def parity(tmp_path, model, trainer: dict, world: int, dtype: str = "float32") -> dict[str, float]:
    spec = case_spec(trainer, dtype)
    reference = run_case(tmp_path / "torch", model, "torch", spec)
    megatron = run_case(tmp_path / "megatron", model, "megatron", spec, world=world)
    assert reference["losses"][0] != reference["losses"][1], "the first step changed nothing"
    return max_difference(reference, megatron)


def within(diff: dict[str, float], bound: float, weight_bound: float | None = None) -> None:
    bounds = dict.fromkeys(diff, bound) | ({"weight": weight_bound} if weight_bound is not None else {})
    assert all(value <= bounds[key] for key, value in diff.items()), diff


def test_tensor_parallel_two_ranks_match_the_torch_backend(tmp_path, llama):
    within(parity(tmp_path, llama, {"tensorParallel": 2, **SGD}, world=2), FP32)


def test_pipeline_parallel_with_a_smaller_last_micro_batch_matches_on_a_tied_qwen2(tmp_path, qwen2):
    # 4 prompts in micro-batches of 3: the 1F1B schedule meets shapes it did not plan for
    within(parity(tmp_path, qwen2, {"pipelineParallel": 2, **SGD}, world=2), FP32)


def resumed(tmp_path, model, save_layout: dict, load_layout: dict, save_world: int, load_world: int) -> tuple[dict, dict]:
    """Three steps with a checkpoint after the first, and a fresh trainer that loads it and
    takes the last two: the two records (the second has two losses)."""
    checkpoint = tmp_path / "checkpoint"
    whole = run_case(tmp_path / "whole", model, "megatron", case_spec(save_layout), world=save_world, steps=3,
                     save_after=1, save_dir=str(checkpoint))
    assert (checkpoint / "seesaw.json").exists()
    again = run_case(tmp_path / "again", model, "megatron", case_spec(load_layout), world=load_world, steps=3,
                     load_from=str(checkpoint))
    return whole, again


def test_adam_with_the_distributed_optimizer_matches_and_resumes_exactly(tmp_path, llama):
    # the CRD's default optimizer; its state is sharded over the data-parallel ranks
    layout = {"tensorParallel": 1, **ADAM}
    within(parity(tmp_path, llama, {"optimizer": ADAM["optimizer"]}, world=2), FP32, weight_bound=ADAM_WEIGHTS)
    whole, again = resumed(tmp_path, llama, layout, layout, save_world=2, load_world=2)
    assert again["losses"] == whole["losses"][1:], (again["losses"], whole["losses"])
    assert all(again["state"][n].equal(whole["state"][n]) for n in whole["state"]), "resumed weights differ"


def test_adam_without_the_distributed_optimizer_resumes_with_its_moments(tmp_path, llama):
    layout = {"optimizer": dict(ADAM["optimizer"], distributed=False)}
    whole, again = resumed(tmp_path, llama, layout, layout, save_world=1, load_world=1)
    # a fresh Adam (moments at zero) takes a different second step: equality proves the state loaded
    assert again["losses"] == whole["losses"][1:], (again["losses"], whole["losses"])
    assert all(again["state"][n].equal(whole["state"][n]) for n in whole["state"]), "resumed weights differ"


def test_sgd_is_accepted_with_the_crds_default_distributed_optimizer(tmp_path, llama):
    # optimizer.distributed defaults to true; Megatron shards only Adam's state
    spec_trainer = {"optimizer": {"name": "sgd", "learningRate": 0.5}}
    assert case_spec(spec_trainer)["trainer"]["optimizer"]["distributed"] is True
    within(parity(tmp_path, llama, spec_trainer, world=1), FP32)


@pytest.mark.parametrize("script", ["gpu_megatron_parity", "gpu_cycles", "gpu_start_order"])
def test_the_gpu_bench_scripts_specs_start_the_megatron_trainer(tmp_path, llama, script, monkeypatch):
    # their specs once lacked fields the trainer reads (rl.objective, timeouts): built by hand
    import importlib.util

    from megatron_cases import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    loaded = importlib.util.spec_from_file_location(script, ROOT / "bench" / f"{script}.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    spec = module.trainer_spec()
    spec["model"]["dtype"] = "float32"  # the CPU: the layout and every field, not bf16 kernels
    record = run_case(tmp_path, llama, "megatron", spec, steps=1)
    assert len(record["losses"]) == 1


def test_data_parallel_two_ranks_match_the_torch_backend(tmp_path, llama):
    within(parity(tmp_path, llama, SGD, world=2), FP32)


def test_tensor_and_pipeline_parallel_four_ranks_match_on_a_tied_qwen2(tmp_path, qwen2):
    within(parity(tmp_path, qwen2, {"tensorParallel": 2, "pipelineParallel": 2, **SGD}, world=4), FP32)


def test_bfloat16_tensor_parallel_stays_within_bf16_rounding(tmp_path, llama):
    diff = parity(tmp_path, llama, {"tensorParallel": 2, **SGD}, world=2, dtype="bfloat16")
    # bf16 keeps 8 bits of mantissa: log-probs of about -4 round at 2^-6; the weights after
    # two steps differ in their last bit at most
    within(diff, BF16)


def test_a_tensor_parallel_checkpoint_resumes_on_one_rank(tmp_path, llama):
    # a re-layout: TP=2 saved, TP=1 loaded (Adam's moments per parameter, no distributed optimizer)
    adam = {"optimizer": dict(ADAM["optimizer"], distributed=False)}
    whole, again = resumed(tmp_path, llama, {"tensorParallel": 2, **adam}, adam, save_world=2, load_world=1)
    assert max(abs(a - b) for a, b in zip(again["losses"], whole["losses"][1:], strict=True)) <= FP32
    assert max(float((again["state"][n] - whole["state"][n]).abs().max()) for n in whole["state"]) <= FP32


def test_offload_moves_every_group_and_onload_restores_the_trainer(tmp_path, llama):
    spec = case_spec({"tensorParallel": 2, **ADAM})
    record = run_case(tmp_path, llama, "megatron", spec, world=2, offload=True)
    moved = {group: report["bytes"] for group, report in record["offloaded"].items()}
    # rank 0's shards: half of the model's weights at TP=2 (fp32), the grad buffer the same,
    # and the distributed optimizer's moments (exp_avg and exp_avg_sq) of its half
    assert set(moved) == {"params", "grads", "optimizer"} and all(moved.values()), moved
    assert {g: r["bytes"] for g, r in record["onloaded"].items()} == moved
    assert all(record["state_after_cycle"][n].equal(record["state"][n]) for n in record["state"])
    assert record["loss_after_cycle"] < record["losses"][-1], "training after the cycle went on"


def test_expert_parallel_two_ranks_match_on_a_qwen3_moe(tmp_path, tmp_path_factory):
    # 4 experts, top 2: each rank holds 2, and the tokens cross ranks in an all-to-all
    moe = tiny_model(tmp_path_factory.mktemp("moe"), "qwen3_moe")
    within(parity(tmp_path, moe, {"expertParallel": 2, **SGD}, world=2), FP32)

"""CPU-testable parts of the Megatron trainer: batching and loss weighting, vocab padding, offload/onload."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from seesaw.interfaces import Sample, backend
from seesaw.spec import job_spec
from seesaw.trainer.megatron_backend import (
    StateOffloader,
    mask_vocab_padding,
    plan_micro_batches,
    response_logprobs,
)


def samples(seed: int = 0) -> list[Sample]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for prompt in range(5):
        for _ in range(3):
            p = torch.randint(4, 60, (int(torch.randint(2, 6, (1,), generator=gen)),), generator=gen).tolist()
            r = torch.randint(4, 60, (int(torch.randint(1, 7, (1,), generator=gen)),), generator=gen).tolist()
            out.append(Sample(prompt, p, r, (-torch.rand(len(r), generator=gen)).tolist(), reward=float(torch.rand(1, generator=gen) > 0.5)))
    return out


def test_importing_the_gpu_backends_imports_neither_engine() -> None:
    code = ("import sys, seesaw.trainer.megatron_backend, seesaw.rollout.gpu_backend, seesaw.rollout.worker_extension, "
            "seesaw.checkpoint_engine.weights.cuda_ipc; from seesaw.interfaces import backends; "
            "from seesaw.checkpoint_engine.weights import weight_channel; weight_channel('cuda-ipc'); "
            "assert 'megatron' not in sys.modules and 'vllm' not in sys.modules, sorted(m for m in sys.modules if m.startswith(('megatron', 'vllm'))); "
            "print(backends('trainer'), backends('rollout'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'megatron'" in done.stdout and "'vllm-gpu'" in done.stdout


def test_micro_batches_hold_whole_prompts_and_weights_sum_to_one() -> None:
    batches, width = plan_micro_batches(samples(), micro_batch_size=6)
    assert [len(b.group_ids) for b in batches] == [6, 6, 3]
    assert all(b.input_ids.shape[1] == width for b in batches)
    assert sum(b.weight for b in batches) == pytest.approx(1.0)


def test_data_parallel_shares_weigh_to_the_global_mean() -> None:
    shares = [plan_micro_batches(samples(), 6, dp_rank=r, dp_size=2)[0] for r in range(2)]
    # Megatron averages gradients over DP ranks: (1/2) * sum of weights must be 1.
    assert sum(b.weight for s in shares for b in s) / 2 == pytest.approx(1.0)
    prompts = {int(g) for s in shares for b in s for g in b.group_ids}
    assert prompts == set(range(5))


def test_loss_equals_the_cpu_backends_for_the_same_weights_and_batch(tmp_path) -> None:
    """The Megatron path's batching, log-prob gather and weighting reproduce the torch backend's
    loss exactly when both see the same logits (on a GPU, Megatron's logits are the remaining variable)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from seesaw.rl.loss import kimi_policy_loss
    import seesaw.trainer.torch_backend  # noqa: F401

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96, num_hidden_layers=2,
                      vocab_size=64, head_dim=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    spec = job_spec({"model": {"dtype": "float32"}, "trainer": {"microBatchSize": 6, "optimizer": {
        "name": "sgd", "learningRate": 1e-9, "gradClip": 0.0}},
        "rl": {"epochsPerIteration": 1, "miniBatchPrompts": 0, "objective": {"type": "mirror-descent"}}})
    cpu = backend("trainer", "torch")(str(tmp_path), spec, device="cpu")
    batch = samples()
    model = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    batches, _ = plan_micro_batches(batch, 6)
    total = 0.0
    with torch.no_grad():
        for b in batches:
            logits = torch.cat([model(input_ids=b.input_ids).logits, torch.zeros(len(b.input_ids), b.input_ids.shape[1], 64)], -1)
            logits = mask_vocab_padding(logits, 64, 0)  # as if Megatron had padded the vocab to 128
            token_lp = torch.log_softmax(logits, -1).gather(-1, b.targets[..., None])[..., 0]
            lp, mask = response_logprobs(token_lp, b)
            total += float(kimi_policy_loss(lp, b.old_logprobs, mask, b.rewards, b.group_ids, tau=0.1).loss) * b.weight
    assert cpu.train_step(batch, tau=0.1).loss == pytest.approx(total, rel=1e-5, abs=1e-7)


def test_vocab_padding_is_masked_on_the_rank_that_holds_it() -> None:
    logits = torch.zeros(2, 3, 8)
    assert torch.isinf(mask_vocab_padding(logits, 13, tp_rank=1)[..., 5:]).all()
    assert not torch.isinf(mask_vocab_padding(logits, 13, tp_rank=1)[..., :5]).any()
    assert not torch.isinf(mask_vocab_padding(logits, 13, tp_rank=0)).any()
    assert mask_vocab_padding(logits, 16, tp_rank=1) is logits


def test_offload_frees_storage_and_onload_restores_views_in_place() -> None:
    flat = torch.arange(1000, dtype=torch.float32)
    view_a, view_b = flat[:10].view(2, 5), flat[500:]
    grads = torch.ones(300)
    off = StateOffloader(pin=False)
    off.add("params", [view_a, view_b, flat])  # one storage, registered once
    off.add("grads", [grads], keep_content=False)
    off.add("optimizer", [flat])  # already registered under params: skipped
    out = off.offload()
    assert out["params"].bytes == 4000 and out["grads"].bytes == 1200 and out["optimizer"].bytes == 0
    assert flat.untyped_storage().nbytes() == 0 and grads.untyped_storage().nbytes() == 0
    back = off.onload()
    assert back["params"].bytes == 4000
    assert torch.equal(view_a, torch.arange(10, dtype=torch.float32).view(2, 5)) and view_b[0] == 500
    assert torch.equal(grads, torch.zeros(300))
    assert off.onload()["params"].bytes == 0  # already on the device: nothing moved
    off.add("optimizer", [view_b, grads])  # memory moved on onload; the storages are still known
    assert off.offload()["optimizer"].bytes == 0 and off.onload()["params"].bytes == 4000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned host <-> GPU offload needs a GPU")
def test_offload_returns_gpu_memory() -> None:
    x = torch.randn(64 * 2**20 // 4, device="cuda")
    expected = x.clone()
    off = StateOffloader()
    off.add("params", [x])
    before = torch.cuda.memory_allocated()
    off.offload()
    assert torch.cuda.memory_allocated() <= before - x.numel() * 4
    off.onload()
    assert torch.equal(x, expected)


def test_partial_rollout_segments_from_older_policies_are_masked():
    from seesaw.interfaces import Sample
    from seesaw.trainer.megatron_backend import plan_micro_batches, response_logprobs

    samples = [Sample(0, [1, 2], [5, 6, 7], [-0.1, -0.2, -0.3], reward=1.0, train_from=2),
               Sample(0, [1, 2], [5, 6], [-0.1, -0.2], reward=0.0)]
    (batch,), width = plan_micro_batches(samples, micro_batch_size=8)
    _, mask = response_logprobs(torch.zeros(2, width), batch)
    assert mask.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_an_iteration_that_finished_no_group_plans_no_micro_batch() -> None:
    # partial rollouts: no group of k finished this iteration (the torch backend trains nothing too)
    assert plan_micro_batches([], micro_batch_size=8) == ([], 0)


def test_offload_of_some_groups_keeps_the_others_on_the_device() -> None:
    params, state = torch.arange(10.0), torch.ones(20)
    off = StateOffloader(pin=False)
    off.add("params", [params])
    off.add("optimizer", [state])
    assert off.offload(["optimizer"])["optimizer"].bytes == 80
    assert params.untyped_storage().nbytes() == 40 and state.untyped_storage().nbytes() == 0
    assert off.offload()["params"].bytes == 40 and off.offload()["optimizer"].bytes == 0  # already off: moves nothing
    back = off.onload()
    assert back["params"].bytes == 40 and back["optimizer"].bytes == 80
    assert torch.equal(params, torch.arange(10.0)) and torch.equal(state, torch.ones(20))
    with pytest.raises(ValueError, match="unknown"):
        off.offload(["moments"])

"""The shared training loop across data-parallel ranks (gloo on the CPU): two ranks, each given
the whole batch and training on its share, end with the same parameters as one rank trained
on all of it."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
from transformers import LlamaConfig, LlamaForCausalLM

from data_parallel_ranks import samples, spec, train_rank
from seesaw.rl.training import data_parallel_shares, split_sizes, steps_per_epoch

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dp-model")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                 intermediate_size=64, num_hidden_layers=1, vocab_size=64, pad_token_id=0,
                                 tie_word_embeddings=False)).save_pretrained(directory)
    return directory


def run_ranks(model_dir, corrupt=False, mini_batch_prompts=2):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=train_rank, args=(r, 2, port, str(model_dir), queue, corrupt, mini_batch_prompts)) for r in range(2)]
    for p in procs:
        p.start()
    results = {r: (None if flat is None else torch.from_numpy(flat), extra)
               for r, flat, extra in (queue.get(timeout=180) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
    return results


def test_two_ranks_with_mini_batches_stay_identical_and_step_together(model_dir):
    from seesaw.trainer.torch_backend import TorchTrainer

    (flat0, extra0), (flat1, extra1) = (run_ranks(model_dir)[r] for r in (0, 1))
    assert torch.equal(flat0, flat1), "replicas must be bit-identical"
    assert extra0["params_checksum"] == extra1["params_checksum"]
    assert extra0["optimizer_steps"] == extra1["optimizer_steps"] == 6  # 5 prompts, 2 a step: 3 steps x 2 epochs
    assert not torch.allclose(flat0, TorchTrainer(model_dir, spec()).flat, atol=1e-4), "training moved nothing"


def test_two_ranks_make_the_update_of_one_rank_on_the_whole_batch(model_dir):
    from seesaw.trainer.torch_backend import TorchTrainer

    single = TorchTrainer(model_dir, spec(mini_batch_prompts=0))  # 0: one step on every prompt of the iteration
    alone = single.train_step(samples(), tau=0.1)
    assert alone.extra["optimizer_steps"] == 2
    ranks = run_ranks(model_dir, mini_batch_prompts=0)
    flat0, extra0 = ranks[0]
    # the same gradient, summed over ranks instead of in one pass: equal up to float rounding
    assert torch.allclose(flat0, single.flat, atol=1e-5), float((flat0 - single.flat).abs().max())
    # each rank reports the whole batch's statistics, as the single rank does
    for _, extra in ranks.values():
        assert extra["tokens"] == alone.tokens
        assert extra["loss"] == pytest.approx(alone.loss, rel=1e-4, abs=1e-6)


def test_a_replica_that_drifted_stops_the_step_naming_its_rank(model_dir):
    results = run_ranks(model_dir, corrupt=True)
    for rank in (0, 1):
        flat, message = results[rank]
        assert flat is None and "rank(s) [1] hold other parameters than rank 0" in message


def test_uneven_shares_take_the_same_number_of_steps():
    assert steps_per_epoch(5, 2) == 3 and split_sizes(3, 3) == [1, 1, 1] and split_sizes(2, 3) == [1, 1, 0]
    assert steps_per_epoch(0, 2) == 1 and steps_per_epoch(7, 0) == 1  # 0: the whole iteration in one step
    shares = data_parallel_shares(samples(), 2)
    assert [sorted({s.prompt_index for s in share}) for share in shares] == [[0, 2, 4], [1, 3]]

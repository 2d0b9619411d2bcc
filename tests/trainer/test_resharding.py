"""Megatron layout <-> HF names <-> vLLM TP shards: exact round trips and named errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from seesaw.trainer.resharding import (
    ModelLayout,
    Parallelism,
    ReshardError,
    hf_shapes,
    hf_to_megatron,
    hf_to_vllm_shards,
    megatron_stage_to_hf,
    megatron_to_hf,
    megatron_to_vllm_shards,
    model_rules,
    vllm_shards_to_hf,
)

# 8 key/value heads so that every TP in {1, 2, 4, 8} divides them (Megatron requires it).
GQA = ModelLayout(num_layers=4, hidden_size=64, num_attention_heads=16, num_key_value_heads=8, head_dim=8,
                  ffn_hidden_size=96, vocab_size=250)
MHA = dataclasses.replace(GQA, num_attention_heads=8, head_dim=8)
QWEN2 = dataclasses.replace(GQA, qkv_bias=True, tie_word_embeddings=True)


def random_hf(layout: ModelLayout, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen).to(torch.bfloat16) for name, shape in hf_shapes(layout).items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b) or sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("layout", [GQA, MHA, QWEN2], ids=["gqa", "mha", "qwen2-bias-tied"])
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
@pytest.mark.parametrize("pp", [1, 2])
def test_megatron_round_trip_is_exact(layout: ModelLayout, tp: int, pp: int) -> None:
    hf = random_hf(layout)
    par = Parallelism(tp=tp, pp=pp)
    state = hf_to_megatron(hf, layout, par)
    assert len(state) == tp * pp
    assert_same(megatron_to_hf(state, layout, par), hf)


@pytest.mark.parametrize("layout", [GQA, MHA], ids=["gqa", "mha"])
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_vllm_round_trip_is_exact(layout: ModelLayout, tp: int) -> None:
    hf = random_hf(layout)
    assert_same(vllm_shards_to_hf(hf_to_vllm_shards(hf, layout, tp), layout), hf)


def test_vllm_replicates_kv_heads_when_tp_exceeds_them() -> None:
    layout = dataclasses.replace(GQA, num_key_value_heads=2)
    hf = random_hf(layout)
    shards = hf_to_vllm_shards(hf, layout, 8)
    hd, q_rows = layout.head_dim, 16 // 8 * layout.head_dim
    k = hf["model.layers.0.self_attn.k_proj.weight"]
    for rank, shard in enumerate(shards):
        qkv = shard["model.layers.0.self_attn.qkv_proj.weight"]
        assert qkv.shape[0] == q_rows + 2 * hd
        head = rank * 2 // 8
        assert torch.equal(qkv[q_rows:q_rows + hd], k[head * hd:(head + 1) * hd])
    assert_same(vllm_shards_to_hf(shards, layout), hf)


def test_megatron_qkv_is_grouped_by_kv_head() -> None:
    """Megatron's fused QKV: for each K/V head, its query heads, then K, then V."""
    layout = dataclasses.replace(GQA, num_layers=1)
    hf = random_hf(layout)
    qkv = hf_to_megatron(hf, layout, Parallelism(tp=1))[(0, 0, 0)]["decoder.layers.0.self_attention.linear_qkv.weight"]
    hd, qpg = layout.head_dim, layout.queries_per_group
    group1 = qkv[(qpg + 2) * hd: 2 * (qpg + 2) * hd]
    q = hf["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(group1[: qpg * hd], q[qpg * hd: 2 * qpg * hd])
    assert torch.equal(group1[qpg * hd: (qpg + 1) * hd], hf["model.layers.0.self_attn.k_proj.weight"][hd: 2 * hd])
    assert torch.equal(group1[(qpg + 1) * hd:], hf["model.layers.0.self_attn.v_proj.weight"][hd: 2 * hd])


def test_fc1_shard_is_gate_shard_then_up_shard() -> None:
    layout = dataclasses.replace(GQA, num_layers=1)
    hf = random_hf(layout)
    fc1 = hf_to_megatron(hf, layout, Parallelism(tp=2))[(0, 1, 0)]["decoder.layers.0.mlp.linear_fc1.weight"]
    gate, up = hf["model.layers.0.mlp.gate_proj.weight"], hf["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(fc1, torch.cat([gate[48:], up[48:]]))


def test_vocab_is_padded_for_megatron_and_trimmed_back() -> None:
    par = Parallelism(tp=4)
    state = hf_to_megatron(random_hf(GQA), GQA, par)
    assert state[(0, 0, 0)]["embedding.word_embeddings.weight"].shape == (512 // 4, 64)
    assert par.padded_vocab_size(250) == 512


def test_pipeline_stages_number_layers_from_zero() -> None:
    state = hf_to_megatron(random_hf(GQA), GQA, Parallelism(pp=2))
    stage1 = state[(1, 0, 0)]
    assert "decoder.layers.0.self_attention.linear_qkv.weight" in stage1
    assert "decoder.layers.2.self_attention.linear_qkv.weight" not in stage1
    assert "embedding.word_embeddings.weight" in state[(0, 0, 0)] and "output_layer.weight" in stage1
    assert "output_layer.weight" not in state[(0, 0, 0)]


def test_tied_embedding_has_a_copy_on_the_last_stage() -> None:
    state = hf_to_megatron(random_hf(QWEN2), QWEN2, Parallelism(pp=2))
    assert torch.equal(state[(1, 0, 0)]["output_layer.weight"], state[(0, 0, 0)]["embedding.word_embeddings.weight"])
    assert "lm_head.weight" not in megatron_to_hf(state, QWEN2, Parallelism(pp=2))


MOE = ModelLayout(num_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  ffn_hidden_size=64, vocab_size=100, qkv_bias=True, num_experts=4, moe_ffn_hidden_size=16,
                  shared_expert_ffn_hidden_size=32, shared_expert_gate=True)


@pytest.mark.parametrize("par", [Parallelism(tp=2, ep=2), Parallelism(tp=2, ep=4, expert_tp=1), Parallelism(pp=2, ep=2),
                                 Parallelism(tp=2, pp=2, ep=2)], ids=["tp2-ep2", "tp2-ep4-etp1", "pp2-ep2", "tp2-pp2-ep2"])
@pytest.mark.parametrize("style", ["sequential", "grouped"])
def test_moe_experts_round_trip(par: Parallelism, style: str) -> None:
    layout = dataclasses.replace(MOE, expert_style=style)
    hf = random_hf(layout)
    state = hf_to_megatron(hf, layout, par)
    assert_same(megatron_to_hf(state, layout, par), hf)
    # Expert 3 lives on the last EP rank as its local expert (3 mod experts-per-rank).
    local = 3 % (4 // par.ep)
    key = (f"decoder.layers.0.mlp.experts.local_experts.{local}.linear_fc1.weight" if style == "sequential"
           else f"decoder.layers.0.mlp.experts.linear_fc1.weight{local}")
    assert key in state[(0, 0, par.ep - 1)]


@pytest.mark.parametrize("tp", [1, 2])
def test_moe_vllm_round_trip(tp: int) -> None:
    hf = random_hf(MOE)
    shards = hf_to_vllm_shards(hf, MOE, tp)
    assert shards[0]["model.layers.0.mlp.experts.w13_weight"].shape == (4, 2 * 16 // tp, 32)
    assert_same(vllm_shards_to_hf(shards, MOE), hf)


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_megatron_to_vllm_equals_direct_cut(tp: int) -> None:
    hf = random_hf(GQA)
    par = Parallelism(tp=2, pp=2)
    via = megatron_to_vllm_shards(hf_to_megatron(hf, GQA, par), GQA, par, tp)
    direct = hf_to_vllm_shards(hf, GQA, tp)
    for a, b in zip(via, direct):
        assert_same(a, b)


def test_stage_streaming_yields_each_stage_layers_under_global_names() -> None:
    hf = random_hf(GQA)
    par = Parallelism(tp=2, pp=2)
    state = hf_to_megatron(hf, GQA, par)
    streamed = {}
    for pp in range(2):
        params = [(name, [state[(pp, t, 0)][name] for t in range(2)]) for name in state[(pp, 0, 0)]]
        streamed.update(megatron_stage_to_hf(params, GQA, par, pp))
    assert "model.layers.3.mlp.down_proj.weight" in streamed
    assert_same(streamed, hf)


def test_wrong_hf_shape_names_the_parameter() -> None:
    hf = random_hf(GQA)
    hf["model.layers.2.self_attn.k_proj.weight"] = torch.zeros(7, 64)
    with pytest.raises(ReshardError, match=r"model\.layers\.2\.self_attn\.k_proj\.weight: expected shape \[64, 64\], got \[7, 64\]"):
        hf_to_megatron(hf, GQA, Parallelism(tp=2))
    with pytest.raises(ReshardError, match=r"model\.layers\.2\.self_attn\.k_proj\.weight"):
        hf_to_vllm_shards(hf, GQA, 2)


def test_wrong_megatron_shard_shape_names_the_parameter_and_rank() -> None:
    par = Parallelism(tp=2, pp=2)
    state = hf_to_megatron(random_hf(GQA), GQA, par)
    state[(1, 1, 0)]["decoder.layers.1.mlp.linear_fc2.weight"] = torch.zeros(64, 47)
    with pytest.raises(ReshardError, match=r"decoder\.layers\.3\.mlp\.linear_fc2\.weight on rank \(pp=1, tp=1, ep=0\): expected shape \[64, 48\]"):
        megatron_to_hf(state, GQA, par)


def test_missing_and_unknown_parameters_are_named() -> None:
    hf = random_hf(GQA)
    del hf["model.norm.weight"]
    with pytest.raises(ReshardError, match=r"model\.norm\.weight: missing"):
        hf_to_megatron(hf, GQA, Parallelism())
    hf = random_hf(GQA)
    hf["model.layers.0.mlp.bogus.weight"] = torch.zeros(1)
    with pytest.raises(ReshardError, match=r"model\.layers\.0\.mlp\.bogus\.weight: not a parameter"):
        hf_to_megatron(hf, GQA, Parallelism())


def test_indivisible_parallel_sizes_are_refused() -> None:
    with pytest.raises(ReshardError, match="tensor parallel size 8 must divide num_key_value_heads \\(2\\)"):
        hf_to_megatron({}, dataclasses.replace(GQA, num_key_value_heads=2), Parallelism(tp=8))
    with pytest.raises(ReshardError, match="pipeline parallel size 3"):
        hf_to_megatron({}, GQA, Parallelism(pp=3))


def test_layout_from_hf_configs() -> None:
    from transformers import LlamaConfig, Qwen2Config

    llama = ModelLayout.from_hf_config(LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                                   intermediate_size=128, num_hidden_layers=2, vocab_size=256))
    assert (llama.head_dim, llama.num_key_value_heads, llama.qkv_bias) == (16, 2, False)
    qwen = ModelLayout.from_hf_config(Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                                  intermediate_size=128, num_hidden_layers=2, vocab_size=256,
                                                  tie_word_embeddings=True))
    assert qwen.qkv_bias and qwen.tie_word_embeddings
    assert {r.hf[0] for r in model_rules(qwen)} >= {"model.layers.1.self_attn.q_proj.bias"}

"""HF config -> Megatron TransformerConfig, and the converted weights inside Megatron's real modules."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, Qwen2Config, Qwen2MoeConfig

from seesaw.trainer.hf_to_megatron import UnsupportedModel, gpt_model_kwargs, transformer_config_kwargs
from seesaw.trainer.resharding import Parallelism


def test_llama_maps_to_a_swiglu_rmsnorm_gqa_config() -> None:
    cfg = LlamaConfig(hidden_size=256, num_attention_heads=8, num_key_value_heads=2, intermediate_size=512,
                      num_hidden_layers=4, vocab_size=1000, rms_norm_eps=1e-5, rope_theta=500000.0)
    kw = transformer_config_kwargs(cfg, Parallelism(tp=2, pp=2))
    assert (kw["num_query_groups"], kw["kv_channels"], kw["ffn_hidden_size"]) == (2, 32, 512)
    assert kw["gated_linear_unit"] and kw["normalization"] == "RMSNorm" and kw["layernorm_epsilon"] == 1e-5
    assert not kw["add_qkv_bias"] and not kw["add_bias_linear"]
    assert (kw["tensor_model_parallel_size"], kw["pipeline_model_parallel_size"]) == (2, 2)
    assert kw["hidden_dropout"] == kw["attention_dropout"] == 0.0
    model = gpt_model_kwargs(cfg, Parallelism(tp=2))
    assert model["vocab_size"] == 1024 and model["rotary_base"] == 500000
    assert model["share_embeddings_and_output_weights"] is False


def test_qwen2_gets_qkv_bias_and_tied_embeddings() -> None:
    cfg = Qwen2Config(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256,
                      num_hidden_layers=2, vocab_size=500, tie_word_embeddings=True)
    assert transformer_config_kwargs(cfg, Parallelism())["add_qkv_bias"]
    assert gpt_model_kwargs(cfg, Parallelism())["share_embeddings_and_output_weights"]


def test_qwen2_moe_maps_experts_and_shared_expert() -> None:
    cfg = Qwen2MoeConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256,
                         moe_intermediate_size=64, shared_expert_intermediate_size=128, num_experts=8,
                         num_experts_per_tok=2, num_hidden_layers=2, vocab_size=500)
    kw = transformer_config_kwargs(cfg, Parallelism(ep=4))
    assert (kw["num_moe_experts"], kw["moe_ffn_hidden_size"], kw["moe_router_topk"]) == (8, 64, 2)
    assert kw["moe_shared_expert_intermediate_size"] == 128 and kw["moe_shared_expert_gate"]
    assert kw["expert_model_parallel_size"] == 4 and kw["moe_aux_loss_coeff"] == 0.0


def test_unsupported_models_are_named() -> None:
    with pytest.raises(UnsupportedModel, match="model_type 'gpt2'"):
        transformer_config_kwargs({"model_type": "gpt2"}, Parallelism())
    with pytest.raises(UnsupportedModel, match="hidden_act 'gelu'"):
        transformer_config_kwargs(LlamaConfig(hidden_act="gelu"), Parallelism())


def test_transformer_config_accepts_the_kwargs() -> None:
    from megatron.core.transformer import TransformerConfig

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
                      num_hidden_layers=2, vocab_size=200)
    config = TransformerConfig(**transformer_config_kwargs(cfg, Parallelism(), torch.float32))
    assert config.num_query_groups == 2


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_converted_weights_compute_the_same_in_megatron_modules(model_type: str) -> None:
    """Real GPTModel (local spec) on the CPU: names, shapes, and Q/K/V, MLP, norm, embedding outputs."""
    script = Path(__file__).with_name("megatron_cpu_check.py")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    port = str(random.randint(20000, 40000))
    done = subprocess.run([sys.executable, str(script), model_type, port], capture_output=True, text=True,
                          timeout=240, env=env, cwd=script.parent)
    assert "MEGATRON_CPU_CHECK_OK" in done.stdout, done.stdout[-3000:] + done.stderr[-5000:]

"""Build a Megatron-core GPTModel that computes what a Hugging Face Llama/Qwen2/Qwen3(-MoE) computes.

`transformer_config_kwargs` and `gpt_model_kwargs` are pure (config in, keyword arguments
out) and tested on the CPU; `build_gpt_model` and `load_hf_weights` call Megatron and need
its parallel state to be initialised.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from seesaw.trainer.resharding import (
    ModelLayout,
    Parallelism,
    ReshardError,
    hf_to_shards,
    model_rules,
    _local_name,
    _placement,
)

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral")


class UnsupportedModel(ValueError):
    pass


def _get(config: Any, key: str, default: Any = None) -> Any:
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def transformer_config_kwargs(hf_config: Any, par: Parallelism, dtype: torch.dtype = torch.bfloat16,
                              sequence_parallel: bool = False) -> dict[str, Any]:
    """Keyword arguments of megatron.core.transformer.TransformerConfig for this HF config."""
    model_type = _get(hf_config, "model_type", "llama")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModel(f"model_type {model_type!r}: expected one of {list(SUPPORTED_MODEL_TYPES)}")
    act = _get(hf_config, "hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModel(f"hidden_act {act!r}: only SwiGLU (silu) MLPs are mapped")
    rope_scaling = _get(hf_config, "rope_scaling") or {}
    if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) not in (None, "default"):
        raise UnsupportedModel(f"rope_scaling {rope_scaling}: only plain RoPE is mapped")
    layout = ModelLayout.from_hf_config(hf_config)
    kwargs: dict[str, Any] = dict(
        num_layers=layout.num_layers,
        hidden_size=layout.hidden_size,
        num_attention_heads=layout.num_attention_heads,
        num_query_groups=layout.num_key_value_heads,
        kv_channels=layout.head_dim,
        ffn_hidden_size=layout.ffn_hidden_size,
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        normalization="RMSNorm",
        layernorm_epsilon=float(_get(hf_config, "rms_norm_eps", 1e-6)),
        add_bias_linear=False,
        add_qkv_bias=layout.qkv_bias,
        qk_layernorm=layout.qk_layernorm,
        # RL needs the policy that sampled to be the policy that is scored: no dropout.
        attention_dropout=0.0,
        hidden_dropout=0.0,
        tensor_model_parallel_size=par.tp,
        pipeline_model_parallel_size=par.pp,
        expert_model_parallel_size=par.ep,
        expert_tensor_parallel_size=par.etp,
        sequence_parallel=sequence_parallel and par.tp > 1,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        pipeline_dtype=dtype,
        apply_rope_fusion=False,
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
    )
    if layout.num_experts:
        kwargs.update(
            num_moe_experts=layout.num_experts,
            moe_ffn_hidden_size=layout.moe_ffn_hidden_size,
            moe_router_topk=int(_get(hf_config, "num_experts_per_tok", 2)),
            # Qwen-MoE: softmax over all experts, then top-k; renormalise only where the config says so.
            moe_router_score_function="softmax",
            moe_router_pre_softmax=not bool(_get(hf_config, "norm_topk_prob", False)),
            moe_router_load_balancing_type="none",  # the RL loss is the whole objective
            moe_aux_loss_coeff=0.0,
            moe_token_dispatcher_type="alltoall",
            moe_grouped_gemm=False,
            moe_router_dtype="fp32",
        )
        if layout.shared_expert_ffn_hidden_size:
            kwargs.update(moe_shared_expert_intermediate_size=layout.shared_expert_ffn_hidden_size,
                          moe_shared_expert_gate=layout.shared_expert_gate)
    return kwargs


def padded_vocab_size(hf_config: Any, par: Parallelism) -> int:
    return par.padded_vocab_size(_get(hf_config, "vocab_size"))


def gpt_model_kwargs(hf_config: Any, par: Parallelism) -> dict[str, Any]:
    """Keyword arguments of megatron.core.models.gpt.GPTModel (besides config and layer spec)."""
    return dict(
        vocab_size=padded_vocab_size(hf_config, par),
        max_sequence_length=int(_get(hf_config, "max_position_embeddings", 4096)),
        position_embedding_type="rope",
        rotary_base=int(_rope_theta(hf_config)),
        rotary_percent=1.0,
        share_embeddings_and_output_weights=bool(_get(hf_config, "tie_word_embeddings", False)),
    )


def _rope_theta(hf_config: Any) -> float:
    theta = _get(hf_config, "rope_theta")
    if theta is None:  # transformers 5 keeps it under rope_parameters
        theta = (_get(hf_config, "rope_parameters") or {}).get("rope_theta", 10000.0)
    return float(theta)


def layer_spec(hf_config: Any):
    """Megatron's own (local) layer spec: runs without Transformer Engine or Apex."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    layout = ModelLayout.from_hf_config(hf_config)
    return get_gpt_layer_local_spec(num_experts=layout.num_experts or None, moe_grouped_gemm=False,
                                    qk_layernorm=layout.qk_layernorm, normalization="RMSNorm")


def _router_without_transformer_engine() -> None:
    # megatron-core 0.16.1's MoE router tests `te_general_gemm is not None`, but leaves the name
    # undefined when Transformer Engine is not installed (NameError at the first forward)
    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


def build_gpt_model(hf_config: Any, par: Parallelism, dtype: torch.dtype = torch.bfloat16, *, pre_process: bool = True,
                    post_process: bool = True, use_cpu_initialization: bool = False):
    """GPTModel for this rank's pipeline stage (parallel state must be initialised)."""
    from megatron.core.models.gpt import GPTModel
    from megatron.core.transformer import TransformerConfig

    config = TransformerConfig(**transformer_config_kwargs(hf_config, par, dtype),
                               use_cpu_initialization=use_cpu_initialization)
    _router_without_transformer_engine()
    return GPTModel(config, layer_spec(hf_config), pre_process=pre_process, post_process=post_process,
                    **gpt_model_kwargs(hf_config, par))


def load_hf_weights(model: torch.nn.Module, hf_tensors: dict[str, torch.Tensor] | "LazyHFTensors", layout: ModelLayout,
                    par: Parallelism, rank: tuple[int, int, int], etp_rank: int | None = None) -> int:
    """Copy this rank's shard of every parameter it owns from full HF tensors; returns bytes copied."""
    pp_rank, tp_rank, ep_rank = rank
    params = dict(model.named_parameters())
    padded = par.padded_vocab_size(layout.vocab_size)
    copied, seen = 0, set()
    for rule in model_rules(layout):
        stages, eps = _placement(rule, layout, par)
        if pp_rank not in stages or ep_rank not in eps:
            continue
        local = _local_name(rule, layout, par)
        if local not in params:
            raise ReshardError(f"{rule.mcore}: the Megatron model on rank {rank} has no parameter {local!r}")
        tp = par.etp if rule.expert is not None else par.tp
        shard_rank = (tp_rank if etp_rank is None else etp_rank) if rule.expert is not None else tp_rank
        shard = hf_to_shards(rule, [hf_tensors[n] for n in rule.hf], layout, tp, padded)[shard_rank % tp]
        target = params[local]
        if tuple(target.shape) != tuple(shard.shape):
            raise ReshardError(f"{local}: Megatron has shape {list(target.shape)}, the HF weights give {list(shard.shape)}")
        with torch.no_grad():
            target.copy_(shard.to(device=target.device, dtype=target.dtype))
        copied += target.numel() * target.element_size()
        seen.add(local)
    if layout.tie_word_embeddings and "output_layer.weight" in params and "output_layer.weight" not in seen:
        emb = hf_to_shards(model_rules(layout)[0], [hf_tensors["model.embed_tokens.weight"]], layout, par.tp, padded)[tp_rank]
        with torch.no_grad():
            params["output_layer.weight"].copy_(emb.to(params["output_layer.weight"]))
        seen.add("output_layer.weight")
    left = sorted(set(params) - seen)
    if left:
        raise ReshardError(f"{left[0]}: no HF weight maps to this Megatron parameter ({len(left)} unmapped)")
    return copied


class LazyHFTensors:
    """HF safetensors weights read one tensor at a time (a rank reads only what it owns)."""

    def __init__(self, model_dir: str | Path) -> None:
        from safetensors import safe_open

        model_dir = Path(model_dir)
        index = model_dir / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
                 else [p.name for p in model_dir.glob("*.safetensors")])
        if not files:
            raise FileNotFoundError(f"{model_dir}: no *.safetensors weights")
        self._handles = [safe_open(str(model_dir / f), framework="pt") for f in files]
        self._where = {key: h for h in self._handles for key in h.keys()}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise ReshardError(f"{name}: missing from the checkpoint's safetensors")
        return self._where[name].get_tensor(name)

    def keys(self) -> Iterable[str]:
        return self._where.keys()

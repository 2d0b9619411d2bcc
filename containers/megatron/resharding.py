"""Megatron-core parameter layout <-> Hugging Face names <-> the rollout engine's TP shards.

Megatron keeps each parameter as per-rank shards: tensor parallel (TP) splits columns or
rows, pipeline parallel (PP) gives each stage a contiguous run of layers numbered from 0,
expert parallel (EP) gives each rank a slice of the experts. On top of that it fuses
tensors Hugging Face keeps apart: Q, K and V become one `linear_qkv` laid out group by
group (for each key/value head: its query heads, then K, then V), gate and up become one
`linear_fc1` whose TP shard is [gate shard; up shard], and the vocabulary is padded so that
it splits evenly. vLLM fuses differently (`qkv_proj` = [Q shard; K shard; V shard],
replicating K/V heads when TP exceeds their count; `gate_up_proj`; experts stacked in
`w13_weight`/`w2_weight`) and pads the vocabulary to a multiple of 64.

Everything here is plain tensor arithmetic, so the GPU path's conversions are tested on
the CPU. Every function checks shapes and raises `ReshardError` naming the parameter.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal

import torch

VLLM_VOCAB_PADDING = 64  # vllm.model_executor.layers.vocab_parallel_embedding.DEFAULT_VOCAB_PADDING_SIZE


class ReshardError(ValueError):
    """A tensor that does not fit the layout; the message names the parameter."""


@dataclass(frozen=True)
class ModelLayout:
    """The shapes that decide how a decoder-only transformer is cut and fused."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    qkv_bias: bool = False  # Qwen2
    qk_layernorm: bool = False  # Qwen3
    tie_word_embeddings: bool = False
    num_experts: int = 0  # 0: dense MLP in every layer
    moe_ffn_hidden_size: int = 0
    shared_expert_ffn_hidden_size: int = 0  # Qwen2-MoE's shared expert
    shared_expert_gate: bool = False
    # Megatron's layer spec decides where the norms live: the local spec has separate
    # `input_layernorm`/`pre_mlp_layernorm`; the Transformer Engine spec fuses them into
    # `linear_qkv.layer_norm_weight` and (dense layers) `linear_fc1.layer_norm_weight`.
    norm_style: Literal["local", "te"] = "local"
    # SequentialMLP names experts `experts.local_experts.{j}.linear_fc1.weight`;
    # TEGroupedMLP names them `experts.linear_fc1.weight{j}`.
    expert_style: Literal["sequential", "grouped"] = "sequential"

    @property
    def queries_per_group(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_hf_config(cls, config: Any, **overrides: Any) -> "ModelLayout":
        """Read a Hugging Face config (object or dict) of the Llama/Qwen2/Qwen3(-MoE) families."""
        get = (lambda k, d=None: config.get(k, d)) if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
        heads = get("num_attention_heads")
        hidden = get("hidden_size")
        model_type = get("model_type", "llama") or "llama"
        num_experts = get("num_experts") or get("num_local_experts") or 0
        shared = get("shared_expert_intermediate_size") or 0
        fields = dict(
            num_layers=get("num_hidden_layers"),
            hidden_size=hidden,
            num_attention_heads=heads,
            num_key_value_heads=get("num_key_value_heads") or heads,
            head_dim=get("head_dim") or hidden // heads,
            ffn_hidden_size=get("intermediate_size"),
            vocab_size=get("vocab_size"),
            qkv_bias=bool(get("attention_bias", False)) or model_type in ("qwen2", "qwen2_moe"),
            qk_layernorm=model_type in ("qwen3", "qwen3_moe"),
            tie_word_embeddings=bool(get("tie_word_embeddings", False)),
            num_experts=num_experts,
            moe_ffn_hidden_size=(get("moe_intermediate_size") or get("intermediate_size")) if num_experts else 0,
            shared_expert_ffn_hidden_size=shared,
            shared_expert_gate=bool(shared),
        )
        fields.update(overrides)
        return cls(**fields)


@dataclass(frozen=True)
class Parallelism:
    """Megatron's model-parallel sizes. Expert TP is Megatron's default (= TP) or 1."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    expert_tp: int | None = None
    make_vocab_size_divisible_by: int = 128  # Megatron's default

    @property
    def etp(self) -> int:
        return self.tp if self.expert_tp is None else self.expert_tp

    def padded_vocab_size(self, vocab_size: int) -> int:
        multiple = self.make_vocab_size_divisible_by * self.tp
        return -(-vocab_size // multiple) * multiple


Rank = tuple[int, int, int]  # (pp_rank, tp_rank, ep_rank)

# How a parameter is cut across TP ranks.
REPLICATED, COLUMN, ROW, QKV, GATED = "replicated", "column", "row", "qkv", "gated"


@dataclass(frozen=True)
class Rule:
    """One Megatron parameter (global layer numbering) and the HF tensors it holds."""

    mcore: str
    hf: tuple[str, ...]
    split: str
    expert: int | None = None  # global expert index, for EP placement
    vocab: bool = False
    layer: int | None = None


def check_layout(layout: ModelLayout, par: Parallelism) -> None:
    """Refuse parallel sizes the layout cannot be cut into, naming what does not divide."""
    if layout.num_attention_heads % layout.num_key_value_heads:
        raise ReshardError(f"num_key_value_heads ({layout.num_key_value_heads}) must divide num_attention_heads ({layout.num_attention_heads})")
    if layout.num_key_value_heads % par.tp:
        raise ReshardError(f"tensor parallel size {par.tp} must divide num_key_value_heads ({layout.num_key_value_heads}) in Megatron's layout")
    if layout.num_layers % par.pp:
        raise ReshardError(f"pipeline parallel size {par.pp} must divide num_layers ({layout.num_layers})")
    if layout.ffn_hidden_size % par.tp:
        raise ReshardError(f"tensor parallel size {par.tp} must divide ffn_hidden_size ({layout.ffn_hidden_size})")
    if par.etp not in (1, par.tp):
        raise ReshardError(f"expert tensor parallel size must be 1 or the TP size ({par.tp}), got {par.etp}")
    if layout.num_experts:
        if layout.num_experts % par.ep:
            raise ReshardError(f"expert parallel size {par.ep} must divide num_experts ({layout.num_experts})")
        if layout.moe_ffn_hidden_size % par.etp:
            raise ReshardError(f"expert TP size {par.etp} must divide moe_ffn_hidden_size ({layout.moe_ffn_hidden_size})")
    elif par.ep != 1:
        raise ReshardError(f"expert parallel size {par.ep} needs a model with experts")


def _expert_rules(layout: ModelLayout, layer: int, m: str, h: str) -> list[Rule]:
    rules = [Rule(f"{m}.mlp.router.weight", (f"{h}.mlp.gate.weight",), REPLICATED, layer=layer)]
    for e in range(layout.num_experts):
        he = f"{h}.mlp.experts.{e}"
        # Global expert index in the name; `_local_name` turns it into the rank-local one.
        if layout.expert_style == "sequential":
            fc1, fc2 = f"{m}.mlp.experts.local_experts.{e}.linear_fc1.weight", f"{m}.mlp.experts.local_experts.{e}.linear_fc2.weight"
        else:
            fc1, fc2 = f"{m}.mlp.experts.linear_fc1.weight{e}", f"{m}.mlp.experts.linear_fc2.weight{e}"
        rules.append(Rule(fc1, (f"{he}.gate_proj.weight", f"{he}.up_proj.weight"), GATED, expert=e, layer=layer))
        rules.append(Rule(fc2, (f"{he}.down_proj.weight",), ROW, expert=e, layer=layer))
    if layout.shared_expert_ffn_hidden_size:
        hs = f"{h}.mlp.shared_expert"
        rules.append(Rule(f"{m}.mlp.shared_experts.linear_fc1.weight", (f"{hs}.gate_proj.weight", f"{hs}.up_proj.weight"), GATED, layer=layer))
        rules.append(Rule(f"{m}.mlp.shared_experts.linear_fc2.weight", (f"{hs}.down_proj.weight",), ROW, layer=layer))
        if layout.shared_expert_gate:
            rules.append(Rule(f"{m}.mlp.shared_experts.gate_weight", (f"{h}.mlp.shared_expert_gate.weight",), REPLICATED, layer=layer))
    return rules


def layer_rules(layout: ModelLayout, layer: int) -> list[Rule]:
    m, h = f"decoder.layers.{layer}", f"model.layers.{layer}"
    te = layout.norm_style == "te"
    rules = [
        Rule(f"{m}.self_attention.linear_qkv.layer_norm_weight" if te else f"{m}.input_layernorm.weight",
             (f"{h}.input_layernorm.weight",), REPLICATED, layer=layer),
        Rule(f"{m}.self_attention.linear_qkv.weight",
             (f"{h}.self_attn.q_proj.weight", f"{h}.self_attn.k_proj.weight", f"{h}.self_attn.v_proj.weight"), QKV, layer=layer),
    ]
    if layout.qkv_bias:
        rules.append(Rule(f"{m}.self_attention.linear_qkv.bias",
                          (f"{h}.self_attn.q_proj.bias", f"{h}.self_attn.k_proj.bias", f"{h}.self_attn.v_proj.bias"), QKV, layer=layer))
    if layout.qk_layernorm:
        rules.append(Rule(f"{m}.self_attention.q_layernorm.weight", (f"{h}.self_attn.q_norm.weight",), REPLICATED, layer=layer))
        rules.append(Rule(f"{m}.self_attention.k_layernorm.weight", (f"{h}.self_attn.k_norm.weight",), REPLICATED, layer=layer))
    rules.append(Rule(f"{m}.self_attention.linear_proj.weight", (f"{h}.self_attn.o_proj.weight",), ROW, layer=layer))
    if layout.num_experts:
        rules.append(Rule(f"{m}.pre_mlp_layernorm.weight", (f"{h}.post_attention_layernorm.weight",), REPLICATED, layer=layer))
        rules.extend(_expert_rules(layout, layer, m, h))
    else:
        rules.append(Rule(f"{m}.mlp.linear_fc1.layer_norm_weight" if te else f"{m}.pre_mlp_layernorm.weight",
                          (f"{h}.post_attention_layernorm.weight",), REPLICATED, layer=layer))
        rules.append(Rule(f"{m}.mlp.linear_fc1.weight", (f"{h}.mlp.gate_proj.weight", f"{h}.mlp.up_proj.weight"), GATED, layer=layer))
        rules.append(Rule(f"{m}.mlp.linear_fc2.weight", (f"{h}.mlp.down_proj.weight",), ROW, layer=layer))
    return rules


def model_rules(layout: ModelLayout) -> list[Rule]:
    """Every parameter of the model, in Hugging Face order (embedding, layers, norm, head)."""
    rules = [Rule("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), COLUMN, vocab=True)]
    for layer in range(layout.num_layers):
        rules.extend(layer_rules(layout, layer))
    rules.append(Rule("decoder.final_layernorm.weight", ("model.norm.weight",), REPLICATED))
    if not layout.tie_word_embeddings:
        rules.append(Rule("output_layer.weight", ("lm_head.weight",), COLUMN, vocab=True))
    return rules


@functools.lru_cache(maxsize=64)
def hf_shapes(layout: ModelLayout) -> dict[str, tuple[int, ...]]:
    """The full Hugging Face tensor shapes the layout implies, in Hugging Face order."""
    H, hd = layout.hidden_size, layout.head_dim
    q, kv = layout.num_attention_heads * hd, layout.num_key_value_heads * hd
    by_suffix = {
        "layernorm.weight": (H,), "q_norm.weight": (hd,), "k_norm.weight": (hd,),
        "q_proj.weight": (q, H), "k_proj.weight": (kv, H), "v_proj.weight": (kv, H),
        "q_proj.bias": (q,), "k_proj.bias": (kv,), "v_proj.bias": (kv,), "o_proj.weight": (H, q),
        "mlp.gate.weight": (layout.num_experts, H), "shared_expert_gate.weight": (1, H),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for rule in model_rules(layout):
        for name in rule.hf:
            if rule.layer is None:
                shapes[name] = (H,) if name == "model.norm.weight" else (layout.vocab_size, H)
                continue
            shape = next((v for k, v in by_suffix.items() if name.endswith(k)), None)
            if shape is None:  # an MLP projection: its width depends on which MLP
                width = (layout.moe_ffn_hidden_size if ".experts." in name
                         else layout.shared_expert_ffn_hidden_size if ".shared_expert." in name
                         else layout.ffn_hidden_size)
                shape = (H, width) if name.endswith("down_proj.weight") else (width, H)
            shapes[name] = shape
    return shapes


def _check(name: str, tensor: torch.Tensor, expected: tuple[int, ...], where: str = "") -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ReshardError(f"{name}{where}: expected shape {list(expected)}, got {list(tensor.shape)}")


# ---------------------------------------------------------------- one parameter at a time

def shards_to_hf(rule: Rule, shards: list[torch.Tensor], layout: ModelLayout, vocab_size: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """Merge one Megatron parameter's TP shards (in TP rank order) into its HF tensors."""
    if rule.split == REPLICATED:
        return [(rule.hf[0], shards[0])]
    if rule.split == ROW:
        return [(rule.hf[0], torch.cat(shards, dim=1))]
    if rule.split == COLUMN:
        full = torch.cat(shards, dim=0)
        if rule.vocab:
            full = full[: vocab_size or layout.vocab_size]
        return [(rule.hf[0], full)]
    if rule.split == GATED:
        halves = [s.chunk(2, dim=0) for s in shards]
        return [(rule.hf[0], torch.cat([g for g, _ in halves])), (rule.hf[1], torch.cat([u for _, u in halves]))]
    if rule.split == QKV:
        qpg, hd = layout.queries_per_group, layout.head_dim
        groups = torch.cat([s.reshape(-1, (qpg + 2) * hd, *s.shape[1:]) for s in shards], dim=0)
        q, k, v = groups.split([qpg * hd, hd, hd], dim=1)
        rest = tuple(groups.shape[2:])
        return [(rule.hf[0], q.reshape(-1, *rest)), (rule.hf[1], k.reshape(-1, *rest)), (rule.hf[2], v.reshape(-1, *rest))]
    raise AssertionError(rule.split)


def hf_to_shards(rule: Rule, hf: list[torch.Tensor], layout: ModelLayout, tp: int, padded_vocab: int | None = None) -> list[torch.Tensor]:
    """Cut one Megatron parameter's HF tensors into its `tp` shards (inverse of shards_to_hf)."""
    if rule.split == REPLICATED:
        return [hf[0]] * tp
    if rule.split == ROW:
        return list(hf[0].chunk(tp, dim=1))
    if rule.split == COLUMN:
        full = hf[0]
        if rule.vocab and padded_vocab and padded_vocab > full.shape[0]:
            pad = full.new_zeros(padded_vocab - full.shape[0], *full.shape[1:])
            full = torch.cat([full, pad])
        return list(full.chunk(tp, dim=0))
    if rule.split == GATED:
        return [torch.cat([g, u]) for g, u in zip(hf[0].chunk(tp), hf[1].chunk(tp))]
    if rule.split == QKV:
        q, k, v = hf
        ng, qpg, hd = layout.num_key_value_heads, layout.queries_per_group, layout.head_dim
        rest = tuple(q.shape[1:])
        fused = torch.cat([q.reshape(ng, qpg * hd, *rest), k.reshape(ng, hd, *rest), v.reshape(ng, hd, *rest)], dim=1)
        return [g.reshape(-1, *rest) for g in fused.chunk(tp, dim=0)]
    raise AssertionError(rule.split)


def shard_shape(rule: Rule, layout: ModelLayout, par: Parallelism) -> tuple[int, ...]:
    """The local shape of one Megatron parameter on one rank."""
    full = [hf_shapes(layout)[n] for n in rule.hf]
    tp = par.etp if rule.expert is not None else par.tp
    first = full[0]
    if rule.split == REPLICATED:
        return first
    if rule.split == ROW:
        return (first[0], first[1] // tp)
    if rule.split == COLUMN:
        rows = par.padded_vocab_size(layout.vocab_size) if rule.vocab else first[0]
        return (rows // tp, *first[1:])
    if rule.split == GATED:
        return (2 * first[0] // tp, first[1])
    rows = sum(s[0] for s in full) // tp
    return (rows, *first[1:])


# ---------------------------------------------------------------- whole models

def _stage_of(layer: int, layout: ModelLayout, par: Parallelism) -> tuple[int, int]:
    per_stage = layout.num_layers // par.pp
    return layer // per_stage, layer % per_stage


def _local_name(rule: Rule, layout: ModelLayout, par: Parallelism) -> str:
    """The rule's Megatron name as the owning rank's state dict spells it (local numbering)."""
    name = rule.mcore
    if rule.layer is not None:
        _, local = _stage_of(rule.layer, layout, par)
        name = name.replace(f"decoder.layers.{rule.layer}.", f"decoder.layers.{local}.", 1)
    if rule.expert is not None:
        local_e = rule.expert % (layout.num_experts // par.ep)
        if layout.expert_style == "sequential":
            name = name.replace(f".local_experts.{rule.expert}.", f".local_experts.{local_e}.")
        else:
            name = re.sub(rf"weight{rule.expert}$", f"weight{local_e}", name)
    return name


def _placement(rule: Rule, layout: ModelLayout, par: Parallelism) -> tuple[list[int], list[int]]:
    """(PP stages, EP ranks) that hold the rule's parameter."""
    if rule.layer is not None:
        stages = [_stage_of(rule.layer, layout, par)[0]]
    elif rule.mcore.startswith("embedding."):
        stages = [0]
    else:
        stages = [par.pp - 1]
    eps = [rule.expert // (layout.num_experts // par.ep)] if rule.expert is not None else list(range(par.ep))
    return stages, eps


def megatron_to_hf(state: dict[Rank, dict[str, torch.Tensor]], layout: ModelLayout, par: Parallelism) -> dict[str, torch.Tensor]:
    """Merge every rank's state dict (keyed by (pp, tp, ep) rank) into full HF tensors."""
    check_layout(layout, par)
    hf: dict[str, torch.Tensor] = {}
    expected = hf_shapes(layout)
    for rule in model_rules(layout):
        stages, eps = _placement(rule, layout, par)
        local = _local_name(rule, layout, par)
        tp = par.etp if rule.expert is not None else par.tp
        shards = []
        for t in range(tp):
            rank = (stages[0], t, eps[0])
            try:
                shard = state[rank][local]
            except KeyError:
                raise ReshardError(f"{rule.mcore}: missing from rank (pp={rank[0]}, tp={rank[1]}, ep={rank[2]}) as {local!r}") from None
            _check(rule.mcore, shard, shard_shape(rule, layout, par), f" on rank (pp={rank[0]}, tp={rank[1]}, ep={rank[2]})")
            shards.append(shard)
        for name, tensor in shards_to_hf(rule, shards, layout):
            _check(name, tensor, expected[name])
            hf[name] = tensor
    return hf


def hf_to_megatron(hf: dict[str, torch.Tensor], layout: ModelLayout, par: Parallelism) -> dict[Rank, dict[str, torch.Tensor]]:
    """Cut full HF tensors into every rank's Megatron state dict (keyed by (pp, tp, ep))."""
    check_layout(layout, par)
    expected = hf_shapes(layout)
    unknown = sorted(set(hf) - set(expected))
    if unknown:
        raise ReshardError(f"{unknown[0]}: not a parameter of this layout ({len(unknown)} unknown names)")
    state: dict[Rank, dict[str, torch.Tensor]] = {
        (p, t, e): {} for p in range(par.pp) for t in range(par.tp) for e in range(par.ep)
    }
    padded = par.padded_vocab_size(layout.vocab_size)
    for rule in model_rules(layout):
        tensors = []
        for name in rule.hf:
            if name not in hf:
                raise ReshardError(f"{name}: missing (needed for {rule.mcore})")
            _check(name, hf[name], expected[name])
            tensors.append(hf[name])
        expert_tp = par.etp if rule.expert is not None else par.tp
        shards = hf_to_shards(rule, tensors, layout, expert_tp, padded)
        stages, eps = _placement(rule, layout, par)
        local = _local_name(rule, layout, par)
        for p in stages:
            for e in eps:
                for t in range(par.tp):
                    state[(p, t, e)][local] = shards[t if expert_tp == par.tp else 0]
    if layout.tie_word_embeddings and par.pp > 1:
        # Megatron's last stage keeps its own copy of a tied embedding as output_layer.
        for t in range(par.tp):
            for e in range(par.ep):
                state[(par.pp - 1, t, e)]["output_layer.weight"] = state[(0, t, e)]["embedding.word_embeddings.weight"]
    return state


def megatron_stage_to_hf(
    stage_params: Iterable[tuple[str, list[torch.Tensor]]],
    layout: ModelLayout,
    par: Parallelism,
    pp_rank: int,
    ep_rank: int = 0,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Stream one PP stage's parameters (local name, TP shards already gathered) as HF tensors.

    This is what a running Megatron trainer uses: each stage gathers its TP shards and
    yields its own layers, so no rank ever holds the whole model.
    """
    by_local = {}
    for rule in model_rules(layout):
        stages, eps = _placement(rule, layout, par)
        if pp_rank in stages and ep_rank in eps:
            by_local[_local_name(rule, layout, par)] = rule
    expected = hf_shapes(layout)
    for local, shards in stage_params:
        if local.endswith("_extra_state"):
            continue
        rule = by_local.get(local)
        if rule is None:
            if layout.tie_word_embeddings and local == "output_layer.weight":
                continue  # the tied copy; stage 0 sends the embedding
            raise ReshardError(f"{local}: not a parameter of pipeline stage {pp_rank} (expert rank {ep_rank}) in this layout")
        for name, tensor in shards_to_hf(rule, shards, layout):
            _check(name, tensor, expected[name])
            yield name, tensor


# ---------------------------------------------------------------- the rollout engine (vLLM)

def vllm_padded_vocab(vocab_size: int, tp: int) -> int:
    multiple = VLLM_VOCAB_PADDING
    while multiple % tp:
        multiple += VLLM_VOCAB_PADDING
    return -(-vocab_size // multiple) * multiple


def _kv_head_for_rank(layout: ModelLayout, rank: int, tp: int) -> slice:
    kv = layout.num_key_value_heads
    if tp <= kv:
        per = kv // tp
        return slice(rank * per, (rank + 1) * per)
    head = rank * kv // tp  # vLLM replicates K/V heads when TP exceeds their count
    return slice(head, head + 1)


def hf_to_vllm_shards(hf: dict[str, torch.Tensor], layout: ModelLayout, tp: int) -> list[dict[str, torch.Tensor]]:
    """Cut full HF tensors into the parameters each vLLM TP worker holds (its fused names)."""
    if layout.num_attention_heads % tp:
        raise ReshardError(f"rollout tensor parallel size {tp} must divide num_attention_heads ({layout.num_attention_heads})")
    if tp > layout.num_key_value_heads and tp % layout.num_key_value_heads:
        raise ReshardError(f"rollout tensor parallel size {tp} must be a multiple of num_key_value_heads ({layout.num_key_value_heads})")
    for width, what in ((layout.ffn_hidden_size, "ffn_hidden_size"), (layout.moe_ffn_hidden_size, "moe_ffn_hidden_size"),
                        (layout.shared_expert_ffn_hidden_size, "shared_expert_ffn_hidden_size")):
        if width % tp:
            raise ReshardError(f"rollout tensor parallel size {tp} must divide {what} ({width})")
    expected = hf_shapes(layout)
    for name, shape in expected.items():
        if name not in hf:
            raise ReshardError(f"{name}: missing")
        _check(name, hf[name], shape)
    hd, V = layout.head_dim, vllm_padded_vocab(layout.vocab_size, tp)
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]

    def vocab(name: str) -> None:
        full = hf[name]
        full = torch.cat([full, full.new_zeros(V - full.shape[0], *full.shape[1:])])
        for r, piece in enumerate(full.chunk(tp)):
            shards[r][name] = piece

    vocab("model.embed_tokens.weight")
    for L in range(layout.num_layers):
        p = f"model.layers.{L}"
        a = f"{p}.self_attn"
        for r in range(tp):
            kv = _kv_head_for_rank(layout, r, tp)
            s = shards[r]
            for kind in ("weight", "bias") if layout.qkv_bias else ("weight",):
                q = hf[f"{a}.q_proj.{kind}"].chunk(tp)[r]
                k = hf[f"{a}.k_proj.{kind}"][kv.start * hd: kv.stop * hd]
                v = hf[f"{a}.v_proj.{kind}"][kv.start * hd: kv.stop * hd]
                s[f"{a}.qkv_proj.{kind}"] = torch.cat([q, k, v])
            s[f"{a}.o_proj.weight"] = hf[f"{a}.o_proj.weight"].chunk(tp, dim=1)[r]
            for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
                s[f"{p}.{n}"] = hf[f"{p}.{n}"]
            if layout.qk_layernorm:
                s[f"{a}.q_norm.weight"], s[f"{a}.k_norm.weight"] = hf[f"{a}.q_norm.weight"], hf[f"{a}.k_norm.weight"]
            if layout.num_experts:
                e = f"{p}.mlp.experts"
                s[f"{p}.mlp.gate.weight"] = hf[f"{p}.mlp.gate.weight"]
                s[f"{e}.w13_weight"] = torch.stack([
                    torch.cat([hf[f"{e}.{j}.gate_proj.weight"].chunk(tp)[r], hf[f"{e}.{j}.up_proj.weight"].chunk(tp)[r]])
                    for j in range(layout.num_experts)])
                s[f"{e}.w2_weight"] = torch.stack([hf[f"{e}.{j}.down_proj.weight"].chunk(tp, dim=1)[r] for j in range(layout.num_experts)])
                if layout.shared_expert_ffn_hidden_size:
                    se = f"{p}.mlp.shared_expert"
                    s[f"{se}.gate_up_proj.weight"] = torch.cat([hf[f"{se}.gate_proj.weight"].chunk(tp)[r], hf[f"{se}.up_proj.weight"].chunk(tp)[r]])
                    s[f"{se}.down_proj.weight"] = hf[f"{se}.down_proj.weight"].chunk(tp, dim=1)[r]
                    if layout.shared_expert_gate:
                        s[f"{p}.mlp.shared_expert_gate.weight"] = hf[f"{p}.mlp.shared_expert_gate.weight"]
            else:
                m = f"{p}.mlp"
                s[f"{m}.gate_up_proj.weight"] = torch.cat([hf[f"{m}.gate_proj.weight"].chunk(tp)[r], hf[f"{m}.up_proj.weight"].chunk(tp)[r]])
                s[f"{m}.down_proj.weight"] = hf[f"{m}.down_proj.weight"].chunk(tp, dim=1)[r]
    for r in range(tp):
        shards[r]["model.norm.weight"] = hf["model.norm.weight"]
    if not layout.tie_word_embeddings:
        vocab("lm_head.weight")
    return shards


def vllm_shards_to_hf(shards: list[dict[str, torch.Tensor]], layout: ModelLayout) -> dict[str, torch.Tensor]:
    """Merge vLLM TP workers' parameters back into full HF tensors (inverse of hf_to_vllm_shards)."""
    tp, hd = len(shards), layout.head_dim
    q_rows = layout.num_attention_heads // tp * hd
    hf: dict[str, torch.Tensor] = {}
    V = vllm_padded_vocab(layout.vocab_size, tp)

    def get(r: int, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if name not in shards[r]:
            raise ReshardError(f"{name}: missing from rollout TP rank {r}")
        if shape is not None:
            _check(name, shards[r][name], shape, f" on rollout TP rank {r}")
        return shards[r][name]

    H = layout.hidden_size
    for name in ("model.embed_tokens.weight",) + (() if layout.tie_word_embeddings else ("lm_head.weight",)):
        hf[name] = torch.cat([get(r, name, (V // tp, H)) for r in range(tp)])[: layout.vocab_size]
    hf["model.norm.weight"] = get(0, "model.norm.weight")
    for L in range(layout.num_layers):
        p, a = f"model.layers.{L}", f"model.layers.{L}.self_attn"
        for kind in ("weight", "bias") if layout.qkv_bias else ("weight",):
            qs, ks, vs, seen = [], [], [], set()
            for r in range(tp):
                kv = _kv_head_for_rank(layout, r, tp)
                kv_rows = (kv.stop - kv.start) * hd
                qkv = get(r, f"{a}.qkv_proj.{kind}")
                if qkv.shape[0] != q_rows + 2 * kv_rows:
                    raise ReshardError(f"{a}.qkv_proj.{kind} on rollout TP rank {r}: expected {q_rows + 2 * kv_rows} rows, got {qkv.shape[0]}")
                q, k, v = qkv.split([q_rows, kv_rows, kv_rows])
                qs.append(q)
                if kv.start not in seen:
                    seen.add(kv.start)
                    ks.append(k)
                    vs.append(v)
            hf[f"{a}.q_proj.{kind}"], hf[f"{a}.k_proj.{kind}"], hf[f"{a}.v_proj.{kind}"] = torch.cat(qs), torch.cat(ks), torch.cat(vs)
        hf[f"{a}.o_proj.weight"] = torch.cat([get(r, f"{a}.o_proj.weight") for r in range(tp)], dim=1)
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            hf[f"{p}.{n}"] = get(0, f"{p}.{n}")
        if layout.qk_layernorm:
            hf[f"{a}.q_norm.weight"], hf[f"{a}.k_norm.weight"] = get(0, f"{a}.q_norm.weight"), get(0, f"{a}.k_norm.weight")

        def unfuse(fused: str, gate: str, up: str, down_fused: str, down: str, index: int | None = None) -> None:
            pick = (lambda t: t) if index is None else (lambda t: t[index])
            halves = [pick(get(r, fused)).chunk(2) for r in range(tp)]
            hf[gate] = torch.cat([g for g, _ in halves])
            hf[up] = torch.cat([u for _, u in halves])
            hf[down] = torch.cat([pick(get(r, down_fused)) for r in range(tp)], dim=1)

        if layout.num_experts:
            e = f"{p}.mlp.experts"
            hf[f"{p}.mlp.gate.weight"] = get(0, f"{p}.mlp.gate.weight")
            for j in range(layout.num_experts):
                unfuse(f"{e}.w13_weight", f"{e}.{j}.gate_proj.weight", f"{e}.{j}.up_proj.weight", f"{e}.w2_weight", f"{e}.{j}.down_proj.weight", j)
            if layout.shared_expert_ffn_hidden_size:
                se = f"{p}.mlp.shared_expert"
                unfuse(f"{se}.gate_up_proj.weight", f"{se}.gate_proj.weight", f"{se}.up_proj.weight", f"{se}.down_proj.weight", f"{se}.down_proj.weight")
                if layout.shared_expert_gate:
                    hf[f"{p}.mlp.shared_expert_gate.weight"] = get(0, f"{p}.mlp.shared_expert_gate.weight")
        else:
            m = f"{p}.mlp"
            unfuse(f"{m}.gate_up_proj.weight", f"{m}.gate_proj.weight", f"{m}.up_proj.weight", f"{m}.down_proj.weight", f"{m}.down_proj.weight")
    expected = hf_shapes(layout)
    for name, tensor in hf.items():
        _check(name, tensor, expected[name])
    return hf


def megatron_to_vllm_shards(state: dict[Rank, dict[str, torch.Tensor]], layout: ModelLayout, par: Parallelism,
                            rollout_tp: int) -> list[dict[str, torch.Tensor]]:
    """Megatron ranks -> HF names -> the rollout engine's TP shards, in one call."""
    return hf_to_vllm_shards(megatron_to_hf(state, layout, par), layout, rollout_tp)

"""Parity cases of the Megatron backend on the CPU: tiny HF models, specs through the CRD's
defaulting, and N gloo ranks per case (tests/support/megatron_ranks.py)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

from seesaw import spec_reads
from seesaw.spec import job_spec

ROOT = Path(__file__).resolve().parents[2]
RANK_SCRIPT = Path(__file__).with_name("megatron_ranks.py")
SMALL = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=96,
             num_hidden_layers=2, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             max_position_embeddings=64)


def tiny_model(directory: Path, kind: str = "llama") -> Path:
    """An untied Llama, a Qwen2-style model (q/k/v bias, tied embeddings), or a Qwen3-MoE
    (4 experts, top 2, q/k norms)."""
    if not (directory / "config.json").exists():
        torch.manual_seed(0)
        if kind == "qwen3_moe":
            model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**SMALL, tie_word_embeddings=False, num_experts=4,
                                                       num_experts_per_tok=2, moe_intermediate_size=32,
                                                       decoder_sparse_step=1, norm_topk_prob=True))
        else:
            model = (Qwen2ForCausalLM(Qwen2Config(**SMALL, tie_word_embeddings=True)) if kind == "qwen2"
                     else LlamaForCausalLM(LlamaConfig(**SMALL, tie_word_embeddings=False)))
        if kind == "qwen2":  # random biases: zero ones would hide a q/k/v bias split wrongly
            with torch.no_grad():
                for layer in model.model.layers:
                    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                        proj.bias.normal_(0, 0.5)
        model.save_pretrained(directory)
    return directory


def case_spec(trainer: dict[str, Any], dtype: str = "float32") -> dict[str, Any]:
    """A defaulted spec for a case: micro-batches of 3 prompts (of 2 samples each) over the
    4 probe prompts, so the last micro-batch is smaller; one optimizer step per train_step."""
    return spec_reads.plain(job_spec({
        "model": {"dtype": dtype}, "trainer": {"microBatchSize": 6, **trainer},
        "rollout": {"samplesPerPrompt": 2}, "rl": {"epochsPerIteration": 1, "miniBatchPrompts": 0}}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_case(work: Path, model_dir: Path, backend: str, spec: dict, world: int = 1, steps: int = 2,
             timeout: float = 300, **extra: Any) -> dict:
    """Start `world` ranks of one case and return rank 0's record (log-probs, losses, HF state)."""
    work.mkdir(parents=True, exist_ok=True)
    case = dict(backend=backend, model_dir=str(model_dir), spec=spec, world=world, steps=steps,
                port=free_port(), out=str(work), **extra)
    case_file = work / "case.json"
    case_file.write_text(json.dumps(case))
    procs = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(case_file), str(rank)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(world)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            proc.kill()
    failed = [(rank, proc.returncode, out[-3000:]) for rank, (proc, out) in enumerate(zip(procs, outputs)) if proc.returncode]
    assert not failed, f"{backend} ranks failed: " + "\n".join(f"rank {r} exited {c}:\n{o}" for r, c, o in failed)
    return torch.load(work / "rank0.pt")


def checkpoint_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Transformers keeps an MoE layer's experts fused in memory (experts.gate_up_proj
    [E, 2I, H], experts.down_proj [E, H, I]); checkpoints and Megatron's gather name them
    one by one (experts.{e}.gate_proj.weight ...)."""
    out = {}
    for name, tensor in state.items():
        prefix = name.rsplit(".", 1)[0]
        if name.endswith("experts.gate_up_proj"):
            gate, up = tensor.chunk(2, dim=1)
            for e in range(tensor.shape[0]):
                out[f"{prefix}.{e}.gate_proj.weight"], out[f"{prefix}.{e}.up_proj.weight"] = gate[e], up[e]
        elif name.endswith("experts.down_proj"):
            for e in range(tensor.shape[0]):
                out[f"{prefix}.{e}.down_proj.weight"] = tensor[e]
        else:
            out[name] = tensor
    return out


def max_difference(a: dict, b: dict) -> dict[str, float]:
    """Largest absolute differences between two records: per-token log-probs, losses, weights."""
    a, b = dict(a, state=checkpoint_names(a["state"])), dict(b, state=checkpoint_names(b["state"]))
    assert set(a["state"]) == set(b["state"]), sorted(set(a["state"]) ^ set(b["state"]))
    logprob = max(abs(x - y) for ra, rb in zip(a["logprobs"], b["logprobs"], strict=True) for x, y in zip(ra, rb, strict=True))
    loss = max(abs(x - y) for x, y in zip(a["losses"], b["losses"], strict=True))
    weight = max(float((a["state"][n] - b["state"][n]).abs().max()) for n in a["state"])
    return {"logprob": logprob, "loss": loss, "weight": weight}

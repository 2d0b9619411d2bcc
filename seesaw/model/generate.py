"""Build a small Llama model and a character tokenizer for a task, and warm it up by SFT.

No weights can be downloaded where Seesaw's CPU demo runs, so the starting policy is made
here: a Hugging Face Llama config with random init, then a short supervised fine-tune on
the task's training prompts. The result is a normal Hugging Face model directory (config,
tokenizer.json, safetensors), cached by a hash of everything that shapes it.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from seesaw.model.cache import is_ready, write_model
from seesaw.model.prompt import PromptFormat, encode_answer, encode_prompt  # noqa: F401  (re-exported)
from seesaw.spec import SpecError
from seesaw.tasks import Task

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
# vLLM pads the vocabulary to a multiple of 64 anyway; matching it keeps shapes equal on both sides.
VOCAB_MULTIPLE = 64


def build_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """One token per character of the alphabet, plus pad/bos/eos/unk."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(set(alphabet)):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def llama_config(generate: dict[str, Any], vocab_size: int, max_model_len: int, dtype: str) -> LlamaConfig:
    heads = generate["numHeads"]
    if generate["hiddenSize"] % heads:
        raise SpecError("spec.model.generate.hiddenSize", f"must be a multiple of numHeads ({heads}), got {generate['hiddenSize']}")
    if heads % generate["numKeyValueHeads"]:
        raise SpecError("spec.model.generate.numKeyValueHeads", f"must divide numHeads ({heads}), got {generate['numKeyValueHeads']}")
    padded = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return LlamaConfig(
        vocab_size=padded,
        hidden_size=generate["hiddenSize"],
        intermediate_size=generate["intermediateSize"],
        num_hidden_layers=generate["numLayers"],
        num_attention_heads=heads,
        num_key_value_heads=generate["numKeyValueHeads"],
        head_dim=generate["hiddenSize"] // heads,
        max_position_embeddings=max(max_model_len, 64),
        tie_word_embeddings=generate["tieWordEmbeddings"],
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
        dtype=dtype,
    )


def demonstration_sample(task: Task, count: int = 64) -> list[str]:
    rng = random.Random(0)
    return [task.demonstrate(problem, rng) for problem in task.train[:count]]


def cache_key(spec: dict[str, Any], task: Task) -> str:
    generate = spec["model"]["generate"]
    shaping = {
        # field by field: each one shapes the model, so the key reads every one of them
        "generate": {field: generate[field] for field in generate},
        "dtype": spec["model"]["dtype"],
        "maxModelLen": spec["rollout"]["maxModelLen"],
        "task": task.name,
        "alphabet": task.alphabet,
        "train": hashlib.sha256(json.dumps([(p.prompt, p.answer) for p in task.train]).encode()).hexdigest(),
        # what the warm-up demonstrates, sampled: a changed demonstration is a different model
        "demonstrations": hashlib.sha256(json.dumps(demonstration_sample(task)).encode()).hexdigest(),
        "version": 1,
    }
    form = PromptFormat.from_spec(spec)
    if form.system_prompt is not None:  # only then: the keys of the models cached before it stay
        shaping["system_prompt"] = form.system_prompt
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def supervised_warmup(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, task: Task,
                      steps: int, lr: float, seed: int, batch_size: int = 64, noise: float = 0.0, log=print,
                      form: PromptFormat = PromptFormat()) -> list[float]:
    """Teacher-forced fine-tune on (prompt, answer) pairs, loss on the answer tokens only.

    With noise > 0 that fraction of demonstrations shows the task's plausible wrong answer
    (as SFT data written or distilled in bulk carries mistakes).
    """
    if noise and task.wrong_answer is None:
        raise SpecError("spec.model.generate.sftNoise", f"task {task.name!r} has no wrong-answer generator; expected 0")
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        batch = rng.sample(task.train, min(batch_size, len(task.train)))
        answers = [task.wrong_answer(p) if noise and rng.random() < noise else task.demonstrate(p, rng) for p in batch]
        rows = [(encode_prompt(tokenizer, p.prompt, form), encode_answer(tokenizer, a)) for p, a in zip(batch, answers)]
        width = max(len(a) + len(b) for a, b in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        for i, (prompt, answer) in enumerate(rows):
            seq = prompt + answer
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(prompt): len(seq)] = torch.tensor(answer)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log(f"  sft step {step + 1}/{steps}  loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    model.eval()
    return losses


def prepare_generated_model(spec: dict[str, Any], task: Task, cache_dir: Path, log=print) -> Path:
    """spec.model.generate: build, warm up and cache the model (or reuse the cached one)."""
    target = cache_dir / f"{task.name}-{cache_key(spec, task)}"
    if is_ready(target):
        log(f"model: reusing cached {target}")
        return target
    generate = spec["model"]["generate"]
    started = time.time()
    torch.manual_seed(generate["seed"])
    tokenizer = build_tokenizer(task.alphabet)
    config = llama_config(generate, len(tokenizer), spec["rollout"]["maxModelLen"], spec["model"]["dtype"])
    model = LlamaForCausalLM(config).to(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: generated Llama ({params / 1e6:.2f}M params, {config.num_hidden_layers} layers"
        + (", tied embeddings" if config.tie_word_embeddings else "") + f"), SFT warm-up for {generate['sftSteps']} steps"
        + (f" ({generate['sftNoise']:.0%} of demonstrations wrong)" if generate["sftNoise"] else ""))
    supervised_warmup(model, tokenizer, task, generate["sftSteps"], generate["sftLearningRate"], generate["seed"],
                      noise=generate["sftNoise"], log=log, form=PromptFormat.from_spec(spec))
    model = model.to(getattr(torch, spec["model"]["dtype"]))

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    write_model(target, write)
    log(f"model: ready in {time.time() - started:.1f}s at {target}")
    return target

"""Prompts and answers as token ids, the way the model was trained to read them.

A tokenizer with a chat template (an instruct model given by path) gets the prompt as one
user turn with the generation prompt appended, as verl and TRL do; the template adds any
BOS itself. Without a template the prompt is plain text, after a BOS only where the
tokenizer has one (Qwen's has none).
"""
from __future__ import annotations

from typing import Any


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer.encode(text, add_special_tokens=False))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + list(tokenizer.encode(prompt, add_special_tokens=False))


def encode_answer(tokenizer: Any, answer: str) -> list[int]:
    return list(tokenizer.encode(answer, add_special_tokens=False)) + [tokenizer.eos_token_id]

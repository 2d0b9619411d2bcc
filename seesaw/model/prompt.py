"""Prompts and answers as token ids, the way the model was trained to read them.

A tokenizer with a chat template (an instruct model given by path) gets the prompt as one
user turn with the generation prompt appended, as verl and TRL do, after a system turn
when spec.prompts.systemPrompt sets one (else the template's own default, if it has one);
the template adds any BOS itself. With spec.prompts.chatTemplate false, or a tokenizer
without a template, the prompt is plain text, after a BOS only where the tokenizer has one
(Qwen's has none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seesaw.spec import SpecError


@dataclass(frozen=True)
class PromptFormat:
    chat_template: bool = True
    system_prompt: str | None = None  # None: the template's own default system turn, if any

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "PromptFormat":
        prompts = spec["prompts"]
        return cls(chat_template=prompts["chatTemplate"], system_prompt=prompts.get("systemPrompt"))


def _renders_chat(tokenizer: Any, form: PromptFormat) -> bool:
    return form.chat_template and bool(getattr(tokenizer, "chat_template", None))


def _plain(prompt: str, form: PromptFormat) -> str:
    return prompt if form.system_prompt is None else f"{form.system_prompt}\n\n{prompt}"


def prompt_text(tokenizer: Any, prompt: str, form: PromptFormat = PromptFormat()) -> str:
    """The prompt as text, its special tokens (a BOS included) written out: what a trainer that
    tokenizes text itself (TRL, in bench/peer.py) is given to read encode_prompt's tokens."""
    if _renders_chat(tokenizer, form):
        turns = ([{"role": "system", "content": form.system_prompt}] if form.system_prompt is not None else []) + \
            [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return (tokenizer.bos_token if tokenizer.bos_token_id is not None else "") + _plain(prompt, form)


def encode_prompt(tokenizer: Any, prompt: str, form: PromptFormat = PromptFormat()) -> list[int]:
    if _renders_chat(tokenizer, form):
        return list(tokenizer.encode(prompt_text(tokenizer, prompt, form), add_special_tokens=False))
    # the BOS as an id, not as text: a SentencePiece tokenizer may space what follows its text
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + list(tokenizer.encode(_plain(prompt, form), add_special_tokens=False))


def check_prompts_fit(prompts: list[str], tokenizer: Any, form: PromptFormat, max_model_len: int, max_tokens: int) -> int:
    """The longest prompt's tokens; refused, naming it, when it and rollout.maxTokens do not fit in maxModelLen."""
    longest, length = "", 0
    for prompt in prompts:
        tokens = len(encode_prompt(tokenizer, prompt, form))
        if tokens > length:
            longest, length = prompt, tokens
    if length + max_tokens > max_model_len:
        raise SpecError("spec.rollout.maxModelLen", f"{max_model_len} tokens cannot hold the longest prompt "
                        f"({length} tokens: {longest[:80]!r}) and rollout.maxTokens ({max_tokens}); expected at least "
                        f"{length + max_tokens}")
    return length


def encode_answer(tokenizer: Any, answer: str) -> list[int]:
    return list(tokenizer.encode(answer, add_special_tokens=False)) + [tokenizer.eos_token_id]

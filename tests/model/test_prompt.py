"""Prompts as token ids: BOS only where the tokenizer has one, the chat template where it has one."""
from types import SimpleNamespace

from seesaw.model.generate import build_tokenizer
import pytest

from seesaw.model.prompt import PromptFormat, check_prompts_fit, encode_answer, encode_prompt, prompt_text
from seesaw.spec import SpecError


def test_a_tokenizer_without_bos_gets_no_bos():
    tokenizer = build_tokenizer("0123456789=")
    tokenizer.bos_token = None  # as Qwen's tokenizer: bos_token_id is None
    assert tokenizer.bos_token_id is None
    ids = encode_prompt(tokenizer, "12=")
    assert None not in ids and ids == tokenizer.encode("12=", add_special_tokens=False)


def test_a_tokenizer_with_bos_and_no_template_gets_bos_then_the_prompt():
    tokenizer = build_tokenizer("0123456789=")
    assert encode_prompt(tokenizer, "12=") == [tokenizer.bos_token_id] + tokenizer.encode("12=", add_special_tokens=False)
    assert encode_answer(tokenizer, "21")[-1] == tokenizer.eos_token_id


def test_an_instruct_tokenizer_gets_its_chat_template_with_the_generation_prompt():
    tokenizer = build_tokenizer("0123456789=<>|abcdefghijklmnopqrstuvwxyz")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ids = encode_prompt(tokenizer, "12=")
    assert tokenizer.decode(ids) == "<|user|>12=<|assistant|>"
    assert tokenizer.bos_token_id not in ids  # the template decides about BOS, not us


def test_the_template_is_applied_as_text_then_tokenised_once():
    calls = []
    fake = SimpleNamespace(chat_template="t", bos_token_id=None,
                           apply_chat_template=lambda messages, **kw: calls.append((messages, kw)) or "X",
                           encode=lambda text, add_special_tokens: [len(text), add_special_tokens])
    assert encode_prompt(fake, "p") == [1, False]
    assert calls == [([{"role": "user", "content": "p"}], {"tokenize": False, "add_generation_prompt": True})]


def chat_tokenizer():
    tokenizer = build_tokenizer("0123456789=<>|abcdefghijklmnopqrstuvwxyz ")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tokenizer


def test_a_system_prompt_is_a_system_turn_and_no_template_sends_plain_text():
    tokenizer = chat_tokenizer()
    with_system = encode_prompt(tokenizer, "12=", PromptFormat(system_prompt="be brief"))
    assert tokenizer.decode(with_system) == "<|system|>be brief<|user|>12=<|assistant|>"
    plain = encode_prompt(tokenizer, "12=", PromptFormat(chat_template=False))
    assert plain == [tokenizer.bos_token_id] + tokenizer.encode("12=", add_special_tokens=False)
    plain_system = encode_prompt(tokenizer, "12=", PromptFormat(chat_template=False, system_prompt="be brief"))
    assert plain_system == [tokenizer.bos_token_id] + tokenizer.encode("be brief\n\n12=", add_special_tokens=False)


def test_the_prompt_text_tokenised_as_a_text_trainer_does_gives_the_prompt_ids():
    # TRL tokenizes a text prompt with the tokenizer's defaults (bench/peer.py hands it this text)
    tokenizer = chat_tokenizer()
    for form in (PromptFormat(), PromptFormat(system_prompt="be brief"), PromptFormat(chat_template=False),
                 PromptFormat(chat_template=False, system_prompt="be brief")):
        assert tokenizer(prompt_text(tokenizer, "12=", form))["input_ids"] == encode_prompt(tokenizer, "12=", form), form


def test_the_longest_prompt_must_fit_with_max_tokens_and_is_named_when_it_does_not():
    tokenizer = build_tokenizer("0123456789=")
    prompts = ["1=", "123456789=", "12="]
    assert check_prompts_fit(prompts, tokenizer, PromptFormat(), max_model_len=19, max_tokens=8) == 11  # BOS + 10
    with pytest.raises(SpecError, match=r"spec.rollout.maxModelLen: 18 tokens cannot hold the longest prompt "
                                        r"\(11 tokens: '123456789='\) and rollout.maxTokens \(8\); expected at least 19"):
        check_prompts_fit(prompts, tokenizer, PromptFormat(), max_model_len=18, max_tokens=8)

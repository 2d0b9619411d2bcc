"""Prompts as token ids: BOS only where the tokenizer has one, the chat template where it has one."""
from types import SimpleNamespace

from seesaw.model.generate import build_tokenizer
from seesaw.model.prompt import encode_answer, encode_prompt


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

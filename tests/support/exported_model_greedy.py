"""Load a model directory with vLLM (as `vllm serve` would) and with transformers; greedy-decode
the same chat prompts with both and print both token lists as JSON. Run as a script: vLLM starts
its engine in processes of its own, which must not import a test module."""
import json
import os
import sys


def main(model_dir: str, prompts: list[str], max_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from seesaw.model.prompt import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    llm = LLM(model=model_dir, dtype="float32", max_model_len=256, enforce_eager=True, gpu_memory_utilization=0.1,
              kv_cache_memory_bytes=1 << 30)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded],
                           SamplingParams(max_tokens=max_tokens, temperature=0.0), use_tqdm=False)
    served = [list(out.outputs[0].token_ids) for out in outputs]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    expected = []
    with torch.no_grad():
        for ids in encoded:
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            expected.append(out[0, len(ids):].tolist())
    print("GREEDY " + json.dumps({"served": served, "expected": expected, "eos": tokenizer.eos_token_id}), flush=True)
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]))
    sys.stderr.flush()
    os._exit(0)  # see exported_model_logprobs.py: vLLM's CPU build can abort in a destructor at exit

"""Load a model directory with vLLM (as `vllm serve` would) and with transformers; print both
log-probs of the same token sequences as JSON. Run as a script: vLLM starts its engine in
processes of its own, which must not import a test module."""
import json
import os
import sys


def main(model_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    sequences = [[1, 5 + i, 9 + i, 13 + i, 17 + i, 21 + i] for i in range(4)]
    llm = LLM(model=model_dir, dtype="float32", max_model_len=64, enforce_eager=True, gpu_memory_utilization=0.1)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences],
                           SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0), use_tqdm=False)
    served = [[out.prompt_logprobs[i][s[i]].logprob for i in range(1, len(s))] for s, out in zip(sequences, outputs)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        ids = torch.tensor(sequences)
        logprobs = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    print("LOGPROBS " + json.dumps({"served": served, "expected": logprobs.tolist()}), flush=True)
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
    # The CPU build of vLLM can abort in a C++ destructor while the interpreter exits
    # ("terminate called without an active exception") after the work is done and printed;
    # the engine is shut down above, so leave without running those destructors.
    sys.stderr.flush()
    os._exit(0)

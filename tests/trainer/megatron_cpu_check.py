"""Run in a child process by test_hf_to_megatron.py: real Megatron-core modules on the CPU.

Megatron's forward needs CUDA as a whole, but its attention projection and MLP run on the
CPU; comparing them with the Hugging Face model's shows the fused layouts are right.
"""
import os
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", sys.argv[2])


def main(model_type: str) -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from seesaw.trainer.hf_to_megatron import build_gpt_model, load_hf_weights
    from seesaw.trainer.resharding import ModelLayout, Parallelism, hf_to_megatron, shard_shape, model_rules, _local_name

    dist.init_process_group("gloo", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    common = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
                  num_hidden_layers=2, vocab_size=200, max_position_embeddings=64)
    hf_config = (Qwen2Config(**common, tie_word_embeddings=True) if model_type == "qwen2"
                 else LlamaConfig(**common, tie_word_embeddings=False))
    torch.manual_seed(0)
    hf_model = AutoModelForCausalLM.from_config(hf_config).float().eval()
    hf_state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    if hf_config.tie_word_embeddings:
        hf_state.pop("lm_head.weight", None)
    layout = ModelLayout.from_hf_config(hf_config)
    par = Parallelism()
    model = build_gpt_model(hf_config, par, torch.float32, use_cpu_initialization=True).eval()

    # 1. Every Megatron parameter is named and shaped as resharding.py says.
    real = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    predicted = {_local_name(r, layout, par): shard_shape(r, layout, par) for r in model_rules(layout)}
    assert real == predicted, (sorted(set(real) ^ set(predicted)), {k: (real.get(k), predicted.get(k)) for k in real if real.get(k) != predicted.get(k)})
    assert set(real) == set(hf_to_megatron(hf_state, layout, par)[(0, 0, 0)])

    # 2. Megatron's own modules, given the converted weights, compute what HF's compute.
    load_hf_weights(model, hf_state, layout, par, (0, 0, 0))
    h = torch.randn(5, 1, 64)
    with torch.no_grad():
        layer, hf_layer = model.decoder.layers[1], hf_model.model.layers[1]
        q, k, v = layer.self_attention.get_query_key_value_tensors(h, None)[:3]
        x = h[:, 0]
        for ours, proj, heads in ((q, hf_layer.self_attn.q_proj, 4), (k, hf_layer.self_attn.k_proj, 2), (v, hf_layer.self_attn.v_proj, 2)):
            torch.testing.assert_close(ours[:, 0], proj(x).view(5, heads, 16), rtol=0, atol=1e-5)
        mlp_out = layer.mlp(h)[0][:, 0]
        torch.testing.assert_close(mlp_out, hf_layer.mlp(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(layer.input_layernorm(h)[:, 0], hf_layer.input_layernorm(x), rtol=0, atol=1e-6)
        ids = torch.tensor([[3, 7, 199]])
        torch.testing.assert_close(model.embedding.word_embeddings(ids)[0], hf_model.model.embed_tokens(ids)[0], rtol=0, atol=0)
    print("MEGATRON_CPU_CHECK_OK", len(real))


if __name__ == "__main__":
    main(sys.argv[1])

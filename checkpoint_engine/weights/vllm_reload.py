"""New weights into a loaded vLLM model through vLLM's layerwise reload, tied LM heads included.

Every Seesaw weight-transfer engine (Mooncake, CUDA IPC) brackets its `model.load_weights`
with these two calls. vLLM's reload re-processes each layer once all of its weights have
arrived. A tied LM head never receives any (its weight is the input embedding's, which the
checkpoint names once), so vLLM only puts its old tensor back ("ParallelLMHead: Failed to
load weights" in its log). The tensor is shared, so it holds the new embedding. But the CPU
build serves the head from a GEMM handle packed from the weights at the first load
(`dispatch_cpu_unquantized_gemm`). Unless the head is processed again, the engine keeps
computing logits with the dummy weights it started from.
"""
from __future__ import annotations

from typing import Any

import torch


def begin_reload(model: torch.nn.Module) -> None:
    from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

    initialize_layerwise_reload(model)


def finish_reload(model: torch.nn.Module, model_config: Any) -> None:
    """Process what the loaded weights left unprocessed, tied heads included."""
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

    finalize_layerwise_reload(model, model_config)
    reprocess_tied_heads(model)


def tied_heads(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The LM heads whose weight is an input embedding's (found by type, as vLLM's own
    weight_tying does: the names differ between text and multimodal models)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    embeddings = {module.weight.data_ptr() for module in model.modules()
                  if isinstance(module, VocabParallelEmbedding) and not isinstance(module, ParallelLMHead)}
    return [module for module in model.modules()
            if isinstance(module, ParallelLMHead) and module.weight.data_ptr() in embeddings]


@torch.no_grad()
def reprocess_tied_heads(model: torch.nn.Module) -> None:
    """Run each tied head's post-load processing again over its (new) shared weight. The CPU
    build repacks its GEMM handle; on the GPU the processing is a no-op, since the head reads
    the shared tensor directly."""
    for head in tied_heads(model):
        head.quant_method.process_weights_after_loading(head)

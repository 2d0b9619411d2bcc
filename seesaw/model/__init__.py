"""Model preparation: generated Llama models and tokenizers, SFT warm-up."""

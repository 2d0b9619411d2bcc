"""Random RL samples for the trainer benchmarks: 8 prompts x 4 responses, random tokens,
log-probs and 0/1 rewards, reproducible from a seed."""
from __future__ import annotations

import torch

from seesaw.interfaces import Sample


def random_samples(seed: int, vocab: int, prompt_tokens: int, response_tokens: tuple[int, int]) -> list[Sample]:
    """Responses have between response_tokens[0] and response_tokens[1] - 1 tokens."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for prompt in range(8):
        p = torch.randint(4, vocab, (prompt_tokens,), generator=gen).tolist()
        for _ in range(4):
            r = torch.randint(4, vocab, (int(torch.randint(*response_tokens, (1,), generator=gen)),), generator=gen).tolist()
            out.append(Sample(prompt, p, r, (-torch.rand(len(r), generator=gen) * 3).tolist(),
                              reward=float(torch.rand(1, generator=gen) > 0.5)))
    return out

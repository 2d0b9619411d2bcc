"""The exact checksum of weights both ends of a channel compute: the trainer over what it
staged, each vLLM worker over what it loaded, in Hugging Face layout so the two agree."""
from __future__ import annotations

from typing import Iterable, Iterator

import torch


def params_checksum(flat: torch.Tensor) -> int:
    """An exact, order-independent checksum: the sum of the parameters' bit patterns."""
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    return int(flat.detach().view(bits).sum(dtype=torch.int64))


class StreamChecksum:
    """params_checksum of a stream of named tensors, summed as they pass: what a weight
    sender staged or a receiver loaded (Hugging Face layout, so both sides agree)."""

    def __init__(self) -> None:
        self.value = 0

    def over(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in named_tensors:
            self.value += params_checksum(tensor.detach().contiguous().view(-1))
            yield name, tensor

    def hex(self) -> str:
        return checksum_hex(self.value)


def checksum_hex(value: int) -> str:
    """A checksum as 16 hex digits (the sum taken modulo 2**64)."""
    return f"{value & (2 ** 64 - 1):016x}"

"""Which prompts an iteration trains on: uniform, curriculum (easy to hard) or prioritised.

Prioritised sampling keeps each prompt's running success rate s_i (an exponential moving
average of its samples' rewards) and draws prompts with probability proportional to
max(1 - s_i, floor), so failures are practised more and solved prompts still come back.
Curriculum sampling opens the prompt set from the easiest to the hardest over the run.
Every sampler is deterministic given its random generator, and its state is JSON.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence


class UniformSampler:
    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"size: expected a non-empty prompt set, got {size}")
        self.size = size

    def sample(self, count: int, rng: random.Random, iteration: int = 1) -> list[int]:
        return rng.sample(range(self.size), min(count, self.size))

    def update(self, indices: Sequence[int], success: Sequence[float]) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


class PrioritizedSampler(UniformSampler):
    def __init__(self, size: int, momentum: float = 0.5, floor: float = 0.05, initial: float = 0.0) -> None:
        super().__init__(size)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum}")
        self.momentum = momentum
        self.floor = floor
        self.success = [initial] * size

    def weights(self) -> list[float]:
        return [max(1.0 - s, self.floor) for s in self.success]

    def sample(self, count: int, rng: random.Random, iteration: int = 1) -> list[int]:
        # Efraimidis-Spirakis: weighted sampling without replacement in one pass
        keys = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(self.weights())]
        return [i for _, i in sorted(keys, reverse=True)[: min(count, self.size)]]

    def update(self, indices: Sequence[int], success: Sequence[float]) -> None:
        for index, value in zip(indices, success):
            self.success[index] = self.momentum * self.success[index] + (1 - self.momentum) * value

    def state(self) -> dict[str, Any]:
        return {"success": self.success}

    def load_state(self, state: dict[str, Any]) -> None:
        if len(state["success"]) != self.size:
            raise ValueError(f"sampler state has {len(state['success'])} prompts, the prompt set has {self.size}")
        self.success = list(state["success"])


class CurriculumSampler(UniformSampler):
    """Prompts ordered by difficulty; iteration t of T draws from the easiest
    start + (1 - start) * t / T fraction of them."""

    def __init__(self, difficulties: Sequence[float], iterations: int, start_fraction: float = 0.3) -> None:
        super().__init__(len(difficulties))
        self.order = sorted(range(len(difficulties)), key=lambda i: difficulties[i])
        self.iterations = max(1, iterations)
        self.start_fraction = start_fraction

    def open_count(self, iteration: int) -> int:
        fraction = self.start_fraction + (1 - self.start_fraction) * min(1.0, iteration / self.iterations)
        return max(1, round(fraction * self.size))

    def sample(self, count: int, rng: random.Random, iteration: int = 1) -> list[int]:
        pool = self.order[: self.open_count(iteration)]
        return rng.sample(pool, min(count, len(pool)))


def make_sampler(strategy: str, size: int, iterations: int,
                 difficulty: Callable[[int], float] | None = None) -> UniformSampler:
    """The sampler `spec.rl.sampling.strategy` names."""
    if strategy == "uniform":
        return UniformSampler(size)
    if strategy == "prioritized":
        return PrioritizedSampler(size)
    if strategy == "curriculum":
        if difficulty is None:
            raise ValueError("spec.rl.sampling.strategy: curriculum needs a difficulty for each prompt")
        return CurriculumSampler([difficulty(i) for i in range(size)], iterations)
    raise ValueError(f"spec.rl.sampling.strategy: expected uniform, curriculum or prioritized, got {strategy!r}")

"""Which prompts an iteration trains on: uniform, curriculum (easy to hard) or prioritised; and prompt-set curation.

Prioritised sampling keeps each prompt's running success rate s_i (an exponential moving
average of its samples' mean reward) and draws prompts with probability proportional to
max(1 - s_i, floor), so failures are practised more and solved prompts still come back.
Curriculum sampling opens the prompt set from the easiest to the hardest over the run.
Every sampler draws distinct prompts and is deterministic: from the generator it is given,
or else from (seed, iteration), so a resumed run draws what the first run would have. Its
state is JSON, for checkpoints.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

STRATEGIES = ("uniform", "curriculum", "prioritized")


class PromptSampler(Protocol):
    size: int

    def sample(self, count: int, rng: random.Random | None = None, iteration: int = 1) -> list[int]: ...

    def update(self, indices: Sequence[int], success: Sequence[float]) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def iteration_rng(seed: int, iteration: int) -> random.Random:
    # A str seed goes through SHA-512, so the stream is the same in every process
    # (hash() of a tuple would change with PYTHONHASHSEED).
    return random.Random(f"seesaw.sampling:{seed}:{iteration}")


class UniformSampler:
    strategy = "uniform"

    def __init__(self, size: int, seed: int = 0) -> None:
        if size <= 0:
            raise ValueError(f"size: expected a non-empty prompt set, got {size}")
        self.size = size
        self.seed = seed

    def _rng(self, rng: random.Random | None, iteration: int) -> random.Random:
        return rng if rng is not None else iteration_rng(self.seed, iteration)

    def _check_count(self, count: int) -> int:
        if count < 0:
            raise ValueError(f"count: expected >= 0 prompts, got {count}")
        return min(count, self.size)

    def sample(self, count: int, rng: random.Random | None = None, iteration: int = 1) -> list[int]:
        """`count` distinct prompt indices (all of them when count exceeds the set)."""
        return self._rng(rng, iteration).sample(range(self.size), self._check_count(count))

    def update(self, indices: Sequence[int], success: Sequence[float]) -> None:
        _mean_per_prompt(indices, success, self.size)

    def state(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "size": self.size, "seed": self.seed}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("strategy", self.strategy) != self.strategy:
            raise ValueError(f"sampler state is for strategy {state['strategy']!r}, this sampler is {self.strategy!r}")
        size = state.get("size", len(state.get("success", [])) or self.size)
        if size != self.size:
            raise ValueError(f"sampler state has {size} prompts, the prompt set has {self.size}")
        self.seed = state.get("seed", self.seed)


def _mean_per_prompt(indices: Sequence[int], success: Sequence[float], size: int) -> dict[int, float]:
    """Mean success of each prompt in one update: a prompt's k samples may come as k entries."""
    if len(indices) != len(success):
        raise ValueError(f"indices ({len(indices)}) and success ({len(success)}) must have the same length")
    grouped: dict[int, list[float]] = defaultdict(list)
    for index, value in zip(indices, success):
        if not 0 <= index < size:
            raise ValueError(f"indices: expected prompt indices in [0, {size}), got {index}")
        grouped[index].append(float(value))
    return {index: sum(values) / len(values) for index, values in grouped.items()}


class PrioritizedSampler(UniformSampler):
    """P(prompt i) proportional to max(1 - s_i, floor); s_i <- momentum * s_i + (1 - momentum) * mean reward."""

    strategy = "prioritized"

    def __init__(self, size: int, momentum: float = 0.5, floor: float = 0.05, initial: float = 0.0, seed: int = 0) -> None:
        super().__init__(size, seed)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum}")
        if not 0 < floor <= 1:
            raise ValueError(f"floor: expected 0 < floor <= 1 so that every prompt can be drawn, got {floor}")
        self.momentum = momentum
        self.floor = floor
        self.success = [initial] * size

    def weights(self) -> list[float]:
        return [max(1.0 - s, self.floor) for s in self.success]

    def sample(self, count: int, rng: random.Random | None = None, iteration: int = 1) -> list[int]:
        generator, count = self._rng(rng, iteration), self._check_count(count)
        # Efraimidis-Spirakis: weighted sampling without replacement in one pass; each draw
        # picks among the prompts not yet drawn with probability proportional to weight.
        keys = [(generator.random() ** (1.0 / w), i) for i, w in enumerate(self.weights())]
        return [i for _, i in sorted(keys, reverse=True)[:count]]

    def update(self, indices: Sequence[int], success: Sequence[float]) -> None:
        for index, value in _mean_per_prompt(indices, success, self.size).items():
            self.success[index] = self.momentum * self.success[index] + (1 - self.momentum) * value

    def state(self) -> dict[str, Any]:
        return {**super().state(), "momentum": self.momentum, "floor": self.floor, "success": list(self.success)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if len(state["success"]) != self.size:
            raise ValueError(f"sampler state has {len(state['success'])} prompts, the prompt set has {self.size}")
        self.momentum = state.get("momentum", self.momentum)
        self.floor = state.get("floor", self.floor)
        self.success = [float(s) for s in state["success"]]


class CurriculumSampler(UniformSampler):
    """Prompts ordered by difficulty (ties by index); iteration t of T draws uniformly from the
    easiest start_fraction + (1 - start_fraction) * min(1, t / T) of them."""

    strategy = "curriculum"

    def __init__(self, difficulties: Sequence[float], iterations: int, start_fraction: float = 0.3, seed: int = 0) -> None:
        super().__init__(len(difficulties), seed)
        if not 0 < start_fraction <= 1:
            raise ValueError(f"start_fraction: expected 0 < start_fraction <= 1, got {start_fraction}")
        self.order = sorted(range(len(difficulties)), key=lambda i: (difficulties[i], i))
        self.iterations = max(1, iterations)
        self.start_fraction = start_fraction

    @classmethod
    def from_pass_rates(cls, pass_rates: Sequence[float], iterations: int, start_fraction: float = 0.3,
                        seed: int = 0) -> "CurriculumSampler":
        """Difficulty 1 - pass rate, e.g. the SFT model's success over several samples per prompt."""
        for index, rate in enumerate(pass_rates):
            if not 0 <= rate <= 1:
                raise ValueError(f"pass_rates[{index}]: expected a rate in [0, 1], got {rate}")
        return cls([1.0 - rate for rate in pass_rates], iterations, start_fraction, seed)

    def open_count(self, iteration: int) -> int:
        fraction = self.start_fraction + (1 - self.start_fraction) * min(1.0, max(0, iteration) / self.iterations)
        return max(1, round(fraction * self.size))

    def sample(self, count: int, rng: random.Random | None = None, iteration: int = 1) -> list[int]:
        pool = self.order[: self.open_count(iteration)]
        return self._rng(rng, iteration).sample(pool, min(self._check_count(count), len(pool)))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "iterations": self.iterations, "start_fraction": self.start_fraction}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.start_fraction = state.get("start_fraction", self.start_fraction)


def make_sampler(strategy: str, size: int, iterations: int,
                 difficulty: Callable[[int], float] | None = None, seed: int = 0) -> UniformSampler:
    """The sampler `spec.rl.sampling.strategy` names."""
    if strategy == "uniform":
        return UniformSampler(size, seed=seed)
    if strategy == "prioritized":
        return PrioritizedSampler(size, seed=seed)
    if strategy == "curriculum":
        if difficulty is None:
            raise ValueError("spec.rl.sampling.strategy: curriculum needs a difficulty for each prompt")
        return CurriculumSampler([difficulty(i) for i in range(size)], iterations, seed=seed)
    raise ValueError(f"spec.rl.sampling.strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")


@dataclass
class Curation:
    kept: list[int]
    # the model answered these within `tries` attempts without reasoning: easy to guess
    guessed: list[int]
    # no reference answer to verify against
    unverifiable: list[int]


def curate_prompts(references: Sequence[Any], no_cot_answers: Sequence[Sequence[str]],
                   verifier: Any, tries: int = 8) -> Curation:
    """Keep the prompts with a verifiable reference that the model does not guess: drop a prompt
    when any of its first `tries` answers from a sampler told to answer without reasoning
    scores 1 under `verifier` (an object with `score(response, reference)`, or that function)."""
    if len(references) != len(no_cot_answers):
        raise ValueError(f"references ({len(references)}) and no_cot_answers ({len(no_cot_answers)}) "
                         "must have one entry per prompt")
    if tries < 1:
        raise ValueError(f"tries: expected >= 1, got {tries}")
    score = getattr(verifier, "score", verifier)
    result = Curation([], [], [])
    for index, (reference, answers) in enumerate(zip(references, no_cot_answers)):
        if reference is None or (isinstance(reference, (str, list, tuple)) and not reference):
            result.unverifiable.append(index)
            continue
        if len(answers) < tries:
            raise ValueError(f"no_cot_answers[{index}]: expected at least {tries} answers, got {len(answers)}")
        if any(score(answer, reference) >= 1.0 for answer in answers[:tries]):
            result.guessed.append(index)
        else:
            result.kept.append(index)
    return result

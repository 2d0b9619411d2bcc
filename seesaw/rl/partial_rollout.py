"""Partial rollouts: responses cut at a per-iteration token budget, parked in a replay buffer and continued later.

A long response is generated over several iterations, one segment per iteration. Each
segment records the policy version that generated it: only the newest segment is
on-policy, so the loss masks the tokens of earlier segments (their log-probs came from an
older policy). A response whose tail repeats itself is ended early and flagged so that its
reward can be penalised. Everything here is plain data that round-trips through JSON.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from seesaw.interfaces import Sample

# Why a response ended. None while it is still unfinished (cut at the budget).
STOP_EOS = "eos"
STOP_MAX_TOKENS = "max_tokens"
STOP_REPETITION = "repetition"
STOP_REASONS = (STOP_EOS, STOP_MAX_TOKENS, STOP_REPETITION)


@dataclass
class Segment:
    token_ids: list[int]
    logprobs: list[float]
    policy_version: int


@dataclass
class PartialResponse:
    """One response to one prompt, possibly still unfinished; one of its prompt's group of k."""

    prompt_index: int
    prompt_ids: list[int]
    group_id: int
    group_size: int
    segments: list[Segment] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    @property
    def repeated(self) -> bool:
        return self.stop_reason == STOP_REPETITION

    @property
    def response_ids(self) -> list[int]:
        return [t for segment in self.segments for t in segment.token_ids]

    @property
    def logprobs(self) -> list[float]:
        return [lp for segment in self.segments for lp in segment.logprobs]

    @property
    def num_tokens(self) -> int:
        return sum(len(segment.token_ids) for segment in self.segments)

    def context_ids(self) -> list[int]:
        """What the rollout engine continues from: the prompt and every token so far."""
        return self.prompt_ids + self.response_ids

    def token_policy_versions(self) -> list[int]:
        return [segment.policy_version for segment in self.segments for _ in segment.token_ids]

    def onpolicy_mask(self, policy_version: int) -> list[bool]:
        """Per response token: True where `policy_version` generated it (the newest segment when
        the response was continued in this iteration); the loss ignores the other tokens."""
        return [version == policy_version for version in self.token_policy_versions()]

    def to_sample(self, reward: float = 0.0) -> Sample:
        return Sample(prompt_index=self.prompt_index, prompt_ids=list(self.prompt_ids), response_ids=self.response_ids,
                      logprobs=self.logprobs, reward=reward, finished=self.finished)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PartialResponse":
        segments = [Segment(list(s["token_ids"]), list(s["logprobs"]), int(s["policy_version"])) for s in data["segments"]]
        stop_reason = data.get("stop_reason")
        if stop_reason is not None and stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason: expected one of {list(STOP_REASONS)} or null, got {stop_reason!r}")
        return cls(int(data["prompt_index"]), list(data["prompt_ids"]), int(data["group_id"]), int(data["group_size"]),
                   segments, stop_reason)


@dataclass(frozen=True)
class RepetitionDetector:
    """The tail repeats when its last L tokens have a period p <= max_period, with
    L >= min_repeats * p and L >= min_tokens (so a short "0 0" is not a loop)."""

    max_period: int = 32
    min_repeats: int = 4
    min_tokens: int = 16

    def __post_init__(self) -> None:
        for name in ("max_period", "min_repeats", "min_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.min_repeats < 2:
            raise ValueError(f"min_repeats: expected >= 2 (one copy is not a repetition), got {self.min_repeats}")

    def repeated_tail(self, token_ids: Sequence[int]) -> int:
        """Length of the repeating tail, 0 if there is none."""
        n, best = len(token_ids), 0
        for period in range(1, min(self.max_period, n // self.min_repeats) + 1):
            # walk back while token j equals the token one period later
            j = n - period - 1
            while j >= 0 and token_ids[j] == token_ids[j + period]:
                j -= 1
            length = n - 1 - j
            if length >= max(self.min_repeats * period, self.min_tokens):
                best = max(best, length)
        return best

    def __call__(self, token_ids: Sequence[int]) -> bool:
        return self.repeated_tail(token_ids) > 0


def segment_budget(response: PartialResponse, token_budget: int, max_tokens: int) -> int:
    """How many tokens the engine may generate for this response in this iteration."""
    if token_budget < 1:
        raise ValueError(f"token_budget: expected >= 1, got {token_budget}")
    return max(0, min(token_budget, max_tokens - response.num_tokens))


def extend(response: PartialResponse, token_ids: Sequence[int], logprobs: Sequence[float], policy_version: int,
           stopped: bool, token_budget: int, max_tokens: int,
           detector: RepetitionDetector | None = None) -> PartialResponse:
    """Append this iteration's segment and decide whether the response is done.

    `stopped`: the engine ended the response itself (end of sequence or a stop string).
    Otherwise it must have used the whole `segment_budget`; the response then stays
    unfinished, or ends as `max_tokens` when it has reached the overall limit.
    """
    if response.finished:
        raise ValueError(f"response to prompt {response.prompt_index} already ended ({response.stop_reason}); "
                         "expected an unfinished one")
    if len(token_ids) != len(logprobs):
        raise ValueError(f"token_ids ({len(token_ids)}) and logprobs ({len(logprobs)}) must have the same length")
    allowed = segment_budget(response, token_budget, max_tokens)
    if len(token_ids) > allowed:
        raise ValueError(f"token_ids: expected at most {allowed} tokens (budget {token_budget}, max_tokens {max_tokens}, "
                         f"{response.num_tokens} so far), got {len(token_ids)}")
    if not stopped and len(token_ids) < allowed:
        raise ValueError(f"token_ids: the engine neither stopped nor used its {allowed}-token budget "
                         f"(got {len(token_ids)} tokens)")
    if token_ids:
        response.segments.append(Segment(list(token_ids), [float(x) for x in logprobs], policy_version))
    if detector is not None and detector(response.response_ids):
        response.stop_reason = STOP_REPETITION
    elif stopped:
        response.stop_reason = STOP_EOS
    elif response.num_tokens >= max_tokens:
        response.stop_reason = STOP_MAX_TOKENS
    return response


def repetition_penalised(reward: float, response: PartialResponse, penalty: float) -> float:
    """A looping response earns at most 0, minus `penalty`: it should never look better than a wrong answer."""
    if penalty < 0:
        raise ValueError(f"penalty: expected >= 0, got {penalty}")
    return min(reward, 0.0) - penalty if response.repeated else reward


class PartialRolloutBuffer:
    """Unfinished responses waiting to be continued (oldest first), and finished ones waiting
    for the rest of their group: the loss's mean-reward baseline needs a prompt's whole group."""

    def __init__(self) -> None:
        self.unfinished: list[PartialResponse] = []
        self.waiting: OrderedDict[int, list[PartialResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.unfinished)

    def add(self, responses: Iterable[PartialResponse]) -> None:
        for response in responses:
            if response.finished:
                group = self.waiting.setdefault(response.group_id, [])
                if group and group[0].group_size != response.group_size:
                    raise ValueError(f"group {response.group_id}: group_size {response.group_size} disagrees with "
                                     f"{group[0].group_size} of its other members")
                if len(group) >= response.group_size:
                    raise ValueError(f"group {response.group_id}: more than group_size={response.group_size} finished responses")
                group.append(response)
            else:
                self.unfinished.append(response)

    def take_unfinished(self, max_count: int) -> list[PartialResponse]:
        """Up to `max_count` unfinished responses, oldest first, removed from the buffer."""
        if max_count < 0:
            raise ValueError(f"max_count: expected >= 0, got {max_count}")
        taken, self.unfinished = self.unfinished[:max_count], self.unfinished[max_count:]
        return taken

    def pop_complete_groups(self) -> list[list[PartialResponse]]:
        """Every group whose members have all finished, in the order their first member finished."""
        complete = [gid for gid, group in self.waiting.items() if len(group) == group[0].group_size]
        return [self.waiting.pop(gid) for gid in complete]

    def state(self) -> dict[str, Any]:
        return {"unfinished": [r.to_json() for r in self.unfinished],
                "waiting": [r.to_json() for group in self.waiting.values() for r in group]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PartialRolloutBuffer":
        buffer = cls()
        buffer.unfinished = [PartialResponse.from_json(r) for r in state["unfinished"]]
        for data in state["waiting"]:
            response = PartialResponse.from_json(data)
            if not response.finished:
                raise ValueError(f"waiting: expected finished responses, group {response.group_id} has an unfinished one")
            buffer.add([response])
        return buffer

"""Pod 0's checkpoint engine conducts the RL loop: rollout -> reward -> train -> weight sync.

It speaks to the trainer and rollout containers over localhost HTTP and moves the pod
through the phase state machine. It is the only place that knows the order of things; the
workers only do what they are asked.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from seesaw import pod_contract
from seesaw.checkpoint_engine import checkpoints, first_batch
from seesaw.checkpoint_engine.engines import EngineRoster, EngineSlot
from seesaw.checkpoint_engine.gang import GangServer, PodWorkers, on_each, on_each_guarded, on_every_pod
from seesaw.checkpoint_engine.sample_log import SampleLog
from seesaw.checkpoint_engine.phases import DeterministicFailure, Phase, PhaseError, PhaseMachine
from seesaw.checkpoint_engine.scoring import score_items
from seesaw.interfaces import Sample
from seesaw.model.prompt import PromptFormat, encode_answer, encode_prompt
from seesaw.rl.partial_rollout import Group, PartialResponse, PartialRolloutBuffer
from seesaw.rl.length_penalty import add_length_rewards, length_penalty_weight
from seesaw.rl import truncation
from seesaw.rl.pass_at_k import mean_pass_at_k
from seesaw.rl.objectives import training_samples
from seesaw.rl.sampling import make_sampler
from seesaw.rpc import WorkerClient, WorkerError
from seesaw.tasks import Problem, Task

MiB = 1024 * 1024
EVAL_SAMPLES = 4
PROBE_PROMPTS = 16
GANG_MARGIN = 1.0  # seconds: the gang names a late pod before the phase's own timeout fires
# How long a ready gang waits for the rollout replicas before its first iteration. Replicas
# load the model as the gang's engines do, so they are ready about as soon; one that is not
# (queued by Kueue, unschedulable) joins at a later sync instead of holding the job up.
REPLICA_START_GRACE = 120.0
# Largest per-token |log-prob difference| between an engine and the trainer on the probe
# batch, by dtype: well above kernel and reduction-order noise, far below what wrong or
# stale weights give (nats).
PROBE_TOLERANCE = {"float32": 1e-2, "float16": 0.25, "bfloat16": 0.5}


@dataclass
class IterationMetrics:
    iteration: int
    rollout_seconds: float
    train_seconds: float
    sync_seconds: float
    mean_reward: float
    accuracy: float
    mean_response_length: float
    rollout_tokens_per_second: float
    loss: float
    sync_bytes: int
    rollout_trainer_logprob_diff: float
    # after this iteration's sync: the engine's log-probs on the probe batch vs the trainer's
    probe_max_abs_logprob_diff: float
    probe_share_of_sync: float
    # the most any trainer rank's weight sender held during the sync beyond the trainer's own
    # memory: its staging buffers and the tensor in hand (docs/ARCHITECTURE.md, "Starting on a shared GPU")
    staging_peak_bytes: int = 0
    # the data-parallel replicas' parameter checksum (every rank checked it equals rank 0's)
    params_checksum: str = ""
    # per engine, this iteration: prompts it rolled out; weight version, checksum and probe difference after the sync
    engines: list[dict[str, Any]] = field(default_factory=list)
    eval_accuracy: float | None = None
    eval_greedy_accuracy: float | None = None
    # where the iteration's time went: its wall time (held-out evaluation aside), the verifier's
    # share of the rollout phase, and the trainer's own compute (log-prob recomputation and
    # optimiser steps) inside the train phase; the rest of the wall is phase-switch overhead
    iteration_seconds: float = 0.0
    scoring_seconds: float = 0.0
    trainer_compute_seconds: float = 0.0
    # the samples spec.rl.objective trained on (all of them for mirror descent; the
    # selected ones for the long2short objectives) and mean held-out response tokens
    trained_samples: int = 0
    eval_mean_tokens: float | None = None
    # responses cut at rollout.maxTokens (not stopped by the model)
    cut_fraction: float = 0.0


def describe_layout(layout: dict[str, Any] | None) -> str:
    """'megatron on cpu, TP=2 PP=1 DP=1' from a trainer's reported layout."""
    if not layout:
        return ""
    sizes = " ".join(f"{key.upper()}={layout[key]}" for key in ("tp", "pp", "dp", "ep") if key in layout
                     and (key != "ep" or layout[key] > 1))
    return f"{layout['backend']} on {layout['device']}, {sizes}"


@dataclass
class RunSummary:
    accuracy_before: float  # held-out, sampled at the rollout temperature (the policy itself)
    accuracy_after: float
    greedy_accuracy_before: float
    greedy_accuracy_after: float
    eval_prompts: int
    eval_samples_per_prompt: int
    iterations: int
    wall_seconds: float
    sync: dict[str, float]
    pods: int = 1
    trainer_ranks: int = 1  # the job's torch.distributed trainer group (pods x ranks per pod)
    # the trainer backend, its device and its parallel sizes (tp, pp, dp, ep), as pod 0's trainer reports them
    trainer: dict[str, Any] = field(default_factory=dict)
    # per rollout engine: its pod, the prompts it served; weight version, checksum and probe difference after the last sync
    engines: list[dict[str, Any]] = field(default_factory=list)
    exported_model: str = ""  # the trained policy as a Hugging Face model directory
    # mean response tokens on the held-out prompts, sampled (as accuracy_*) and greedy
    mean_tokens_before: float = float("nan")
    mean_tokens_after: float = float("nan")
    greedy_mean_tokens_before: float = float("nan")
    greedy_mean_tokens_after: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)
    # held-out pass@k before and after RL ({k, before, after}), when spec.rl.evaluation.passAtK asks
    pass_at_k: dict[str, float] = field(default_factory=dict)


class Conductor:
    def __init__(self, spec: dict[str, Any], task: Task, tokenizer: Any, trainer: WorkerClient,
                 rollouts: list[WorkerClient], run_dir: Path, log: Callable[[str], None] = print,
                 on_progress: Callable[[int, str, dict[str, Any]], None] | None = None,
                 resume_from: str | None = None, followers: list[PodWorkers] = (), gang: GangServer | None = None,
                 on_samples: Callable[[int, str, list[dict[str, Any]]], None] | None = None) -> None:
        self.resume_from = resume_from
        self.spec = spec
        self.task = task
        self.tokenizer = tokenizer
        self.pods = [PodWorkers(0, trainer, rollouts), *followers]
        self.run_dir = run_dir
        self.log = log
        # every rollout engine: the gang's, pod by pod, then the rollout replicas' as they join
        self.roster = EngineRoster(self.pods, gang, len(rollouts), log)
        self.on_progress = on_progress or (lambda iteration, phase, metrics: None)
        self.sample_log = SampleLog(run_dir, spec["logging"]["samplePrompts"], tokenizer, on_samples)
        self.prompt_format = PromptFormat.from_spec(spec)
        timeouts = spec["timeouts"]
        self.machine = PhaseMachine(
            timeouts={Phase.STARTING: timeouts["startupSeconds"], Phase.ROLLOUT: timeouts["rolloutSeconds"],
                      Phase.EVAL: timeouts["rolloutSeconds"], Phase.TRAIN: timeouts["trainSeconds"],
                      Phase.SYNC: timeouts["syncSeconds"], Phase.CHECKPOINT: timeouts["syncSeconds"]},
            on_transition=lambda old, new, iteration: self.on_progress(iteration, new.value, {}),
        )
        self.rng = random.Random(spec["rl"]["seed"])
        partial = spec["rl"]["partialRollout"]
        self.partial = (PartialRolloutBuffer(partial["tokenBudget"], spec["rollout"]["maxTokens"])
                        if partial["enabled"] else None)
        # group id of this iteration's finished partial-rollout groups -> index into task.train
        self.partial_indices: dict[int, int] = {}
        self.sampler = make_sampler(
            spec["rl"]["sampling"]["strategy"], len(task.train), spec["rl"]["iterations"],
            difficulty=lambda i: task.train[i].difficulty if task.train[i].difficulty is not None else len(task.train[i].answer),
        )
        self.history: list[IterationMetrics] = []
        self.last_sync: dict[str, Any] = {}
        self.probe = self.probe_batch(task.eval[:PROBE_PROMPTS])
        self.metrics_path = run_dir / "metrics.jsonl"
        self.checkpoint_root = Path(spec["checkpoint"]["path"])
        self.before: dict[str, float] | None = None  # held-out accuracy before RL (kept in checkpoints)
        self.resumed: Path | None = None  # the checkpoint this run continues from
        self.trainer_ranks = 1  # every pod's trainer reports the group's size once ready
        self.trainer_layout: dict[str, Any] = {}  # backend, device and parallel sizes, from pod 0's trainer

    # --- phases --------------------------------------------------------------------------
    def wait_ready(self) -> None:
        """Start every pod in the order a shared GPU needs: its rollout engines start, then
        sleep, and only then does its trainer allocate (docs/ARCHITECTURE.md, "Starting on a
        shared GPU"); the same calls on the CPU, where the trainer has built meanwhile."""
        def poll() -> None:
            pending = {client.name: (client, "startable" if client is pod.trainer else "ready")
                       for pod in self.pods for client in (pod.trainer, *pod.rollouts)}
            while pending:
                for name, (client, wanted) in list(pending.items()):
                    state = client.health()
                    if state and state.get("error"):
                        raise PhaseError(Phase.STARTING, f"{name} failed to start: {state['error']}")
                    if state and state.get(wanted):
                        if wanted == "ready":
                            self.log(f"{name} ready")
                        del pending[name]
                time.sleep(0.5)
            on_every_pod(self.pods, Phase.STARTING, start_pod, self.machine.remaining() - GANG_MARGIN)
            if self.spec["rollout"]["replicas"]:
                self.roster.wait_for_replicas(self.spec["rollout"]["replicas"],
                                              min(REPLICA_START_GRACE, self.machine.remaining() - GANG_MARGIN))

        def start_pod(pod: PodWorkers) -> None:
            on_each(pod.rollouts, lambda rollout: rollout.call("/sleep", timeout=self.machine.remaining()))
            state = pod.trainer.call("/start", timeout=self.machine.remaining())
            self.trainer_ranks = max(self.trainer_ranks, int(state.get("ranks", 1)))
            layout = state.get("layout")
            if layout and not self.trainer_layout:
                self.trainer_layout = layout
            ranks = f"{state['local_ranks']} ranks" if state.get("local_ranks", 1) > 1 else ""
            described = ", ".join(part for part in (ranks, describe_layout(layout)) if part)
            self.log(f"{pod.trainer.name} ready" + (f" ({described})" if described else ""))

        self.machine.run(Phase.STARTING, 0, poll)

    def sync_weights(self, iteration: int) -> dict[str, Any]:
        """Trainer -> live rollout engine, in buckets, through the weight channel; then the
        engine proves what it loaded on the probe batch. One sequence for every channel
        (docs/ARCHITECTURE.md, "The sync sequence")."""
        bucket_bytes = self.spec["weightSync"]["bucketMiB"] * MiB

        def on_pod(pod: PodWorkers) -> list[tuple[EngineSlot, dict[str, Any]]]:
            timeout = self.machine.remaining
            trainer, rollouts = pod.trainer, pod.rollouts
            replicas = self.roster.fed_by(pod, len(self.pods))  # they never sleep: no trainer shares their GPUs
            # the optimiser state makes room for the rollout's weights; the parameters stay to be read
            offloaded = trainer.call("/offload", {"keep_weights": True}, timeout=timeout())
            on_each(rollouts, lambda rollout: rollout.call("/wake_up", {"tags": ["weights"]}, timeout=timeout()))
            handle = trainer.call("/weights/handle", {"bucket_bytes": bucket_bytes}, timeout=timeout())

            def update(slot: EngineSlot) -> dict[str, Any]:  # every engine pulls the same buckets
                if not slot.initialised:
                    slot.client.call("/weights/init", {"receiver_init": handle["receiver_init"]}, timeout=timeout())
                    slot.initialised = True
                return slot.client.call("/weights/update", {"handle": handle}, timeout=timeout())

            own = [self.roster.slot_of(client) for client in rollouts]
            own_updated = list(zip(own, on_each(own, update)))  # a gang engine's failure fails the sync
            replica_updated = [(slot, result) for slot, result in zip(replicas, on_each_guarded(replicas, update))
                               if self._replica_survives(slot, result, "the weight update")]
            trainer.call("/weights/release", timeout=timeout())  # staging copies: the rollout's memory
            probe_started = time.perf_counter()
            expected = trainer.call("/logprobs", self.probe, timeout=timeout())
            trainer_probe_seconds = time.perf_counter() - probe_started
            offloaded_all = trainer.call("/offload", {"keep_weights": False}, timeout=timeout())

            def prove(slot: EngineSlot, result: dict[str, Any]) -> dict[str, Any]:
                if not slot.is_replica:
                    slot.client.call("/wake_up", {"tags": ["kv_cache"]}, timeout=timeout())
                started = time.perf_counter()
                served = slot.client.call("/logprobs", self.probe, timeout=timeout())
                seconds = time.perf_counter() - started
                return dict(result, probe_max_abs_logprob_diff=self._check_engine(slot, result, handle, expected, served),
                            offloaded_bytes=offloaded["bytes"] + offloaded_all["bytes"],
                            staging_peak_bytes=handle["staging"]["peak_bytes"],
                            probe_seconds=trainer_probe_seconds + seconds)

            checked = [(slot, result) for (slot, _), result in zip(own_updated, on_each(own_updated, lambda pair: prove(*pair)))]
            checked += [(slot, result) for (slot, _), result in
                        zip(replica_updated, on_each_guarded(replica_updated, lambda pair: prove(*pair)))
                        if self._replica_survives(slot, result, "the probe")]
            return checked

        def work() -> dict[str, Any]:
            self.roster.admit_replicas()  # they start with this sync's weights
            per_pod = on_every_pod(self.pods, Phase.SYNC, on_pod, self.machine.remaining() - GANG_MARGIN)
            checked = [pair for pod_results in per_pod for pair in pod_results]
            for slot, result in checked:
                slot.record.update(weight_version=result["weight_version"], weight_checksum=result["weight_checksum"],
                                   probe_max_abs_logprob_diff=result["probe_max_abs_logprob_diff"])
            results = [result for _, result in checked]
            return dict(results[0], seconds=max(r["seconds"] for r in results),
                        staging_peak_bytes=max(r["staging_peak_bytes"] for r in results),
                        probe_seconds=max(r["probe_seconds"] for r in results),
                        probe_max_abs_logprob_diff=max(r["probe_max_abs_logprob_diff"] for r in results))

        self.last_sync = self.machine.run(Phase.SYNC, iteration, work)
        return self.last_sync

    def _replica_survives(self, slot: EngineSlot, outcome: Any, step: str) -> bool:
        """A replica whose step failed is dropped (never rolled out on); the job goes on."""
        if isinstance(outcome, Exception):
            self.roster.drop_failed(slot, outcome, step)
            return False
        return True

    def _check_engine(self, slot: EngineSlot, result: dict[str, Any], handle: dict[str, Any],
                      expected: list[list[float]], served: list[list[float]]) -> float:
        """Refuse to roll out on an engine that did not load this sync's weights: its weight
        version, the checksum of what it loaded, and its log-probs on the probe batch."""
        record, rollout = slot.record, slot.client
        expected_version = record["weight_version"] + 1
        if result["weight_version"] != expected_version:
            raise PhaseError(Phase.SYNC, f"{rollout.name} reports weight version {result['weight_version']}, "
                                         f"expected {expected_version}: it did not take this sync's weights")
        if result["weight_checksum"] != handle["weight_checksum"]:
            raise PhaseError(Phase.SYNC, f"{rollout.name} loaded weights with checksum {result['weight_checksum'] or '(none)'}, "
                                         f"the trainer staged {handle['weight_checksum']}: the transfer corrupted or "
                                         f"missed tensors")
        diff = max(abs(a - b) for xs, ys in zip(expected, served) for a, b in zip(xs, ys))
        tolerance = PROBE_TOLERANCE[self.spec["model"]["dtype"]]
        if not diff <= tolerance:  # NaN fails too
            # the checksum matched: the engine holds every byte the trainer sent and computes
            # something else with them (a layer it does not reload, a model it runs otherwise),
            # which the same weights into the same engine after a restart would repeat
            raise DeterministicFailure(
                Phase.SYNC, f"{rollout.name}'s log-probs on the probe batch differ from the trainer's by {diff:.3g} "
                            f"(> {tolerance} for {self.spec['model']['dtype']}) although it loaded exactly the bytes "
                            f"the trainer sent (checksum {handle['weight_checksum']}): it computes something else "
                            f"with the same weights (weight version {result['weight_version']}); not a transfer error, "
                            "so a restart would fail the same way")
        return diff

    def evaluate(self, iteration: int, problems: list[Problem]) -> dict[str, float]:
        """Held-out accuracy: greedy, and the policy's own (sampled at the rollout temperature,
        `EVAL_SAMPLES` per prompt), which is what the RL objective is the expectation of; and
        the mean response tokens of each (what long2short trades accuracy against)."""
        rollout = self.spec["rollout"]

        prompts = [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems]

        pass_k = self.spec["rl"]["evaluation"]["passAtK"]
        sampled_n = max(EVAL_SAMPLES, pass_k)  # pass@k needs at least k samples of each prompt
        per_prompt: list[list[float]] = [[] for _ in prompts]

        def measure(samples_per_prompt: int, temperature: float) -> tuple[float, float]:
            samples = self._generate(prompts, samples_per_prompt, rollout["maxTokens"], temperature)
            scores = self._score(samples, [s.prompt_index for s in samples], "eval", len(prompts))
            for sample, score in zip(samples, scores):
                sample.reward = score  # what the sample log records: held-out answers earn their score
                if temperature != 0.0:
                    per_prompt[sample.prompt_index].append(score)
            self.sample_log.record(iteration, "eval-greedy" if temperature == 0.0 else "eval-sampled", samples,
                                   [problems[s.prompt_index] for s in samples], scores)
            tokens = sum(len(s.response_ids) for s in samples)
            return sum(scores) / max(1, len(scores)), tokens / max(1, len(samples))

        def work() -> dict[str, float]:
            (greedy, greedy_tokens), (sampled, sampled_tokens) = measure(1, 0.0), measure(sampled_n, rollout["temperature"])
            result = {"greedy": greedy, "sampled": sampled, "greedy_tokens": greedy_tokens, "sampled_tokens": sampled_tokens}
            if pass_k:  # pass@1 is "sampled": the mean accuracy over the n samples
                result["pass_at_k"] = mean_pass_at_k(per_prompt, pass_k)
            return result

        result = self.machine.run(Phase.EVAL, iteration, work)
        self.on_progress(iteration, "evaluated", result)
        return result

    def _score(self, samples: list[Sample], problem_indices: list[int], split: str, prompt_count: int) -> list[float]:
        """The verifier's score of each sample, computed on a gang pod: the one that generated
        it where the gang's engines alone rolled out (the prompts' contiguous shares are the
        ones `_generate` gave them), spread over the gang pods where replicas took a share."""
        gang = self.roster.gang_slots()
        shares = self.roster.shares(prompt_count, gang)

        def on_pod(pod: PodWorkers) -> list[tuple[int, float]]:
            mine_ranges = [share for slot, share in zip(gang, shares) if slot.owner is pod]
            lo, hi = mine_ranges[0][0], mine_ranges[-1][1]  # a pod's engines hold adjacent shares
            mine = [i for i, s in enumerate(samples) if lo <= s.prompt_index < hi]
            items = [[problem_indices[i], samples[i].response_ids] for i in mine]
            if not items:
                return []
            if pod.engine is None:  # pod 0: this checkpoint engine
                scores = score_items(self.task, self.tokenizer, split, items)
            else:
                scores = pod.engine.call("/score", {"split": split, "items": items}, timeout=self.machine.remaining())
            return list(zip(mine, scores))

        scored = dict(pair for share in on_every_pod(self.pods, self.machine.state, on_pod,
                                                     self.machine.remaining() - GANG_MARGIN) for pair in share)
        return [scored[i] for i in range(len(samples))]

    def _generate(self, prompts: list[list[int]], n: int, max_tokens: int, temperature: float | None = None) -> list[Sample]:
        if not prompts:
            return []
        if temperature is None:
            temperature = self.spec["rollout"]["temperature"]
        rollout = self.spec["rollout"]
        request = {"n": n, "temperature": temperature, "top_p": rollout["topP"], "top_k": rollout["topK"],
                   "stop": rollout["stop"], "max_tokens": max_tokens}

        def on_engine(slot: EngineSlot, lo: int, hi: int) -> list[Sample]:
            raw = slot.client.call("/generate", dict(request, prompt_ids=prompts[lo:hi]), timeout=self.machine.remaining())
            slot.record["prompts"] += hi - lo
            slot.served += hi - lo
            return [Sample(**dict(s, prompt_index=s["prompt_index"] + lo)) for s in raw]

        samples = self.roster.run_shares(len(prompts), on_engine, self.machine.state,
                                         self.machine.remaining() - GANG_MARGIN)
        return sorted(samples, key=lambda sample: sample.prompt_index)  # stable: a prompt's k samples keep their order

    def _partial_samples(self, chosen: list[int], problems: list[Problem]) -> tuple[list[Sample], int]:
        """Continue the buffered responses, start the new prompts; return the samples of the
        groups that finished and the number of tokens generated."""
        buffer = self.partial
        buffer.begin_iteration()
        pending = list(buffer.unfinished())
        continued = self._generate([r.prompt_ids + r.response_ids for r in pending], 1, buffer.segment_tokens())
        for response, sample in zip(pending, continued):
            buffer.extend(response, sample.response_ids, sample.logprobs, sample.finished)
        prompts = [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems]
        k = self.spec["rollout"]["samplesPerPrompt"]
        groups = [buffer.add_group(index, prompt, k) for index, prompt in zip(chosen, prompts)]
        for sample in self._generate(prompts, k, buffer.segment_tokens()):
            member = next(m for m in groups[sample.prompt_index].members if not m.response_ids and not m.finished)
            buffer.extend(member, sample.response_ids, sample.logprobs, sample.finished)
        generated = sum(len(s.response_ids) for s in continued) + sum(
            len(m.response_ids) for g in groups for m in g.members)
        samples = []
        self.partial_indices = {}
        for group_id, group in enumerate(buffer.pop_finished()):
            self.partial_indices[group_id] = group.problem_index
            samples += [Sample(group_id, m.prompt_ids, m.response_ids, m.logprobs, finished=not m.repeated,
                               train_from=m.on_policy_from) for m in group.members]
        return samples, generated

    def roll_out(self, iteration: int) -> tuple[list[Sample], dict[str, float]]:
        rl, rollout = self.spec["rl"], self.spec["rollout"]
        waiting = len(self.partial.groups) if self.partial else 0
        chosen = self.sampler.sample(max(0, rl["promptsPerIteration"] - waiting), self.rng, iteration)
        problems = [self.task.train[i] for i in chosen]

        def work() -> tuple[list[Sample], dict[str, float]]:
            started = time.perf_counter()
            if self.partial:
                # finished groups are scored spread over the pods (their segments may come from several engines)
                samples, tokens = self._partial_samples(chosen, problems)
                problem_indices, prompt_count = [self.partial_indices[s.prompt_index] for s in samples], len(self.partial_indices)
            else:
                prompts = [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems]
                samples = self._generate(prompts, rollout["samplesPerPrompt"], rollout["maxTokens"])
                problem_indices, prompt_count = [chosen[s.prompt_index] for s in samples], len(prompts)
                tokens = sum(len(s.response_ids) for s in samples)
            seconds = time.perf_counter() - started
            correct = self._score(samples, problem_indices, "train", prompt_count)
            scoring_seconds = time.perf_counter() - started - seconds
            generated = {"accuracy": statistics.fmean(correct) if correct else 0.0,
                         "mean_length": statistics.fmean(len(s.response_ids) for s in samples) if samples else 0.0,
                         "cut_fraction": statistics.fmean(not s.finished for s in samples) if samples else 0.0}
            cut_policy = rl["truncated"]  # left at score under partial rollouts (the spec's rule)
            if not self.partial:  # partial rollouts continue a response up to the whole budget
                kept, correct = truncation.apply(cut_policy, samples, correct)
                samples, problem_indices = [samples[i] for i in kept], [problem_indices[i] for i in kept]
            penalty = rl["lengthPenalty"]
            bonus = add_length_rewards([s.prompt_index for s in samples], [len(s.response_ids) for s in samples],
                                       [c == 1.0 for c in correct],
                                       length_penalty_weight(penalty["weight"], penalty["warmupIterations"], iteration))
            for sample, score, extra in zip(samples, correct, bonus):
                sample.reward = score + extra
            self.sample_log.record(iteration, "train", samples, [self.task.train[i] for i in problem_indices], correct)
            return samples, dict(generated, tokens=tokens, seconds=seconds, scoring_seconds=scoring_seconds, correct=correct)

        samples, stats = self.machine.run(Phase.ROLLOUT, iteration, work)
        correct = stats.pop("correct")
        per_prompt: dict[int, list[float]] = {}
        for sample, score in zip(samples, correct):
            per_prompt.setdefault(sample.prompt_index, []).append(score)
        indices = self.partial_indices if self.partial else chosen
        self.sampler.update([indices[i] for i in per_prompt], [statistics.fmean(v) for v in per_prompt.values()])
        stats["mean_reward"] = statistics.fmean(s.reward for s in samples) if samples else 0.0
        return training_samples(samples, correct, rl["objective"]), stats

    def train(self, iteration: int, samples: list[Sample]) -> dict[str, Any]:
        """The rollout engine frees its memory before the trainer takes its state back. Every
        pod's trainer gets the whole batch: each rank takes its data-parallel share (whose
        size every rank must know) and reports the whole step's statistics."""
        batch = {"samples": [asdict(s) for s in samples], "tau": self.spec["rl"]["tau"]}
        if iteration == 1 and os.environ.get(pod_contract.KEEP_FIRST_BATCH) == "1":
            first_batch.write(self.run_dir, batch)

        def on_pod(pod: PodWorkers) -> dict[str, Any]:
            on_each(pod.rollouts, lambda rollout: rollout.call("/sleep", timeout=self.machine.remaining()))
            pod.trainer.call("/onload", timeout=self.machine.remaining())
            return pod.trainer.call("/train", batch, timeout=self.machine.remaining())

        def work() -> dict[str, Any]:
            return on_every_pod(self.pods, Phase.TRAIN, on_pod, self.machine.remaining() - GANG_MARGIN)[0]

        return self.machine.run(Phase.TRAIN, iteration, work)

    # --- checkpoints ---------------------------------------------------------------------
    def save_trainer(self, iteration: int) -> Path:
        """Right after training, while the trainer's state is on the device: every pod's
        trainer writes its part (rank 0 alone where the replicas are identical), and the
        policy is exported as a Hugging Face model. The checkpoint is committed once the
        iteration is recorded (`commit_checkpoint`)."""
        staging = checkpoints.staging_dir(self.checkpoint_root, iteration)

        def work() -> None:
            timeout = self.machine.remaining() - GANG_MARGIN
            on_every_pod(self.pods, Phase.CHECKPOINT, lambda pod: pod.trainer.call(
                "/checkpoint/save", {"path": str(staging / checkpoints.TRAINER_DIR), "iteration": iteration},
                timeout=self.machine.remaining()), timeout)
            on_every_pod(self.pods, Phase.CHECKPOINT, lambda pod: pod.trainer.call(
                "/export", {"path": str(staging / checkpoints.MODEL_DIR)}, timeout=self.machine.remaining()), timeout)

        self.machine.run(Phase.CHECKPOINT, iteration, work)
        return staging

    def commit_checkpoint(self, staging: Path, iteration: int) -> Path:
        """Add what the conductor needs to go on, then make the checkpoint the latest."""
        checkpoints.write_state(staging, {
            "iteration": iteration,
            "rng": self.rng.getstate(),
            "sampler": self.sampler.state(),
            "partial_groups": [asdict(g) for g in self.partial.groups] if self.partial else [],
            "engine_prompts": [slot.record["prompts"] for slot in self.roster.gang_slots()],
            "accuracy_before": self.before,
            "history": [asdict(m) for m in self.history],
        })
        path = checkpoints.commit(staging)
        self.on_progress(iteration, "checkpoint", {"path": str(path)})
        return path

    def resume(self, checkpoint: str) -> int:
        """Load every trainer and the conductor's own state; returns the iteration to go on at.
        The metrics file keeps one record per iteration: the checkpoint's (a failed attempt's
        records are set aside in metrics.attempt-N.jsonl). A checkpoint that cannot be read
        fails the starting phase, naming it."""
        def work() -> int:
            found = checkpoints.resolve(checkpoint)
            state = checkpoints.read_state(found)
            try:
                loaded = on_every_pod(self.pods, Phase.STARTING, lambda pod: pod.trainer.call(
                    "/checkpoint/load", {"path": str(found / checkpoints.TRAINER_DIR)},
                    timeout=self.machine.remaining()), self.machine.remaining() - GANG_MARGIN)
            except (PhaseError, WorkerError) as err:
                raise checkpoints.CheckpointError(f"{found}: the trainer could not load it: {err}") from err
            if loaded[0]["iteration"] != state["iteration"]:
                raise checkpoints.CheckpointError(f"{found}: the trainer's state is of iteration {loaded[0]['iteration']}, "
                                                  f"the conductor's of iteration {state['iteration']}")
            version, internal, gauss = state["rng"]
            self.rng.setstate((version, tuple(internal), gauss))
            self.sampler.load_state(state["sampler"])
            if self.partial:
                self.partial.groups = [Group(g["problem_index"], [PartialResponse(**m) for m in g["members"]])
                                       for g in state["partial_groups"]]
            for slot, prompts in zip(self.roster.gang_slots(), state["engine_prompts"]):
                slot.record["prompts"] = prompts
            self.before = state["accuracy_before"]
            self.history = [IterationMetrics(**m) for m in state["history"]]
            self.resumed = found
            return state["iteration"] + 1

        start = self.machine.run(Phase.STARTING, 0, work)
        self._start_metrics_file()
        return start

    def _start_metrics_file(self) -> None:
        if self.metrics_path.exists():
            attempt = next(n for n in itertools.count(1) if not self.metrics_path.with_suffix(f".attempt-{n}.jsonl").exists())
            set_aside = self.metrics_path.with_suffix(f".attempt-{attempt}.jsonl")
            self.metrics_path.rename(set_aside)
            self.log(f"the records of an earlier attempt are set aside in {set_aside.name}")
        with self.metrics_path.open("w") as out:
            out.writelines(json.dumps(asdict(m)) + "\n" for m in self.history)

    def probe_batch(self, problems: list[Problem]) -> dict[str, list[list[int]]]:
        """Fixed sequences (held-out prompts and their reference answers) that every engine
        scores after every sync, and the trainer with it."""
        return {"prompt_ids": [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems],
                "response_ids": [encode_answer(self.tokenizer, p.answer) for p in problems]}

    def _refuse_earlier_checkpoints(self) -> None:
        """A fresh start on a checkpoint volume that holds another run's checkpoints would mix
        its iterations with theirs (and a restart would resume from theirs): refuse it."""
        earlier = None if self.resume_from else checkpoints.latest(self.checkpoint_root)
        if earlier:
            raise checkpoints.CheckpointError(
                f"spec.checkpoint.path {self.checkpoint_root} already holds checkpoints of an earlier run (latest: "
                f"{earlier.name}); a fresh start would mix its iterations with them. Continue that run from "
                f"{earlier} (seesaw run --resume-from), or give this job an empty checkpoint.path")

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> RunSummary:
        started = time.time()
        rl = self.spec["rl"]
        self._refuse_earlier_checkpoints()
        self.log(f"waiting for the trainer and rollout containers (timeout {self.spec['timeouts']['startupSeconds']:.0f}s)")
        self.wait_ready()
        start = self.resume(self.resume_from) if self.resume_from else 1
        if self.resume_from:
            self.log(f"resumed from {self.resume_from}: continuing at iteration {start}")
        else:
            self._start_metrics_file()
        first = self.sync_weights(start - 1)  # every engine opens its side of the channel first
        self.log(f"initial weight sync: {first['bytes'] / MiB:.1f} MiB in {first['buckets']} buckets, {first['seconds']:.3f}s")
        if self.before is None:
            self.before = self.evaluate(0, self.task.eval)
        before = self.before
        self.log(f"held-out accuracy before RL: {before['sampled']:.3f} sampled (T={self.spec['rollout']['temperature']}), "
                 f"{before['greedy']:.3f} greedy, on {len(self.task.eval)} prompts"
                 + (f"; mean response {before['sampled_tokens']:.1f} tokens" if "sampled_tokens" in before else ""))
        every_eval = rl["evaluation"]["everyIterations"]
        every_ckpt = self.spec["checkpoint"]["everyIterations"]
        # a run resumed at its end checkpoints nothing new: the policy is the resumed checkpoint's
        exported = self.resumed / checkpoints.MODEL_DIR if self.resumed else ""
        for iteration in range(start, rl["iterations"] + 1):
            iteration_started = time.perf_counter()
            self.roster.count_served()
            samples, rollout_stats = self.roll_out(iteration)
            train_stats = self.train(iteration, samples)
            train_seconds = self.machine.timeline[-1].seconds
            # every checkpoint.everyIterations, and the last iteration: the trained policy
            due = iteration == rl["iterations"] or (every_ckpt and iteration % every_ckpt == 0)
            staging = self.save_trainer(iteration) if due else None
            sync = self.sync_weights(iteration)
            metrics = IterationMetrics(
                iteration=iteration,
                rollout_seconds=rollout_stats["seconds"],
                train_seconds=train_seconds,
                sync_seconds=self.machine.timeline[-1].seconds,
                mean_reward=rollout_stats["mean_reward"],
                accuracy=rollout_stats["accuracy"],
                mean_response_length=rollout_stats["mean_length"],
                cut_fraction=rollout_stats["cut_fraction"],
                rollout_tokens_per_second=rollout_stats["tokens"] / max(rollout_stats["seconds"], 1e-9),
                loss=train_stats["loss"],
                sync_bytes=sync["bytes"],
                staging_peak_bytes=sync["staging_peak_bytes"],
                rollout_trainer_logprob_diff=train_stats["extra"].get("max_abs_logprob_diff", float("nan")),
                probe_max_abs_logprob_diff=sync["probe_max_abs_logprob_diff"],
                probe_share_of_sync=sync["probe_seconds"] / max(self.machine.timeline[-1].seconds, 1e-9),
                params_checksum=str(train_stats["extra"].get("params_checksum", "")),
                # what each engine served in this rollout; a replica dropped since is listed once,
                # marked "lost" (it failed) or "left" (scaled down)
                engines=[dict(slot.record, prompts=slot.served) for slot in self.roster.slots]
                + [dict(slot.record, prompts=slot.served, **{departure.value: True})
                   for slot, departure in self.roster.take_departed()],
                scoring_seconds=rollout_stats["scoring_seconds"],
                trainer_compute_seconds=train_stats["seconds"],
                trained_samples=len(samples),
            )
            metrics.iteration_seconds = time.perf_counter() - iteration_started
            if every_eval and iteration % every_eval == 0 and iteration != rl["iterations"]:
                evaluated = self.evaluate(iteration, self.task.eval)
                metrics.eval_accuracy, metrics.eval_greedy_accuracy = evaluated["sampled"], evaluated["greedy"]
                metrics.eval_mean_tokens = evaluated["sampled_tokens"]
            self.history.append(metrics)
            if staging:  # committed before the iteration is reported: whoever sees "iter N" can resume from N
                exported = self.commit_checkpoint(staging, iteration) / checkpoints.MODEL_DIR
            self._record(metrics, rl["iterations"])
        # nothing trained (rl.iterations 0: an evaluation-only job): the policy is the one measured before
        after = self.evaluate(rl["iterations"], self.task.eval) if rl["iterations"] else before
        self.machine.finish(rl["iterations"])
        diff = self.last_sync["probe_max_abs_logprob_diff"]
        self.log(f"held-out accuracy after RL: {after['sampled']:.3f} sampled (before {before['sampled']:.3f}), "
                 f"{after['greedy']:.3f} greedy (before {before['greedy']:.3f}); "
                 + (f"mean response {after['sampled_tokens']:.1f} tokens; " if "sampled_tokens" in after else "")
                 + (f"pass@{rl['evaluation']['passAtK']} {after['pass_at_k']:.3f} (before {before['pass_at_k']:.3f}); "
                    if "pass_at_k" in after and "pass_at_k" in before else "")
                 + f"vLLM vs trainer max |dlogp| on {len(self.probe['prompt_ids'])} probe sequences after the last sync: {diff:.2e}")
        sync_history = [m.sync_seconds for m in self.history]
        return RunSummary(
            accuracy_before=before["sampled"], accuracy_after=after["sampled"],
            greedy_accuracy_before=before["greedy"], greedy_accuracy_after=after["greedy"],
            eval_prompts=len(self.task.eval), eval_samples_per_prompt=max(EVAL_SAMPLES, rl["evaluation"]["passAtK"]),
            iterations=rl["iterations"], wall_seconds=time.time() - started,
            sync={"bytes": int(self.last_sync["bytes"]), "seconds": float(self.last_sync["seconds"]),
                  "mean_phase_seconds": statistics.fmean(sync_history) if sync_history else 0.0,
                  "max_abs_logprob_diff": diff},
            pods=len(self.pods), trainer_ranks=self.trainer_ranks, trainer=self.trainer_layout, engines=[dict(record) for record in self.roster.records],
            exported_model=str(exported),
            # a checkpoint from before response lengths were measured has no length for "before"
            mean_tokens_before=before.get("sampled_tokens", float("nan")), mean_tokens_after=after.get("sampled_tokens", float("nan")),
            greedy_mean_tokens_before=before.get("greedy_tokens", float("nan")), greedy_mean_tokens_after=after.get("greedy_tokens", float("nan")),
            history=[asdict(m) for m in self.history],
            pass_at_k={"k": rl["evaluation"]["passAtK"], "before": before["pass_at_k"], "after": after["pass_at_k"]}
            if "pass_at_k" in before and "pass_at_k" in after else {},
        )

    def _record(self, metrics: IterationMetrics, total: int) -> None:
        with self.metrics_path.open("a") as out:
            out.write(json.dumps(asdict(metrics)) + "\n")
        # observers first: once the line is in the log, the status, trackers and metrics have it
        self.on_progress(metrics.iteration, "iteration", asdict(metrics))
        eval_part = f" | eval {metrics.eval_accuracy:.3f}" if metrics.eval_accuracy is not None else ""
        self.log(
            f"iter {metrics.iteration:>3}/{total} | rollout {metrics.rollout_seconds:5.2f}s train {metrics.train_seconds:5.2f}s "
            f"sync {metrics.sync_seconds:5.3f}s | reward {metrics.mean_reward:.3f} acc {metrics.accuracy:.3f} "
            f"len {metrics.mean_response_length:4.1f} | {metrics.rollout_tokens_per_second:6.0f} tok/s | "
            f"loss {metrics.loss:.4f}{eval_part}"
        )

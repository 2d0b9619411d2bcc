"""Pod 0's checkpoint engine conducts the RL loop: rollout -> reward -> train -> weight sync.

It speaks to the trainer and rollout containers over localhost HTTP and moves the pod
through the phase state machine. It is the only place that knows the order of things; the
workers only do what they are asked.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import random
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from seesaw import pod_contract, wire
from seesaw.checkpoint_engine import checkpoints, first_batch
from seesaw.checkpoint_engine.engines import STRAGGLER_RATIO, EngineRoster, EngineSlot, Share
from seesaw.checkpoint_engine.gang import GangServer, PodWorkers, generate_on_pod, on_every_pod, on_pod, on_pod_engines
from seesaw.checkpoint_engine.iteration_metrics import (EVAL_SAMPLES, IterationMetrics, IterationRecorder, RunSummary,
                                                        after_line, before_line, describe_layout, evaluated,
                                                        iteration_line, run_summary)
from seesaw.checkpoint_engine.sample_log import SampleLog
from seesaw.checkpoint_engine.phases import Phase, PhaseError, PhaseMachine
from seesaw.checkpoint_engine.weight_sync import MiB, WeightSync
from seesaw.checkpoint_engine.scoring import score_items
from seesaw.interfaces import Sample
from seesaw.model.prompt import PromptFormat, encode_answer, encode_prompt
from seesaw.rl.partial_rollout import Group, PartialResponse, PartialRolloutBuffer
from seesaw.rl.length_penalty import add_length_rewards, length_penalty_weight
from seesaw.rl import truncation
from seesaw.rl.pass_at_k import mean_pass_at_k
from seesaw.rl.objectives import training_samples
from seesaw.rl.training import group_by_prompt, ranks_groups
from seesaw.rl.sampling import make_sampler
from seesaw.rpc import WorkerClient, WorkerError
from seesaw.wire import token_list
from seesaw.tasks import Problem, Task

# The probe proves what an engine computes with the weights it loaded: a few sequences show
# a wrong or stale weight on every token, and each prompt costs a forward on both sides
PROBE_PROMPTS = 4
GANG_MARGIN = 1.0  # seconds: the gang names a late pod before the phase's own timeout fires
# How long a ready gang waits for the rollout replicas before its first iteration. Replicas
# load the model as the gang's engines do, so they are ready about as soon; one that is not
# (queued by Kueue, unschedulable) joins at a later sync instead of holding the job up.
REPLICA_START_GRACE = 120.0


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
        # pod index -> the data-parallel ranks its trainer holds, of how many ({"ranks", "size"})
        self.data_parallel: dict[int, dict[str, Any]] = {}
        self.weight_sync = WeightSync(spec, self.roster, self.probe, self.machine.remaining, lambda: len(self.pods))

    # --- phases --------------------------------------------------------------------------
    def wait_ready(self) -> None:
        """Start every pod in the order a shared GPU needs: its rollout engines start, then
        sleep, and only then does its trainer allocate (docs/ARCHITECTURE.md, "Starting on a
        shared GPU"); the same calls on the CPU, where the trainer has built meanwhile."""
        self.machine.run(Phase.STARTING, 0, self._start_gang)

    def _start_gang(self) -> None:
        self._wait_for_health()
        on_every_pod(self.pods, Phase.STARTING, self._start_pod, self.machine.remaining() - GANG_MARGIN)
        if self.spec["rollout"]["replicas"]:
            self.roster.wait_for_replicas(self.spec["rollout"]["replicas"],
                                          min(REPLICA_START_GRACE, self.machine.remaining() - GANG_MARGIN))

    def _wait_for_health(self) -> None:
        """Until every engine is ready and every trainer can start."""
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

    def _start_pod(self, pod: PodWorkers) -> None:
        on_pod_engines(pod, "/sleep", {}, self.machine.remaining())
        state = pod.trainer.call("/start", timeout=self.machine.remaining())
        self.trainer_ranks = max(self.trainer_ranks, int(state.get("ranks", 1)))
        self.data_parallel[pod.index] = state["data_parallel"]
        layout = state.get("layout")
        if layout and not self.trainer_layout:
            self.trainer_layout = layout
        ranks = f"{state['local_ranks']} ranks" if state.get("local_ranks", 1) > 1 else ""
        described = ", ".join(part for part in (ranks, describe_layout(layout)) if part)
        self.log(f"{pod.trainer.name} ready" + (f" ({described})" if described else ""))

    def sync_weights(self, iteration: int) -> dict[str, Any]:
        """Trainer -> live rollout engines, through the weight channel, on every pod at once;
        then each engine proves what it loaded (seesaw.checkpoint_engine.weight_sync)."""
        self.last_sync = self.machine.run(Phase.SYNC, iteration, self._sync_gang)
        return self.last_sync

    def _sync_gang(self) -> dict[str, Any]:
        self.roster.admit_replicas()  # they start with this sync's weights
        per_pod = on_every_pod(self.pods, Phase.SYNC, self.weight_sync.on_pod, self.machine.remaining() - GANG_MARGIN)
        return WeightSync.summary([pair for pod_results in per_pod for pair in pod_results])

    def evaluate(self, iteration: int, problems: list[Problem]) -> dict[str, float]:
        """Held-out accuracy: greedy, and the policy's own (sampled at the rollout temperature,
        `EVAL_SAMPLES` per prompt), which is what the RL objective is the expectation of; and
        the mean response tokens of each (what long2short trades accuracy against)."""
        result = self.machine.run(Phase.EVAL, iteration, functools.partial(self._evaluate, iteration, problems))
        self.on_progress(iteration, "evaluated", result)
        return result

    def _evaluate(self, iteration: int, problems: list[Problem]) -> dict[str, float]:
        prompts = [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems]
        pass_k = self.spec["rl"]["evaluation"]["passAtK"]
        per_prompt: list[list[float]] = [[] for _ in prompts]  # the sampled scores, for pass@k
        greedy, greedy_tokens = self._measure(iteration, problems, prompts, 1, 0.0, per_prompt)
        # pass@k needs at least k samples of each prompt
        sampled, sampled_tokens = self._measure(iteration, problems, prompts, max(EVAL_SAMPLES, pass_k),
                                                self.spec["rollout"]["temperature"], per_prompt)
        result = {"greedy": greedy, "sampled": sampled, "greedy_tokens": greedy_tokens, "sampled_tokens": sampled_tokens}
        if pass_k:  # pass@1 is "sampled": the mean accuracy over the n samples
            result["pass_at_k"] = mean_pass_at_k(per_prompt, pass_k)
        return result

    def _measure(self, iteration: int, problems: list[Problem], prompts: list[list[int]], samples_per_prompt: int,
                 temperature: float, per_prompt: list[list[float]]) -> tuple[float, float]:
        """Accuracy and mean response tokens of one held-out pass; sampled scores go to per_prompt."""
        samples = self._generate(prompts, samples_per_prompt, self.spec["rollout"]["maxTokens"], temperature)
        scores = self._score(samples, [s.prompt_index for s in samples], "eval", len(prompts))
        for sample, score in zip(samples, scores):
            sample.reward = score  # what the sample log records: held-out answers earn their score
            if temperature != 0.0:
                per_prompt[sample.prompt_index].append(score)
        self.sample_log.record(iteration, "eval-greedy" if temperature == 0.0 else "eval-sampled", samples,
                               [problems[s.prompt_index] for s in samples], scores)
        tokens = sum(len(s.response_ids) for s in samples)
        return sum(scores) / max(1, len(scores)), tokens / max(1, len(samples))

    def _score(self, samples: list[Sample], problem_indices: list[int], split: str, prompt_count: int) -> list[float]:
        """The verifier's score of each sample, computed on a gang pod: the one that generated
        it where the gang's engines alone rolled out (the prompts' contiguous shares are the
        ones `_generate` gave them), spread over the gang pods where replicas took a share."""
        gang = self.roster.gang_slots()
        shares = self.roster.shares(prompt_count, gang)
        on_pod = functools.partial(self._score_on_pod, samples, problem_indices, split, gang, shares)
        scored = dict(pair for share in on_every_pod(self.pods, self.machine.state, on_pod,
                                                     self.machine.remaining() - GANG_MARGIN) for pair in share)
        return [scored[i] for i in range(len(samples))]

    def _score_on_pod(self, samples: list[Sample], problem_indices: list[int], split: str, gang: list[EngineSlot],
                      shares: list[tuple[int, int]], pod: PodWorkers) -> list[tuple[int, float]]:
        mine_ranges = [share for slot, share in zip(gang, shares) if slot.owner is pod]
        lo, hi = mine_ranges[0][0], mine_ranges[-1][1]  # a pod's engines hold adjacent shares
        mine = [i for i, s in enumerate(samples) if lo <= s.prompt_index < hi]
        if not mine:
            return []
        if pod.engine is None:  # pod 0: this checkpoint engine
            scores = score_items(self.task, self.tokenizer, split, [[problem_indices[i], samples[i].response_ids] for i in mine])
        else:  # the samples as a buffer, each named by its problem's index
            to_score = [Sample(problem_indices[i], [], samples[i].response_ids, []) for i in mine]
            scores = pod.engine.call("/score", wire.encode_samples(to_score, {"split": split}), timeout=self.machine.remaining())
        return list(zip(mine, scores))

    def _generate(self, prompts: list[list[int]], n: int, max_tokens: int, temperature: float | None = None) -> list[Sample]:
        if not prompts:
            return []
        rollout = self.spec["rollout"]
        request = {"n": n, "temperature": rollout["temperature"] if temperature is None else temperature,
                   "top_p": rollout["topP"], "top_k": rollout["topK"], "stop": rollout["stop"], "max_tokens": max_tokens}
        samples = self.roster.run_shares(len(prompts), functools.partial(self._generate_on_engine, prompts, request),
                                         self.machine.state, self.machine.remaining() - GANG_MARGIN,
                                         functools.partial(self._generate_on_pod, prompts, request))
        return sorted(samples, key=lambda sample: sample.prompt_index)  # stable: a prompt's k samples keep their order

    def _generate_on_engine(self, prompts: list[list[int]], request: dict[str, Any], slot: EngineSlot,
                            lo: int, hi: int) -> list[Sample]:
        """The engine's samples, their token arrays views into the buffer it answered (seesaw.wire)."""
        answer = slot.client.call("/generate", dict(request, prompt_ids=prompts[lo:hi]), timeout=self.machine.remaining())
        slot.record["prompts"] += hi - lo
        samples, _, _ = wire.decode_samples(answer)
        for sample in samples:
            sample.prompt_index += lo
        return samples

    def _generate_on_pod(self, prompts: list[list[int]], request: dict[str, Any], pod: PodWorkers,
                         shares: list[Share]) -> tuple[list[Sample], list[float]]:
        """A follower's engines' samples of their adjacent shares, in one call to its checkpoint
        engine, and the seconds each engine took."""
        answered = generate_on_pod(pod, prompts, request, shares, self.machine.remaining)
        for slot, start, end in shares:
            slot.record["prompts"] += end - start
        return answered

    def _partial_samples(self, chosen: list[int], problems: list[Problem]) -> tuple[list[Sample], int]:
        """Continue the buffered responses, start the new prompts; return the samples of the
        groups that finished and the number of tokens generated."""
        buffer = self.partial
        buffer.begin_iteration()
        pending = list(buffer.unfinished())
        continued = self._generate([r.prompt_ids + r.response_ids for r in pending], 1, buffer.segment_tokens())
        for response, sample in zip(pending, continued):  # the buffer keeps plain lists, checkpointed as JSON
            buffer.extend(response, token_list(sample.response_ids), token_list(sample.logprobs), sample.finished)
        prompts = [encode_prompt(self.tokenizer, p.prompt, self.prompt_format) for p in problems]
        k = self.spec["rollout"]["samplesPerPrompt"]
        groups = [buffer.add_group(index, prompt, k) for index, prompt in zip(chosen, prompts)]
        for sample in self._generate(prompts, k, buffer.segment_tokens()):
            member = next(m for m in groups[sample.prompt_index].members if not m.response_ids and not m.finished)
            buffer.extend(member, token_list(sample.response_ids), token_list(sample.logprobs), sample.finished)
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
        rl = self.spec["rl"]
        waiting = len(self.partial.groups) if self.partial else 0
        chosen = self.sampler.sample(max(0, rl["promptsPerIteration"] - waiting), self.rng, iteration)
        samples, stats = self.machine.run(Phase.ROLLOUT, iteration, functools.partial(self._roll_out, iteration, chosen))
        stats["straggler_ratio"] = self._name_a_straggler()
        correct = stats.pop("correct")
        per_prompt: dict[int, list[float]] = {}
        for sample, score in zip(samples, correct):
            per_prompt.setdefault(sample.prompt_index, []).append(score)
        indices = self.partial_indices if self.partial else chosen
        self.sampler.update([indices[i] for i in per_prompt], [statistics.fmean(v) for v in per_prompt.values()])
        stats["mean_reward"] = statistics.fmean(s.reward for s in samples) if samples else 0.0
        return training_samples(samples, correct, rl["objective"]), stats

    def _name_a_straggler(self) -> float:
        """The slowest engine's time over the median engine's in this rollout (1.0 with fewer than
        three engines); an engine STRAGGLER_RATIO times slower or more is named in the log."""
        found = self.roster.slowest()
        if found is None:
            return 1.0
        slot, ratio = found
        if ratio >= STRAGGLER_RATIO:
            self.log(f"straggler: {slot.client.name} took {slot.busy_seconds:.1f}s for its {slot.served} prompt(s), "
                     f"{ratio:.1f}x the median engine; the rollout waits for it, up to spec.timeouts.rolloutSeconds")
        return ratio

    def _roll_out(self, iteration: int, chosen: list[int]) -> tuple[list[Sample], dict[str, Any]]:
        """Generate, score, then the rewards: the verifier's score, the cut-response policy and the length penalty."""
        rl, rollout = self.spec["rl"], self.spec["rollout"]
        problems = [self.task.train[i] for i in chosen]
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

    def train(self, iteration: int, samples: list[Sample]) -> dict[str, Any]:
        """The rollout engine frees its memory before the trainer takes its state back. Each
        pod's trainer is sent the prompts its data-parallel ranks train on and the batch's
        size (every rank must know every share's), and reports the whole step's statistics."""
        if iteration == 1 and os.environ.get(pod_contract.KEEP_FIRST_BATCH) == "1":
            first_batch.write(self.run_dir, {"samples": [wire.sample_record(s) for s in samples], "tau": self.spec["rl"]["tau"]})
        on_pod = functools.partial(self._train_pod, group_by_prompt(samples))
        return self.machine.run(Phase.TRAIN, iteration, lambda: on_every_pod(
            self.pods, Phase.TRAIN, on_pod, self.machine.remaining() - GANG_MARGIN)[0])

    def _train_pod(self, groups: list[list[Sample]], pod: PodWorkers) -> dict[str, Any]:
        return on_pod(pod, "train", self._pod_share(groups, pod), self.machine.remaining)

    def _pod_share(self, groups: list[list[Sample]], pod: PodWorkers) -> bytes:
        """The prompts dealt to the pod's data-parallel ranks, each sample with its prompt's
        position in the whole batch (seesaw.rl.training.BatchShare reads them)."""
        ranks = self.data_parallel[pod.index]
        positions = ranks_groups(len(groups), ranks["ranks"], ranks["size"])
        chosen = [(sample, g) for g in positions for sample in groups[g]]
        return wire.encode_samples([sample for sample, _ in chosen], {"tau": self.spec["rl"]["tau"], "prompts": len(groups)},
                                   [g for _, g in chosen])

    # --- checkpoints ---------------------------------------------------------------------
    def save_trainer(self, iteration: int) -> Path:
        """Right after training, while the trainer's state is on the device: every pod's
        trainer writes its part (rank 0 alone where the replicas are identical), and the
        policy is exported as a Hugging Face model. The checkpoint is committed once the
        iteration is recorded (`commit_checkpoint`)."""
        staging = checkpoints.staging_dir(self.checkpoint_root, iteration)
        self.machine.run(Phase.CHECKPOINT, iteration, functools.partial(self._save_on_every_pod, staging, iteration))
        return staging

    def _save_on_every_pod(self, staging: Path, iteration: int) -> None:
        body = {"path": str(staging / checkpoints.TRAINER_DIR), "iteration": iteration,
                "model_path": str(staging / checkpoints.MODEL_DIR)}
        on_every_pod(self.pods, Phase.CHECKPOINT, lambda pod: on_pod(pod, "checkpoint", body, self.machine.remaining),
                     self.machine.remaining() - GANG_MARGIN)

    def commit_checkpoint(self, staging: Path, iteration: int) -> Path:
        """Add what the conductor needs to go on, then make the checkpoint the latest."""
        checkpoints.write_state(staging, {
            "iteration": iteration,
            "rng": self.rng.getstate(),
            "sampler": self.sampler.state(),
            "partial_groups": [asdict(g) for g in self.partial.groups] if self.partial else [],
            "engine_prompts": [slot.record["prompts"] for slot in self.roster.gang_slots()],
            "accuracy_before": self.before,
            "history": [vars(m) for m in self.history],  # written at once: no copy needed
        })
        path = checkpoints.commit(staging)
        self.on_progress(iteration, "checkpoint", {"path": str(path)})
        return path

    def resume(self, checkpoint: str) -> int:
        """Load every trainer and the conductor's own state; returns the iteration to go on at.
        The metrics file keeps one record per iteration: the checkpoint's (a failed attempt's
        records are set aside in metrics.attempt-N.jsonl). A checkpoint that cannot be read
        fails the starting phase, naming it."""
        start = self.machine.run(Phase.STARTING, 0, functools.partial(self._load_checkpoint, checkpoint))
        self._start_metrics_file()
        return start

    def _load_checkpoint(self, checkpoint: str) -> int:
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
        self.log(before_line(self.before, self.spec["rollout"]["temperature"], len(self.task.eval)))
        # a run resumed at its end checkpoints nothing new: the policy is the resumed checkpoint's
        exported = self.resumed / checkpoints.MODEL_DIR if self.resumed else ""
        for iteration in range(start, rl["iterations"] + 1):
            exported = self.iterate(iteration) or exported
        # nothing trained (rl.iterations 0: an evaluation-only job): the policy is the one measured before
        after = self.evaluate(rl["iterations"], self.task.eval) if rl["iterations"] else self.before
        self.machine.finish(rl["iterations"])
        diff = self.last_sync["probe_max_abs_logprob_diff"]
        self.log(after_line(self.before, after, rl["evaluation"]["passAtK"], len(self.probe["prompt_ids"]), diff))
        return run_summary(self.spec, self.before, after, self.history, self.last_sync,
                           eval_prompts=len(self.task.eval), wall_seconds=time.time() - started, pods=len(self.pods),
                           trainer_ranks=self.trainer_ranks, trainer=self.trainer_layout,
                           engines=[dict(record) for record in self.roster.records], exported_model=str(exported))

    def iterate(self, iteration: int) -> Path | None:
        """One iteration: rollout, train, (checkpoint,) sync, and a held-out evaluation when
        due; the exported policy when it checkpointed."""
        rl = self.spec["rl"]
        recorder = IterationRecorder(iteration)
        self.roster.count_served()
        samples, rollout_stats = self.roll_out(iteration)
        recorder.rolled_out(rollout_stats)
        recorder.trained(self.train(iteration, samples), self.machine.timeline[-1].seconds, len(samples))
        # every checkpoint.everyIterations, and the last iteration: the trained policy
        every_ckpt = self.spec["checkpoint"]["everyIterations"]
        due = iteration == rl["iterations"] or (every_ckpt and iteration % every_ckpt == 0)
        staging = self.save_trainer(iteration) if due else None
        recorder.synced(self.sync_weights(iteration), self.machine.timeline[-1].seconds)
        # what each engine served in this rollout; a replica dropped since is listed once,
        # marked "lost" (it failed) or "left" (scaled down)
        recorder.served([dict(slot.record, prompts=slot.served, seconds=round(slot.busy_seconds, 3)) for slot in self.roster.slots]
                        + [dict(slot.record, prompts=slot.served, seconds=round(slot.busy_seconds, 3), **{departure.value: True})
                           for slot, departure in self.roster.take_departed()])
        metrics = recorder.finished()
        every_eval = rl["evaluation"]["everyIterations"]
        if every_eval and iteration % every_eval == 0 and iteration != rl["iterations"]:
            evaluated(metrics, self.evaluate(iteration, self.task.eval))
        self.history.append(metrics)
        # committed before the iteration is reported: whoever sees "iter N" can resume from N
        exported = self.commit_checkpoint(staging, iteration) / checkpoints.MODEL_DIR if staging else None
        self._record(metrics, rl["iterations"])
        return exported

    def _record(self, metrics: IterationMetrics, total: int) -> None:
        # the iteration's own dicts, made for it and never changed after: a shallow copy is enough
        # (asdict would deep-copy every engine's record, a thousand at 128 pods, on pod 0's CPU)
        record = dict(vars(metrics))
        with self.metrics_path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        # observers first: once the line is in the log, the status, trackers and metrics have it
        self.on_progress(metrics.iteration, "iteration", record)
        self.log(iteration_line(metrics, total))

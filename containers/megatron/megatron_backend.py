"""The GPU trainer backend: Megatron-core (TP/PP/EP, distributed optimiser) trained with the Kimi k1.5 loss.

It speaks the same Trainer protocol as the CPU backend: the same grouping of samples into
micro-batches of whole prompts, the same loss function (seesaw.rl.loss) and the same
weighting, so for the same weights and batch both report the same loss. Between phases
it moves parameters, gradients and optimiser state to pinned host memory and back
(`offload`/`onload`), keeping every tensor object (and so every view Megatron holds into
its flat buffers) alive by resizing the underlying storage rather than replacing tensors.

Megatron and CUDA are imported inside the constructor: importing this module (and so
registering the backend) works on machines without either.

With one process per GPU (seesaw.trainer.launch), each pod's local rank 0 serves the
protocol and relays each call to the pod's other ranks (seesaw.trainer.lockstep), so all
ranks enter the collectives together.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from seesaw.interfaces import MemoryReport, Sample, TrainStats, register
from seesaw.rl.objectives import objective_loss
from seesaw.rl.training import BatchShare, MiniBatchStats, steps_per_epoch, train_iteration
from seesaw.trainer.distributed import join_trainer_group
from seesaw.trainer.optimizers import OptimizerSettings
from seesaw.trainer.resharding import ModelLayout, Parallelism, hf_shapes, model_rules, _local_name, _placement

log = logging.getLogger("seesaw.trainer.megatron")
# The distributed optimizer's state as each data-parallel group's buffers (Megatron's default
# format cannot be saved at all in 0.16; the per-parameter one, which would load into another
# TP/PP layout, cannot be loaded into torch's Adam): reloads into the same TP/PP layout.
CHECKPOINT_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


# ---------------------------------------------------------------- offload / onload (device-agnostic)

@dataclass
class _Slot:
    storage: torch.UntypedStorage
    nbytes: int
    keep: bool  # copy the content out and back (params, optimiser state) or just free it (grads)
    host: torch.Tensor | None = None


@dataclass
class StateOffloader:
    """Moves groups of tensors' storage to (pinned) host memory and back, in place.

    Storages, not tensors, are moved: a storage resized to 0 frees its device memory while
    every tensor and view onto it stays valid, and resizing it back restores them all.
    """

    pin: bool = True
    groups: dict[str, list[_Slot]] = field(default_factory=dict)
    offloaded: set[str] = field(default_factory=set)  # groups whose device memory is released
    _seen: set[int] = field(default_factory=set)

    def add(self, group: str, tensors: list[torch.Tensor], keep_content: bool = True) -> None:
        """Register tensors under a group; a storage already registered (in any group) is skipped."""
        slots = self.groups.setdefault(group, [])
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = storage._cdata  # the StorageImpl: stable while its memory moves (data_ptr is not)
            if key in self._seen or storage.nbytes() == 0:
                continue
            self._seen.add(key)
            slots.append(_Slot(storage, storage.nbytes(), keep_content))

    def offload(self, groups: Iterable[str] | None = None) -> dict[str, MemoryReport]:
        """Release the device memory of `groups` (default: all); a group already offloaded moves nothing."""
        chosen = list(self.groups) if groups is None else list(groups)
        unknown = set(chosen) - set(self.groups)
        if unknown:
            raise ValueError(f"groups: unknown {sorted(unknown)}, registered {sorted(self.groups)}")
        reports = {g: MemoryReport(0, 0.0) for g in chosen if g in self.offloaded}
        for group in [g for g in chosen if g not in self.offloaded]:
            slots = self.groups[group]
            started = time.perf_counter()
            for slot in slots:
                if slot.keep:
                    if slot.host is None:
                        slot.host = torch.empty(slot.nbytes, dtype=torch.uint8, pin_memory=self.pin)
                    device_bytes = torch.empty(0, dtype=torch.uint8, device=slot.storage.device).set_(slot.storage)
                    slot.host.copy_(device_bytes, non_blocking=True)
            _synchronize(slots)
            for slot in slots:
                slot.storage.resize_(0)
            reports[group] = MemoryReport(sum(s.nbytes for s in slots), time.perf_counter() - started)
            self.offloaded.add(group)
        _release_cached_memory()
        return reports

    def onload(self) -> dict[str, MemoryReport]:
        """Bring every offloaded group back; the others move nothing."""
        reports = {g: MemoryReport(0, 0.0) for g in self.groups if g not in self.offloaded}
        for group in [g for g in self.groups if g in self.offloaded]:
            slots = self.groups[group]
            started = time.perf_counter()
            for slot in slots:
                slot.storage.resize_(slot.nbytes)
                device_bytes = torch.empty(0, dtype=torch.uint8, device=slot.storage.device).set_(slot.storage)
                if slot.keep:
                    device_bytes.copy_(slot.host, non_blocking=True)
                else:
                    device_bytes.zero_()
            _synchronize(slots)
            reports[group] = MemoryReport(sum(s.nbytes for s in slots), time.perf_counter() - started)
            self.offloaded.discard(group)
        return reports


def _synchronize(slots: list[_Slot]) -> None:
    if any(s.storage.device.type == "cuda" for s in slots):
        torch.cuda.synchronize()


def _release_cached_memory() -> None:
    # Hand the freed blocks back to the driver, so the rollout engine can take them.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- batches (pure)

@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [b, width]
    targets: torch.Tensor  # [b, width]: token t+1 at position t
    response_start: list[int]  # position whose logits predict the first response token
    response_len: list[int]
    old_logprobs: torch.Tensor  # [b, max_response]
    rewards: torch.Tensor
    group_ids: torch.Tensor
    weight: float  # share of the iteration's prompts in this micro-batch
    # partial rollouts: response tokens before train_from[i] came from an older policy
    train_from: list[int] = field(default_factory=list)


def plan_micro_batches(samples: list[Sample], micro_batch_size: int, dp_rank: int = 0, dp_size: int = 1,
                       pad_id: int = 0) -> tuple[list[MicroBatch], int]:
    """Micro-batches of whole prompts, as the CPU backend forms them; this DP rank's share.

    Every micro-batch is padded to the iteration's longest sequence so pipeline stages
    exchange tensors of one shape. Weights are scaled by dp_size so that Megatron's
    average over data-parallel ranks gives the mean over all prompts.
    """
    groups: dict[int, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.prompt_index, []).append(sample)
    group_list = list(groups.values())
    if not group_list:  # partial rollouts: no group finished this iteration
        return [], 0
    if len(group_list) < dp_size:
        raise ValueError(f"{len(group_list)} prompts cannot be split over {dp_size} data-parallel ranks")
    width = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    max_response = max(len(s.response_ids) for s in samples)
    per_micro = max(1, micro_batch_size // max(len(g) for g in group_list))
    mine = group_list[dp_rank::dp_size]
    batches = []
    for start in range(0, len(mine), per_micro):
        chunk_groups = mine[start: start + per_micro]
        chunk = [s for g in chunk_groups for s in g]
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        old = torch.zeros(len(chunk), max_response)
        for i, s in enumerate(chunk):
            seq = s.prompt_ids + s.response_ids
            ids[i, : len(seq)] = torch.tensor(seq)
            old[i, : len(s.logprobs)] = torch.tensor(s.logprobs, dtype=torch.float32)
        targets = torch.cat([ids[:, 1:], torch.full((len(chunk), 1), pad_id, dtype=torch.long)], dim=1)
        batches.append(MicroBatch(
            input_ids=ids, targets=targets, response_start=[len(s.prompt_ids) - 1 for s in chunk],
            response_len=[len(s.response_ids) for s in chunk], old_logprobs=old,
            rewards=torch.tensor([s.reward for s in chunk], dtype=torch.float32),
            group_ids=torch.tensor([s.prompt_index for s in chunk]),
            weight=len(chunk_groups) * dp_size / len(group_list),
            train_from=[s.train_from for s in chunk],
        ))
    return batches, width


def response_logprobs(token_logprobs: torch.Tensor, batch: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, width] log-probs of each next token -> [b, max_response] of the response tokens, and the mask."""
    width = batch.old_logprobs.shape[1]
    out = token_logprobs.new_zeros(token_logprobs.shape[0], width)
    mask = token_logprobs.new_zeros(token_logprobs.shape[0], width)
    for i, (start, length) in enumerate(zip(batch.response_start, batch.response_len)):
        out[i, :length] = token_logprobs[i, start: start + length]
        mask[i, batch.train_from[i] if batch.train_from else 0: length] = 1.0
    return out, mask


def mask_vocab_padding(logits: torch.Tensor, vocab_size: int, tp_rank: int) -> torch.Tensor:
    """Megatron pads the vocabulary; the padded rows must not take probability mass (HF has none)."""
    local = logits.shape[-1]
    first_pad = vocab_size - tp_rank * local
    if first_pad < local:
        logits = logits.clone()
        logits[..., max(first_pad, 0):] = float("-inf")
    return logits


# ---------------------------------------------------------------- the trainer

def on_device(device: str) -> torch.device:
    """This rank's device: its GPU, or the CPU, where Megatron runs through its CPU mode
    (seesaw.trainer.megatron_cpu, for debugging a layout without a GPU)."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("trainer device cuda, but torch finds no CUDA GPU")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _device_mode(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cpu":
        from seesaw.trainer.megatron_cpu import allocations_on_cpu

        return allocations_on_cpu()
    return contextlib.nullcontext()


_DONE = object()


def on_this_device(method: Callable) -> Callable:
    """Run a trainer method (a generator one item at a time) in its device's mode, in
    whichever thread calls it."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stepwise(self: "MegatronTrainer", *args: Any, **kwargs: Any) -> Iterator[Any]:
            items = method(self, *args, **kwargs)
            while True:
                with _device_mode(self.device):
                    item = next(items, _DONE)
                if item is _DONE:
                    return
                yield item
        return stepwise

    @functools.wraps(method)
    def call(self: "MegatronTrainer", *args: Any, **kwargs: Any) -> Any:
        with _device_mode(self.device):
            return method(self, *args, **kwargs)
    return call


class MegatronTrainer:
    """Trainer protocol on Megatron-core: on GPUs, or slowly on the CPU over gloo."""

    def __init__(self, model_dir: str | Path, spec: dict[str, Any], device: str = "cuda") -> None:
        self.device = on_device(device)
        with _device_mode(self.device):
            self._build(model_dir, spec)

    def _build(self, model_dir: str | Path, spec: dict[str, Any]) -> None:
        import torch.distributed as dist
        from megatron.core import parallel_state as mpu
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
        from megatron.core.optimizer import get_megatron_optimizer
        from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
        from transformers import AutoConfig

        from seesaw.trainer.hf_to_megatron import LazyHFTensors, build_gpt_model, load_hf_weights

        self.spec = spec
        trainer = spec["trainer"]
        self.par = Parallelism(tp=trainer["tensorParallel"], pp=trainer["pipelineParallel"], ep=trainer["expertParallel"])
        self.dtype = getattr(torch, spec["model"]["dtype"])
        join_trainer_group(self.device.type, spec["timeouts"]["startupSeconds"])
        if not dist.is_initialized():  # one rank: Megatron's groups still need a process group
            if self.device.type == "cuda":
                dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1, device_id=self.device)
            else:
                dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        if not mpu.model_parallel_is_initialized():
            mpu.initialize_model_parallel(tensor_model_parallel_size=self.par.tp, pipeline_model_parallel_size=self.par.pp,
                                          expert_model_parallel_size=self.par.ep)
        model_parallel_cuda_manual_seed(int(spec.get("rl", {}).get("seed", 0)))
        self.mpu = mpu
        self.rank = dist.get_rank()
        self.hf_config = AutoConfig.from_pretrained(str(model_dir))
        self.layout = ModelLayout.from_hf_config(self.hf_config)
        self.pad_id = self.hf_config.pad_token_id or 0

        model = build_gpt_model(self.hf_config, self.par, self.dtype, pre_process=mpu.is_pipeline_first_stage(),
                                post_process=mpu.is_pipeline_last_stage()).to(self.device)
        rank = (mpu.get_pipeline_model_parallel_rank(), mpu.get_tensor_model_parallel_rank(),
                mpu.get_expert_model_parallel_rank())
        copied = load_hf_weights(model, LazyHFTensors(model_dir), self.layout, self.par, rank,
                                 etp_rank=mpu.get_expert_tensor_parallel_rank() if self.layout.num_experts else None)
        log.info("rank %d loaded %.1f MiB of HF weights as Megatron shards %s", self.rank, copied / 2**20, rank)
        self.module = model  # the bare GPTModel: parameter names as resharding.py knows them
        settings = OptimizerSettings.from_spec(spec)
        if settings.name == "sgd" and trainer["optimizer"]["distributed"]:
            log.info("optimizer sgd: without Megatron's distributed optimizer (it shards Adam's state only)")
        config = model.config
        # the pipeline stages exchange each micro-batch's shape first: the last one of an
        # iteration is smaller whenever the prompts do not fill it
        config.variable_seq_lengths = self.par.pp > 1
        self.model = DistributedDataParallel(
            config=config, module=model,
            ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                                     use_distributed_optimizer=settings.distributed))
        self.optimizer = get_megatron_optimizer(settings.megatron_config(self.dtype), [self.model])
        config.finalize_model_grads_func = finalize_model_grads
        config.no_sync_func = self.model.no_sync
        config.grad_scale_func = self.optimizer.scale_loss
        self.micro_batch = trainer["microBatchSize"]
        self.loss_function = objective_loss(spec["rl"]["objective"])
        self.steps = 0
        # what the job's summary and log report: a silent fall back to another layout shows
        self.data_parallel_rank = mpu.get_data_parallel_rank()  # which share of each batch this rank trains on
        self.training_layout = {"backend": "megatron", "device": self.device.type, "tp": self.par.tp, "pp": self.par.pp,
                                "dp": mpu.get_data_parallel_world_size(), "ep": self.par.ep}
        self.offloader: StateOffloader | None = None
        self.last_memory: dict[str, dict[str, float]] = {}

    # --- forward -------------------------------------------------------------------------
    def _token_logprobs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

        logits = mask_vocab_padding(logits.float(), self.layout.vocab_size, self.mpu.get_tensor_model_parallel_rank())
        return -vocab_parallel_cross_entropy(logits, targets.to(self.device))

    def _run(self, batches: list[MicroBatch], width: int, loss_of: Callable[[torch.Tensor, MicroBatch], tuple],
             forward_only: bool) -> list[dict[str, Any]]:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        items = iter(batches)

        def forward_step(data_iterator: Any, model: torch.nn.Module):
            batch = next(data_iterator)
            ids = batch.input_ids.to(self.device)
            positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
            output = model(ids, positions, None)
            return output, lambda out: loss_of(out, batch)

        return get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=items, model=[self.model], num_microbatches=len(batches),
            seq_length=width, micro_batch_size=max(b.input_ids.shape[0] for b in batches), forward_only=forward_only)

    def _from_last_stage(self, value: Any) -> Any:
        import torch.distributed as dist

        if self.par.pp == 1:
            return value
        group = self.mpu.get_pipeline_model_parallel_group()
        ranks = dist.get_process_group_ranks(group)
        box = [value]
        dist.broadcast_object_list(box, src=ranks[-1], group=group, device=self.device)
        return box[0]

    # --- protocol ------------------------------------------------------------------------
    @on_this_device
    @torch.no_grad()
    def sequence_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        samples = [Sample(i, p, r, [0.0] * len(r)) for i, (p, r) in enumerate(zip(prompt_ids, response_ids))]
        batches, width = plan_micro_batches(samples, self.micro_batch, pad_id=self.pad_id)
        self.model.eval()

        def collect(output: torch.Tensor, batch: MicroBatch):
            lp, _ = response_logprobs(self._token_logprobs(output, batch.targets), batch)
            rows = [row[:n].tolist() for row, n in zip(lp.cpu(), batch.response_len)]
            return output.new_zeros(()), {"rows": rows}

        out = self._run(batches, width, collect, forward_only=True)
        rows = [row for item in out for row in item["rows"]] if out else None
        return self._from_last_stage(rows)

    @on_this_device
    def train_step(self, batch: BatchShare | list[Sample], tau: float) -> TrainStats:
        """One iteration through the shared loop (seesaw.rl.training): each data-parallel rank
        trains on its share of the batch, as the torch backend's ranks do."""
        share = batch if isinstance(batch, BatchShare) else BatchShare.whole(batch)
        dp_rank, dp_size = self.mpu.get_data_parallel_rank(), self.mpu.get_data_parallel_world_size()
        self._check_every_step_has_prompts(share, dp_size)
        stats = train_iteration(self, share, self.spec["rl"], tau, seed=self.steps, dp_rank=dp_rank, dp_size=dp_size)
        self.steps += int(stats.extra["optimizer_steps"])
        return stats

    def _check_every_step_has_prompts(self, share: BatchShare, dp_size: int) -> None:
        """Megatron's data-parallel ranks reduce gradients inside each step's schedule, so a
        rank with no prompt in a step would leave the others waiting: refuse such a batch on
        every rank alike (they all know every share's size)."""
        steps = steps_per_epoch(share.total, self.spec["rl"]["miniBatchPrompts"])
        fewest = min(share.counts(dp_size))
        if share.total and fewest < steps:
            raise ValueError(f"{share.total} prompts cannot be split over {dp_size} data-parallel ranks in {steps} "
                             f"optimiser step(s) (rl.miniBatchPrompts {self.spec['rl']['miniBatchPrompts']}): a rank "
                             f"would have only {fewest}; raise rl.miniBatchPrompts or rl.promptsPerIteration")

    def train_mini_batch(self, groups: list[list[Sample]], prompt_weight: float, tau: float) -> MiniBatchStats:
        samples = [s for g in groups for s in g]  # this rank's prompts of the step
        dp_size = self.mpu.get_data_parallel_world_size()
        batches, width = plan_micro_batches(samples, self.micro_batch, pad_id=self.pad_id)
        self.model.train()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        count = len(batches)
        # this rank's share of the step, times dp_size: Megatron averages the gradients over the
        # data-parallel ranks, and the step's loss is the sum of theirs
        share = prompt_weight * len(groups) * dp_size

        def policy_loss(output: torch.Tensor, batch: MicroBatch):
            lp, mask = response_logprobs(self._token_logprobs(output, batch.targets), batch)
            old = batch.old_logprobs.to(self.device)
            stats = self.loss_function(lp, old, mask, rewards=batch.rewards.to(self.device),
                                       group_ids=batch.group_ids.to(self.device), tau=tau)
            # Megatron divides each micro-batch's loss by their count; undo it, then weigh
            # by the share of prompts, as the CPU backend does.
            weighted = stats.loss * batch.weight * share
            diff = ((lp.detach() - old).abs() * mask).max() if mask.any() else torch.zeros((), device=lp.device)
            return weighted * count, {"loss": weighted.detach() / dp_size, "log_ratio": stats.mean_log_ratio * batch.weight * share / dp_size,
                                      "tokens": float(mask.sum()), "diff": float(diff)}

        out = self._run(batches, width, policy_loss, forward_only=False) if batches else []
        _, grad_norm, _ = self.optimizer.step()
        local = [sum(float(o["loss"]) for o in out), sum(o["log_ratio"] for o in out), sum(o["tokens"] for o in out),
                 max([o["diff"] for o in out], default=0.0)] if out else [0.0, 0.0, 0.0, 0.0]
        totals = torch.tensor(local[:3], device=self.device, dtype=torch.float64)
        diff = torch.tensor([local[3]], device=self.device, dtype=torch.float64)
        if dp_size > 1:
            torch.distributed.all_reduce(totals, group=self.mpu.get_data_parallel_group())
            torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX, group=self.mpu.get_data_parallel_group())
        loss, log_ratio, tokens = self._from_last_stage(totals.tolist())
        self.model.eval()
        return MiniBatchStats(loss=loss, tokens=int(tokens), log_ratio=log_ratio,
                              max_abs_logprob_diff=float(self._from_last_stage(diff.tolist())[0]),
                              grad_norm=float(grad_norm or 0.0))

    @on_this_device
    def hf_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full HF tensors on every rank, one parameter at a time (gathered over TP, EP and PP).

        Every GPU then holds what its co-located rollout worker needs, so each GPU's CUDA
        IPC sender serves its own worker with no host copy.
        """
        import torch.distributed as dist

        mpu, par, layout = self.mpu, self.par, self.layout
        params = dict(self.module.named_parameters())
        shapes = hf_shapes(layout)
        pp_rank, ep_rank = mpu.get_pipeline_model_parallel_rank(), mpu.get_expert_model_parallel_rank()
        pp_ranks = dist.get_process_group_ranks(mpu.get_pipeline_model_parallel_group()) if par.pp > 1 else [self.rank]
        from seesaw.trainer.resharding import shards_to_hf

        for rule in model_rules(layout):
            stages, eps = _placement(rule, layout, par)
            owner_stage, owner_ep = stages[0], eps[0]
            full: list[tuple[str, torch.Tensor]] = []
            if pp_rank == owner_stage:
                expert = rule.expert is not None
                group = mpu.get_expert_tensor_parallel_group() if expert else mpu.get_tensor_model_parallel_group()
                size = par.etp if expert else par.tp
                if not expert or ep_rank == owner_ep:
                    local = params[_local_name(rule, layout, par)].detach()
                    shards = [local]
                    if size > 1 and rule.split != "replicated":
                        shards = [torch.empty_like(local) for _ in range(size)]
                        dist.all_gather(shards, local.contiguous(), group=group)
                    full = [(n, t.contiguous()) for n, t in shards_to_hf(rule, shards, layout)]
                else:
                    full = [(n, torch.empty(shapes[n], dtype=self.dtype, device=self.device)) for n in rule.hf]
                if expert and par.ep > 1:
                    ep_group = mpu.get_expert_model_parallel_group()
                    src = dist.get_process_group_ranks(ep_group)[owner_ep]
                    for _, t in full:
                        dist.broadcast(t, src=src, group=ep_group)
            else:
                full = [(n, torch.empty(shapes[n], dtype=self.dtype, device=self.device)) for n in rule.hf]
            if par.pp > 1:
                for _, t in full:
                    dist.broadcast(t, src=pp_ranks[owner_stage], group=mpu.get_pipeline_model_parallel_group())
            while full:  # handed over one by one: a sender that packs a tensor frees it
                yield full.pop(0)

    def hf_metadata(self) -> list[tuple[str, list[int], str]]:
        """(name, shape, dtype) of each tensor hf_state yields, in its order, computing nothing:
        a weight sender plans its buffers from it."""
        shapes = hf_shapes(self.layout)
        dtype = str(self.dtype).removeprefix("torch.")
        return [(name, list(shapes[name]), dtype) for rule in model_rules(self.layout) for name in rule.hf]

    # --- memory --------------------------------------------------------------------------
    def _offloader(self) -> StateOffloader:
        if self.offloader is None:
            off = StateOffloader(pin=self.device.type == "cuda")
            off.add("params", [p.data for p in self.model.parameters()]
                    + [b.param_data for b in self.model.buffers + self.model.expert_parallel_buffers if b.param_data is not None])
            off.add("grads", [b.grad_data for b in self.model.buffers + self.model.expert_parallel_buffers], keep_content=False)
            state = []
            for inner in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
                torch_opt = inner.optimizer
                state += [p for g in torch_opt.param_groups for p in g["params"]]
                state += [t for s in torch_opt.state.values() for t in s.values() if self._movable_state(t)]
            off.add("optimizer", state)
            self.offloader = off
        else:  # optimiser state appears at the first step: register what is new
            for inner in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
                self.offloader.add("optimizer", [t for s in inner.optimizer.state.values() for t in s.values()
                                                 if self._movable_state(t)])
        return self.offloader

    def _movable_state(self, value: Any) -> bool:
        # a step counter lives on the host beside the moments: nothing to move
        return torch.is_tensor(value) and value.device.type == self.device.type and value.dim() > 0

    def _report(self, reports: dict[str, MemoryReport], what: str) -> MemoryReport:
        self.last_memory = {g: {"bytes": r.bytes, "seconds": r.seconds} for g, r in reports.items()}
        for g, r in reports.items():
            log.info("%s %s: %.1f MiB in %.3fs (%.1f GB/s)", what, g, r.bytes / 2**20, r.seconds,
                     r.bytes / max(r.seconds, 1e-9) / 1e9)
        return MemoryReport(sum(r.bytes for r in reports.values()), sum(r.seconds for r in reports.values()))

    @on_this_device
    def offload(self, keep_weights: bool = False) -> MemoryReport:
        """Release optimiser state and gradients; the parameters too unless keep_weights
        (the sync reads them after the optimiser state has made room for the rollout's weights)."""
        groups = ["grads", "optimizer"] + ([] if keep_weights else ["params"])
        return self._report(self._offloader().offload(groups), "offload")

    @on_this_device
    def onload(self) -> MemoryReport:
        return self._report(self._offloader().onload(), "onload")

    # --- checkpoints ---------------------------------------------------------------------
    def _sharded_state(self, loading: bool) -> dict[str, Any]:
        """The model's and the optimizer's shards as dist_checkpointing names them. Loading
        asks the optimizer to create its state first: a fresh one has none to fill."""
        if loading:
            for inner in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
                # the distributed optimizer on torch's Adam (no TE/Apex) reads Adam's step from
                # its state to describe it: a fresh one takes a zero step first (no update; the
                # load then overwrites the moments, the step and the weights)
                if hasattr(inner, "_init_optimizer_states_with_dummy_values") and not inner.optimizer.state:
                    inner._init_optimizer_states_with_dummy_values()
        model_sd = self.module.sharded_state_dict()
        return {"model": model_sd, "optimizer": self.optimizer.sharded_state_dict(
            model_sd, is_loading=loading, metadata=CHECKPOINT_METADATA)}

    @on_this_device
    def save_checkpoint(self, path: str, iteration: int) -> None:
        """Megatron distributed checkpoint (each rank writes its shards) in directory `path`."""
        import torch.distributed as dist
        from megatron.core import dist_checkpointing

        target = Path(path)
        if self.rank == 0:
            target.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        dist_checkpointing.save(self._sharded_state(loading=False), str(target))
        if self.rank == 0:
            (target / "seesaw.json").write_text(json.dumps({"iteration": iteration, "steps": self.steps}))
        dist.barrier()

    @on_this_device
    def load_checkpoint(self, path: str) -> int:
        from megatron.core import dist_checkpointing

        state = dist_checkpointing.load(self._sharded_state(loading=True), path)
        self.module.load_state_dict(state["model"])
        with torch.no_grad():  # the distributed optimizer copies into fp32 main params that require grad
            self.optimizer.load_state_dict(state["optimizer"])
        for inner in getattr(self.optimizer, "chained_optimizers", [self.optimizer]):
            for param_state in inner.optimizer.state.values():
                # Megatron restores Adam's step as one tensor shared by every parameter, and
                # torch's Adam adds 1 to it in place per parameter: each needs its own
                if torch.is_tensor(param_state.get("step")):
                    param_state["step"] = param_state["step"].clone()
        meta = json.loads((Path(path) / "seesaw.json").read_text())
        self.steps = meta["steps"]
        return meta["iteration"]


@register("trainer", "megatron")
def megatron_trainer(model_dir: str, spec: dict[str, Any], device: str = "cuda") -> MegatronTrainer:
    return MegatronTrainer(model_dir, spec, device)

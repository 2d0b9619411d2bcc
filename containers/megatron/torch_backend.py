"""The CPU trainer backend: a Hugging Face Llama in plain PyTorch, trained with spec.rl.objective's loss.

Its parameters live in one contiguous flat buffer (as Megatron's DDP keeps them), so a
weight channel can register that memory once and receivers read the live weights in
buckets with no staging copy.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import AutoModelForCausalLM

from seesaw.interfaces import MemoryReport, Sample, TrainStats, register
from seesaw.rl.objectives import objective_loss
from seesaw.trainer.optimizers import OptimizerSettings
from seesaw.rl.training import BatchShare, MiniBatchStats, train_iteration
from seesaw.trainer import distributed

STATE_FILE = "state.pt"  # inside the checkpoint's trainer directory


def flatten_parameters(model: torch.nn.Module) -> torch.Tensor:
    """Move every parameter into one contiguous buffer; parameters become views into it."""
    params = list(model.parameters())
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"a flat buffer needs one dtype, the model has {sorted(map(str, dtypes))}")
    flat = torch.empty(sum(p.numel() for p in params), dtype=params[0].dtype)
    offset = 0
    for param in params:
        count = param.numel()
        flat[offset: offset + count].copy_(param.data.reshape(-1))
        param.data = flat[offset: offset + count].view_as(param)
        offset += count
    return flat


def pad_batch(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class TorchTrainer:
    """Trainer protocol on CPU (or one GPU) with plain PyTorch."""

    def __init__(self, model_dir: str | Path, spec: dict[str, Any], device: str = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        dtype = getattr(torch, spec["model"]["dtype"])
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device)
        self.model.eval()
        self.flat = flatten_parameters(self.model)
        self.pad_id = self.model.config.pad_token_id or 0
        settings = OptimizerSettings.from_spec(spec)
        self.optimizer = settings.torch_optimizer(self.model.parameters())
        self.grad_clip = settings.grad_clip
        self.micro_batch = spec["trainer"]["microBatchSize"]
        self.loss_function = objective_loss(spec["rl"]["objective"])
        self.steps = 0
        self.data_parallel_rank = distributed.rank()  # which share of each batch this rank trains on
        self.training_layout = {"backend": "torch", "device": self.device.type, "tp": 1, "pp": 1,
                                "dp": distributed.world_size(), "ep": 1}

    # --- weights -----------------------------------------------------------------------
    def hf_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        yield from ((name, param.data) for name, param in self.model.named_parameters())

    def hf_metadata(self) -> list[tuple[str, list[int], str]]:
        """(name, shape, dtype) of each tensor hf_state yields, in its order."""
        return [(name, list(p.shape), str(p.dtype).removeprefix("torch.")) for name, p in self.model.named_parameters()]

    # --- log-probs ---------------------------------------------------------------------
    def _token_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi_theta of each response token, [batch, max_response_len], and its mask."""
        sequences = [p + r for p, r in zip(prompt_ids, response_ids)]
        ids = pad_batch(sequences, self.pad_id).to(self.device)
        logits = self.model(input_ids=ids).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        width = max(len(r) for r in response_ids)
        out = torch.zeros(len(sequences), width, device=self.device)
        mask = torch.zeros(len(sequences), width, device=self.device)
        for i, (prompt, response) in enumerate(zip(prompt_ids, response_ids)):
            start = len(prompt) - 1  # logits at position t predict token t+1
            out[i, : len(response)] = logprobs[i, start: start + len(response)]
            mask[i, : len(response)] = 1.0
        return out, mask

    @torch.no_grad()
    def sequence_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        logprobs, _ = self._token_logprobs(prompt_ids, response_ids)
        return [row[: len(r)].tolist() for row, r in zip(logprobs.cpu(), response_ids)]

    # --- training (the loop is seesaw.rl.training's; this backend runs one mini-batch) ------
    def train_step(self, batch: BatchShare | list[Sample], tau: float) -> TrainStats:
        """One iteration's mirror-descent update: every rank trains on its share of the
        batch; the statistics are summed over the ranks, then every data-parallel replica
        must hold the same parameters."""
        stats = train_iteration(self, batch, self.spec["rl"], tau, seed=self.steps,
                                dp_rank=distributed.rank(), dp_size=distributed.world_size())
        self.steps += int(stats.extra["optimizer_steps"])
        stats.loss, tokens, log_ratio = distributed.sum_over_ranks(
            [stats.loss, stats.tokens, stats.extra.get("mean_log_ratio", 0.0)])
        stats.tokens = int(tokens)
        stats.extra["mean_log_ratio"] = log_ratio
        stats.extra["max_abs_logprob_diff"] = distributed.max_over_ranks(stats.extra["max_abs_logprob_diff"])
        stats.extra["params_checksum"] = distributed.check_replicas_identical(self.flat)
        return stats

    def train_mini_batch(self, groups: list[list[Sample]], prompt_weight: float, tau: float) -> MiniBatchStats:
        self.model.train()
        loss, tokens, log_ratio, max_diff = self._accumulate(groups, prompt_weight, tau) if groups else (0.0, 0, 0.0, 0.0)
        distributed.all_reduce_gradients(list(self.model.parameters()))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or float("inf")))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        return MiniBatchStats(loss=loss, tokens=tokens, log_ratio=log_ratio, max_abs_logprob_diff=max_diff,
                              grad_norm=grad_norm)

    def _accumulate(self, group_list: list[list[Sample]], prompt_weight: float, tau: float) -> tuple[float, int, float, float]:
        """Backward the loss of whole prompts, in micro-batches of at most microBatchSize samples."""
        per_micro = max(1, self.micro_batch // max(len(g) for g in group_list))
        total_loss, tokens, log_ratio, max_diff = 0.0, 0, 0.0, 0.0
        for start in range(0, len(group_list), per_micro):
            chunk = [s for g in group_list[start: start + per_micro] for s in g]
            logprobs, mask = self._token_logprobs([s.prompt_ids for s in chunk], [s.response_ids for s in chunk])
            old = torch.zeros_like(logprobs)
            for i, s in enumerate(chunk):
                old[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
                mask[i, : s.train_from] = 0.0  # earlier partial-rollout segments: another policy's
            max_diff = max(max_diff, float(((logprobs.detach() - old).abs() * mask).max()))
            stats = self.loss_function(
                logprobs, old, mask,
                rewards=torch.tensor([s.reward for s in chunk], device=self.device),
                group_ids=torch.tensor([s.prompt_index for s in chunk], device=self.device),
                tau=tau,
            )
            # the loss is a mean over the micro-batch's prompts: weigh it by their share of the mini-batch
            weight = len(group_list[start: start + per_micro]) * prompt_weight
            (stats.loss * weight).backward()
            total_loss += stats.loss.item() * weight
            log_ratio += stats.mean_log_ratio * weight
            tokens += int(mask.sum())
        return total_loss, tokens, log_ratio, max_diff

    # --- memory ------------------------------------------------------------------------
    def offload(self, keep_weights: bool = False) -> MemoryReport:
        # On the CPU the trainer's state already lives in host memory: nothing to move. The
        # trainer server still tracks the state, so a call out of order fails here as on a GPU.
        return MemoryReport(bytes=0, seconds=0.0)

    def onload(self) -> MemoryReport:
        return MemoryReport(bytes=0, seconds=0.0)

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str, iteration: int) -> None:
        """Rank 0 writes directory `path` (the replicas are identical; the conductor commits
        the directory atomically once every part of the checkpoint is in it)."""
        if distributed.rank() != 0:
            return
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        with (target / STATE_FILE).open("wb") as out:
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "iteration": iteration, "steps": self.steps}, out)
            out.flush()
            os.fsync(out.fileno())

    def load_checkpoint(self, path: str) -> int:
        state = torch.load(Path(path) / STATE_FILE, map_location=self.device, weights_only=True)
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                param.data.copy_(state["model"][name])  # copy in place: keep the flat buffer
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]
        return state["iteration"]


@register("trainer", "torch")
def torch_trainer(model_dir: str, spec: dict[str, Any], device: str = "cpu") -> TorchTrainer:
    return TorchTrainer(model_dir, spec, device)

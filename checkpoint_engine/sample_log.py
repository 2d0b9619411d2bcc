"""What the model wrote: a few prompts' responses each iteration, in samples.jsonl and the trackers.

spec.logging.samplePrompts prompts of every rollout, and of every held-out evaluation, are
kept with all their responses: the text, the reward it earned and the verifier's score, its
tokens, and whether it stopped by itself ("stop") or was cut at rollout.maxTokens ("length").
One JSON line per prompt, appended as it is recorded (a crash loses nothing recorded before it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from seesaw.interfaces import Sample
from seesaw.tasks import Problem
from seesaw.wire import token_list

FILE = "samples.jsonl"


class SampleLog:
    def __init__(self, run_dir: Path, prompts: int, tokenizer: Any,
                 on_records: Callable[[int, str, list[dict[str, Any]]], None] | None = None) -> None:
        self.path = run_dir / FILE
        self.prompts = prompts
        self.tokenizer = tokenizer
        self.on_records = on_records or (lambda iteration, split, records: None)

    def record(self, iteration: int, split: str, samples: list[Sample], problems: list[Problem],
               scores: list[float]) -> list[dict[str, Any]]:
        """The first `prompts` prompts of `samples` (problems[i] and scores[i] are sample i's)."""
        if not self.prompts:
            return []
        groups: dict[int, list[int]] = {}
        for i, sample in enumerate(samples):
            if sample.prompt_index in groups or len(groups) < self.prompts:
                groups.setdefault(sample.prompt_index, []).append(i)
        records = [{
            "iteration": iteration, "split": split,
            "prompt": problems[members[0]].prompt, "reference": problems[members[0]].answer,
            "responses": [{"text": self.tokenizer.decode(token_list(samples[i].response_ids), skip_special_tokens=True),
                           "reward": samples[i].reward, "score": scores[i], "tokens": len(samples[i].response_ids),
                           "finish": "stop" if samples[i].finished else "length"} for i in members],
        } for members in groups.values()]
        with self.path.open("a") as out:
            out.writelines(json.dumps(record) + "\n" for record in records)
        self.on_records(iteration, split, records)
        return records


def as_markdown(records: list[dict[str, Any]]) -> str:
    """The records as TensorBoard shows text: a heading per prompt, a table of its responses."""
    parts = []
    for record in records:
        rows = "\n".join(f"| {r['score']:g} | {r['reward']:.3f} | {r['tokens']} | {r['finish']} | "
                         f"{r['text'].replace('|', '/').replace(chr(10), ' ')} |" for r in record["responses"])
        parts.append(f"**{record['prompt'].strip()}** (reference: {record['reference']})\n\n"
                     f"| score | reward | tokens | finish | response |\n|---|---|---|---|---|\n{rows}")
    return "\n\n".join(parts)

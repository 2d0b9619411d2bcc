"""The task of an RLJob spec: its prompt source, scored by its reward type."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from seesaw.spec import SpecError
from seesaw.tasks.base import Task
from seesaw.tasks.builtin import builtin_task
from seesaw.tasks.files import file_task
from seesaw.tasks.verifiers import with_reward


def load_task(spec: dict[str, Any]) -> Task:
    source = spec["prompts"]["source"]
    eval_count = spec["rl"]["evaluation"]["prompts"]
    if source.startswith("builtin:"):
        return with_reward(builtin_task(spec, source, eval_count), spec["reward"], source)
    path = Path(source)
    if not path.exists():
        raise SpecError("spec.prompts.source", f"expected builtin:<task>, a .jsonl or .parquet file or a saved "
                        f"Hugging Face dataset folder; {source!r} does not exist")
    prompts = spec["prompts"]
    return file_task(path, eval_count, spec["reward"], fields=prompts["fields"], split=prompts["split"])

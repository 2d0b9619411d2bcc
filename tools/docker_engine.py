"""A Docker engine to build and run Seesaw's images: the user's own when one answers, else a
private `dockerd` that this process starts and stops.

The private engine keeps its images in the cache outside the repository
(~/.cache/seesaw/docker, or $SEESAW_CACHE/docker), so images built once are there for every
later build, test and `seesaw run --runtime docker`. It runs without iptables (no NAT: the
containers reach each other and this machine, not the outside), which is all a build and a
pod need. Starting it needs root and Debian's `docker.io` (`make install` adds it).

    python tools/docker_engine.py start   # prints the DOCKER_HOST to export; stays up
    python tools/docker_engine.py stop
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import docker

START_SECONDS = 30
STOP_SECONDS = 30


class EngineUnavailable(RuntimeError):
    """No Docker engine answers and none can be started here."""


def cache_dir() -> Path:
    return Path(os.environ.get("SEESAW_CACHE") or Path.home() / ".cache" / "seesaw") / "docker"


def private_host() -> str:
    return f"unix://{cache_dir() / 'docker.sock'}"


DEFAULT_HOST = "unix:///var/run/docker.sock"


def answering(host: str) -> docker.DockerClient | None:
    """A client of the engine at `host`, if it answers."""
    try:
        client = docker.DockerClient(base_url=host)
        client.ping()
        return client
    except Exception:
        return None


def _stop_with_parent() -> None:
    """A private engine is stopped (SIGTERM: it stops its containers first) when the process
    that started it dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_private(detached: bool = False) -> subprocess.Popen:
    """Start dockerd on the private socket and wait until it answers; `detached` engines
    outlive this process (`tools/docker_engine.py start`)."""
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock), and starting a "
                                "private one needs root: start Docker, or run as root")
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if not dockerd:
        raise EngineUnavailable("no Docker engine answers and dockerd is not installed: "
                                "apt-get install docker.io (`make install` does it as root)")
    root = cache_dir()
    for folder in ("data", "exec"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    log = (root / "dockerd.log").open("a")
    process = subprocess.Popen(
        [dockerd, "--iptables=false", "--ip6tables=false", "--storage-driver=overlay2",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "-H", private_host(), "--pidfile", str(root / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=None if detached else _stop_with_parent)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with code {process.returncode}; its log: {root / 'dockerd.log'}")
        if answering(private_host()):
            return process
        time.sleep(0.3)
    stop_private(process.pid)
    raise EngineUnavailable(f"dockerd did not answer within {START_SECONDS}s; its log: {root / 'dockerd.log'}")


def stop_private(pid: int) -> None:
    """SIGTERM (dockerd stops its containers and containerd), then SIGKILL after STOP_SECONDS."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def engine() -> Iterator[tuple[docker.DockerClient, str]]:
    """(client, DOCKER_HOST to give child processes) for the duration: the user's engine, or
    a private engine already running, or one started now and stopped at the end."""
    for host in (os.environ.get("DOCKER_HOST") or DEFAULT_HOST, private_host()):
        client = answering(host)
        if client:
            yield client, host
            return
    process = start_private()
    try:
        yield docker.DockerClient(base_url=private_host()), private_host()
    finally:
        stop_private(process.pid)
        process.wait()


def main(argv: list[str]) -> int:
    if argv[1:] == ["start"]:
        if not answering(private_host()):
            start_private(detached=True)
        print(f"export DOCKER_HOST={private_host()}")
        return 0
    if argv[1:] == ["stop"]:
        pidfile = cache_dir() / "dockerd.pid"
        if pidfile.exists():
            stop_private(int(pidfile.read_text()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

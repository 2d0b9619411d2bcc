"""`seesaw run --runtime docker`: every pod of the job as a group of real containers.

The pods are the operator's own (seesaw.operator.build), played as a kubelet would play
them on one node:
- a pause container holds the pod's network and IPC namespaces (and its PID namespace where
  the pod shares one) and its memory-backed /dev/shm; the pod's containers join them;
- native sidecars (init containers with restartPolicy Always) start in order, each once its
  startup probe passes, then the main container; on the way down the main container stops
  first, then the sidecars in reverse order, each within the pod's grace period;
- the pods sit on a Docker network of their own whose names resolve as the job's headless
  Service resolves them (<pod>.<service>.<namespace>.svc), so the gang meets as in a cluster;
- volumes: the ConfigMap is a read-only folder, emptyDirs are folders of the run directory
  (checkpoints one folder for the gang, like a shared claim), the container's environment is
  the pod's with its field references filled in, and the security context is the runtime's
  (no-new-privileges, seccomp and AppArmor profiles, the fsGroup as a supplementary group).
Two things differ from a cluster, both because nothing else is there: the model this
machine prepared is mounted read-only and named by SEESAW_MODEL_DIR (as a model claim would
be), and no status goes to an API server. Nothing is left behind: every container and the
network carry the run's label and are removed when the run ends, however it ends.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seesaw import pod_contract as pc
from seesaw.local.pods import StartFailed, died, log_prefix, pod_title
from seesaw.operator import build
from seesaw.operator import constants as c
from seesaw.spec import SpecError

RUN_LABEL = "dev.seesaw.run"
POD_LABEL = "dev.seesaw.pod"
# the container name in the pod -> what the process runtime calls it (log files, messages)
LOG_KEYS = {c.CONTAINER_TRAINER: "trainer", c.CONTAINER_ROLLOUT: "rollout", c.CONTAINER_CHECKPOINT_ENGINE: "sidecar"}
IMAGE_FIELDS = ("trainer", "rollout", "checkpointEngine")  # of spec.images
# the longest any one container may take to stop (a pod's grace period can be minutes)
STOP_SECONDS = 30
POD_UID = 10001  # the images' user and the pods' fsGroup


# --- the plan: a pod as Docker container settings (pure, tested without an engine) -------------
@dataclass
class ContainerPlan:
    name: str          # the container's name in the pod
    sidecar: bool      # a native sidecar (starts before the main container, stops after it)
    image: str
    settings: dict[str, Any]                        # docker's containers.create() keywords, but the namespaces
    env: list[dict[str, Any]] = field(default_factory=list)  # the pod's env entries, field references unresolved
    startup_port: int | None = None                 # its startup probe's TCP port


@dataclass
class PodPlan:
    name: str
    hostname: str
    aliases: list[str]
    shm_bytes: int
    share_pid: bool
    grace_seconds: float
    folders: dict[str, Path]   # host folders the pod's volumes are, made before it starts
    config_files: dict[Path, str]
    containers: list[ContainerPlan]


def _quantity_bytes(value: str, field_name: str) -> int:
    return int(build.parse_quantity(value, field_name))


def plan_pod(pod: dict[str, Any], config_map: dict[str, Any], volume_root: Path, shared: dict[str, Path],
             extra_mounts: dict[str, str], extra_env: dict[str, str], run_label: str) -> PodPlan:
    """Docker settings for one of the operator's pods. Its volumes are folders under
    `volume_root`, but the emptyDirs named in `shared` (the gang's checkpoints, pod 0's run
    directory); `extra_mounts` (host folder -> container path, read-only) and `extra_env` go
    into every container."""
    meta, spec = pod["metadata"], pod["spec"]
    name = meta["name"]
    folders: dict[str, Path] = {}
    config_files: dict[Path, str] = {}
    shm_bytes = 64 * 2**20  # the runtime's default, as in a pod without a memory-backed /dev/shm
    shm_volumes = set()
    for volume in spec["volumes"]:
        vname = volume["name"]
        if "configMap" in volume:
            folder = volume_root / vname
            folders[vname] = folder
            for item in volume["configMap"].get("items", []):
                config_files[folder / item["path"]] = config_map["data"][item["key"]]
        elif "emptyDir" in volume:
            if volume["emptyDir"].get("medium") == "Memory":
                shm_bytes = _quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"), "spec.cluster.shmSize")
                shm_volumes.add(vname)
            else:
                folders[vname] = shared.get(vname, volume_root / vname)
        else:
            kind = next(k for k in volume if k != "name")
            raise SpecError(f"spec (volume {vname})", f"the docker runtime plays emptyDir and ConfigMap volumes; "
                            f"this pod asks for a {kind} (a PersistentVolumeClaim: leave spec.model.pvc and "
                            "spec.checkpoint.pvc out; the run directory stands in for them)")
    security = spec.get("securityContext", {})
    containers = []
    for entry, sidecar in [(x, True) for x in spec.get("initContainers", [])] + [(x, False) for x in spec["containers"]]:
        if entry.get("envFrom"):
            raise SpecError("spec.logging.secretName", "the docker runtime has no Secrets to take credentials from")
        volumes = {str(folders[m["name"]]): {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
                   for m in entry.get("volumeMounts", []) if m["name"] not in shm_volumes}
        volumes.update({host: {"bind": inside, "mode": "ro"} for host, inside in extra_mounts.items()})
        context = entry.get("securityContext", {})
        security_opt = []
        if context.get("allowPrivilegeEscalation") is False:
            security_opt.append("no-new-privileges")
        for key, option in (("seccompProfile", "seccomp"), ("appArmorProfile", "apparmor")):
            if context.get(key, {}).get("type") == "Unconfined":
                security_opt.append(f"{option}=unconfined")
        limits = entry.get("resources", {}).get("limits", {})
        settings: dict[str, Any] = {
            "name": f"{run_label}-{name}-{entry['name']}",
            "entrypoint": entry.get("command"),
            "command": entry.get("args"),
            "volumes": volumes,
            "security_opt": security_opt,
            "labels": {RUN_LABEL: run_label, POD_LABEL: name},
        }
        if "memory" in limits:
            settings["mem_limit"] = _quantity_bytes(limits["memory"], "spec.cluster.memoryPerNode")
        if security.get("fsGroup") is not None:
            settings["group_add"] = [str(security["fsGroup"])]
        probe = entry.get("startupProbe", {}).get("tcpSocket")
        containers.append(ContainerPlan(
            name=entry["name"], sidecar=sidecar, image=entry["image"], settings=settings,
            env=list(entry.get("env", [])) + [{"name": k, "value": v} for k, v in extra_env.items()],
            startup_port=probe["port"] if probe else None))
    namespace = meta.get("namespace", "default")
    aliases = [name]
    if spec.get("subdomain"):
        fqdn = f"{spec['hostname']}.{spec['subdomain']}.{namespace}.svc"
        aliases += [f"{spec['hostname']}.{spec['subdomain']}", fqdn, f"{fqdn}.cluster.local"]
    return PodPlan(name=name, hostname=spec.get("hostname", name), aliases=aliases, shm_bytes=shm_bytes,
                   share_pid=bool(spec.get("shareProcessNamespace")),
                   grace_seconds=float(spec.get("terminationGracePeriodSeconds", 30)),
                   folders=folders, config_files=config_files, containers=containers)


def resolve_env(entries: list[dict[str, Any]], namespace: str, pod_ip: str) -> dict[str, str]:
    """The pod's env entries as the kubelet gives them: field references filled in."""
    fields = {"metadata.namespace": namespace, "status.podIP": pod_ip}
    env = {}
    for entry in entries:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            if path not in fields:
                raise SpecError(f"env {entry['name']}", f"the docker runtime fills {sorted(fields)}, not {path}")
            env[entry["name"]] = fields[path]
    return env


# --- playing a plan ---------------------------------------------------------------------------
class DockerPod:
    """One pod's containers on the engine; the interface of seesaw.local.runner.LocalPod."""

    def __init__(self, client: Any, plan: PodPlan, network: str, namespace: str, logs_dir: Path,
                 index: int, replica: bool, echo_main: bool, startup_seconds: float) -> None:
        self.client, self.plan = client, plan
        self.index, self.replica = index, replica
        self.name = pod_title(index, replica)
        prefix = log_prefix(index, replica)
        self.logs = {LOG_KEYS[p.name]: logs_dir / f"{prefix}{LOG_KEYS[p.name]}.log" for p in plan.containers}
        self.containers: dict[str, Any] = {}   # log key -> container, in start order
        self.pause = None
        self._followers: list[threading.Thread] = []
        self._echo_main = echo_main
        self._network, self._namespace = network, namespace
        self._startup_seconds = startup_seconds

    def start(self, attempt: int) -> None:
        for folder in self.plan.folders.values():
            _writable_by_the_pod(folder)
        for path, text in self.plan.config_files.items():
            path.write_text(text)
        for log in self.logs.values():  # appended: a restarted gang's logs follow the failed attempt's
            with log.open("a") as out:
                out.write(f"===== attempt {attempt + 1} =====\n")
        main = self.plan.containers[-1]  # the main container's image holds the namespaces too
        labels = main.settings["labels"]
        self.pause = self.client.containers.run(
            main.image, entrypoint=["sleep", "infinity"], detach=True, name=f"{labels[RUN_LABEL]}-{self.plan.name}-pause",
            hostname=self.plan.hostname, network=self._network, ipc_mode="shareable", shm_size=self.plan.shm_bytes,
            labels=labels, user=f"{POD_UID}:{POD_UID}")
        self._connect_aliases()
        self.pause.reload()
        pod_ip = self.pause.attrs["NetworkSettings"]["Networks"][self._network]["IPAddress"]
        joined = {"network_mode": f"container:{self.pause.id}", "ipc_mode": f"container:{self.pause.id}"}
        if self.plan.share_pid:
            joined["pid_mode"] = f"container:{self.pause.id}"
        for plan in self.plan.containers:
            env = resolve_env(plan.env, self._namespace, pod_ip)
            container = self.client.containers.run(plan.image, detach=True, environment=env, **joined, **plan.settings)
            key = LOG_KEYS[plan.name]
            self.containers[key] = container
            self._follow(container, self.logs[key])
            if self._echo_main and not plan.sidecar:  # the conductor's lines are the run's output
                self._follow(container, None)
            if plan.sidecar and plan.startup_port:
                self._wait_started(plan, key, pod_ip)

    def _connect_aliases(self) -> None:
        network = self.client.networks.get(self._network)
        network.disconnect(self.pause)
        network.connect(self.pause, aliases=self.plan.aliases)

    def _wait_started(self, plan: ContainerPlan, key: str, pod_ip: str) -> None:
        """A native sidecar counts as started once its startup probe passes; the next waits."""
        deadline = time.monotonic() + self._startup_seconds
        while time.monotonic() < deadline:
            if self.exit_code(key) is not None:
                return  # the runner names the dead container
            try:
                with socket.create_connection((pod_ip, plan.startup_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"{self.name}'s {plan.name} container did not open port {plan.startup_port} "
                           f"within {self._startup_seconds:.0f}s (its startup probe)")

    def _follow(self, container: Any, path: Path | None) -> None:
        """Stream a container's output and errors into its log file, or (no path) its output alone here."""
        def copy() -> None:
            if path is None:
                for chunk in container.logs(stream=True, follow=True, stderr=False):
                    print(chunk.decode(errors="replace"), end="", flush=True)
                return
            with path.open("ab") as log:
                for chunk in container.logs(stream=True, follow=True):
                    log.write(chunk)
                    log.flush()

        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        self._followers.append(thread)

    def exit_code(self, key: str) -> int | None:
        container = self.containers[key]
        try:
            container.reload()
        except Exception:
            return -9  # removed under us
        state = container.attrs["State"]
        return None if state["Status"] in ("created", "running", "restarting") else int(state["ExitCode"])

    def main_exit_code(self) -> int | None:
        return self.exit_code("sidecar")

    def dead_worker(self) -> tuple[str, int] | None:
        for key in self.containers:
            code = self.exit_code(key)
            if died(key, code, follower=self.index > 0 or self.replica):
                return key, code
        return None

    def wait_logs(self, timeout: float = 5) -> None:
        for thread in self._followers:
            thread.join(timeout)

    def stop(self) -> None:
        """Main container first, then the sidecars in reverse start order, then the pause."""
        grace = min(self.plan.grace_seconds, STOP_SECONDS)
        for container in reversed(list(self.containers.values())):
            _quietly(container.stop, timeout=int(grace))
        self.wait_logs(timeout=2)
        for container in list(self.containers.values()) + ([self.pause] if self.pause else []):
            _quietly(container.remove, force=True, v=True)


def _quietly(action: Any, **kwargs: Any) -> None:
    try:
        action(**kwargs)
    except Exception:
        pass  # already gone


def _writable_by_the_pod(folder: Path) -> None:
    """The images run as uid 10001 (fsGroup 10001 in the pod): a volume folder is theirs when
    this runs as root, else open to all (a non-root user cannot give files away)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, POD_UID, POD_UID)
    else:
        folder.chmod(0o777)


# --- the runtime ------------------------------------------------------------------------------
# What `seesaw run` sets to share this machine's cores between pods, as a CPU limit would.
MODEL_MOUNT = "/mnt/seesaw-model"  # where a container finds the model this machine prepared
MACHINE_SHARE = (pc.CPU_THREADS, "OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE")


class DockerRuntime:
    """The runner's runtime for `--runtime docker`: the job's pods, from the operator's
    builders, as containers on the Docker engine at DOCKER_HOST (or the default socket)."""

    def __init__(self, manifest: dict[str, Any], run_dir: Path, model_dir: Path, env: dict[str, str]) -> None:
        import docker

        try:
            self.client = docker.from_env()
            self.client.ping()
        except Exception as err:
            where = os.environ.get("DOCKER_HOST") or "the default socket"
            raise SpecError("--runtime docker", f"no Docker engine answers at {where} ({err}); start one, or as root "
                            "`python tools/docker_engine.py start` and export the DOCKER_HOST it prints") from None
        self.job = manifest
        self.run_dir = run_dir
        self.label = re.sub(r"[^a-zA-Z0-9_.-]", "-", run_dir.name)
        self.summary_json = env.get(pc.SUMMARY_JSON)
        self.extra_env = {key: env[key] for key in MACHINE_SHARE if key in env}
        # not at its host path: under /root (the models cache's home) the images' user could not
        # traverse the folders above it, and transformers takes an unreadable path for a Hub id
        inside = f"{MODEL_MOUNT}/{model_dir.name}"
        self.extra_env[pc.MODEL_DIR] = inside
        self.model_mount = {str(model_dir): inside}
        self._check_images()
        self.network = self.client.networks.create(f"seesaw-{self.label}", driver="bridge",
                                                   labels={RUN_LABEL: self.label})
        print(f"docker runtime: pods on network {self.network.name} of the engine at "
              f"{os.environ.get('DOCKER_HOST') or 'the default socket'}", flush=True)

    def _check_images(self) -> None:
        import docker

        images, policy = self.job["spec"]["images"], self.job["spec"]["images"]["pullPolicy"]
        for key in IMAGE_FIELDS:
            image, field_name = images[key], f"spec.images.{key}"
            try:
                self.client.images.get(image)
                continue
            except docker.errors.ImageNotFound:
                pass
            why = "spec.images.pullPolicy is Never"
            if policy != "Never":
                try:
                    self.client.images.pull(image)
                    continue
                except docker.errors.APIError as err:
                    why = f"pulling it failed: {err.explanation or err}"
            raise SpecError(field_name, f"{image} is not on the Docker engine and {why}; build the CPU images "
                            "with `make images` (they are tagged <version>-cpu) or name images the engine has")

    def _pod(self, pod: dict[str, Any], index: int, replica: bool, shared: dict[str, Path], attempt: int,
             extra_env: dict[str, str], echo: bool) -> DockerPod:
        name = pod["metadata"]["name"]
        plan = plan_pod(pod, build.build_config_map(self.job), self.run_dir / ".pods" / f"{name}-{attempt}",
                        shared, self.model_mount, {**self.extra_env, **extra_env}, self.label)
        return DockerPod(self.client, plan, self.network.name, build.job_namespace(self.job), self.run_dir,
                         index=index, replica=replica, echo_main=echo,
                         startup_seconds=float(self.job["spec"]["timeouts"]["startupSeconds"]))

    def start_gang(self, env: dict[str, str], pods: list) -> None:
        import docker

        attempt = int(env[pc.RESTART_ATTEMPT])
        checkpoints = {"checkpoints": self.run_dir / "checkpoints"}
        for index, pod in enumerate(build.build_pods(self.job, attempt, env.get(pc.RESUME_FROM))):
            # pod 0's run directory is the run's (metrics, plots, TensorBoard, the summary)
            shared = {**checkpoints, "run": self.run_dir} if index == 0 else checkpoints
            extra = {pc.SUMMARY_JSON: f"{c.RUN_DIR}/summary.json"} if index == 0 else {}
            pods.append(self._pod(pod, index, False, shared, attempt, extra, echo=index == 0))
        try:
            for pod in reversed(pods):  # the followers first: pod 0's conductor waits for them
                pod.start(attempt)
        except (docker.errors.DockerException, TimeoutError) as err:  # refused by the engine, a probe that never passed
            raise StartFailed(str(err)) from err

    def start_replica(self, index: int, env: dict[str, str]) -> DockerPod:
        pod = self._pod(build.build_replica_pod(self.job, index), index, True, {}, 0, {}, echo=False)
        try:
            pod.start(attempt=0)
        except Exception:
            pod.stop()
            raise
        return pod

    def close(self) -> None:
        """Remove the network and anything of the run still there (containers stop with their pods)."""
        for container in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={self.label}"}):
            _quietly(container.remove, force=True, v=True)
        _quietly(self.network.remove)
        summary = self.run_dir / "summary.json"
        if self.summary_json and summary.exists():
            shutil.copyfile(summary, self.summary_json)

"""Test harness for the operator: the cluster as kubectl sees it, the operator process, and
the environment they run in: RLJobs on the real Kubernetes API server and everything else on
the fake one, behind one router (tests/fakes/api_router.py), or a real cluster when
SEESAW_E2E_KUBECONFIG names a kubeconfig."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from kubernetes import config
from kubernetes.client.rest import ApiException

from fakes.api_router import APIRouter
from fakes.kube_api import FakeKubeAPI
from real_apiserver import RealAPIServer
from seesaw.checkpoint_engine.status_reporter import StatusReporter
from seesaw.supervise import die_with_parent

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "seesaw.dev_rljobs.yaml"
E2E_KUBECONFIG = os.environ.get("SEESAW_E2E_KUBECONFIG")
Obj = dict[str, Any]


def rljob(name: str, **spec: Any) -> Obj:
    """A small valid RLJob; keyword arguments replace top-level spec sections."""
    base: Obj = {
        "model": {"path": "/models/tiny"},
        "cluster": {"nodes": 2, "gpusPerNode": 0, "cpusPerNode": "2", "memoryPerNode": "4Gi", "shmSize": "1Gi"},
        "rl": {"iterations": 5},
        "checkpoint": {"everyIterations": 1},
        "failurePolicy": {"maxRestarts": 2, "backoffSeconds": 0},
    }
    base.update(spec)
    return {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": name}, "spec": base}


class Cluster:
    """What a test does with kubectl: raw REST calls through the official client."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=kubeconfig)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: list[tuple[str, str]] | None = None) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        method_, url, headers, payload, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"])
        response = self.api.call_api(method_, url, header_params=headers, body=payload, _request_timeout=20)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason,
                               body=response.data.decode() if response.data else "")
        return json.loads(response.data) if response.data else {}

    # RLJobs
    def jobs_path(self, ns: str) -> str:
        return f"/apis/seesaw.dev/v1alpha1/namespaces/{ns}/rljobs"

    def apply(self, ns: str, job: Obj) -> Obj:
        return self.request("POST", self.jobs_path(ns), copy.deepcopy(job))

    def get(self, ns: str, name: str) -> Obj | None:
        try:
            return self.request("GET", f"{self.jobs_path(ns)}/{name}")
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch(self, ns: str, name: str, patch: Obj) -> Obj:
        return self.request("PATCH", f"{self.jobs_path(ns)}/{name}", patch, "application/merge-patch+json")

    def delete(self, ns: str, name: str) -> None:
        self.request("DELETE", f"{self.jobs_path(ns)}/{name}")

    def pods(self, ns: str, name: str) -> list[Obj]:
        return self.request("GET", f"/api/v1/namespaces/{ns}/pods", query=[("labelSelector", f"seesaw.dev/job={name}")])["items"]

    def live_pods(self, ns: str, name: str) -> list[Obj]:
        return [p for p in self.pods(ns, name) if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def objects(self, path: str) -> list[Obj]:
        return self.request("GET", path)["items"]

    def events(self, ns: str, name: str) -> list[Obj]:
        items = self.request("GET", f"/api/v1/namespaces/{ns}/events",
                             query=[("fieldSelector", f"involvedObject.name={name}")])["items"]
        return sorted(items, key=lambda e: (e.get("lastTimestamp") or "", e["metadata"].get("resourceVersion", "")))

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    def wait_phase(self, ns: str, name: str, phase: str, timeout: float = 20.0) -> Obj:
        def check() -> Obj | None:
            job = self.get(ns, name)
            return job if job and (job.get("status") or {}).get("phase") == phase else None
        try:
            return self.wait(f"{name} to be {phase}", check, timeout)
        except AssertionError:
            job = self.get(ns, name)
            raise AssertionError(f"{name} never reached {phase}; status: {json.dumps((job or {}).get('status'), indent=1)}") from None


def reporter_for(env: "Environment", ns: str, name: str) -> StatusReporter:
    """Pod 0's status reporter, with the job's own credentials."""
    kubeconfig = env.workdir / "reporter.kubeconfig"
    cluster = Cluster(str(kubeconfig)) if kubeconfig.exists() else env.cluster
    return StatusReporter(name, ns, lambda method, path, body, ctype: cluster.request(method, path, body, ctype))


def reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(ns, name)]


def wait_reasons(cluster: Cluster, ns: str, name: str, *wanted: str) -> list[str]:
    """The job's event reasons once every one wanted is among them: the operator posts a
    round's events after its status patch, so a test that saw the status may be early."""
    def found() -> list[str] | None:
        seen = reasons(cluster, ns, name)
        return seen if set(wanted) <= set(seen) else None
    return cluster.wait(f"events {', '.join(wanted)} of {name}", found)


def env_of(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def condition(job: Obj, type_: str) -> Obj:
    return next(c for c in job["status"]["conditions"] if c["type"] == type_)


class Operator:
    """`kopf run -m seesaw.operator.handlers` as its own process."""

    def __init__(self, kubeconfig: str, workdir: Path, extra_args: tuple[str, ...] = ("--standalone", "--all-namespaces"),
                 env: dict[str, str] | None = None) -> None:
        self.kubeconfig, self.workdir, self.args = kubeconfig, workdir, extra_args
        self.env = env or {}  # replaces the test settings below (bench/operator_scale.py runs the defaults)
        self.process: subprocess.Popen | None = None
        self.log = workdir / "operator.log"

    def start(self) -> "Operator":
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "SEESAW_RESYNC_SECONDS": "2",
               "SEESAW_WATCH_TIMEOUT_SECONDS": "60", "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("SEESAW_METRICS_PORT", None)
        kopf = str(Path(sys.executable).parent / "kopf")
        # cwd is not the repository root: a folder named operator/ there would shadow the stdlib.
        self.process = subprocess.Popen([kopf, "run", "-m", "seesaw.operator.handlers", *self.args],
                                        cwd=self.workdir, env=env, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
        return self

    def stop(self, hard: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:]) if self.log.exists() else ""


class Environment:
    def __init__(self, cluster: Cluster, operator: Operator | None, workdir: Path, fake: FakeKubeAPI | None = None,
                 real: RealAPIServer | None = None, router: APIRouter | None = None) -> None:
        self.cluster, self.operator, self.workdir = cluster, operator, workdir
        self.fake, self.real, self.router = fake, real, router


def install_crd(cluster: Cluster, crd: Obj | None = None) -> None:
    """Create a CRD (the RLJob's by default) and wait until the server serves its resource."""
    crd = crd or yaml.safe_load(CRD_PATH.read_text())
    try:
        cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    except ApiException as err:
        if err.status != 409:
            raise
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))

    def served() -> bool:
        try:
            return cluster.request("GET", f"/apis/{group}/{version}/{plural}") is not None
        except ApiException:
            return False
    cluster.wait(f"{plural}.{group} to be served", served)


def start_fake_and_real(workdir: Path) -> Environment:
    """The fake API server, the real one and the router in front of them, with kubeconfigs
    for the user, the operator and pod 0's status reporter; no operator yet."""
    fake = FakeKubeAPI().start()
    real = router = None
    try:
        real = RealAPIServer(workdir / "apiserver").start()
        router = APIRouter(fake, real).start()
    except BaseException:
        if real:
            real.stop()
        fake.stop()
        raise
    for who in ("user", "operator", "status-reporter"):
        name = "reporter" if who == "status-reporter" else who
        (workdir / f"{name}.kubeconfig").write_text(yaml.safe_dump(router.kubeconfig(who)))
    return Environment(Cluster(str(workdir / "user.kubeconfig")), None, workdir, fake, real, router)


def start_environment(workdir: Path, operator_args: tuple[str, ...] = ("--standalone", "--all-namespaces")) -> Environment:
    workdir.mkdir(parents=True, exist_ok=True)
    if E2E_KUBECONFIG:
        env = Environment(Cluster(E2E_KUBECONFIG), None, workdir)
        operator_kubeconfig = E2E_KUBECONFIG
    else:
        env = start_fake_and_real(workdir)
        operator_kubeconfig = str(workdir / "operator.kubeconfig")
    try:
        install_crd(env.cluster)
    except BaseException:
        stop_environment(env)
        raise
    env.operator = Operator(operator_kubeconfig, workdir, operator_args).start()
    return env


def stop_environment(env: Environment) -> None:
    if env.operator:
        env.operator.stop()
    if env.router:
        env.router.stop()
    if env.real:
        env.real.stop()
    if env.fake:
        env.fake.stop()



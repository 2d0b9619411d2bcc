"""The upstream Kubernetes apiextensions-apiserver on etcd, started for a test session.

Built from Debian's packages by `make apiserver` (tools/build_apiserver.sh) into a cache
outside the repository. It serves CustomResourceDefinitions and custom resources exactly as a
cluster does (structural schemas, defaulting, pruning, CEL, the status and scale
subresources, resourceVersions, watches) but no core resources. Each start gets free local
ports, a fresh etcd data directory and throwaway certificates; the test client is a
`system:masters` client certificate, which the server authorises without a core API server.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from seesaw.supervise import die_with_parent

REPO = Path(__file__).resolve().parents[2]
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _pinned() -> dict[str, str]:
    text = (REPO / "tools" / "apiserver.mk").read_text()
    return dict(re.findall(r"^(\w+)\s*:=\s*(\S+)", text, re.M))


def binaries() -> Path:
    """Where `make apiserver` put the server and etcd; an error that says how to get them."""
    version = _pinned()["APISERVER_VERSION"]
    cache = Path(os.environ.get("SEESAW_CACHE") or Path.home() / ".cache" / "seesaw")
    folder = cache / f"apiserver-{version}" / "bin"
    if not all((folder / tool).exists() for tool in ("apiextensions-apiserver", "etcd", "yaml2json", "crd_openapi")):
        raise RuntimeError(f"the Kubernetes API server {version} is not built: run `make apiserver` (it builds "
                           f"apiextensions-apiserver, etcd, kubectl's yaml2json and crd_openapi from Debian sid's packages into "
                           f"{folder.parent}, a few minutes; `make test` does it first)")
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _client_certificate(folder: Path) -> None:
    """A CA, and a client certificate of the `system:masters` group that it signed."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=seesaw-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=seesaw-test",
             "-keyout", "client.key", "-out", "client.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "client.crt", cwd=folder)


class RealAPIServer:
    """etcd and the apiextensions-apiserver as child processes; `url`, `session` and
    `kubeconfig` reach it as an administrator."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.url = ""
        self.kubeconfig = workdir / "kubeconfig"
        self.session = requests.Session()

    def start(self, timeout: float = 120.0) -> "RealAPIServer":
        try:
            return self._start(timeout)
        except BaseException:  # nothing left running when the start fails or is interrupted
            self.stop()
            raise

    def _start(self, timeout: float) -> "RealAPIServer":
        bin_dir = binaries()
        certs = self.workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        _client_certificate(certs)
        etcd_port, etcd_peer, port = _free_port(), _free_port(), _free_port()
        self._spawn("etcd", [str(bin_dir / "etcd"), "--data-dir", str(self.workdir / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}"])
        self.url = f"https://127.0.0.1:{port}"
        self._write_kubeconfig(certs)
        self._spawn("apiserver", [
            str(bin_dir / "apiextensions-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={certs / 'serving'}",
            # who is calling: the client certificate, and the system:masters group is always
            # authorised. The delegated token and access reviews (never needed here) would ask
            # a core API server; pointing them at this server itself keeps it standalone.
            f"--client-ca-file={certs / 'ca.crt'}", "--authentication-skip-lookup=true",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            f"--kubeconfig={self.kubeconfig}",  # the "core" server its informers would watch: itself
            "--enable-priority-and-fairness=false",  # its configuration objects live on a core server
            # these admission plugins read namespaces and webhook configurations, which only a
            # core API server serves
            "--disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
            "ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
        ])
        self.session.cert = (str(certs / "client.crt"), str(certs / "client.key"))
        # the server made its own certificate and the CA that signed it (for 127.0.0.1) at start
        self.session.verify = str(certs / "serving" / "apiserver.crt")
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides verify
        self._wait_ready(timeout)
        return self

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             **query: str) -> tuple[int, dict]:
        """One REST call as the administrator: (status code, JSON body)."""
        answer = self.session.request(method, f"{self.url}{path}", json=body, params=query,
                                      headers={"Content-Type": content_type}, timeout=30)
        return answer.status_code, answer.json() if answer.content else {}

    def install_crd(self, crd: dict, plural_path: str, timeout: float = 30.0) -> dict[str, dict]:
        """Create the CRD, wait until it is Established and `plural_path` answers; its conditions."""
        status, body = self.call("POST", CRDS, crd)
        if status != 201:
            raise AssertionError(f"the API server refused the CRD: {status} {body.get('message', body)}")
        deadline = time.monotonic() + timeout
        conditions: dict[str, dict] = {}
        while time.monotonic() < deadline:
            got = self.call("GET", f"{CRDS}/{crd['metadata']['name']}")[1]
            conditions = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
            if conditions.get("Established", {}).get("status") == "True" and self.call("GET", plural_path)[0] == 200:
                break
            time.sleep(0.2)
        return conditions

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            # they die with the test process, even when it is killed
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                   preexec_fn=die_with_parent))

    def log_tail(self, name: str = "apiserver", lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{self.log_tail()}\n"
                                       f"{self.log_tail('etcd')}")
            try:
                # informer-sync waits for a Service informer (conversion webhooks) that only a core
                # server could fill; every other check must pass
                answer = self.session.get(f"{self.url}/readyz?verbose&exclude=informer-sync", timeout=2)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[-800:]}"
            except OSError as err:  # refused, or its certificate not written yet
                last = str(err)
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the API server was not ready within {timeout:.0f}s: {last}\n{self.log_tail()}")

    def _write_kubeconfig(self, certs: Path) -> None:
        self.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: real, cluster: {{server: "{self.url}", insecure-skip-tls-verify: true}}}}]
users: [{{name: admin, user: {{client-certificate: "{certs / 'client.crt'}", client-key: "{certs / 'client.key'}"}}}}]
contexts: [{{name: real, context: {{cluster: real, user: admin}}}}]
current-context: real
""")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []

    def __enter__(self) -> "RealAPIServer":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)

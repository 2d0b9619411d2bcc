"""The operator image, run as the chart runs it (its args, environment and security context:
read-only root, non-root user, no capabilities, /tmp in memory): it comes up, serves its
liveness and metrics endpoints, and turns an RLJob into pods."""
import time
from pathlib import Path

import helm_python as helm
import pytest
import requests
import yaml

from fakes.operator_env import install_crd, rljob, start_fake_and_real, stop_environment

pytestmark = pytest.mark.slow
CHART = Path(__file__).resolve().parents[2] / "helm" / "seesaw"
STANDALONE = {"replicas": 1, "peering": {"enabled": False}}


def chart_statefulset(values: dict) -> dict:
    """The operator's StatefulSet as Helm's own engine renders the chart."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="seesaw", namespace="seesaw-system", is_install=True)
    objects = [doc for path, text in manifests.items() if not path.endswith("NOTES.txt")
               for doc in yaml.safe_load_all(text) if doc]
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    return statefulset


@pytest.fixture
def api(tmp_path):
    env = start_fake_and_real(tmp_path)
    try:
        install_crd(env.cluster)
        yield env
    finally:
        stop_environment(env)


def docker_settings(container: dict, pod_spec: dict, kubeconfig: Path) -> dict:
    """The chart's operator container as Docker settings, on this machine's network (where the
    test API server listens)."""
    fields = {"metadata.name": "seesaw-0", "metadata.namespace": "seesaw-system",
              "metadata.labels['apps.kubernetes.io/pod-index']": "0"}
    env = {e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
           for e in container["env"]}
    env["KUBECONFIG"] = "/etc/seesaw/kubeconfig"
    context, pod_context = container["securityContext"], pod_spec["securityContext"]
    (tmp,) = [v for v in pod_spec["volumes"] if v["name"] == "tmp"]
    return {
        "command": container["args"],
        "environment": env,
        "user": f"{pod_context['runAsUser']}:{pod_context['runAsGroup']}",
        "read_only": context["readOnlyRootFilesystem"],
        "cap_drop": context["capabilities"]["drop"],
        "security_opt": ["no-new-privileges"] if context["allowPrivilegeEscalation"] is False else [],
        "tmpfs": {"/tmp": f"size={tmp['emptyDir']['sizeLimit'].replace('Mi', 'm')}"},
        "volumes": {str(kubeconfig): {"bind": "/etc/seesaw/kubeconfig", "mode": "ro"}},
        "network_mode": "host",
    }


def test_the_operator_image_serves_its_probes_and_creates_a_jobs_pods(cpu_images, engine_left_clean, api):
    client, _ = engine_left_clean
    pod_spec = chart_statefulset(STANDALONE)["spec"]["template"]["spec"]
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "operator"]
    kubeconfig = api.workdir / "operator.kubeconfig"
    kubeconfig.chmod(0o644)  # read by the image's user
    settings = docker_settings(container, pod_spec, kubeconfig)
    operator = client.containers.run(cpu_images["operator"], detach=True, name="seesaw-operator-image-test",
                                      labels={"dev.seesaw.run": "operator-image-test"}, **settings)
    try:
        probe = container["startupProbe"]
        deadline = time.monotonic() + probe["periodSeconds"] * probe["failureThreshold"]
        while True:
            operator.reload()
            assert operator.status == "running", operator.logs().decode()[-3000:]
            try:
                if requests.get("http://127.0.0.1:8080/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "no /healthz within the startup probe's budget: " + \
                operator.logs().decode()[-3000:]
            time.sleep(1)
        metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "seesaw_" in metrics, metrics[:2000]

        api.cluster.apply("default", rljob("image-job"))
        pods = api.cluster.wait("the operator in the image to create the job's two pods",
                                lambda: (found := api.cluster.pods("default", "image-job")) and len(found) == 2 and found,
                                timeout=60)
        images = {c["image"] for pod in pods for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]}
        assert images == {"ghcr.io/seesaw-rl/trainer:0.1.0", "ghcr.io/seesaw-rl/rollout:0.1.0",
                          "ghcr.io/seesaw-rl/checkpoint-engine:0.1.0"}
    finally:
        operator.remove(force=True)

"""The operator chart renders, lints and validates against the upstream Kubernetes schemas."""
from __future__ import annotations

import re
from pathlib import Path

import click
import helm_python as helm
import jsonschema
import kopf.cli
import kubernetes_validate
import pytest
from seesaw import manifest_yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "seesaw"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]


def test_chart_lints_without_warnings(values):
    for kube in KUBE_VERSIONS:
        report = helm.lint(CHART, values, strict=True, namespace="seesaw-system", kube_version=f"v{kube}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_every_rendered_object_is_valid_against_upstream_schemas(render, values, chart_crds):
    rendered = render(values)
    crd_schemas = {
        (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for crd in chart_crds for v in crd["spec"]["versions"]
    }
    assert rendered.objects
    for obj in rendered.objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in crd_schemas:  # kinds whose CRDs the chart itself installs
            jsonschema.validate(obj, crd_schemas[key])
        elif key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            check_service_monitor(obj, rendered)
        else:
            for kube in KUBE_VERSIONS:
                # strict: an unknown or misspelt field is an error, not silently dropped
                kubernetes_validate.validate(obj, kube, strict=True)


def check_service_monitor(monitor, rendered):
    """prometheus-operator's CRD is not an upstream schema: check what makes it scrape us."""
    (service,) = [s for s in rendered.all("Service") if s["metadata"]["name"].endswith("-metrics")]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_chart_crds_are_valid_custom_resource_definitions(chart_crds):
    names = {crd["metadata"]["name"] for crd in chart_crds}
    assert names == {"rljobs.seesaw.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for crd in chart_crds:
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(crd, kube, strict=True)


def test_chart_installs_the_rljob_crd_from_the_one_source_in_crds(chart):
    source = (ROOT / "crds" / "seesaw.dev_rljobs.yaml").read_text()
    installed = [c for c in chart.crds if "name: rljobs.seesaw.dev" in c["data"]]
    assert len(installed) == 1, "the chart must install the RLJob CRD exactly once"
    assert installed[0]["data"] == source, "helm/seesaw/crds/ drifted from crds/seesaw.dev_rljobs.yaml"
    # No second copy hiding among the templates either.
    assert not any("rljobs.seesaw.dev" in t["data"] and "CustomResourceDefinition" in t["data"]
                   for t in chart.templates)


def test_packaged_chart_carries_the_crd_content_not_a_link(tmp_path):
    """What `helm package` pushes to a registry: the link is resolved into the archive."""
    archive = helm.package(CHART, destination=tmp_path)
    with helm.Chart.load(archive) as packaged:
        (rljobs,) = [c for c in packaged.crds if "name: rljobs.seesaw.dev" in c["data"]]
    assert rljobs["data"] == (ROOT / "crds" / "seesaw.dev_rljobs.yaml").read_text()


def kopf_run_options(args: list[str]) -> dict:
    """Parse the container args exactly as `kopf run` would, without starting it."""
    with kopf.cli.run.make_context("run", list(args), resilient_parsing=False) as ctx:
        return ctx.params


def expand_env(arg: str, env: dict[str, str]) -> str:
    for name, value in env.items():
        arg = arg.replace(f"$({name})", value)
    return arg


def test_operator_args_are_valid_kopf_run_options(render, values):
    rendered = render(values)
    container = rendered.operator
    env_names = {e["name"] for e in container.get("env", [])}
    for arg in container["args"]:
        for ref in [part.split(")")[0] for part in arg.split("$(")[1:]]:
            assert ref in env_names, f"{arg} refers to ${ref}, which the container does not define"
    options = kopf_run_options([expand_env(a, {"POD_INDEX": "1"}) for a in container["args"]])
    watch = {**{"allNamespaces": True, "namespaces": []}, **values.get("watch", {})}
    if watch["allNamespaces"]:
        assert options["clusterwide"] and not options["namespaces"]
    else:
        assert not options["clusterwide"] and list(options["namespaces"]) == watch["namespaces"]
    assert options["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"


def test_bad_kopf_option_would_be_caught():
    with pytest.raises(click.UsageError):
        kopf_run_options(["--all-namespaces", "--no-such-flag"])


def test_replicas_get_distinct_peering_priorities_from_their_pod_index(render):
    rendered = render({"replicas": 3})
    statefulset = rendered.one("StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    container = rendered.operator
    options = kopf_run_options([expand_env(a, {"POD_INDEX": "2"}) for a in container["args"]])
    assert options["peering_name"] == "seesaw" and options["priority"] == 2
    (pod_index,) = [e for e in container["env"] if e["name"] == "POD_INDEX"]
    assert pod_index["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert rendered.one("ClusterKopfPeering")["metadata"]["name"] == options["peering_name"]
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_a_single_replica_without_peering_runs_standalone(render):
    rendered = render({"replicas": 1, "peering": {"enabled": False}})
    options = kopf_run_options(rendered.operator["args"])
    assert options["standalone"] and options["peering_name"] is None
    assert not rendered.all("ClusterKopfPeering") and not rendered.all("PodDisruptionBudget")


def test_namespace_list_gets_a_peering_object_in_each_namespace(render):
    rendered = render({"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}})
    peerings = rendered.all("KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not rendered.all("ClusterKopfPeering")


def test_operator_pod_is_hardened_and_bounded(render, values):
    rendered = render(values)
    pod = rendered.pod_spec
    container = rendered.operator
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    # /tmp is the one writable path, and it is memory-backed and bounded.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert list(mounts) == ["/tmp"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == mounts["/tmp"]]
    assert tmp["emptyDir"]["sizeLimit"]


def test_metrics_service_reaches_the_operator_metrics_port(render, values):
    rendered = render(values)
    (service,) = [s for s in rendered.all("Service") if s["metadata"]["name"].endswith("-metrics")]
    pod_labels = rendered.one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    monitors = rendered.all("ServiceMonitor")
    wanted = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    assert len(monitors) == (1 if wanted else 0)


def test_image_reference_follows_tag_or_digest(render):
    assert render().operator["image"] == "ghcr.io/seesaw-rl/operator:0.1.0"
    digest = "sha256:" + "0" * 64
    assert render({"image": {"digest": digest}}).operator["image"] == f"ghcr.io/seesaw-rl/operator@{digest}"


@pytest.mark.parametrize(
    ("bad_values", "field"),
    [
        ({"replicas": 0}, "/replicas"),
        ({"replicas": 2, "peering": {"enabled": False}}, "/peering/enabled"),
        ({"watch": {"allNamespaces": False, "namespaces": []}}, "/watch/namespaces"),
        ({"watch": {"namespaces": ["Team_A"]}}, "/watch/namespaces/0"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"resources": {"limits": {"memory": "a lot"}}}, "/resources/limits/memory"),
        ({"log": {"level": "verbose"}}, "/log/level"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
        ({"replica": 2}, "'replica' not allowed"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_wrong_values_fail_with_a_message_naming_the_field(chart, bad_values, field):
    with pytest.raises(helm.HelmValuesError) as failure:
        chart.render(bad_values, name="seesaw", namespace="seesaw-system")
    assert field in str(failure.value)


def test_metrics_port_clash_with_liveness_fails_clearly(chart):
    with pytest.raises(helm.HelmRenderError, match="metrics.port must not be 8080"):
        chart.render({"metrics": {"port": 8080}}, name="seesaw", namespace="seesaw-system")


def test_notes_tell_how_to_apply_the_first_job_and_watch_it(render, values):
    rendered = render(values)
    applied = re.findall(r"kubectl apply .*-f (examples/\S+\.yaml)", rendered.notes)
    assert applied, "NOTES must show how to apply an example RLJob"
    assert (ROOT / applied[0]).is_file(), f"NOTES applies {applied[0]}, which does not exist"
    example = manifest_yaml.load((ROOT / applied[0]).read_text())
    assert example["kind"] == "RLJob"
    name = example["metadata"]["name"]
    assert "kubectl get rlj" in rendered.notes and " -w" in rendered.notes
    assert f"kubectl describe rlj {name}" in rendered.notes
    # the label the operator puts on a job's pods (operator/constants.py)
    assert f"kubectl get pods -l seesaw.dev/job={name}" in rendered.notes
    watch = values.get("watch", {})
    if watch.get("allNamespaces") is False:
        assert f"-n {watch['namespaces'][0]}" in rendered.notes


def test_pod_runs_as_the_user_the_operator_image_declares(render):
    (user,) = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "operator" / "Dockerfile").read_text(), re.M)
    context = render().pod_spec["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user

"""The chart's RBAC grants exactly the API calls Seesaw makes: every (group, resource,
verb) that operator/permissions.py declares for the operator and for the job pods'
status reporter, no wildcard, and no verb more."""
from __future__ import annotations

import functools
import importlib
from typing import Any

import pytest

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# kopf's own peering calls, added to the operator's rules by the chart when peering is on
# (the chart, not the operator code, decides to run several replicas; permissions.py
# leaves them out for that reason). Used only if permissions.py does not declare them.
KOPF_PEERING = {
    True: {("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")},
    False: {("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")},
}
# Resources the chart may grant through a ClusterRole even when it watches only some
# namespaces: they have no namespace.
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "clusterkopfpeerings", "nodes",
                  "clusterroles", "clusterrolebindings", "priorityclasses", "deviceclasses",
                  "resourceslices", "storageclasses"}
DANGEROUS_VERBS = {"*", "escalate", "impersonate", "bind"}

@functools.cache
def declared() -> dict[str, set[Grant]]:
    """{'operator': grants, 'sidecar': grants} from operator/permissions.py."""
    try:
        permissions = importlib.import_module("seesaw.operator.permissions")
    except ModuleNotFoundError as missing:
        pytest.fail(f"operator/permissions.py cannot be imported ({missing}): the chart's RBAC "
                    "has nothing to be checked against")
    return {"operator": permissions.grants(permissions.OPERATOR_PERMISSIONS),
            "sidecar": permissions.grants(permissions.STATUS_REPORTER_PERMISSIONS)}


# ---------------------------------------------------------------------------------------

def rule_grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def bound_to_operator(rendered, values) -> tuple[set[Grant], set[Grant]]:
    """(cluster-wide grants, grants in each watched namespace) of the operator's account."""
    account = values.get("serviceAccount", {}).get("name") or "seesaw"
    roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]): r
             for r in rendered.objects if r["kind"] in ("Role", "ClusterRole")}
    cluster, per_namespace = set(), {}
    for binding in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        grants = rule_grants(role["rules"])
        if binding["kind"] == "ClusterRoleBinding":
            cluster |= grants
        else:
            per_namespace.setdefault(namespace, set()).update(grants)
    namespaces = values.get("watch", {}).get("namespaces", [])
    if values.get("watch", {}).get("allNamespaces", True):
        assert not per_namespace
        return cluster, set()
    assert sorted(per_namespace) == sorted(namespaces), "a Role in each watched namespace, and only there"
    grants = list(per_namespace.values())
    assert all(g == grants[0] for g in grants), "every watched namespace grants the same"
    return cluster, grants[0]


def test_no_rendered_rule_uses_a_wildcard_or_escalating_verb(render, values):
    rendered = render(values)
    roles = rendered.all("Role") + rendered.all("ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, role["metadata"]["name"]
            for key in ("apiGroups", "resources", "verbs"):
                assert rule[key] and "*" not in rule[key], f"{role['metadata']['name']}: {rule}"
                assert not any("*" in item for item in rule[key]), f"{role['metadata']['name']}: {rule}"
            assert not set(rule["verbs"]) & DANGEROUS_VERBS or rule.get("resourceNames"), rule


def test_operator_rules_grant_exactly_the_declared_calls(render, values):
    permissions = declared()
    rendered = render(values)
    watch = {"allNamespaces": True, **values.get("watch", {})}
    peering = values.get("peering", {}).get("enabled", True)
    expected = set(permissions["operator"])
    if peering and not any(g == "kopf.dev" for g, _, _ in expected):
        expected |= KOPF_PEERING[watch["allNamespaces"]]
    cluster, namespaced = bound_to_operator(rendered, values)
    granted = cluster | namespaced
    assert granted - expected == set(), "the chart grants calls the operator does not make"
    assert expected - granted == set(), "the operator makes calls the chart does not grant"
    if not watch["allNamespaces"]:
        leaked = {g for g in cluster if g[1].split("/")[0] not in CLUSTER_SCOPED}
        assert not leaked, f"watching some namespaces, yet granted cluster-wide: {leaked}"


def test_job_role_grants_exactly_what_the_status_reporter_calls(render, values):
    permissions = declared()
    rendered = render(values)
    (job_role,) = [r for r in rendered.all("ClusterRole") if r["metadata"]["name"].endswith("-job")]
    assert rule_grants(job_role["rules"]) == permissions["sidecar"]
    # The chart binds it to nobody: the operator binds it to each job's pods, in its namespace.
    for binding in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding"):
        assert binding["roleRef"]["name"] != job_role["metadata"]["name"]
    (env,) = [e for e in rendered.operator["env"] if e["name"] == "SEESAW_JOB_CLUSTERROLE"]
    assert env["value"] == job_role["metadata"]["name"]


def test_rbac_can_be_left_to_the_cluster_admin(render):
    rendered = render({"rbac": {"create": False}})
    assert not [o for o in rendered.objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")]

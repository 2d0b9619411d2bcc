"""Every API call Seesaw makes in a cluster, declared once: the Helm chart's RBAC grants
exactly these (tests/helm checks the rendered rules against this module) and
tests/operator records the calls the operator really makes and checks each is here.

kopf's peering calls (kopf.dev) are not listed: the chart grants them when it turns
peering on, for the scope it chose.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Permission:
    api_group: str
    resource: str
    verbs: tuple[str, ...]
    used_by: str  # "operator" or "status-reporter" (pod 0's checkpoint-engine sidecar)
    why: str
    subresource: str = ""

    def grants(self) -> set[tuple[str, str, str]]:
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return {(self.api_group, name, verb) for verb in self.verbs}


OPERATOR_PERMISSIONS: tuple[Permission, ...] = (
    Permission("seesaw.dev", "rljobs", ("get", "list", "watch", "patch", "delete"), "operator",
               "watch jobs; kopf's finalizer and annotations (patch); delete after ttlSecondsAfterFinished"),
    Permission("seesaw.dev", "rljobs", ("patch",), "operator", "phase, conditions, counters", subresource="status"),
    Permission("", "pods", ("list", "watch", "create", "patch", "delete"), "operator",
               "the gang and the rollout replicas: observe, create, restart, scale, suspend; mark a failed queued job's "
               "pods for Kueue (patch)"),
    Permission("", "configmaps", ("create",), "operator", "the resolved job config"),
    Permission("", "services", ("create",), "operator", "headless Service for rendezvous"),
    Permission("", "serviceaccounts", ("create",), "operator", "the job pods' identity for status reporting"),
    Permission("rbac.authorization.k8s.io", "rolebindings", ("create",), "operator",
               "binds the job's ServiceAccount to the chart's job ClusterRole in the job's namespace"),
    Permission("resource.k8s.io", "resourceclaimtemplates", ("create",), "operator", "DRA: one GPU claim per pod"),
    Permission("scheduling.volcano.sh", "podgroups", ("create",), "operator", "gang scheduling with Volcano"),
    Permission("scheduling.x-k8s.io", "podgroups", ("create",), "operator", "gang scheduling with coscheduling"),
    Permission("", "events", ("create",), "operator", "events on the RLJob (kopf posts them)"),
    Permission("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), "operator",
               "kopf discovers the RLJob resource"),
)

STATUS_REPORTER_PERMISSIONS: tuple[Permission, ...] = (
    Permission("seesaw.dev", "rljobs", ("get",), "status-reporter", "the RLJob's uid for its events"),
    Permission("seesaw.dev", "rljobs", ("patch",), "status-reporter", "iteration, in-pod phase, metrics",
               subresource="status"),
    Permission("", "events", ("create",), "status-reporter", "checkpoint written, run failed or finished"),
)


def grants(permissions: tuple[Permission, ...]) -> set[tuple[str, str, str]]:
    return {grant for permission in permissions for grant in permission.grants()}

"""The operator's own API calls (children, status, the pods it lists), over the official
client. kopf's watches and event posting use kopf's own connection."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from seesaw.operator import constants as c

Obj = dict[str, Any]
PLURALS = {
    "ConfigMap": "configmaps", "Service": "services", "ServiceAccount": "serviceaccounts", "Pod": "pods",
    "RoleBinding": "rolebindings", "ResourceClaimTemplate": "resourceclaimtemplates", "PodGroup": "podgroups",
    "RLJob": c.RLJOB_PLURAL, "Event": "events",
}


class Conflict(Exception):
    """The object changed since it was read (409): read again and decide again."""


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{PLURALS[kind]}"


def load_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    async def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                    content_type: str = "application/json") -> Any:
        def call() -> Any:
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            method_, url, headers, payload, _ = self.api.param_serialize(
                method=method, resource_path=path, query_params=query or [], header_params=headers,
                body=body, auth_settings=["BearerToken"])
            response = self.api.call_api(method_, url, header_params=headers, body=payload, _request_timeout=30)
            response.read()
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason,
                                   body=response.data.decode("utf-8", "replace") if response.data else "")
            return json.loads(response.data) if response.data else {}
        try:
            return await asyncio.to_thread(call)
        except ApiException as err:
            if err.status == 409:
                raise Conflict(err.reason) from None
            raise

    async def get_rljob(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self._call("GET", f"{collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, namespace)}/{name}")
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def list_pods(self, namespace: str, job: str) -> list[Obj]:
        answer = await self._call("GET", collection_path("v1", "Pod", namespace),
                                  query=[("labelSelector", f"{c.LABEL_JOB}={job}")])
        return answer.get("items") or []

    async def create(self, obj: Obj) -> bool:
        """Create; False when it exists already (creation is idempotent by name)."""
        path = collection_path(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"])
        try:
            await self._call("POST", path, body=obj, query=[("fieldManager", c.FIELD_MANAGER)])
            return True
        except Conflict:
            return False

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._call("DELETE", f"{collection_path(api_version, kind, namespace)}/{name}",
                             body={"propagationPolicy": "Background"})
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    async def patch_rljob_status(self, namespace: str, name: str, resource_version: str, status_patch: Obj) -> Obj:
        """Merge-patch the status subresource, guarded by the resourceVersion it was computed
        from: a concurrent writer (the sidecar) makes it a 409, never a lost update."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status_patch}
        return await self._call("PATCH", f"{collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, namespace)}/{name}/status",
                                body=body, content_type="application/merge-patch+json",
                                query=[("fieldManager", c.FIELD_MANAGER)])

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            await self._call("PATCH", f"{collection_path('v1', 'Pod', namespace)}/{name}",
                             body={"metadata": {"annotations": annotations}},
                             content_type="application/merge-patch+json", query=[("fieldManager", c.FIELD_MANAGER)])
        except ApiException as err:
            if err.status != 404:  # gone already: nothing left to mark
                raise

"""A fake Kubernetes API server (and kubelet) for end-to-end tests of the operator.

Real HTTP on a local port, so the operator runs unmodified (`kopf run`, the official
client). It keeps what a controller's correctness depends on: resourceVersions and 409 on
conflicts (stale resourceVersion, existing name), generation bumps on spec changes, list
and watch (with resume from a resourceVersion), the status subresource, merge and JSON
patches, label and field selectors, finalizers with deletionTimestamp, graceful pod
deletion, and owner-reference garbage collection. It serves built-in resources only:
CustomResourceDefinitions and RLJobs live on the real Kubernetes API server, and
tests/fakes/api_router.py puts one endpoint in front of both. Every request is recorded with the
bearer token's identity, for the RBAC test.

The fake kubelet schedules pods, starts them (or fails the image pull), and lets a test
end them: fail, succeed, evict.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import itertools
import json
import re
import time
import uuid
from typing import Any, Callable

from aiohttp import web

from fakes.threaded_server import ThreadedServer

Obj = dict[str, Any]


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return self.group, self.plural


BUILTINS = [
    Resource("", "v1", "pods", "Pod", status_subresource=True),
    Resource("", "v1", "services", "Service", status_subresource=True),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    Resource("events.k8s.io", "v1", "events", "Event"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate"),
    Resource("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", status_subresource=True),
    Resource("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup", status_subresource=True),
    Resource("scheduling.x-k8s.io", "v1alpha1", "podgroups", "PodGroup", status_subresource=True),
]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> web.Response:
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": self.message, "reason": self.reason, "code": self.code}, status=self.code)


# --- selectors -----------------------------------------------------------------------------------
def match_labels(selector: str | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in") or (op == "in" and key not in labels):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_fields(selector: str | None, obj: Obj) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        negate = "!=" in term
        path, value = re.split(r"!=|==?", term, maxsplit=1)
        current: Any = obj
        for part in path.strip().split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if (str(current if current is not None else "") == value.strip()) == negate:
            return False
    return True


# --- patches ------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    doc = copy.deepcopy(target)

    def parent(parts: list[str]) -> Any:
        node: Any = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        return node

    for op in ops:
        parts = _pointer(op["path"])
        node, last = parent(parts), parts[-1] if parts else ""
        kind = op["op"]
        if kind == "test":
            actual = node[int(last)] if isinstance(node, list) else node.get(last)
            if actual != op.get("value"):
                raise ApiError(422, "Invalid", f"the test operation on {op['path']} failed")
        elif kind in ("add", "replace"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if kind == "add":
                    node.insert(index, copy.deepcopy(op["value"]))
                else:
                    node[index] = copy.deepcopy(op["value"])
            else:
                if kind == "replace" and last not in node:
                    raise ApiError(422, "Invalid", f"replace of a missing path {op['path']}")
                node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            try:
                if isinstance(node, list):
                    node.pop(int(last))
                else:
                    del node[last]
            except (KeyError, IndexError):
                raise ApiError(422, "Invalid", f"remove of a missing path {op['path']}") from None
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind}")
    return doc


@dataclasses.dataclass
class ResourcePath:
    """What a REST path names: /api/v1/namespaces/NS/pods/NAME/status and the like."""
    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str

    @classmethod
    def parse(cls, path: str) -> "ResourcePath | None":
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) > 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        return cls(group, version, namespace, rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else "")

    def call(self, request: web.Request) -> "Call":
        """The request as the request log records it: who, which verb, on what."""
        who = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or "anonymous"
        watching = request.query.get("watch") in ("true", "1")
        verb = {"GET": "watch" if watching else ("get" if self.name else "list"), "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete" if self.name else "deletecollection"}[request.method]
        resource = f"{self.plural}/{self.subresource}" if self.subresource else self.plural
        return Call(who, verb, self.group, resource, self.namespace, self.name)


# --- the store ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class WatchEvent:
    rv: int
    resource: tuple[str, str]
    type: str
    obj: Obj


@dataclasses.dataclass
class Call:
    who: str
    verb: str
    group: str
    resource: str  # with /subresource
    namespace: str | None
    name: str | None = None
    at: float = dataclasses.field(default_factory=time.monotonic)  # when it came in (bench/operator_scale.py)


class Store:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], Resource] = {r.key: r for r in BUILTINS}
        self.objects: dict[tuple[tuple[str, str], str, str], Obj] = {}
        self._rv = itertools.count(1000)
        self.rv = 1000
        self.history: list[WatchEvent] = []
        self.watchers: list[asyncio.Queue] = []
        self.calls: list[Call] = []
        self.on_change: list[Callable[[str, Resource, Obj], None]] = []

    # helpers
    def find(self, group: str, version: str, plural: str) -> Resource:
        res = self.resources.get((group, plural))
        if res is None or res.version != version:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{version} {plural})")
        return res

    def by_kind(self, api_version: str, kind: str) -> Resource:
        for res in self.resources.values():
            if res.api_version == api_version and res.kind == kind:
                return res
        raise KeyError((api_version, kind))

    def _bump(self) -> str:
        self.rv = next(self._rv)
        return str(self.rv)

    def _emit(self, res: Resource, type_: str, obj: Obj) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), res.key, type_, copy.deepcopy(obj))
        self.history.append(event)
        for queue in list(self.watchers):
            queue.put_nowait(event)
        for hook in self.on_change:
            hook(type_, res, obj)

    def _name(self, res: Resource) -> str:
        return f"{res.plural}.{res.group}" if res.group else res.plural

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        obj = self.objects.get((res.key, namespace or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{self._name(res)} "{name}" not found')
        return obj

    def list(self, res: Resource, namespace: str | None, labels: str | None = None, fields: str | None = None) -> list[Obj]:
        return [copy.deepcopy(o) for (key, ns, _), o in sorted(self.objects.items(), key=lambda kv: kv[0])
                if key == res.key and (namespace is None or ns == namespace)
                and match_labels(labels, o["metadata"].get("labels") or {}) and match_fields(fields, o)]

    def create(self, res: Resource, namespace: str | None, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if res.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        key = (res.key, meta.get("namespace", ""), name)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{self._name(res)} "{name}" already exists')
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), resourceVersion=self._bump(), generation=1)
        self.objects[key] = obj
        self._emit(res, "ADDED", obj)
        return copy.deepcopy(obj)

    def replace(self, res: Resource, namespace: str | None, name: str, new: Obj, subresource: str = "") -> Obj:
        old = self.get(res, namespace, name)
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {self._name(res)} "{name}": the object has been '
                                            "modified; please apply your changes to the latest version and try again")
        result = copy.deepcopy(old)
        if subresource == "status":
            result["status"] = copy.deepcopy(new.get("status"))
            if result["status"] is None:
                result.pop("status")
        else:
            keep_meta = {k: old["metadata"][k] for k in ("uid", "creationTimestamp", "generation", "namespace", "name",
                                                         "deletionTimestamp", "deletionGracePeriodSeconds") if k in old["metadata"]}
            result = copy.deepcopy(new)
            result["metadata"] = {**(new.get("metadata") or {}), **keep_meta}
            result["apiVersion"], result["kind"] = res.api_version, res.kind
            if res.status_subresource:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
            if old["metadata"].get("deletionTimestamp") and len(result["metadata"].get("finalizers") or []) > \
                    len(old["metadata"].get("finalizers") or []):
                raise ApiError(422, "Forbidden", "no new finalizers can be added if the object is being deleted")
        if result == old:
            return copy.deepcopy(old)
        strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
        if strip(result) != strip(old):
            result["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        result["metadata"]["resourceVersion"] = self._bump()
        self.objects[(res.key, old["metadata"].get("namespace", ""), name)] = result
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            self._remove(res, result)
        else:
            self._emit(res, "MODIFIED", result)
        return copy.deepcopy(result)

    def patch(self, res: Resource, namespace: str | None, name: str, content_type: str, patch: Any, subresource: str = "") -> Obj:
        old = self.get(res, namespace, name)
        if "json-patch" in content_type:
            new = json_patch(old, patch)
        else:  # merge and strategic merge (approximated by merge)
            new = merge_patch(old, patch)
            rv = ((patch or {}).get("metadata") or {}).get("resourceVersion")
            if not rv:
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.replace(res, namespace, name, new, subresource)

    def delete(self, res: Resource, namespace: str | None, name: str, grace: Callable[[Obj], bool] | None = None) -> Obj:
        obj = self.get(res, namespace, name)
        meta = obj["metadata"]
        graceful = grace is not None and grace(obj)
        if meta.get("finalizers") or graceful:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_iso()
                if graceful:
                    meta["deletionGracePeriodSeconds"] = 30
                meta["resourceVersion"] = self._bump()
                self._emit(res, "MODIFIED", obj)
            return copy.deepcopy(obj)
        self._remove(res, obj)
        return copy.deepcopy(obj)

    def _remove(self, res: Resource, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects.pop((res.key, meta.get("namespace", ""), meta["name"]), None)
        meta["resourceVersion"] = self._bump()
        self._emit(res, "DELETED", obj)
        self._collect_garbage(meta["uid"])

    def finish_deletion(self, res: Resource, obj: Obj) -> None:
        """What the kubelet does once a deleted pod's containers are gone."""
        if not obj["metadata"].get("finalizers"):
            self._remove(res, obj)

    def _collect_garbage(self, owner_uid: str) -> None:
        for (key, ns, name), obj in list(self.objects.items()):
            owners = obj["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == owner_uid for o in owners):
                if (key, ns, name) in self.objects:
                    self.delete(self.resources[key], ns or None, name, grace=lambda o: o.get("kind") == "Pod")


# --- HTTP -------------------------------------------------------------------------------------------------------
class FakeKubeAPI(ThreadedServer):
    """The API server, on 127.0.0.1:<port>, in a thread of its own."""

    name = "fake-kube-api"

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.kubelet = FakeKubelet(self)

    async def _started(self) -> None:
        self.kubelet.start()

    async def _stopping(self) -> None:
        self.kubelet.stop()
        for queue in list(self.store.watchers):
            queue.put_nowait(None)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (the store is not thread-safe)."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def kubeconfig(self, token: str, namespace: str = "default") -> Obj:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": token, "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": token, "namespace": namespace}}],
        }

    # request handling
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except ApiError as err:
            return err.response()
        except (ConnectionResetError, asyncio.CancelledError):
            raise

    def _discovery(self, parts: list[str]) -> web.Response | None:
        served = list(self.store.resources.values())
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            groups: dict[str, set[str]] = {}
            for r in served:
                if r.group:
                    groups.setdefault(r.group, set()).add(r.version)
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                 "preferredVersion": {"groupVersion": f"{g}/{sorted(vs)[0]}", "version": sorted(vs)[0]}}
                for g, vs in sorted(groups.items())]})
        if parts == ["version"]:
            return web.json_response({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake"})
        group_version = None
        if len(parts) == 2 and parts[0] == "api":
            group_version = ("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            group_version = (parts[1], parts[2])
        if group_version is None:
            return None
        items = []
        for r in served:
            if (r.group, r.version) == group_version:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                items.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": verbs})
                if r.status_subresource:
                    items.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                                  "kind": r.kind, "verbs": ["get", "patch", "update"]})
        if not items:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = group_version[1] if not group_version[0] else f"{group_version[0]}/{group_version[1]}"
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items})

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET":
            found = self._discovery(parts)
            if found is not None:
                return found
        target = ResourcePath.parse(request.path)
        if target is None:
            raise ApiError(404, "NotFound", f"no route for {request.path}")
        group, namespace, plural, name, subresource = (target.group, target.namespace, target.plural, target.name,
                                                       target.subresource)
        res = self.store.find(group, target.version, plural)
        query = request.query
        watching = query.get("watch") in ("true", "1")
        self.store.calls.append(target.call(request))
        if watching:
            return await self._watch(request, res, namespace, query)
        if request.method == "GET" and name:
            obj = self.store.get(res, namespace, name)
            return web.json_response(obj)
        if request.method == "GET":
            items = self.store.list(res, namespace, query.get("labelSelector"), query.get("fieldSelector"))
            return web.json_response({"apiVersion": res.api_version, "kind": f"{res.kind}List",
                                      "metadata": {"resourceVersion": str(self.store.rv)}, "items": items})
        body = await request.json() if request.can_read_body else None
        if request.method == "POST":
            return web.json_response(self.store.create(res, namespace, body), status=201)
        if request.method == "PUT":
            return web.json_response(self.store.replace(res, namespace, name, body, subresource))
        if request.method == "PATCH":
            return web.json_response(self.store.patch(res, namespace, name, request.content_type, body, subresource))
        if request.method == "DELETE":
            return web.json_response(self.store.delete(res, namespace, name, grace=self.kubelet.graceful))
        raise ApiError(405, "MethodNotAllowed", request.method)

    async def _watch(self, request: web.Request, res: Resource, namespace: str | None, query: Any) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        since = int(query.get("resourceVersion") or 0)
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")

        def wanted(event: WatchEvent) -> bool:
            meta = event.obj["metadata"]
            return (event.resource == res.key and (namespace is None or meta.get("namespace") == namespace)
                    and match_labels(labels, meta.get("labels") or {}) and match_fields(fields, event.obj))

        if since:
            backlog = [e for e in self.store.history if e.rv > since]
        else:
            backlog = [WatchEvent(self.store.rv, res.key, "ADDED", o) for o in self.store.list(res, namespace)]
        self.store.watchers.append(queue)
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = self.loop.time() + timeout
        try:
            for event in backlog:
                if wanted(event):
                    await response.write(json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n")
            while True:
                left = deadline - self.loop.time()
                if left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=left)
                except asyncio.TimeoutError:
                    break
                if event is None:
                    break
                if wanted(event):
                    await response.write(json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if queue in self.store.watchers:
                self.store.watchers.remove(queue)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response


# --- the kubelet ----------------------------------------------------------------------------------------------
class FakeKubelet:
    """Moves pods through their phases. Each pod: scheduled, then its containers start and
    turn ready (or the image pull fails for an image in `bad_images`); a test ends them."""

    def __init__(self, api: FakeKubeAPI, tick: float = 0.05, start_seconds: float = 0.15,
                 terminate_seconds: float = 0.15) -> None:
        self.api, self.tick, self.start_seconds, self.terminate_seconds = api, tick, start_seconds, terminate_seconds
        self.bad_images: set[str] = set()
        self.unschedulable = False
        self._task: asyncio.Task | None = None
        self._seen: dict[str, float] = {}
        self.nodes = itertools.count()

    def start(self) -> None:
        self._task = self.api.loop.create_task(self._run())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    @property
    def pods(self) -> Resource:
        return self.api.store.resources[("", "pods")]

    def graceful(self, obj: Obj) -> bool:
        return obj.get("kind") == "Pod" and bool(obj.get("spec", {}).get("nodeName"))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                self._step()
            except Exception as err:  # keep the kubelet alive; surface in the test log
                print(f"fake kubelet: {err!r}")

    def _write(self, pod: Obj) -> None:
        store = self.api.store
        meta = pod["metadata"]
        current = store.objects.get((self.pods.key, meta["namespace"], meta["name"]))
        if current is None:
            return
        updated = copy.deepcopy(current)
        updated["status"] = pod["status"]
        if "nodeName" in pod.get("spec", {}):
            updated["spec"]["nodeName"] = pod["spec"]["nodeName"]
        updated["metadata"]["resourceVersion"] = store._bump()
        store.objects[(self.pods.key, meta["namespace"], meta["name"])] = updated
        store._emit(self.pods, "MODIFIED", updated)

    def _step(self) -> None:
        now = self.api.loop.time()
        for (key, ns, name), pod in list(self.api.store.objects.items()):
            if key != self.pods.key:
                continue
            uid = pod["metadata"]["uid"]
            status = pod.setdefault("status", {})
            if pod["metadata"].get("deletionTimestamp"):
                started = self._seen.setdefault(f"del-{uid}", now)
                if now - started >= self.terminate_seconds:
                    self.api.store.finish_deletion(self.pods, pod)
                continue
            first = self._seen.setdefault(uid, now)
            if not pod["spec"].get("nodeName"):
                pod = copy.deepcopy(pod)
                if self.unschedulable:
                    if status.get("conditions") is None:
                        pod["status"] = {"phase": "Pending", "conditions": [{
                            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}
                        self._write(pod)
                    continue
                pod["spec"]["nodeName"] = f"node-{next(self.nodes)}"
                pod["status"] = {"phase": "Pending", "startTime": now_iso(), "podIP": f"10.0.0.{len(self._seen) % 250 + 1}",
                                 "conditions": [{"type": "PodScheduled", "status": "True"}],
                                 "initContainerStatuses": self._containers(pod, "init", "ContainerCreating"),
                                 "containerStatuses": self._containers(pod, "main", "ContainerCreating")}
                self._write(pod)
                continue
            if status.get("phase") == "Pending" and now - first >= self.start_seconds:
                pod = copy.deepcopy(pod)
                images = {c["image"] for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])}
                if images & self.bad_images:
                    if pod["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason") != "ErrImagePull":
                        for group in ("initContainerStatuses", "containerStatuses"):
                            for cs in pod["status"][group]:
                                if cs["image"] in self.bad_images:
                                    cs["state"] = {"waiting": {"reason": "ErrImagePull",
                                                               "message": f'failed to pull image "{cs["image"]}": not found'}}
                        self._write(pod)
                    continue
                pod["status"]["phase"] = "Running"
                pod["status"]["initContainerStatuses"] = self._containers(pod, "init", None)
                pod["status"]["containerStatuses"] = self._containers(pod, "main", None)
                pod["status"]["conditions"] = [{"type": t, "status": "True", "lastTransitionTime": now_iso()}
                                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
                self._write(pod)

    def _containers(self, pod: Obj, which: str, waiting: str | None) -> list[Obj]:
        specs = pod["spec"].get("initContainers" if which == "init" else "containers", [])
        out = []
        for spec in specs:
            state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": now_iso()}}
            out.append({"name": spec["name"], "image": spec["image"], "ready": waiting is None,
                        "started": waiting is None, "restartCount": 0, "state": state})
        return out

    # what a test can make happen
    def _end(self, namespace: str, name: str, phase: str, exit_code: int, reason: str, message: str = "",
             pod_reason: str | None = None) -> None:
        def run() -> None:
            pod = copy.deepcopy(self.api.store.get(self.pods, namespace, name))
            terminated = {"exitCode": exit_code, "reason": reason, "message": message, "finishedAt": now_iso()}
            for cs in pod["status"].get("containerStatuses", []):
                cs.update(ready=False, started=False, state={"terminated": terminated})
            for cs in pod["status"].get("initContainerStatuses", []):
                cs.update(ready=False, started=False, state={"terminated": {"exitCode": 0 if phase == "Succeeded" else 137,
                                                                            "reason": "Completed" if phase == "Succeeded" else "Error",
                                                                            "finishedAt": now_iso()}})
            pod["status"]["phase"] = phase
            if pod_reason:
                pod["status"]["reason"], pod["status"]["message"] = pod_reason, message
            pod["status"]["conditions"] = [c for c in pod["status"].get("conditions", []) if c["type"] != "Ready"] + [
                {"type": "Ready", "status": "False", "reason": "PodCompleted" if phase == "Succeeded" else "PodFailed"}]
            self._write(pod)
        self.api.call(run)

    def fail(self, namespace: str, name: str, exit_code: int = 1, reason: str = "Error", message: str = "") -> None:
        self._end(namespace, name, "Failed", exit_code, reason, message)

    def succeed(self, namespace: str, name: str) -> None:
        self._end(namespace, name, "Succeeded", 0, "Completed")

    def evict(self, namespace: str, name: str) -> None:
        self._end(namespace, name, "Failed", 137, "Error", "The node was low on resource: memory.", pod_reason="Evicted")

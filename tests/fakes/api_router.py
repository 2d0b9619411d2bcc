"""One API endpoint in front of two servers: the custom resources on the real Kubernetes API
server, everything else on the fake.

The upstream apiextensions-apiserver (tests/support/real_apiserver.py) serves
CustomResourceDefinitions and custom resources for real: RLJobs, their status and scale
subresources, kopf's peering objects, with the real schema validation, CEL, conflicts,
finalizers and watches. It serves no Pods, Events or Services and has no garbage collector;
those stay on the fake (tests/fakes/kube_api.py), which also plays the kubelet. A client
(the operator, kubectl, a test) sees one cluster:

- requests for the groups the real server serves go there, as its administrator (the
  caller's bearer token still names the caller in the fake's request log, for the RBAC test);
- everything else goes to the fake, token and all;
- `/apis` lists both servers' groups (the real server answers it only behind an aggregator);
- `/openapi/v3` lists, and serves, the OpenAPI v3 document of every CRD's group version, which
  `kubectl explain` and `kubectl apply`'s validation read: the standalone server does not
  publish them (kube-apiserver does), so the router builds each with kube-apiserver's own
  builder (tools/crd_openapi, built by `make apiserver`);
- when an RLJob is deleted on the real server, the fake deletes what it owns, as the
  garbage collector of a cluster would.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from fakes.kube_api import FakeKubeAPI, ResourcePath
from fakes.threaded_server import ThreadedServer
from real_apiserver import CRDS, RealAPIServer, binaries

# the groups of the custom resources a test installs, and the API that installs them
REAL_GROUPS = {"apiextensions.k8s.io", "seesaw.dev", "kopf.dev"}
# the kind that owns objects on the fake (its pods, services, config maps, ...)
OWNERS = "/apis/seesaw.dev/v1alpha1/rljobs"
FORWARDED_HEADERS = ("Content-Type", "Accept", "Authorization")


class APIRouter(ThreadedServer):
    """An HTTP server on 127.0.0.1:<port>, in a thread of its own."""

    name = "api-router"
    # a client that goes away cancels its handler, so a forwarded watch ends with its watcher
    runner_options = {"handler_cancellation": True, "shutdown_timeout": 2}

    def __init__(self, fake: FakeKubeAPI, real: RealAPIServer) -> None:
        super().__init__()
        self.fake, self.real = fake, real
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._garbage_collector: asyncio.Task | None = None

    def kubeconfig(self, token: str, namespace: str = "default") -> dict[str, Any]:
        config = self.fake.kubeconfig(token, namespace)
        config["clusters"][0]["cluster"]["server"] = self.url
        return config

    async def _started(self) -> None:
        tls = ssl.create_default_context(cafile=self.real.session.verify)
        tls.load_cert_chain(*self.real.session.cert)
        no_timeout = aiohttp.ClientTimeout(total=None, sock_read=None)  # watches stream for minutes
        self._sessions = {"real": aiohttp.ClientSession(self.real.url, connector=aiohttp.TCPConnector(ssl=tls),
                                                        timeout=no_timeout),
                          "fake": aiohttp.ClientSession(self.fake.url, timeout=no_timeout)}
        self._garbage_collector = asyncio.create_task(self._collect_garbage_across())

    async def _stopping(self) -> None:
        if self._garbage_collector:
            self._garbage_collector.cancel()
        for session in self._sessions.values():  # ends the forwarded watches still open
            await session.close()

    # routing
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path.rstrip("/") == "/apis":
            return await self._group_list()
        if request.method == "GET" and request.path.startswith("/openapi/v3"):
            crds = await self._served_crds()
            if request.path.rstrip("/") == "/openapi/v3":
                return await self._openapi_index(crds)
            group_version = request.path.removeprefix("/openapi/v3/apis/")
            if group_version in crds:
                return await self._openapi_document(*crds[group_version])
        target = ResourcePath.parse(request.path)
        parts = [p for p in request.path.split("/") if p]
        to_real = (parts[:1] == ["apis"] and len(parts) >= 2 and parts[1] in REAL_GROUPS
                   or parts[:2] == ["openapi", "v3"])  # the custom resources' schemas, for kubectl
        if to_real and target is not None:
            call = target.call(request)
            self.fake.loop.call_soon_threadsafe(self.fake.store.calls.append, call)
        return await self._forward(request, "real" if to_real else "fake")

    async def _forward(self, request: web.Request, server: str) -> web.StreamResponse:
        headers = {k: request.headers[k] for k in FORWARDED_HEADERS if k in request.headers}
        if server == "real":
            headers.pop("Authorization", None)  # it answers to the client certificate
        body = await request.read() if request.can_read_body else None
        url = URL(request.raw_path, encoded=True)
        async with self._sessions[server].request(request.method, url, data=body, headers=headers) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                "Content-Type": upstream.headers.get("Content-Type", "application/json")})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():  # a watch: each event as it comes
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                pass  # the client went away, or the server ended the stream
            return response

    async def _served_crds(self) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """'group/version' -> (version, the CRDs serving it), from the real server."""
        served: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        async with self._sessions["real"].get(CRDS) as answer:
            for crd in (await answer.json())["items"]:
                for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                    served.setdefault(f"{crd['spec']['group']}/{version}", (version, []))[1].append(crd)
        return served

    async def _openapi_index(self, crds: dict[str, tuple[str, list[dict[str, Any]]]]) -> web.Response:
        async with self._sessions["real"].get("/openapi/v3") as answer:
            index = await answer.json()
        for group_version, (_, served) in crds.items():
            stamp = hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest().upper()
            index["paths"][f"apis/{group_version}"] = {"serverRelativeURL": f"/openapi/v3/apis/{group_version}?hash={stamp}"}
        return web.json_response(index)

    async def _openapi_document(self, version: str, crds: list[dict[str, Any]]) -> web.Response:
        tool = await asyncio.create_subprocess_exec(
            str(binaries() / "crd_openapi"), version, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await tool.communicate(json.dumps({"apiVersion": "apiextensions.k8s.io/v1",
                                                      "kind": "CustomResourceDefinitionList", "items": crds}).encode())
        if tool.returncode:
            return web.json_response({"kind": "Status", "status": "Failure", "code": 500,
                                      "message": f"crd_openapi failed: {err.decode(errors='replace')}"}, status=500)
        return web.Response(body=out, content_type="application/json")

    async def _group_list(self) -> web.Response:
        """The fake's groups and the real server's (its own and every CRD's) in one APIGroupList."""
        async with self._sessions["fake"].get("/apis") as answer:
            groups = (await answer.json())["groups"]
        served: dict[str, list[str]] = {"apiextensions.k8s.io": ["v1"]}
        async with self._sessions["real"].get(CRDS) as answer:
            for crd in (await answer.json())["items"]:
                versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
                served.setdefault(crd["spec"]["group"], []).extend(versions)
        for name, versions in sorted(served.items()):
            groups = [g for g in groups if g["name"] != name]
            entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
            groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    # garbage collection across the two servers
    async def _collect_garbage_across(self) -> None:
        """Watch RLJobs on the real server; when one is deleted, the fake deletes what it owns."""
        session, resource_version = self._sessions["real"], ""
        while True:
            try:
                if not resource_version:
                    async with session.get(OWNERS) as listing:
                        if listing.status != 200:  # the CRD is not installed yet
                            await asyncio.sleep(0.2)
                            continue
                        resource_version = (await listing.json())["metadata"]["resourceVersion"]
                query = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true"}
                async with session.get(OWNERS, params=query) as watch:
                    async for line in watch.content:
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # 410 Gone: list again
                            resource_version = ""
                            break
                        resource_version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            uid = event["object"]["metadata"]["uid"]
                            await self.loop.run_in_executor(None, self.fake.call,
                                                            lambda: self.fake.store._collect_garbage(uid))
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, ValueError, KeyError) as err:
                print(f"api router: RLJob watch for garbage collection: {err!r}")
                await asyncio.sleep(0.2)

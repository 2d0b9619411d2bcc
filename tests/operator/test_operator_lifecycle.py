"""The operator process itself: restarts, HA peering, and the API calls it makes (each
must be granted by operator/permissions.py, which the Helm chart's RBAC follows)."""
from __future__ import annotations

import collections
import os
import re
import signal
import time

import pytest
import yaml

from fakes.operator_env import Cluster, Operator, condition, install_crd, rljob, start_environment, stop_environment
from seesaw.checkpoint_engine.status_reporter import StatusReporter
from seesaw.operator import constants as c
from seesaw.operator.permissions import OPERATOR_PERMISSIONS, STATUS_REPORTER_PERMISSIONS, grants

NEEDS_FAKE = pytest.mark.skipif(bool(os.environ.get("SEESAW_E2E_KUBECONFIG")),
                                reason="reads the fake API server's request log / scripts the fake kubelet")


@pytest.fixture
def own_env(tmp_path):
    environment = start_environment(tmp_path)
    yield environment
    stop_environment(environment)
    print(environment.operator.tail(100))


@NEEDS_FAKE
def test_a_restarted_operator_resumes_every_job_without_duplicate_pods(own_env):
    env, cluster, ns = own_env, own_env.cluster, "restart-operator"
    for name in ("alpha", "beta"):
        cluster.apply(ns, rljob(name))
    for name in ("alpha", "beta"):
        cluster.wait_phase(ns, name, c.RUNNING)
    env.operator.stop(hard=True)  # SIGKILL: nothing is saved on the way out

    # While no operator runs: a pod of alpha fails and beta is suspended.
    env.fake.kubelet.fail(ns, "alpha-0", message="segfault")
    cluster.patch(ns, "beta", {"spec": {"suspend": True}})
    env.operator.start()

    alpha = cluster.wait("alpha restarted", lambda: (j := cluster.get(ns, "alpha"))["status"].get("restarts") == 1
                         and j["status"]["phase"] == c.RUNNING and j)
    cluster.wait_phase(ns, "beta", c.SUSPENDED)
    cluster.wait("beta's pods gone", lambda: not cluster.pods(ns, "beta"))
    assert condition(alpha, c.COND_READY)["status"] == "True"
    creates = [call for call in env.fake.store.calls if call.who == "operator" and call.verb == "create" and call.resource == "pods"]
    # alpha: 2 + 2 after its restart; beta: 2. Nothing created twice.
    assert len(creates) == 6
    assert sorted(p["metadata"]["name"] for p in cluster.pods(ns, "alpha")) == ["alpha-0", "alpha-1"]


@NEEDS_FAKE
def test_an_operator_killed_while_it_creates_pods_leaves_its_successor_nothing_to_duplicate(own_env):
    env, cluster, ns, store = own_env, own_env.cluster, "killed-mid-creation", own_env.fake.store
    jobs, per_job, kill_at = ("one", "two", "three"), 16, 20  # of the 48 pods: before the first round of the second job ends
    created: list[str] = []

    def kill_mid_creation(type_: str, resource, obj: dict) -> None:  # on the fake's loop, as the pod is stored
        if resource.plural == "pods" and type_ == "ADDED":
            created.append(obj["metadata"]["name"])
            if len(created) == kill_at:
                os.kill(env.operator.process.pid, signal.SIGKILL)
    store.on_change.append(kill_mid_creation)
    for name in jobs:
        cluster.apply(ns, rljob(name, cluster={"nodes": per_job, "gpusPerNode": 0, "cpusPerNode": "2", "memoryPerNode": "4Gi"}))
    env.operator.process.wait(30)
    time.sleep(0.5)  # creates the killed process had already sent land now
    made_by_the_first = set(env.fake.call(lambda: list(created)))
    assert kill_at <= len(made_by_the_first) < len(jobs) * per_job, "killed mid-creation"
    env.operator.start()
    for name in jobs:
        job = cluster.wait_phase(ns, name, c.RUNNING, timeout=40)
        assert job["status"]["restarts"] == 0, f"{name}: a half-made gang is finished, not restarted"

    operator_calls = [x for x in env.fake.call(lambda: list(store.calls)) if x.who == "operator"]
    assert not [x for x in operator_calls if x.verb == "delete"], "no pod taken away and made again"
    for name in jobs:
        assert sorted(p["metadata"]["name"] for p in cluster.pods(ns, name)) == sorted(f"{name}-{i}" for i in range(per_job))
    for plural in ("configmaps", "services", "serviceaccounts"):
        assert len(cluster.objects(f"/api/v1/namespaces/{ns}/{plural}")) == len(jobs)
    events = [(e["involvedObject"]["name"], e["reason"], e["message"]) for name in jobs for e in cluster.events(ns, name)]
    assert [e for e, n in collections.Counter(events).items() if n > 1] == [], "an event said twice"
    named = collections.Counter(pod for _, reason, message in events if reason == c.REASON_PODS_CREATED
                                for pod in re.findall(r"\w+-\d+", message))
    assert max(named.values()) == 1, "a pod announced twice"
    # only pods the killed operator made in its last rounds, before it could say so, go unannounced
    unannounced = {f"{name}-{i}" for name in jobs for i in range(per_job)} - set(named)
    assert unannounced <= made_by_the_first


@NEEDS_FAKE
def test_every_call_the_operator_and_the_reporter_make_is_declared_in_permissions(own_env):
    env, cluster, ns = own_env, own_env.cluster, "rbac"
    kubelet = env.fake.kubelet
    # Exercise every path: GPU children (claim template, pod group), progress, restart,
    # suspend, completion, TTL deletion.
    gpu = rljob("gpujob", cluster={"nodes": 2, "gpusPerNode": 8, "gpuSharing": "dra", "gangScheduling": "volcano"},
                ttlSecondsAfterFinished=0)
    cluster.apply(ns, gpu)
    cluster.apply(ns, rljob("cosched", cluster={"nodes": 1, "gpusPerNode": 2, "gangScheduling": "coscheduling",
                                                "gpuSharing": "devicePlugin"}))
    cluster.wait_phase(ns, "gpujob", c.RUNNING)
    reporter = StatusReporter("gpujob", ns, lambda m, p, b, t: Cluster(str(env.workdir / "reporter.kubeconfig")).request(m, p, b, t))
    reporter.progress(1, "iteration", {"mean_reward": 1.0})
    reporter.progress(1, "checkpoint", {"path": "/checkpoints/latest.pt"})
    reporter.failed("phase train: timed out")
    kubelet.fail(ns, "gpujob-1")
    cluster.wait("restart", lambda: cluster.get(ns, "gpujob")["status"].get("restarts") == 1)
    cluster.wait_phase(ns, "gpujob", c.RUNNING)
    kubelet.succeed(ns, "gpujob-0")
    cluster.wait("gpujob deleted by its TTL", lambda: cluster.get(ns, "gpujob") is None)
    cluster.patch(ns, "cosched", {"spec": {"suspend": True}})
    cluster.wait_phase(ns, "cosched", c.SUSPENDED)
    queued = rljob("queued", failurePolicy={"maxRestarts": 0, "backoffSeconds": 0})
    queued["metadata"]["labels"] = {c.KUEUE_QUEUE_LABEL: "team-a"}  # a failed queued job marks its pods for Kueue
    cluster.apply(ns, queued)
    cluster.wait_phase(ns, "queued", c.RUNNING)
    kubelet.fail(ns, "queued-0")
    cluster.wait_phase(ns, "queued", c.FAILED)
    env.operator.stop()

    made = {"operator": set(), "status-reporter": set()}
    for call in env.fake.store.calls:
        if call.who in made:
            made[call.who].add((call.group, call.resource, call.verb))
    declared_operator, declared_reporter = grants(OPERATOR_PERMISSIONS), grants(STATUS_REPORTER_PERMISSIONS)
    assert made["operator"] - declared_operator == set(), "calls the operator makes that permissions.py does not declare"
    assert made["status-reporter"] - declared_reporter == set(), "calls the reporter makes that permissions.py does not declare"
    # And nothing is declared that is never used.
    assert declared_reporter - made["status-reporter"] == set()
    unused = declared_operator - made["operator"]
    assert unused == set(), f"declared but never called in this scenario: {unused}"


@NEEDS_FAKE
def test_two_operators_with_kopf_peering_act_once(tmp_path):
    """HA: two replicas with --peering; only the higher priority one acts."""
    peering_crds = yaml.safe_load_all(open(os.path.join(os.path.dirname(__file__), "..", "..", "helm", "seesaw", "crds",
                                                        "kopf.dev_peerings.yaml")).read())
    env = start_environment(tmp_path / "a", operator_args=("--peering=seesaw", "--priority=100", "--all-namespaces"))
    second = None
    try:
        for crd in peering_crds:
            if crd:
                install_crd(env.cluster, crd)  # the real server serves a new CRD a moment after it accepts it
        env.cluster.request("POST", "/apis/kopf.dev/v1/clusterkopfpeerings",
                            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "seesaw"}})
        # The first operator started before peering existed; restart both with it in place.
        env.operator.stop()
        env.operator.start()

        env.cluster.wait("the leader to announce itself", lambda: any(
            peer.get("priority") == 100 for peer in (env.cluster.request(
                "GET", "/apis/kopf.dev/v1/clusterkopfpeerings/seesaw").get("status") or {}).values()))
        (tmp_path / "b").mkdir()
        second = Operator(env.operator.kubeconfig, tmp_path / "b", ("--peering=seesaw", "--priority=50", "--all-namespaces")).start()
        cluster = env.cluster
        cluster.apply("ha", rljob("ha"))
        cluster.wait_phase("ha", "ha", c.RUNNING, timeout=30)
        creates = [x for x in env.fake.store.calls if x.verb == "create" and x.resource == "pods"]
        assert len(creates) == 2
        # kopf starts each replica paused until the peering says who leads: the leader
        # resumes, the standby (lower priority) never does.
        assert "Handler 'pod_changed'" in env.operator.tail(400)
        assert "Resuming operations" not in second.tail(400)
        assert "Handler '" not in second.tail(400), "the standby handled events"
    finally:
        if second:
            second.stop()
        stop_environment(env)

"""The operator at many jobs: N RLJobs of 16 pods each, on the real Kubernetes API server.

The environment is the operator tests' (tests/fakes/operator_env.py): RLJobs on the upstream
apiextensions-apiserver, everything else on the fake core API, which also plays the kubelet,
behind one router. The operator is the real one (`kopf run -m seesaw.operator.handlers`) as a
process of its own, with its production settings (resync every 30 s, 300 s watches), so its
CPU seconds and peak resident memory are its own.

Per N, one run: apply N jobs one after the other, wait until all N*16 pods exist and every job
is Running, then watch a quiet minute. It measures
- seconds from the first apply to all N*16 pods existing, and to all jobs Running;
- per job: apply -> its 16 pods created, apply -> first status written, its last pod Ready ->
  status Running (the reaction to pod events), as p50 / p95 / max;
- the operator's CPU seconds and peak RSS;
- the operator's API requests (every one goes through the router and is logged), split into
  status patches, events, pod creations, reads (get, list, watch) and other (children,
  kopf's own patches): per job while the jobs start, and per job per minute once they run
  (from 30 s after the last job said Running).

Then the restart check, per N on a fresh environment: apply half the jobs, SIGKILL the
operator once it has created half of their pods, start a new one, apply the rest, and
check that nothing is duplicated: exactly the 16 pods of each job, one ConfigMap, Service,
ServiceAccount and RoleBinding per job, no job restarted, no pod deleted, no event said twice,
no pod named in two PodsCreated events (the pods the killed operator made in its last rounds
are named in none: it died before it could say so).

Prints a table per stage, writes runs/bench-operator/operator.{json,png}.

--other-pods K first adds K pods of another workload (no Seesaw label), which the fake kubelet
runs: what a job-scoped operator should not pay for.

Usage: python bench/operator_scale.py [--jobs 10 30 100] [--pods 16] [--quiet-seconds 60] [--no-restart | --restart-only]
                                      [--other-pods 0]
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "support")]
from fakes.operator_env import Environment, Operator, install_crd, rljob, start_fake_and_real, stop_environment  # noqa: E402

from seesaw.operator import constants as c  # noqa: E402

NAMESPACE = "bench"
OTHER_NAMESPACE = "web"
OUT = ROOT / "runs" / "bench-operator"
# the operator's production settings, not the tests' fast resync
OPERATOR_ENV = {"SEESAW_RESYNC_SECONDS": "30", "SEESAW_WATCH_TIMEOUT_SECONDS": "300"}
CATEGORIES = ("status", "events", "pods", "reads", "other")
# The quiet minute starts one resync period after the last job said Running: on a loaded
# machine the operator is still working through the pods' last events well after it (17 s
# was seen), and each one is a round; those belong to the start, not to the running jobs.
SETTLE_SECONDS = 30.0
CHILDREN = ("configmaps", "services", "serviceaccounts", "rolebindings")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def job_name(index: int) -> str:
    return f"job-{index:03d}"


def category(call: Any) -> str:
    if call.verb == "patch" and call.resource == f"{c.RLJOB_PLURAL}/status":
        return "status"
    if call.verb == "create" and call.resource == "events":
        return "events"
    if call.verb == "create" and call.resource == "pods":
        return "pods"
    if call.verb in ("get", "list", "watch"):
        return "reads"
    return "other"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"p50": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max": ordered[-1]}


class Timeline:
    """When each job's pods were created and turned Ready (from the fake's store, on its
    loop) and when its status first appeared and said Running (a watch on the real server)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.applied: dict[str, float] = {}
        self.pod_added: dict[str, dict[str, float]] = {}
        self.pod_ready: dict[str, dict[str, float]] = {}
        self.first_status: dict[str, float] = {}
        self.running: dict[str, float] = {}
        env.fake.store.on_change.append(self._pod_changed)
        self._watch = env.real.session.get(f"{env.real.url}{env.cluster.jobs_path(NAMESPACE)}",
                                           params={"watch": "1", "timeoutSeconds": "7200"}, stream=True, timeout=(5, None))
        threading.Thread(target=self._follow_jobs, daemon=True).start()

    def _pod_changed(self, type_: str, resource: Any, obj: dict[str, Any]) -> None:
        if resource.plural != "pods":
            return
        job, name, now = obj["metadata"].get("labels", {}).get(c.LABEL_JOB), obj["metadata"]["name"], time.monotonic()
        if type_ == "ADDED":
            self.pod_added.setdefault(job, {}).setdefault(name, now)
        ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in (obj.get("status") or {}).get("conditions") or [])
        if ready:
            self.pod_ready.setdefault(job, {}).setdefault(name, now)

    def _follow_jobs(self) -> None:
        try:
            for line in self._watch.iter_lines():
                if not line:
                    continue
                event, now = json.loads(line), time.monotonic()
                name, phase = event["object"]["metadata"]["name"], (event["object"].get("status") or {}).get("phase")
                if phase:
                    self.first_status.setdefault(name, now)
                if phase == c.RUNNING:
                    self.running.setdefault(name, now)
        except Exception:  # the API server stopped at the end of the run (closing the stream from here would block)
            pass

    def pods(self) -> int:
        return sum(len(pods) for pods in list(self.pod_added.values()))


class Sampler:
    """The operator process's CPU seconds and peak RSS, sampled every 0.2 s (a process killed
    with SIGKILL keeps its last sample)."""

    def __init__(self) -> None:
        self.cpu_seconds: dict[int, float] = {}
        self.peak_rss = 0
        self._process: psutil.Process | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def follow(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            with process.oneshot():
                times, rss = process.cpu_times(), process.memory_info().rss
        except psutil.Error:
            return
        self.cpu_seconds[process.pid] = times.user + times.system
        self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> float:
        self.sample()
        self._stop.set()
        return sum(self.cpu_seconds.values())


def start(workdir: Path) -> tuple[Environment, Timeline, Sampler]:
    env = start_fake_and_real(workdir)
    install_crd(env.cluster)
    timeline, sampler = Timeline(env), Sampler()
    env.operator = start_operator(env, sampler)
    return env, timeline, sampler


def start_operator(env: Environment, sampler: Sampler) -> Operator:
    """The operator, once it watches RLJobs and pods (its startup is not the jobs' latency)."""
    seen = len(env.fake.store.calls)
    operator = Operator(str(env.workdir / "operator.kubeconfig"), env.workdir, env=OPERATOR_ENV).start()
    sampler.follow(operator.process.pid)

    def watching() -> bool:
        watches = {x.resource for x in env.fake.store.calls[seen:] if x.who == "operator" and x.verb == "watch"}
        return {c.RLJOB_PLURAL, "pods"} <= watches
    env.cluster.wait("the operator to watch RLJobs and pods", watching, timeout=120, every=0.2)
    return operator


def apply_jobs(env: Environment, timeline: Timeline, indices: range, pods: int) -> None:
    for index in indices:
        name = job_name(index)
        timeline.applied[name] = time.monotonic()
        env.cluster.apply(NAMESPACE, rljob(name, cluster={"nodes": pods, "gpusPerNode": 0, "cpusPerNode": "2",
                                                          "memoryPerNode": "4Gi", "shmSize": "1Gi"}))


def wait_all(env: Environment, timeline: Timeline, jobs: int, pods: int) -> tuple[float, float]:
    """(when the last pod was created, when the last job said Running)."""
    env.cluster.wait(f"{jobs * pods} pods", lambda: timeline.pods() >= jobs * pods, timeout=1800, every=0.2)
    env.cluster.wait(f"{jobs} jobs Running", lambda: len(timeline.running) >= jobs, timeout=1800, every=0.2)
    last_pod = max(t for added in timeline.pod_added.values() for t in added.values())
    return last_pod, max(timeline.running.values())


def harness_cpu_seconds(env: Environment) -> dict[str, float]:
    """CPU seconds of what the operator talks to: this process (router, fake core and kubelet),
    and the real API server with its etcd."""
    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system
    real = {Path(p.args[0]).name: used(psutil.Process(p.pid)) for p in env.real.processes}
    return {"router_fake_core_kubelet": used(psutil.Process()), **real}


def operator_calls(env: Environment, since: float, until: float) -> list[Any]:
    return [x for x in list(env.fake.store.calls) if x.who == "operator" and since <= x.at < until]


def count(calls: list[Any]) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for call in calls:
        counts[category(call)] += 1
    return counts


def add_other_pods(env: Environment, count: int) -> None:
    """Pods of other workloads in the cluster (no Seesaw label), which the fake kubelet runs."""
    for index in range(count):
        env.cluster.request("POST", f"/api/v1/namespaces/{OTHER_NAMESPACE}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{index}", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}})


def measure(jobs: int, pods: int, quiet_seconds: float, workdir: Path, other_pods: int = 0) -> dict[str, Any]:
    say(f"{jobs} jobs: starting the API servers and the operator")
    env, timeline, sampler = start(workdir)
    try:
        if other_pods:
            say(f"{jobs} jobs: {other_pods} pods of other workloads")
            add_other_pods(env, other_pods)
        say(f"{jobs} jobs: applying {jobs} RLJobs of {pods} pods")
        harness_before = harness_cpu_seconds(env)
        apply_jobs(env, timeline, range(jobs), pods)
        first_apply = min(timeline.applied.values())
        say(f"{jobs} jobs: applied in {time.monotonic() - first_apply:.1f} s; waiting for {jobs * pods} pods and Running")
        last_pod, last_running = wait_all(env, timeline, jobs, pods)
        harness = {k: v - harness_before[k] for k, v in harness_cpu_seconds(env).items()}
        sampler.sample()
        cpu_start = sum(sampler.cpu_seconds.values())
        say(f"{jobs} jobs: all pods in {last_pod - first_apply:.1f} s, all Running in {last_running - first_apply:.1f} s; "
            f"a quiet {quiet_seconds:.0f} s")
        time.sleep(SETTLE_SECONDS)
        quiet_from = time.monotonic()
        time.sleep(quiet_seconds)
        quiet_until = time.monotonic()
        sampler.sample()
        cpu_quiet = sum(sampler.cpu_seconds.values()) - cpu_start
        cpu = sampler.stop()
        starting = count(operator_calls(env, 0, last_running))
        quiet_calls = operator_calls(env, quiet_from, quiet_until)
        quiet = count(quiet_calls)
        per_minute = 60.0 / (quiet_until - quiet_from)
        names = list(timeline.applied)
        result = {
            "jobs": jobs, "pods_per_job": pods, "other_pods": other_pods,
            "seconds_to_all_pods": last_pod - first_apply,
            "seconds_to_all_running": last_running - first_apply,
            "apply_to_pods_created": percentiles([max(timeline.pod_added[n].values()) - timeline.applied[n] for n in names]),
            "apply_to_first_status": percentiles([timeline.first_status[n] - timeline.applied[n] for n in names]),
            "last_ready_to_running": percentiles([timeline.running[n] - max(timeline.pod_ready[n].values()) for n in names]),
            "operator_cpu_seconds": cpu,
            "operator_cpu_seconds_quiet_minute": cpu_quiet * per_minute,
            "operator_peak_rss_mib": sampler.peak_rss / 2**20,
            "harness_cpu_seconds_while_starting": harness,
            "requests_per_job_while_starting": {k: v / jobs for k, v in starting.items()},
            "requests_per_job_per_minute_quiet": {k: v / jobs * per_minute for k, v in quiet.items()},
            "requests_in_the_quiet_minute": dict(collections.Counter(f"{x.verb} {x.resource}" for x in quiet_calls)),
        }
        say(f"{jobs} jobs: done")
        return result
    finally:
        stop_environment(env)


def restart_check(jobs: int, pods: int, workdir: Path) -> dict[str, Any]:
    say(f"restart at {jobs} jobs: starting the API servers and the operator")
    env, timeline, sampler = start(workdir)
    try:
        half = jobs // 2
        kill_at = half * pods // 2  # mid-creation: some jobs have all their pods, some part, some none

        def kill_mid_creation(type_: str, resource: Any, obj: dict[str, Any]) -> None:  # on the fake's loop
            if resource.plural == "pods" and type_ == "ADDED" and timeline.pods() == kill_at:
                env.operator.process.kill()
        env.fake.store.on_change.append(kill_mid_creation)
        apply_jobs(env, timeline, range(half), pods)
        env.operator.process.wait(600)
        time.sleep(0.5)  # creates the killed process had already sent land now
        made_by_the_first = {pod for added in list(timeline.pod_added.values()) for pod in added}
        say(f"restart at {jobs} jobs: operator killed after {half} jobs applied, at {len(made_by_the_first)} pods; a new one")
        env.operator = start_operator(env, sampler)
        apply_jobs(env, timeline, range(half, jobs), pods)
        wait_all(env, timeline, jobs, pods)
        time.sleep(SETTLE_SECONDS)
        return duplicates(env, jobs, pods, made_by_the_first)
    finally:
        sampler.stop()
        stop_environment(env)


def duplicates(env: Environment, jobs: int, pods: int, made_by_the_first: set[str]) -> dict[str, Any]:
    store = env.fake.store

    def seen() -> tuple[dict[str, list[str]], dict[str, int], list[tuple[str, str, str]]]:
        """(pod names by job, children by kind, events as (object, reason, message)): read on
        the fake's loop in one pass, copying only these fields."""
        by_job: dict[str, list[str]] = collections.defaultdict(list)
        children, events = dict.fromkeys(CHILDREN, 0), []
        for (key, ns, name), obj in store.objects.items():
            if ns != NAMESPACE:
                continue
            if key[1] == "pods":
                by_job[obj["metadata"]["labels"].get(c.LABEL_JOB, "")].append(name)
            elif key[1] in children:
                children[key[1]] += 1
            elif key[1] == "events":
                events.append((obj["involvedObject"]["name"], obj.get("reason"), obj.get("message")))
        return by_job, children, events

    by_job, children, event_list = env.fake.call(seen)
    calls = [x for x in list(store.calls) if x.who == "operator"]
    wrong_pods = {}
    for index in range(jobs):
        name = job_name(index)
        if sorted(by_job.get(name, [])) != sorted(f"{name}-{i}" for i in range(pods)):
            wrong_pods[name] = sorted(by_job.get(name, []))
    events = collections.Counter(event_list)
    named = collections.Counter(pod for (_, reason, message), n in events.items() if reason == c.REASON_PODS_CREATED
                                for pod in re.findall(r"job-\d+-\d+", message or "") for _ in range(n))
    unannounced = {f"{job_name(i)}-{p}" for i in range(jobs) for p in range(pods)} - set(named)
    restarted = [j["metadata"]["name"] for j in env.cluster.objects(env.cluster.jobs_path(NAMESPACE))
                 if (j.get("status") or {}).get("restarts")]
    result = {
        "jobs": jobs, "pods_made_before_the_kill": len(made_by_the_first),
        "jobs_without_exactly_their_pods": wrong_pods,
        "children": children, "children_expected_each": jobs,
        "jobs_restarted": restarted,
        "pod_creates": sum(1 for x in calls if x.verb == "create" and x.resource == "pods"),
        "pod_deletes": sum(1 for x in calls if x.verb == "delete" and x.resource == "pods"),
        "events_said_twice": [list(e) for e, n in events.items() if n > 1],
        "pods_announced_twice": sorted(p for p, n in named.items() if n > 1),
        # the killed operator's last rounds made pods it never lived to announce
        "pods_unannounced": len(unannounced),
        "pods_unannounced_made_by_the_successor": sorted(unannounced - made_by_the_first),
    }
    result["ok"] = not (wrong_pods or any(n != jobs for n in children.values()) or restarted or result["pod_deletes"]
                        or result["events_said_twice"] or result["pods_announced_twice"]
                        or result["pods_unannounced_made_by_the_successor"])
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    def lat(entry: dict[str, float]) -> str:
        return f"{entry['p50']:.2f}/{entry['p95']:.2f}/{entry['max']:.2f}"
    print("\njobs | all pods s | all Running s | apply->pods p50/p95/max s | apply->status s | ready->Running s "
          "| CPU s (per job) | peak RSS MiB | harness CPU s while starting: router+fake core, etcd, API server")
    for r in results:
        harness = " + ".join(f"{v:.0f}" for v in r["harness_cpu_seconds_while_starting"].values())
        print(f"{r['jobs']} | {r['seconds_to_all_pods']:.1f} | {r['seconds_to_all_running']:.1f} | {lat(r['apply_to_pods_created'])} "
              f"| {lat(r['apply_to_first_status'])} | {lat(r['last_ready_to_running'])} "
              f"| {r['operator_cpu_seconds']:.1f} ({r['operator_cpu_seconds'] / r['jobs']:.2f}) | {r['operator_peak_rss_mib']:.0f} "
              f"| {harness}")
    print("\njobs | requests per job while starting: " + " / ".join(CATEGORIES)
          + " | per job per minute, running: " + " / ".join(CATEGORIES) + " | CPU s per quiet minute")
    for r in results:
        starting, quiet = r["requests_per_job_while_starting"], r["requests_per_job_per_minute_quiet"]
        print(f"{r['jobs']} | " + " / ".join(f"{starting[k]:.1f}" for k in CATEGORIES) + " | "
              + " / ".join(f"{quiet[k]:.2f}" for k in CATEGORIES) + f" | {r['operator_cpu_seconds_quiet_minute']:.2f}")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [r["jobs"] for r in results]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    ax.plot(jobs, [r["seconds_to_all_pods"] for r in results], "o-", label="apply -> all pods")
    ax.plot(jobs, [r["seconds_to_all_running"] for r in results], "o-", label="apply -> all Running")
    ax.set(title="seconds from the first apply", xlabel="jobs", ylabel="s")
    ax.legend()
    ax = axes[0][1]
    for key, label in (("apply_to_pods_created", "apply -> 16 pods"), ("apply_to_first_status", "apply -> first status"),
                       ("last_ready_to_running", "last pod Ready -> Running")):
        ax.plot(jobs, [r[key]["p50"] for r in results], "o-", label=f"{label} p50")
        ax.plot(jobs, [r[key]["p95"] for r in results], "x--", label=f"{label} p95")
    ax.set(title="per-job latency", xlabel="jobs", ylabel="s")
    ax.legend(fontsize=7)
    ax = axes[1][0]
    ax.plot(jobs, [r["operator_cpu_seconds"] / r["jobs"] for r in results], "o-", label="CPU s per job (whole run)")
    ax.set(title="operator CPU and memory", xlabel="jobs", ylabel="CPU s per job")
    twin = ax.twinx()
    twin.plot(jobs, [r["operator_peak_rss_mib"] for r in results], "s-", color="tab:red", label="peak RSS MiB")
    twin.set_ylabel("peak RSS MiB")
    ax.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    ax = axes[1][1]
    for key in CATEGORIES:
        ax.plot(jobs, [r["requests_per_job_per_minute_quiet"][key] for r in results], "o-", label=key)
    ax.set(title="API requests per job per minute, jobs running", xlabel="jobs", ylabel="requests / job / min")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save(results: list[dict[str, Any]], restarts: list[dict[str, Any]]) -> None:
    """After every stage, so that a run cut short keeps what it measured."""
    (OUT / "operator.json").write_text(json.dumps({"runs": results, "restart": restarts}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--pods", type=int, default=16)
    parser.add_argument("--quiet-seconds", type=float, default=60.0)
    parser.add_argument("--no-restart", action="store_true", help="skip the restart check")
    parser.add_argument("--restart-only", action="store_true", help="only the restart check")
    parser.add_argument("--other-pods", type=int, default=0,
                        help="pods of other workloads (not Seesaw's) created, and run, while the jobs start")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results, restarts = [], []
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as scratch:
        for jobs in [] if args.restart_only else args.jobs:
            results.append(measure(jobs, args.pods, args.quiet_seconds, Path(scratch) / f"measure-{jobs}", args.other_pods))
            print_table(results)
            save(results, restarts)
        if not args.no_restart:
            for jobs in args.jobs:
                restarts.append(restart_check(jobs, args.pods, Path(scratch) / f"restart-{jobs}"))
                say(f"restart at {jobs} jobs: {'nothing duplicated' if restarts[-1]['ok'] else 'DUPLICATES'}: "
                    f"{json.dumps(restarts[-1])}")
                save(results, restarts)
    if results:
        print_table(results)
        plot(results, OUT / "operator.png")
    say(f"wrote {OUT / 'operator.json'}" + (f" and {OUT / 'operator.png'}" if results else ""))
    if restarts and not all(r["ok"] for r in restarts):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The operator's series follow the jobs it has: a job's own while it exists, none once gone."""
from prometheus_client import REGISTRY

from seesaw.operator import constants as c
from seesaw.operator import metrics


def series_of(namespace: str, name: str) -> int:
    return sum(1 for family in REGISTRY.collect() for s in family.samples
               if s.labels.get("namespace") == namespace and s.labels.get("rljob") == name)


def test_a_jobs_series_are_removed_when_it_is_gone():
    jobs = [{"metadata": {"namespace": "team-a", "name": f"job-{i}"}} for i in range(100)]
    for job in jobs:
        metrics.observe(job, {"phase": "Running", "iteration": 3})
    assert all(series_of("team-a", f"job-{i}") == len(c.PHASES) + 2 for i in range(100))
    for i in range(100):
        metrics.forget("team-a", f"job-{i}")
    assert sum(series_of("team-a", f"job-{i}") for i in range(100)) == 0
    metrics.forget("team-a", "never-seen")  # a job the operator never observed (it restarted since)

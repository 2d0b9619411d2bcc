"""The job's Prometheus series do not grow with its engines: 1,024 engines (gang and replicas,
some lost) export exactly the series one engine does."""
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seesaw.checkpoint_engine.job_metrics import JobMetrics


def series(engines: list[dict]) -> set[tuple[str, tuple]]:
    """The (name, labels) of every sample the job exports after an evaluation and an iteration."""
    metrics = JobMetrics()
    metrics.progress(0, "evaluated", {"sampled": 0.3, "greedy": 0.25})
    metrics.progress(1, "rollout", {})
    metrics.progress(1, "iteration", {
        "rollout_seconds": 1.5, "train_seconds": 0.5, "sync_seconds": 0.25, "sync_bytes": 10, "mean_reward": 0.1,
        "accuracy": 0.2, "mean_response_length": 5.0, "loss": 0.03, "rollout_tokens_per_second": 800.0, "engines": engines})
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))) for family in text_string_to_metric_families(text)
            for s in family.samples}


def test_a_thousand_engines_export_the_series_one_engine_does():
    one = series([{"pod": 0, "engine": 0, "weight_version": 1, "prompts": 4}])
    many = [{"pod": i // 8, "engine": i % 8, "weight_version": 1, "prompts": 4} for i in range(512)]
    many += [{"pod": None, "replica": i // 8, "engine": i % 8, "weight_version": 1, "prompts": 4, "lost": i % 3 == 0}
             for i in range(512)]
    assert series(many) == one
    assert len(one) <= 100  # a handful of families, their phase labels and histogram buckets (80 now)

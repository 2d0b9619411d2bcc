"""The checkpoint-engine container: pod 0 conducts the RL loop; it reports progress and results."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

from transformers import AutoTokenizer

from seesaw import pod_contract
from seesaw.checkpoint_engine.conductor import Conductor
from seesaw.checkpoint_engine.gang import GangServer, follow, follower_workers, release_followers, rollout_clients
from seesaw.checkpoint_engine.checkpoints import CheckpointError
from seesaw.checkpoint_engine.job_metrics import JobMetrics
from seesaw.checkpoint_engine.phases import DeterministicFailure, PhaseError, caused_by
from seesaw.checkpoint_engine.scoring import check_verifier, score_items
from seesaw.checkpoint_engine.tracking import Trackers, plan
from seesaw.model.prompt import PromptFormat, check_prompts_fit
from seesaw.report import plot_run, write_summary
from seesaw.rpc import WorkerClient
from seesaw.spec import SpecError
from seesaw.tasks import load_task
from seesaw.worker_env import worker_env


def _progress_reporter():
    """Status reporting to the RLJob when running in a cluster; a no-op elsewhere."""
    try:
        from seesaw.checkpoint_engine.status_reporter import reporter_from_env
    except ImportError:
        return None
    return reporter_from_env()


def _observers(observers: list, log) -> Callable[[int, str, dict], None]:
    """One progress callback for the status reporter, the trackers and the metrics; one that
    fails is reported once and never stops training."""
    broken: set[int] = set()

    def progress(iteration: int, phase: str, metrics: dict) -> None:
        for index, observer in enumerate(observers):
            try:
                observer.progress(iteration, phase, metrics)
            except Exception as err:
                if index not in broken:
                    broken.add(index)
                    log(f"WARNING: {type(observer).__name__} failed ({type(err).__name__}: {err}); training goes on")
    return progress


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    env = worker_env()
    run_dir = Path(env.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)

    leader = env.pod_index == 0 and env.replica is None
    reporter = _progress_reporter() if leader else None
    try:
        task = load_task(env.spec)
        check_verifier(task)
        if leader:  # what the rollout engines will be sent must fit in their context
            rollout = env.spec["rollout"]
            check_prompts_fit([p.prompt for p in task.train + task.eval], AutoTokenizer.from_pretrained(env.model_dir),
                              PromptFormat.from_spec(env.spec), rollout["maxModelLen"], rollout["maxTokens"])
    except SpecError as err:  # e.g. a code job where the sandbox cannot run: every restart would fail the same way
        log(f"FAILED: {err}; not retried: a restart would fail the same way")
        if reporter:
            reporter.failed(str(err))
        return pod_contract.EXIT_UNRECOVERABLE
    if not leader:  # a follower: its pod's workers act on pod 0's commands
        tokenizer = AutoTokenizer.from_pretrained(env.model_dir)
        return follow(env, log, lambda split, items: score_items(task, tokenizer, split, items))
    followers: list = []
    # always listening: rollout replicas (spec.rollout.replicas) may join at any time
    gang = GangServer(env.gang_port, env.num_pods - 1)
    if env.num_pods > 1:
        log(f"waiting for {env.num_pods - 1} pod(s) to join the gang on port {env.gang_port}")
        try:
            followers = follower_workers(gang.wait_for(env.spec["timeouts"]["startupSeconds"]), env.rollout_engines)
        except PhaseError as err:
            log(f"FAILED: {err}")
            return 1
    try:
        trackers = Trackers.start(plan(env.spec, run_dir), os.environ.get(pod_contract.JOB_NAME) or run_dir.name,
                                  env.spec)
    except SpecError as err:  # a tracker asked for and not installed: said before anything runs
        log(f"FAILED: {err}; not retried: a restart would fail the same way")
        if reporter:
            reporter.failed(str(err))
        return pod_contract.EXIT_UNRECOVERABLE
    job_metrics = JobMetrics(restarts=int(os.environ.get(pod_contract.RESTART_ATTEMPT) or 0))
    port = job_metrics.serve(int(os.environ.get(pod_contract.JOB_METRICS_PORT, pod_contract.DEFAULT_JOB_METRICS_PORT)))
    log(f"prometheus metrics: http://{env.pod_ip}:{port}/metrics")
    log(f"tracking: {trackers.describe()}")
    conductor = Conductor(
        spec=env.spec,
        task=task,
        tokenizer=AutoTokenizer.from_pretrained(env.model_dir),
        trainer=WorkerClient("trainer", env.trainer_url),
        rollouts=rollout_clients("pod 0's " if env.num_pods > 1 else "", env.rollout_engines, lambda e: env.rollout_urls[e]),
        run_dir=run_dir,
        log=log,
        on_progress=_observers([o for o in (reporter, trackers, job_metrics) if o], log),
        resume_from=os.environ.get(pod_contract.RESUME_FROM) or None,
        followers=followers,
        gang=gang,
        on_samples=trackers.samples,
    )
    plot_path = run_dir / "run.png"
    try:
        summary = conductor.run()
    except Exception as err:  # a phase's error, or one between phases (writing a checkpoint): the job fails, said so
        # the gang restarts; the rollout replicas outlive it and join its next conductor (the
        # operator deletes them when the job ends)
        release_followers(conductor.pods)
        if not isinstance(err, PhaseError):
            logging.exception("the conductor failed between phases")
        message = str(err) if isinstance(err, PhaseError) else f"{type(err).__name__}: {err}"
        unrecoverable = caused_by(err, CheckpointError) or caused_by(err, DeterministicFailure)
        log(f"FAILED: {message}" + ("; not retried: a restart would fail the same way" if unrecoverable else ""))
        if reporter:
            reporter.failed(message)
        trackers.close()
        if conductor.history:
            plot_run([vars(m) for m in conductor.history], conductor.machine.timeline, None, None, plot_path)
        return pod_contract.EXIT_UNRECOVERABLE if unrecoverable else 1
    release_followers(conductor.pods + conductor.roster.replicas())
    trackers.close()
    summary_path = Path(os.environ.get(pod_contract.SUMMARY_JSON) or run_dir / "summary.json")
    write_summary(summary, summary_path)
    plot_run(summary.history, conductor.machine.timeline,
             {"sampled": summary.accuracy_before, "greedy": summary.greedy_accuracy_before},
             {"sampled": summary.accuracy_after, "greedy": summary.greedy_accuracy_after}, plot_path)
    log(f"summary: {summary_path}\nplot: {plot_path}\nmetrics: {conductor.metrics_path}")
    if reporter:
        reporter.succeeded(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

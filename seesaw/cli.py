"""The `seesaw` command: run a job on this machine, render its Kubernetes objects, validate it."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from seesaw.spec import SpecError, check_edit, load_manifest, load_manifests


def _cmd_validate(args: argparse.Namespace) -> int:
    old = load_manifest(args.against) if args.against else None
    for path in args.job:
        for source, manifest in load_manifests(path):
            if old is not None:
                check_edit(manifest, old, source)
            verdict = f"a valid edit of {args.against}" if old is not None else "valid RLJob"
            print(f"{source}: {verdict} {manifest['metadata'].get('name') or manifest['metadata'].get('generateName', '')}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from seesaw.local.runner import run_job

    return run_job(load_manifest(args.job), args)


def _cmd_replay(args: argparse.Namespace) -> int:
    from seesaw.checkpoint_engine.first_batch import replay

    result = replay(Path(args.run_dir), args.backend)
    print(f"iteration 1's batch on a fresh {args.backend} trainer: loss {result['loss']:.8f}; "
          f"the run's {result['run_loss']:.8f}; |difference| {result['difference']:.2e}")
    return 0


def _cmd_long2short(args: argparse.Namespace) -> int:
    from seesaw.local.long2short import Settings, StageFailed, long2short, table, write_report

    from seesaw.local.paths import manifest_folder, resolve_paths

    manifest = load_manifest(args.job)
    resolve_paths(manifest["spec"], manifest_folder(args.job))  # its jobs run from other folders
    name = manifest["metadata"]["name"]
    workdir = Path(args.workdir)
    out_dir = Path(args.out) if args.out else workdir / f"long2short-{name}-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        settings = Settings(iterations=args.iterations, rounds=args.rounds, prompts=args.prompts, epochs=args.epochs,
                            learning_rate=args.learning_rate,
                            merge_weight=args.merge_weight, length_penalty_weight=args.length_penalty,
                            max_tokens_fraction=args.max_tokens_fraction)
        points = long2short(manifest, workdir, out_dir, [m for m in args.methods.split(",") if m], settings,
                            long_model=Path(args.long_model) if args.long_model else None,
                            short_model=Path(args.short_model) if args.short_model else None,
                            log=lambda line: print(line, flush=True))
    except StageFailed as err:
        print(f"long2short stopped: {err}", file=sys.stderr)
        return 1
    data, png = write_report(points, out_dir, name)
    print(f"\nlong2short of {name} (held-out prompts: accuracy sampled at the rollout temperature)")
    print(table(points))
    print(f"table: {data}\nplot: {png}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    # The operator's pure builders: exactly what it would create for this job.
    from seesaw.operator.render import render_yaml

    print(render_yaml(load_manifest(args.job), namespace=args.namespace), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seesaw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check RLJob manifests against the CRD schema, read as kubectl reads them")
    validate.add_argument("job", nargs="+", help="YAML or JSON files, each with one or more RLJob documents; - for stdin")
    validate.add_argument("--against", metavar="OLD.yaml",
                          help="check the files as an edit of this RLJob: the CRD's transition rules (immutable blocks; "
                               "rollout.replicas may change, as kubectl scale does)")
    validate.set_defaults(func=_cmd_validate)

    run = sub.add_parser("run", help="run an RLJob on this machine (the embedded default)")
    run.add_argument("job")
    run.add_argument("--workdir", default="runs", help="where runs go (models are cached in ~/.cache/seesaw/models, or $SEESAW_CACHE/models)")
    run.add_argument("--summary-json", help="write the run's summary (accuracies, sync) here")
    run.add_argument("--seed", type=int, help="override spec.rl.seed")
    run.add_argument("--iterations", type=int, help="override spec.rl.iterations")
    run.add_argument("--resume-from", help="a checkpoint (latest.pt) of an earlier run to continue from")
    run.add_argument("--runtime", choices=("processes", "docker"), default="processes",
                     help="processes (default): each pod's containers as local processes; docker: as containers "
                          "from the job's images, laid out as the operator lays out its pods (the engine at DOCKER_HOST)")
    run.add_argument("--keep-first-batch", action="store_true",
                     help="write iteration 1's training batch to the run dir, for `seesaw replay`")
    run.set_defaults(func=_cmd_run)

    replay = sub.add_parser("replay", help="train a fresh trainer on a run's first batch and compare its loss with the run's")
    replay.add_argument("run_dir", help="a run of `seesaw run --keep-first-batch`")
    replay.add_argument("--backend", choices=("torch", "megatron"), default="torch", help="the trainer backend to replay on (default torch)")
    replay.set_defaults(func=_cmd_replay)

    l2s = sub.add_parser("long2short", help="shorten a long-CoT policy by Kimi k1.5's four long2short methods, and compare them")
    l2s.add_argument("job", help="the long-CoT RLJob: run first (unless --long-model), and the template of every method's job")
    l2s.add_argument("--long-model", help="the long-CoT policy (a Hugging Face model directory) instead of running the job")
    l2s.add_argument("--short-model", help="the short model merged with the long one (default: the shortest-rejection result)")
    l2s.add_argument("--methods", default=",".join(("shortest-rejection", "dpo", "rl", "merge")),
                     help="comma-separated: shortest-rejection, dpo, rl, merge (default: all four)")
    l2s.add_argument("--iterations", type=int, default=10, help="iterations of long2short RL (default 10)")
    l2s.add_argument("--rounds", type=int, default=1,
                     help="shortest-rejection and dpo: rounds of sampling then training (default 1, as in the report)")
    l2s.add_argument("--prompts", type=int, default=256, help="shortest-rejection and dpo: prompts per round (default 256)")
    l2s.add_argument("--epochs", type=int, default=2,
                     help="shortest-rejection and dpo: passes over each round's selected samples (default 2)")
    l2s.add_argument("--learning-rate", type=float,
                     help="the training methods' learning rate (default: the job's for shortest-rejection, a tenth of it for dpo, 0.4 of it for rl)")
    l2s.add_argument("--merge-weight", type=float, default=0.5, help="the long model's weight in the merge (default 0.5)")
    l2s.add_argument("--length-penalty", type=float, default=0.5, help="long2short RL's length penalty weight (default 0.5)")
    l2s.add_argument("--max-tokens-fraction", type=float, default=0.75,
                     help="long2short RL's rollout.maxTokens as a fraction of the long job's (default 0.75)")
    l2s.add_argument("--workdir", default="runs", help="where the jobs' runs go")
    l2s.add_argument("--out", help="where the table, plot, summaries and merged model go (default: a new dir in the workdir)")
    l2s.set_defaults(func=_cmd_long2short)

    render = sub.add_parser("render", help="print the Kubernetes objects the operator would create")
    render.add_argument("job")
    render.add_argument("--namespace", default="default")
    render.set_defaults(func=_cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

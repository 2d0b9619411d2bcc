"""The `seesaw` command: run a job on this machine, render its Kubernetes objects, validate it."""
from __future__ import annotations

import argparse
import sys

from seesaw.spec import SpecError, load_manifest


def _cmd_validate(args: argparse.Namespace) -> int:
    load_manifest(args.job)
    print(f"{args.job}: valid RLJob")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from seesaw.local.runner import run_job

    return run_job(load_manifest(args.job), args)


def _cmd_render(args: argparse.Namespace) -> int:
    # The operator's pure builders: exactly what it would create for this job.
    from seesaw.operator.render import render_yaml

    print(render_yaml(load_manifest(args.job), namespace=args.namespace), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seesaw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check an RLJob manifest against the CRD schema")
    validate.add_argument("job")
    validate.set_defaults(func=_cmd_validate)

    run = sub.add_parser("run", help="run an RLJob on this machine (the embedded default)")
    run.add_argument("job")
    run.add_argument("--workdir", default="runs", help="where runs and the model cache go")
    run.add_argument("--summary-json", help="write the run's summary (accuracies, sync) here")
    run.add_argument("--seed", type=int, help="override spec.rl.seed")
    run.add_argument("--iterations", type=int, help="override spec.rl.iterations")
    run.add_argument("--resume-from", help="a checkpoint (latest.pt) of an earlier run to continue from")
    run.set_defaults(func=_cmd_run)

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

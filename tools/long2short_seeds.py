"""Several `seesaw long2short` runs (one per seed) in one table and one token-efficiency figure.

    python tools/long2short_seeds.py OUT_DIR... --png docs/long2short.png

Each OUT_DIR holds a run's long2short.json; the table gives each policy's mean and range.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from seesaw.local.long2short import plot, read_points, seeds_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="long2short output directories")
    parser.add_argument("--png", type=Path, required=True, help="where the figure goes")
    parser.add_argument("--title", default="long2short")
    args = parser.parse_args()
    runs = [read_points(run / "long2short.json") for run in args.runs]
    print(seeds_table(runs))
    print(f"plot: {plot([p for run in runs for p in run], args.png, args.title)}")


if __name__ == "__main__":
    main()

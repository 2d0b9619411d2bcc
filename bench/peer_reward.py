"""The job's reward for TRL's process in `make bench-peer`: Seesaw's own scoring, served over a pipe.

TRL runs in its own environment, which lacks the job's verifier (math-verify for the math
reward), so bench/peer_trl.py starts this in Seesaw's environment and scores through it: the
same decode (the response ids, special tokens skipped) and the same verifier as Seesaw's
checkpoint engine (seesaw.checkpoint_engine.scoring.score_items), so the two sides' rewards
cannot differ. A problem is named by its index in the task's training prompts, as
bench/peer.py wrote them.

Protocol, one JSON value a line: it writes "ready" once the task and verifier are loaded; then
for each line [[problem index, response ids], ...] read from stdin it writes the list of
scores, until stdin closes.

Usage (Seesaw's python): peer_reward.py --job job.yaml --model DIR
"""
from __future__ import annotations

import argparse
import json
import sys

from transformers import AutoTokenizer

from seesaw.checkpoint_engine.scoring import score_items
from seesaw.spec import load_manifest
from seesaw.tasks import load_task


def serve(job: str, model_dir: str) -> None:
    replies, sys.stdout = sys.stdout, sys.stderr  # whatever the task or verifier prints stays off the pipe
    task = load_task(load_manifest(job)["spec"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    score_items(task, tokenizer, "train", [[0, tokenizer.encode(task.train[0].answer)]])  # starts the verifier
    print(json.dumps("ready"), file=replies, flush=True)
    for line in sys.stdin:
        print(json.dumps(score_items(task, tokenizer, "train", json.loads(line))), file=replies, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="the RLJob manifest both sides run")
    parser.add_argument("--model", required=True, help="the model directory whose tokenizer decodes the responses")
    args = parser.parse_args()
    serve(args.job, args.model)


if __name__ == "__main__":
    main()

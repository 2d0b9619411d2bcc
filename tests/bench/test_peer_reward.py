"""bench/peer_reward.py, the reward TRL's side of `make bench-peer` asks for: Seesaw's own scores
of the same response ids, here with the math verifier on a file of word problems."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from pod_helpers import tiny_manifest
from seesaw.checkpoint_engine.scoring import score_items
from seesaw.model.generate import build_tokenizer
from seesaw.tasks import load_task

ROOT = Path(__file__).resolve().parents[2]


def test_the_reward_server_gives_seesaws_scores_for_the_same_response_ids(tmp_path):
    problems = tmp_path / "problems.jsonl"
    rows = [{"prompt": f"{a} + {a} =", "answer": str(2 * a)} for a in range(1, 7)]
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    manifest = tiny_manifest()
    spec = manifest["spec"]
    spec["prompts"]["source"] = str(problems)
    spec["reward"]["type"] = "math"
    spec["rl"]["evaluation"]["prompts"] = 2
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    tokenizer = build_tokenizer("0123456789+= abcdefghijklmnopqrstuvwxyz\\{}")
    tokenizer.save_pretrained(tmp_path / "model")
    task = load_task(spec)
    items = [[i, tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id]]
             for i, problem in enumerate(task.train)
             for response in (f"so it is \\boxed{{{problem.answer}}}", f"the answer is {problem.answer}", "it is 99")]

    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "peer_reward.py"), "--job", str(job),
                               "--model", str(tmp_path / "model")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert json.loads(server.stdout.readline()) == "ready"
        server.stdin.write(json.dumps(items) + "\n")
        server.stdin.flush()
        scores = json.loads(server.stdout.readline())
    finally:
        server.stdin.close()
        assert server.wait(timeout=60) == 0

    assert scores == score_items(task, tokenizer, "train", items)
    assert scores == [1.0, 1.0, 0.0] * len(task.train)

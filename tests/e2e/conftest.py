"""One short `seesaw run` with partial rollouts, shared by the tests that read its output."""
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import yaml

from pod_helpers import tiny_manifest

SEESAW = str(Path(sys.executable).parent / "seesaw")


@pytest.fixture(scope="session")
def partial_rollout_run(tmp_path_factory):
    """(completed process, run dir, file of the spec fields every process read); the job's
    Prometheus metrics as scraped after the first iteration are `result.scraped_metrics`."""
    tmp_path = tmp_path_factory.mktemp("partial")
    manifest = tiny_manifest(iterations=4, promptsPerIteration=4)
    # tied, as most small pretrained models are: vLLM's reload never loads a tied head, and the
    # probe after each sync fails the job unless the engine processed it again (the untied
    # model runs in every other job test)
    manifest["spec"]["model"]["generate"]["tieWordEmbeddings"] = True
    # a correct answer is 5 tokens ('dcba' + eos): with 2 tokens per iteration it finishes in the
    # third; maxTokens 8 ends every response by the fourth, so a group surely finishes and trains
    manifest["spec"]["rl"]["partialRollout"] = {"enabled": True, "tokenBudget": 2}
    manifest["spec"]["checkpoint"]["everyIterations"] = 2
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    reads = tmp_path / "spec-reads.txt"
    result = run_scraping_metrics([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs")], timeout=600,
                                  cwd=tmp_path, env=dict(os.environ, SEESAW_SPEC_READS=str(reads)))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result, next((tmp_path / "runs").glob("tiny-reverse-*")), reads


def run_scraping_metrics(argv: list[str], timeout: float, **popen: object) -> subprocess.CompletedProcess:
    """Run a job to its end; once it logged its first iteration, scrape the Prometheus
    endpoint it printed, as Prometheus would while it runs."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    lines, url, scraped = [], None, ""
    try:
        for line in process.stdout:
            lines.append(line)
            if found := re.search(r"prometheus metrics: (http://\S+/metrics)", line):
                url = found.group(1)
            if url and not scraped and re.search(r"iter\s+1/\d+ \|", line):
                scraped = requests.get(url, timeout=10).text
        process.wait()
    finally:
        killer.cancel()
    reader.join(10)
    result = subprocess.CompletedProcess(argv, process.returncode, "".join(lines), "".join(stderr))
    result.scraped_metrics = scraped
    return result

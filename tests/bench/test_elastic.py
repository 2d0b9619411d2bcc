"""`make bench-elastic` at its smallest: one gang restart under `seesaw run` with real vLLM.
The rollout replica outlives the gang, re-joins the new conductor, and its vLLM processes
hold the Mooncake listeners of one receiver, as after its first join (a receiver left open
at the re-join would add its two)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_replica_rejoins_a_restarted_gang_with_one_receiver(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "elastic.py"), "--restarts", "1", "--later", "0",
                             "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    measured = json.loads((tmp_path / "elastic.json").read_text())
    first, rejoined = measured["rows"]
    assert measured["rejoined"] == 1 and measured["same_pids"], "the same replica processes re-joined the new conductor"
    assert len(first["mooncake_ports"]) == 2, "the first join opened one Mooncake receiver"
    assert len(rejoined["mooncake_ports"]) == 2, "one receiver after the re-join: the old one was closed"
    assert first["mooncake_ports"] != rejoined["mooncake_ports"], "the re-join opened a new receiver (its own ports)"
    assert len(rejoined["listening_ports"]) == len(first["listening_ports"])
    assert abs(rejoined["rss_mib"] / first["rss_mib"] - 1) < 0.05, (first["rss_mib"], rejoined["rss_mib"])

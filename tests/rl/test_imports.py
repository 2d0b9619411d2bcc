"""The RL package stays engine-free: both the rollout and the trainer workers import it."""
import subprocess
import sys

MODULES = ["seesaw.rl.length_penalty", "seesaw.rl.sampling", "seesaw.rl.partial_rollout", "seesaw.rl.long2short",
           "seesaw.rl.rewards", "seesaw.rl.rewards.sandbox", "seesaw.rl.rewards.testgen"]


def test_no_module_of_seesaw_rl_imports_vllm_or_megatron(tmp_path):
    check = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES) +
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'megatron'))\n"
             "assert not bad, bad\n")
    # cwd outside the repository: its operator/ folder would shadow the standard library
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""A rollout replica that outlives restarts of the gang: its Mooncake receivers and memory.

`seesaw run` plays the tiny reversal job (examples/tiny-reverse.yaml, a small SFT warm-up)
with one rollout replica and real vLLM engines. After each gang attempt's first iteration
the bench kills pod 0's trainer (SIGKILL); the runner restarts the gang, as the operator
does, and keeps the replica, whose checkpoint engine re-joins the new conductor; that
conductor admits it at its first sync and opens the replica's side of the weight channel
again (/weights/init: Seesaw's vLLM weight-transfer engine closes the receiver it had and
opens a new one).

After the replica's first join and after each re-join, once the new conductor's first
iteration is logged (the replica took its weights and served), the bench reads the
replica's vLLM processes (its rollout server and every process below it):
- resident memory (RSS), summed over them, the median of 10 samples over 2 s;
- their TCP listening sockets, less the rollout server's own HTTP port, and of those the
  Mooncake transfer engine's: each live one listens on 2 ports of Mooncake's RPC port range
  (15000-17000 unless MC_MIN_RPC_PORT/MC_MAX_RPC_PORT say otherwise), so one receiver is 2,
  and a receiver left open at a re-join adds 2 (what the old leak did); the others are
  vLLM's worker's own (torch.distributed), the same at every join;
- their threads and open file descriptors.
The memory is read again LATER iterations on, before the next restart: the growth within an
attempt is what serving adds with no re-join, to tell apart from what a re-join adds.
It fails (exit 1) unless the replica's vLLM processes stay the same ones, each re-join is
logged, every join leaves exactly 2 Mooncake listeners and the others as after the first
join, and the memory after the last re-join is within 2 % of after the first one.

Prints a table, writes runs/bench-elastic/elastic.{json,png}.

Usage: python bench/elastic.py [--restarts 5] [--later 10]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEESAW = str(Path(sys.executable).parent / "seesaw")
REPLICA = "SEESAW_ROLLOUT_REPLICA"  # seesaw.pod_contract.ROLLOUT_REPLICA
TOLERANCE = 0.02
LATER = 10  # iterations after a join's first, for a second reading of the memory
MOONCAKE_LISTENERS = 2  # per live transfer engine (measured: two receivers alive in one process listen on 4)
MOONCAKE_PORTS = range(int(os.environ.get("MC_MIN_RPC_PORT", 15000)), int(os.environ.get("MC_MAX_RPC_PORT", 17000)) + 1)


def write_job(restarts: int, out: Path) -> Path:
    from seesaw.spec import load_manifest

    manifest = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    spec = manifest["spec"]
    spec["model"]["generate"]["sftSteps"] = 20
    spec["rollout"]["replicas"] = 1
    # more iterations than the bench waits for: it interrupts the run after the last re-join
    spec["rl"].update(iterations=5000, promptsPerIteration=9)
    spec["rl"]["evaluation"].update(prompts=16, everyIterations=0)
    spec["failurePolicy"].update(maxRestarts=restarts, backoffSeconds=0)
    out.mkdir(parents=True, exist_ok=True)
    job = out / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


class Run:
    """`seesaw run` with its output read in a thread of its own."""

    def __init__(self, job: Path, workdir: Path) -> None:
        self.process = subprocess.Popen([SEESAW, "run", str(job), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, cwd=workdir.parent,
                                        env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1"),
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.text):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"no {what} ({'the run ended' if self.process.poll() is not None else 'timed out'}):\n"
                                 + self.text[-4000:])
            time.sleep(0.5)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def env_of(process: psutil.Process) -> dict[str, str]:
    try:
        return process.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}


def cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def replica_engine(run: Run) -> list[psutil.Process]:
    """The replica's rollout container: its vLLM server and every process below it (found by
    descent: vLLM's engine processes retitle themselves, which hides their environment)."""
    server = next(p for p in run.children() if env_of(p).get(REPLICA) == "0" and "seesaw.rollout." in cmdline(p))
    return [server] + server.children(recursive=True)


def measure(run: Run, samples: int = 10) -> dict:
    engine = replica_engine(run)
    http_port = int(env_of(engine[0])["SEESAW_ROLLOUT_PORT"])
    rss = []
    for _ in range(samples):
        rss.append(sum(p.memory_info().rss for p in engine if p.is_running()))
        time.sleep(0.2)
    listening = sorted(c.laddr.port for p in engine for c in p.net_connections("tcp")
                       if c.status == psutil.CONN_LISTEN and c.laddr.port != http_port)
    return {"rss_mib": statistics.median(rss) / 2 ** 20, "listening_ports": listening,
            "mooncake_ports": [port for port in listening if port in MOONCAKE_PORTS],
            "threads": sum(p.num_threads() for p in engine), "fds": sum(p.num_fds() for p in engine),
            "pids": sorted(p.pid for p in engine),
            "processes": [[p.pid, cmdline(p)[-60:], p.memory_info().rss >> 20,
                           [c.laddr.port for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]] for p in engine]}


def kill_pod0_trainer(run: Run) -> None:
    # its launcher became the trainer's server (one rank: exec)
    trainer = next(p for p in run.children() if "seesaw.trainer." in cmdline(p) and REPLICA not in env_of(p))
    trainer.kill()


def plot(rows: list[dict], path: Path, later: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, ports) = plt.subplots(1, 2, figsize=(10, 3.6))
    joins = [row["join"] for row in rows]
    mem.plot(joins, [row["rss_mib"] for row in rows], marker="o", label="after the join's first iteration")
    mem.plot(joins, [row["rss_later_mib"] for row in rows], marker="x", linestyle=":", label=f"{later} iterations later")
    first = rows[1]["rss_mib"] if len(rows) > 1 else rows[0]["rss_mib"]
    mem.axhspan(first * (1 - TOLERANCE), first * (1 + TOLERANCE), alpha=0.15, label="first re-join ± 2 %")
    mem.set(xlabel="join (0: the first; k: after gang restart k)", ylabel="MiB",
            title="replica's vLLM processes: resident memory")
    mem.legend()
    ports.bar(joins, [len(row["mooncake_ports"]) for row in rows])
    ports.axhline(MOONCAKE_LISTENERS * 2, color="red", linestyle="--", label="two receivers alive")
    ports.set_ylim(0, MOONCAKE_LISTENERS * 2 + 1)
    ports.set(xlabel="join", ylabel="listening TCP ports", title="Mooncake listeners (2 per transfer engine)")
    ports.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--later", type=int, default=LATER, help="iterations after a join's first for the second reading")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-elastic")
    args = parser.parse_args()
    out = args.out.resolve()
    job = write_job(args.restarts, out)
    run = Run(job, out / "runs")
    rows: list[dict] = []
    started = time.monotonic()
    try:
        for join in range(args.restarts + 1):
            # this attempt's conductor admitted the replica and logged an iteration after it
            run.wait_for(lambda text: text.count("rollout replica 0 joined") > join
                         and "\niter " in text.split("rollout replica 0 joined")[join + 1], 900, f"join {join}")
            row = dict(join=join, seconds=round(time.monotonic() - started, 1), **measure(run))
            # the same engine LATER iterations on, with no re-join between: what serving alone adds
            served = run.text.count("\niter ")
            run.wait_for(lambda text: text.count("\niter ") >= served + args.later, 300, f"{args.later} more iterations")
            row["rss_later_mib"] = measure(run)["rss_mib"]
            rows.append(row)
            print(f"join {join}: {row['rss_mib']:.0f} MiB ({row['rss_later_mib']:.0f} MiB {args.later} iterations later), Mooncake listening on {row['mooncake_ports']}, "
                  f"{len(row['listening_ports'])} listening ports in all, "
                  f"{row['threads']} threads, {row['fds']} fds ({row['seconds']:.0f}s)", flush=True)
            if join < args.restarts:
                kill_pod0_trainer(run)
                run.wait_for(lambda text: text.count("restarting the gang") > join, 120, f"gang restart {join + 1}")
    finally:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)
            try:
                run.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                run.process.kill()
    run_dir = next((out / "runs").glob("tiny-reverse-*"))
    rejoined = (run_dir / "replica-0-sidecar.log").read_text().count("re-joined the gang")
    same_pids = len({tuple(row["pids"]) for row in rows}) == 1
    base = rows[1] if len(rows) > 1 else rows[0]
    growth = rows[-1]["rss_mib"] / base["rss_mib"] - 1
    # the first join opened a receiver (its listeners are there), and no re-join added one
    ports_same = all(len(row["mooncake_ports"]) == MOONCAKE_LISTENERS
                     and len(row["listening_ports"]) == len(rows[0]["listening_ports"]) for row in rows)
    print(f"\n| join | RSS MiB | vs first re-join | {args.later} iterations later | Mooncake listeners | listening ports in all "
          "| threads | fds |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['join']} | {row['rss_mib']:.1f} | {row['rss_mib'] / base['rss_mib'] - 1:+.2%} | "
              f"{row['rss_later_mib']:.1f} ({row['rss_later_mib'] / row['rss_mib'] - 1:+.2%}) | "
              f"{len(row['mooncake_ports'])} | {len(row['listening_ports'])} | {row['threads']} | {row['fds']} |")
    print(f"\nthe replica's checkpoint engine re-joined {rejoined} time(s); the same vLLM processes throughout: {same_pids}; "
          f"memory after re-join {args.restarts} against re-join 1: {growth:+.2%}")
    (out / "elastic.json").write_text(json.dumps({"rows": rows, "rejoined": rejoined, "same_pids": same_pids,
                                                  "growth": growth}, indent=1))
    plot(rows, out / "elastic.png", args.later)
    print(f"wrote {out / 'elastic.json'} and {out / 'elastic.png'}")
    ok = same_pids and rejoined == args.restarts and ports_same and abs(growth) <= TOLERANCE
    if not ok:
        print("FAILED: " + "; ".join(why for why, bad in (
            ("the replica's vLLM processes changed (it was restarted, not re-joined)", not same_pids),
            (f"{rejoined} re-join(s) logged, expected {args.restarts}", rejoined != args.restarts),
            (f"not {MOONCAKE_LISTENERS} Mooncake listeners at every join, or the other listeners changed", not ports_same),
            (f"memory moved {growth:+.2%} (> {TOLERANCE:.0%})", abs(growth) > TOLERANCE)) if bad))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

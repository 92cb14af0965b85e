"""PPO step time of the training command with 1 process and with 2 processes (torchrun, gloo on this CPU).

All do the same work per step: 16 prompts (1 process x batch 16, or 2
processes x batch 8 with the gradients averaged), mini-batches of 8 prompts in
all, 4 PPO epochs, the bundled cpu-profile models.  Three set-ups: one
process with one thread, one process with two threads (torch's default on 2
cores), two processes with one thread each (what torchrun sets).  The runs
alternate so that a busy machine slows all alike; the step time is the median
of process 0's ``time/step`` over the steps after the first.

    .venv/bin/python benchmarks/bench_processes.py [--steps 5] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["-m", "course_lib.train", "--sentiment", "POSITIVE", "--profile", "cpu"]


SETUPS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1))


def run(processes: int, threads: int, steps: int, out: Path) -> dict:
    if processes == 1:
        cmd = [sys.executable, *COMMON, "--steps", str(steps), "--output", str(out),
               "--set", "batch_size=16", "mini_batch_size=8"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               *COMMON, "--steps", str(steps), "--output", str(out),
               "--set", f"batch_size={16 // processes}", f"mini_batch_size={8 // processes}"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{proc.stderr[-3000:]}")
    steps_ = json.loads((out / "training_stats.json").read_text())["steps"]
    assert steps_[0]["env/reward_n"] == 16 and steps_[0]["dist/processes"] == processes
    later = steps_[1:]
    return {"wall_s": wall, "step_s": statistics.median(r["time/step"] for r in later),
            "generate_s": statistics.median(r["time/rollout/generate"] for r in later),
            "optimise_s": statistics.median(r["time/ppo/optimise"] for r in later)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    results = {name: [] for name, _, _ in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for i, (name, processes, threads) in enumerate(SETUPS):
                r = run(processes, threads, args.steps, Path(tmp) / f"r{rep}-{i}")
                results[name].append(r)
                print(f"repeat {rep + 1}, {name}: {r['step_s']:.2f} s/step (generate {r['generate_s']:.2f}, "
                      f"optimise {r['optimise_s']:.2f}), {r['wall_s']:.0f} s in all", flush=True)
    base = statistics.median(r["step_s"] for r in results[SETUPS[0][0]])
    print("\n16 prompts per step, median over repeats:")
    for name, _, _ in SETUPS:
        med = statistics.median(r["step_s"] for r in results[name])
        print(f"  {name:28s} {med:6.2f} s/step  ({med / base:.2f}x the time of 1 process, 1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

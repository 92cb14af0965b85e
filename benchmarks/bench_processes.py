"""PPO step time of the training command with 1 process and with 2 processes (torchrun, gloo on this CPU).

Both do the same work per step: 16 prompts (1 process x batch 16, or 2
processes x batch 8 with the gradients averaged), mini-batches of 8 prompts in
all, 4 PPO epochs, the bundled cpu-profile models.  One process uses torch's
default threads (one per core); torchrun gives each of its processes one
thread.  The runs alternate (1, 2, 1, 2, ...) so that a busy machine slows
both alike; the step time is the median of process 0's ``time/step`` over the
steps after the first.

    .venv/bin/python benchmarks/bench_processes.py [--steps 6] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["-m", "course_lib.train", "--sentiment", "POSITIVE", "--profile", "cpu"]


def run(processes: int, steps: int, out: Path) -> dict:
    if processes == 1:
        cmd = [sys.executable, *COMMON, "--steps", str(steps), "--output", str(out),
               "--set", "batch_size=16", "mini_batch_size=8"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               *COMMON, "--steps", str(steps), "--output", str(out),
               "--set", f"batch_size={16 // processes}", f"mini_batch_size={8 // processes}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "GLOO_SOCKET_IFNAME": "lo"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{proc.stderr[-3000:]}")
    steps_ = json.loads((out / "training_stats.json").read_text())["steps"]
    assert steps_[0]["env/reward_n"] == 16 and steps_[0]["dist/processes"] == processes
    times = [r["time/step"] for r in steps_[1:]]
    return {"processes": processes, "wall_s": wall, "step_s": statistics.median(times),
            "generate_s": statistics.median(r["time/rollout/generate"] for r in steps_[1:]),
            "optimise_s": statistics.median(r["time/ppo/optimise"] for r in steps_[1:])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for n in (1, 2):
                rows.append(run(n, args.steps, Path(tmp) / f"r{rep}-{n}"))
                print(f"repeat {rep + 1}: {n} process(es): {rows[-1]['step_s']:.2f} s/step "
                      f"(generate {rows[-1]['generate_s']:.2f}, optimise {rows[-1]['optimise_s']:.2f}), "
                      f"{rows[-1]['wall_s']:.0f} s in all", flush=True)
    one = statistics.median(r["step_s"] for r in rows if r["processes"] == 1)
    two = statistics.median(r["step_s"] for r in rows if r["processes"] == 2)
    print(f"\n16 prompts per step, median over repeats: 1 process {one:.2f} s/step, 2 processes {two:.2f} s/step; "
          f"2 processes take {two / one:.2f}x the time of 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

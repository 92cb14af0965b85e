"""``make gpu-check``: one command that checks a real GPU run of the gpu profile.

For someone with an NVIDIA GPU and access to the Hugging Face Hub:

1. prints the device (name, memory, torch and CUDA versions);
2. trains the gpu profile (``lvwerra/gpt2-imdb`` tuned toward POSITIVE with
   ``lvwerra/distilbert-imdb`` as the reward model on ``stanfordnlp/imdb``
   prompts; batch 128, lr 1.41e-5) for ``--steps`` PPO steps (default 10)
   through the training command's own code (``course_lib.train.run``),
   saving no checkpoint;
3. reports seconds per step, peak GPU memory and the mean reward, printed and
   as JSON (default ``build/gpu-check.json``).

Without a GPU it says so and exits with status 1 before anything could
download: it imports torch to ask for a GPU, nothing from Hugging Face, and
opens no socket.  ``--allow-cpu`` runs the same check on the CPU anyway (to
test this script; peak GPU memory is then ``null``).

Exit status: 0 when the run finished, 1 without a GPU, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

DEFAULT_STEPS = 10
DEFAULT_OUT = Path("build") / "gpu-check.json"
NO_GPU_EXIT = 1


def describe_device() -> dict:
    """The device this check would train on: type, name, memory (GB), count, torch and CUDA versions."""
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(type="cuda", name=props.name, memory_gb=round(props.total_memory / 1e9, 1),
                    count=torch.cuda.device_count())
    else:
        info.update(type="cpu", name=platform.processor() or platform.machine(), memory_gb=None, count=0)
    return info


def no_gpu_message(device: dict) -> str:
    built = f"CUDA {device['cuda']}" if device["cuda"] else "a CPU-only build, without CUDA"
    return (f"gpu-check: no CUDA GPU is visible to PyTorch (torch {device['torch']}, {built}); "
            "nothing was downloaded or trained.\n"
            "This check trains the gpu profile on a GPU with the Hub models. On a machine with an NVIDIA GPU "
            "and a CUDA build of torch, run `make gpu-check` again (`--allow-cpu` runs it on the CPU anyway, "
            "which takes hours with the full-size models).")


def summarize(records: list[dict], device: dict, cfg, seconds_total: float, peak_bytes: int | None) -> dict:
    """The report: timings (seconds), peak GPU memory (GB), mean reward (classifier logits) and the records."""
    times = [r["time/step"] for r in records]
    rewards = [r["env/reward_mean"] for r in records]
    return {
        "ok": True,
        "device": device,
        "config": cfg.to_dict(),
        "steps": len(records),
        "prompts_per_step": records[-1]["env/reward_n"],
        "seconds_total": seconds_total,
        "seconds_to_load": seconds_total - sum(times),
        "seconds_per_step": sum(times) / len(times),
        # the first step includes CUDA kernel compilation and cache warm-up
        "seconds_per_step_after_first": sum(times[1:]) / len(times[1:]) if len(times) > 1 else None,
        "peak_gpu_memory_gb": None if peak_bytes is None else round(peak_bytes / 1e9, 3),
        "mean_reward": sum(rewards) / len(rewards),
        "mean_reward_first_step": rewards[0],
        "mean_reward_last_step": rewards[-1],
        "kl_last_step": records[-1].get("objective/kl"),
        "records": records,
    }


def main(argv=None) -> int:
    from course_lib.train import parse_set

    p = argparse.ArgumentParser(description="Check a real GPU run of the gpu profile (Hub models, full size).")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"PPO steps (default {DEFAULT_STEPS})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--sentiment", default="POSITIVE", help="target label: POSITIVE or NEGATIVE")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override a LabConfig value of the gpu profile, e.g. --set batch_size=64")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (slow)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    overrides = {"steps": args.steps, "target_label": args.sentiment, **parse_set(p, args.set)}

    from course_lib.config import make_config
    from course_lib.jsonio import save_json

    try:
        cfg = make_config("gpu", **overrides)
    except ValueError as e:
        p.error(str(e))

    device = describe_device()
    if device["type"] != "cuda" and not args.allow_cpu:
        print(no_gpu_message(device), file=sys.stderr)
        save_json({"ok": False, "reason": "no CUDA GPU visible to PyTorch", "device": device}, args.out)
        return NO_GPU_EXIT
    print(f"device: {device['type']} {device['name']}"
          + (f", {device['memory_gb']} GB, {device['count']} GPU(s)" if device["type"] == "cuda" else "")
          + f"; torch {device['torch']}, CUDA {device['cuda'] or 'none'}", flush=True)
    print(f"training the gpu profile: {cfg.policy_model} toward {cfg.target_label}, reward model "
          f"{cfg.reward_model}, data {cfg.dataset}; {cfg.steps} steps of {cfg.batch_size} prompts", flush=True)

    import torch

    from course_lib.train import run

    on_gpu = device["type"] == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    records, _ = run(cfg, None, progress=True)
    seconds = time.perf_counter() - t0
    report = summarize(records, device, cfg, seconds, torch.cuda.max_memory_allocated() if on_gpu else None)
    save_json(report, args.out)
    after = report["seconds_per_step_after_first"]
    print(f"{report['steps']} steps of {report['prompts_per_step']} prompts: "
          f"{report['seconds_per_step']:.2f} s/step"
          + (f" ({after:.2f} s/step after the first)" if after is not None else "")
          + f", {report['seconds_to_load']:.0f} s loading; peak GPU memory "
          + (f"{report['peak_gpu_memory_gb']:.2f} GB" if on_gpu else "n/a (CPU)")
          + f"; mean {cfg.target_label} reward {report['mean_reward_first_step']:+.3f} (step 1) -> "
          f"{report['mean_reward_last_step']:+.3f} (step {report['steps']})", flush=True)
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

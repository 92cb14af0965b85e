"""course_lib.gpu_check (`make gpu-check`) and the GPU runner's workflow.

Without a GPU the check must stop with a clear message, having opened no
socket.  Its training and report run here on the CPU (``--allow-cpu``)
against the local Hub stand-in (tests/hub_standin.py).
"""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import hub_standin as standin
import netguard

ROOT = Path(__file__).resolve().parent.parent


def _no_gpu_env(log):
    env = netguard.guarded_env(log=log, no_sockets=True)  # not even a loopback socket
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    return env


def test_make_gpu_check_without_a_gpu_says_so_and_fails_without_opening_a_socket(tmp_path):
    log, out = tmp_path / "net.log", tmp_path / "gpu-check.json"
    # the venv is the one running these tests: tell make so (BIN) and not to rebuild it (-o STAMP)
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    stamp = f".venv/.stamp-{digest.hexdigest()[:16]}"
    proc = subprocess.run(["make", "-s", "-o", stamp, f"BIN={Path(sys.executable).parent}", "gpu-check",
                           f"GPU_CHECK_OUT={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_no_gpu_env(log))
    assert proc.returncode != 0
    assert "gpu-check: no CUDA GPU is visible to PyTorch" in proc.stderr
    assert "nothing was downloaded or trained" in proc.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["device"]["type"] == "cpu" and report["device"]["count"] == 0
    assert netguard.attempts(log) == []


def test_gpu_check_without_a_gpu_exits_with_status_1_having_imported_nothing_from_hugging_face(tmp_path):
    log = tmp_path / "net.log"
    code = ("import sys\n"
            "from course_lib import gpu_check\n"
            f"status = gpu_check.main(['--out', {str(tmp_path / 'r.json')!r}])\n"
            "print(sorted(m for m in ('huggingface_hub', 'transformers', 'datasets', 'trl', 'accelerate')"
            " if m in sys.modules))\n"
            "sys.exit(status)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=_no_gpu_env(log), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "no CUDA GPU" in proc.stderr
    assert proc.stdout.strip() == "[]"  # no library that could download was even imported
    assert netguard.attempts(log) == []


def test_gpu_check_rejects_bad_arguments_naming_the_valid_ones(capsys, tmp_path):
    from course_lib import gpu_check

    for argv, needle in ((["--steps", "0"], "--steps must be at least 1, got 0"),
                         (["--set", "batch_sise=8"], "valid settings"),
                         (["--sentiment", "HAPPY"], "POSITIVE, NEGATIVE"),
                         (["--set", "batch_size"], "--set takes NAME=VALUE")):
        with pytest.raises(SystemExit) as e:
            gpu_check.main([*argv, "--out", str(tmp_path / "r.json")])
        assert e.value.code == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_gpu_check_trains_the_gpu_profile_and_reports_json(hub_standin, tmp_path):
    log, out = tmp_path / "net.log", tmp_path / "gpu-check.json"
    env = netguard.guarded_env(standin.standin_env(hub_standin), log=log)
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "course_lib.gpu_check", "--allow-cpu", "--steps", "2",
                           "--out", str(out), "--set", "batch_size=8", "mini_batch_size=8"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("device: cpu")
    assert "2 steps of 8 prompts:" in proc.stdout and "peak GPU memory n/a (CPU)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["steps"] == 2 and report["prompts_per_step"] == 8
    assert report["config"]["profile"] == "gpu" and report["config"]["policy_model"] == "lvwerra/gpt2-imdb"
    times = [r["time/step"] for r in report["records"]]
    assert report["seconds_per_step"] == pytest.approx(sum(times) / 2)
    assert report["seconds_per_step_after_first"] == pytest.approx(times[1])
    assert 0 < report["seconds_to_load"] < report["seconds_total"]
    assert report["peak_gpu_memory_gb"] is None
    rewards = [r["env/reward_mean"] for r in report["records"]]
    assert report["mean_reward"] == pytest.approx(sum(rewards) / 2)
    assert report["mean_reward_last_step"] == rewards[-1]
    assert netguard.attempts(log) == []


def test_gpu_workflow_runs_gpu_check_and_the_gpu_lab_on_a_gpu_runner():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu.yml").read_text())
    job = wf["jobs"]["gpu"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert any(r.startswith("make gpu-check") for r in runs)
    assert "make run PROFILE=gpu" in runs
    assert runs.index("make run PROFILE=gpu") > next(i for i, r in enumerate(runs) if r.startswith("make gpu-check"))
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "build/gpu-check.json" in upload["with"]["path"]

"""How long `import course_lib` (and the first heavy import) takes, in fresh interpreters.

    .venv/bin/python benchmarks/bench_import.py
"""
import statistics
import subprocess
import sys

CASES = {
    "import course_lib": "import course_lib, course_lib.config",
    "import course_lib.train (torch, trl)": "import course_lib.train, trl, torch",
    "baseline: python -c pass": "pass",
}

for name, code in CASES.items():
    times = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"],
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout))
    print(f"{name:40s} median {statistics.median(times):6.3f} s  ({', '.join(f'{t:.3f}' for t in times)})")

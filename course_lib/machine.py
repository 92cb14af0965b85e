"""How many threads torch computes with, chosen from the machine.

torch's default can count logical CPUs, or every CPU of the machine where the
process may only use a few (containers, ``taskset``).  Threads that outnumber
the cores they may run on wait on each other, and a PPO step gets slower, not
faster (``docs/benchmarks.md`` measured 3.5x slower with 2 threads on 2 busy
cores).  :func:`set_torch_threads` uses one thread per *physical* core this
process may run on, unless ``OMP_NUM_THREADS`` says otherwise (the grader's
sandbox and ``make test``'s workers set it to 1: that choice is kept).
"""
from __future__ import annotations

import os


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on (its affinity mask)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int] | None = None, cpuinfo: str | None = None) -> int:
    """Physical cores among ``cpus`` (default: :func:`usable_cpus`); at least 1.

    Reads ``/proc/cpuinfo`` (``processor``, ``physical id``, ``core id``):
    hyper-threads of one core count once.  Without it, psutil's count of
    physical cores (when installed) bounded by the number of usable CPUs, else
    the number of usable CPUs.  ``cpuinfo``: the file's text, for tests.
    """
    cpus = usable_cpus() if cpus is None else set(cpus)
    if cpuinfo is None:
        try:
            cpuinfo = open("/proc/cpuinfo", encoding="utf-8").read()
        except OSError:
            cpuinfo = ""
    cores = set()
    for block in cpuinfo.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        if int(fields["processor"]) in cpus:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    if cores:
        return len(cores)
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return max(1, min(n, len(cpus)))
    except ImportError:
        pass
    return max(1, len(cpus))


def torch_threads() -> int:
    """The thread count to use: ``OMP_NUM_THREADS`` when set to a positive number, else :func:`physical_cores`."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return physical_cores()


def set_torch_threads() -> int:
    """Set torch's intra-op thread count to :func:`torch_threads`; returns it."""
    import torch

    n = torch_threads()
    torch.set_num_threads(n)
    return n

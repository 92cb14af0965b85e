"""course_lib.machine: torch's thread count from the physical cores, unless OMP_NUM_THREADS says otherwise."""
import pytest

from course_lib import machine

TWO_CORES_FOUR_THREADS = "\n\n".join(
    f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p % 2}\nsiblings\t: 4\ncpu cores\t: 2" for p in range(4))


def test_hyper_threads_of_one_core_count_once():
    assert machine.physical_cores({0, 1, 2, 3}, TWO_CORES_FOUR_THREADS) == 2
    assert machine.physical_cores({0, 2}, TWO_CORES_FOUR_THREADS) == 1      # both on core 0
    assert machine.physical_cores({0, 1}, TWO_CORES_FOUR_THREADS) == 2


def test_without_cpuinfo_the_usable_cpus_count():
    n = machine.physical_cores({0, 1, 2}, "")
    assert 1 <= n <= 3


def test_an_explicit_omp_num_threads_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")     # the grading sandbox, make test's workers
    assert machine.torch_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert machine.torch_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")      # unset in effect: the machine decides
    monkeypatch.setattr(machine, "physical_cores", lambda: 5)
    assert machine.torch_threads() == 5


def test_set_torch_threads_sets_and_returns_it(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert machine.set_torch_threads() == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_every_notebook_sets_its_threads_and_says_so():
    from pathlib import Path

    import nbformat

    for p in sorted((Path(__file__).resolve().parent.parent / "solutions").rglob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "set_torch_threads()" in code, p.name
        assert "physical core" in prose and "OMP_NUM_THREADS" in prose, p.name

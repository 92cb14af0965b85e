"""Execute an untrusted notebook inside a bubblewrap sandbox.

One call of :func:`execute_notebook` starts the grader's runner (:mod:`.runner`, the one file of
``course_instructor`` the sandbox sees, at ``RUNNER_PATH``) inside a fresh sandbox, hands it the notebook on stdin and reads the executed
notebook back from its stdout.  Nothing else crosses the boundary: the sandbox
has **no writable host path at all**.

What the sandbox (bubblewrap, Debian package ``bubblewrap``) gives the code inside:

* a read-only view of the system (``/usr``, ``/etc``), of the Python
  installation and virtual environment, and of the ``course_lib`` package: not
  the course folder, so no ``solutions/``, gradebook, ``submitted/``,
  ``course_instructor`` (reference implementations, builders, the grader; only
  the runner's own file is bound, alone),
  ``autograded/`` or other student;
* writable scratch space only in memory (``tmpfs``, size-limited): the home
  folder where the notebook runs, and ``/tmp``;
* no network (a private network namespace with nothing but its own loopback),
  its own process-id namespace (it sees and can signal only its own
  processes; when the sandbox ends, all of them end), its own IPC and host
  name;
* an unprivileged user id: when the grader runs as root, bubblewrap sets up the
  sandbox and ``setpriv`` then drops to a per-slot user id with no
  capabilities and ``no_new_privs`` (root would ignore the process limit);
  run as an ordinary user, bubblewrap uses a user namespace and the code runs
  with the instructor's uid, without capabilities;
* resource limits (``prlimit``): address space (a 50 GB allocation fails
  with ``MemoryError``), number of processes/threads of that user id (a fork
  bomb stops there, and the runner kills any process the kernel starts),
  size of any file it writes; and, enforced by the grader
  outside, a wall-clock limit and a cap on the bytes read back;
* a limit on the memory of the whole sandbox (all its processes together,
  ``Limits.total_memory_bytes``), on top of the per-process address space: see
  :class:`MemoryGuard`.  Where the grader may create one, a memory cgroup
  (cgroup v1 memory controller, or a cgroup v2 / a systemd scope) holds the
  sandbox's first process before it becomes bwrap, so every process inside is
  in it; the kernel's OOM killer then ends the largest process inside when the
  sandbox goes over.  Elsewhere a watchdog thread of the grader sums the
  memory of the sandbox's processes (proportional set size from /proc, or
  resident size) five times a second and kills the largest one when the sum
  is over the limit.  The run result says which mechanism was in force.

The protocol is the module :mod:`.runner`'s: JSON request in, JSON result out.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .course import GradingError

INSTALL_HINT = ("install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu; `dnf install bubblewrap` "
                "on Fedora), or pass --no-sandbox to grade without isolation (only for trusted submissions)")
HOME = "/home/student"
RUNNER_PATH = "/opt/course-grader/runner.py"   # where the runner's file is bound inside the sandbox            # the sandbox's home; the notebook runs in HOME/course/<assignment>
GiB, MiB = 1 << 30, 1 << 20
DEFAULT_UID_BASE = 61000          # sandbox user ids: base + slot (root only)


#: Set in the grading kernels, inside the sandbox (see :func:`grading_env`).
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",              # FutureWarning/DeprecationWarning of libraries
    "TRANSFORMERS_VERBOSITY": "error",       # transformers' logger.warning(...) lines
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars
}


def grading_env() -> dict:
    """Environment variables of the grading kernels.

    ``COURSE_GRADING=1`` makes the notebooks shrink their live runs and makes
    hidden tests record their evidence.  The rest keeps library chatter off
    stderr: nbgrader (0.9) scores a test cell that writes *anything* to stderr
    as failed, and the Hugging Face libraries warn there about harmless things.
    A student's own prints to stderr still fail the cell, as nbgrader intends.
    """
    return {**QUIET_ENV, "COURSE_GRADING": "1"}


class SandboxUnavailable(GradingError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed notebook run."""

    memory_bytes: int = 8 * GiB        # address space of each process (RLIMIT_AS)
    processes: int = 192               # processes + threads of the sandbox user (RLIMIT_NPROC)
    file_bytes: int = 256 * MiB        # largest file any process may write (RLIMIT_FSIZE)
    home_bytes: int = 1 * GiB          # tmpfs: the home folder (notebook folder, checkpoints)
    tmp_bytes: int = 512 * MiB         # tmpfs: /tmp and /dev/shm
    result_bytes: int = 128 * MiB      # largest executed notebook read back
    cell_output_bytes: int = 2 * MiB   # output kept per cell; the rest is cut (by the runner)
    cell_timeout: int = 120            # seconds per cell before it is interrupted
    total_memory_bytes: int = 6 * GiB  # all processes of one sandbox together (cgroup or watchdog)
    memory_guard: str = "auto"         # "auto": a cgroup where possible, else the watchdog; "watchdog"
    wall_seconds: float = 1800.0       # one notebook run, all cells (then the sandbox is killed)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    """What came back from one notebook run."""

    status: str                        # "ok" | "kernel died" | "timeout" | "no result" | ...
    notebook: dict | None = None       # the executed notebook as the runner returned it (untrusted)
    truncated_cells: list[int] = field(default_factory=list)
    timed_out_cells: list[int] = field(default_factory=list)
    killed_processes: int = 0
    restarted_after: list[int] = field(default_factory=list)    # cells after which the kernel was replaced
    late_display_updates: list[int] = field(default_factory=list)  # cells whose outputs a later cell updated
    hooks_reset: dict[int, list[str]] = field(default_factory=dict)  # test cell -> kernel hooks put back
    memory: dict = field(default_factory=dict)   # mechanism, limit_bytes, peak_bytes, oom_kills (from outside)
    seconds: float = 0.0
    log_tail: str = ""                 # last lines of the sandbox's stderr (the kernel's own output)
    log_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---- what the sandbox sees -------------------------------------------------------------
def _python_roots() -> list[Path]:
    """Folders the interpreter and its packages live in (bound read-only at the same paths)."""
    import course_lib

    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(os.path.realpath(sys.executable)).parent.parent,
             Path(course_lib.__file__).resolve().parent}
    # the venv's python is often a symlink into another installation (pyenv, /usr, ...)
    roots.add(Path(os.path.realpath(Path(sys.prefix) / "bin" / "python")).parent.parent)
    system = (Path("/usr"), Path("/etc"))
    keep = sorted(r for r in roots if not any(r == s or r.is_relative_to(s) for s in system))
    # drop folders inside another bound folder
    return [r for r in keep if not any(r != o and r.is_relative_to(o) for o in keep)]


def _parents(path: Path) -> list[Path]:
    return list(reversed(path.parents))[1:]  # without "/"


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise SandboxUnavailable(f"the grading sandbox needs bubblewrap (`bwrap`), which is not installed: "
                                 f"{INSTALL_HINT}")
    return path


def _uid_in_use(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _tasks_of_uid(uid: int) -> int:
    """Processes + threads that ``uid`` runs now (what RLIMIT_NPROC counts)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}")
                if st.st_uid == uid:
                    n += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return n


class _UidLease:
    """An exclusive, host-wide claim on one sandbox user id (a lock file per uid).

    The process limit counts every process of a user id, so two sandboxes must
    never share one, not even from two grading runs (or test suites) at once:
    the lease takes ``base + slot``, or the next free id 64 further on.
    """

    def __init__(self, base: int, slot: int):
        self.base, self.slot, self.fh, self.uid = base, slot, None, None

    def __enter__(self) -> int:
        import fcntl
        import tempfile

        for k in range(64):
            uid = self.base + self.slot + 64 * k
            fh = open(Path(tempfile.gettempdir()) / f"course-grading-uid-{uid}.lock", "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self.fh, self.uid = fh, uid
            return uid
        raise SandboxUnavailable(f"no free sandbox user id from {self.base + self.slot} on")

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()


def sandbox_command(inner: list[str], *, slot: int, limits: Limits, env: dict[str, str],
                    uid_base: int = DEFAULT_UID_BASE, uid: int | None = None) -> list[str]:
    """The full command line: prlimit, bwrap (namespaces, mounts), [setpriv], ``inner``.

    ``uid``: the sandbox user id when running as root (default ``uid_base + slot``).
    """
    as_root = os.geteuid() == 0
    nproc = limits.processes if as_root else _tasks_of_uid(os.geteuid()) + limits.processes
    cmd = ["setpriv", "--pdeathsig", "KILL", "--",
           "prlimit", f"--as={limits.memory_bytes}", f"--nproc={nproc}", f"--fsize={limits.file_bytes}",
           "--core=0", "--", bwrap_path(),
           "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    if not as_root:
        cmd += ["--unshare-user", "--cap-drop", "ALL"]
    # the system, read-only
    cmd += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    # scratch in memory only (before the binds: the repository may itself live under /tmp)
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm"]
    # Python, the venv and course_lib, read-only at their own paths (parents made traversable)
    made: set[Path] = {Path("/tmp")}
    for root in _python_roots():
        for parent in _parents(root):
            if parent not in made and str(parent) not in ("/usr", "/etc"):
                cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += ["--ro-bind", str(root), str(root)]
    # the grader's runner: its one file, not the package around it (which holds the reference answers)
    cmd += ["--perms", "0755", "--dir", str(Path(RUNNER_PATH).parent),
            "--ro-bind", str(Path(__file__).resolve().with_name("runner.py")), RUNNER_PATH]
    # the home folder, in memory too
    cmd += ["--perms", "0755", "--dir", "/home",
            "--perms", "0777", "--size", str(limits.home_bytes), "--tmpfs", HOME,
            "--chdir", HOME]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if as_root:
        uid = uid_base + slot if uid is None else uid
        if (owner := _uid_in_use(uid)) is not None:
            raise SandboxUnavailable(f"sandbox user id {uid} belongs to the account {owner!r}: choose a free range "
                                     f"with --sandbox-uid-base")
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
    return cmd + inner


def sandbox_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment inside the sandbox (nothing is inherited from the grader)."""
    venv_bin = str(Path(sys.prefix).resolve() / "bin")
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": HOME, "USER": "student", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        # matplotlib's inline backend (headless): plots become image outputs the Formgrader shows
        "TMPDIR": "/tmp", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": f"{HOME}/.matplotlib",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "IPYTHONDIR": f"{HOME}/.ipython",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
        # one thread per kernel: the same floating-point results in every run, serial or parallel
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
        # the notebooks' checkpoints (course_lib.paths): in the writable home, not beside course_lib
        "COURSE_OUTPUT_DIR": f"{HOME}/build",
        # offline, private caches
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": "/tmp/hf", "HF_DATASETS_CACHE": "/tmp/hf/datasets",
    }
    env.update(grading_env())
    env.update(extra or {})
    return env


# ---- memory of the whole sandbox -------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _cgroup_mounts() -> tuple[Path | None, Path | None]:
    """(the cgroup v1 memory controller's folder, the cgroup v2 folder) this process is in, where mounted."""
    v1 = v2 = None
    own_v1 = own_v2 = None
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        num, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "memory" in controllers.split(","):
            own_v1 = path
        elif num == "0" and controllers == "":
            own_v2 = path
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        parts = line.split()
        if "-" not in parts:
            continue
        sep = parts.index("-")
        root, mount, fstype, superopts = parts[3], parts[4], parts[sep + 1], parts[sep + 3]
        for own, want in ((own_v1, "cgroup"), (own_v2, "cgroup2")):
            if own is None or fstype != want or (want == "cgroup" and "memory" not in superopts.split(",")):
                continue
            rel = own if root == "/" else (own[len(root):] if own.startswith(root) else None)
            if rel is None:
                continue
            folder = Path(mount) / rel.lstrip("/")
            if not folder.is_dir():
                folder = Path(mount)
            if want == "cgroup":
                v1 = folder
            elif "memory" in _read(Path(mount) / "cgroup.controllers").split():
                v2 = folder
    return v1, v2


def _process_memory(pid: int) -> int:
    """Bytes of memory ``pid`` uses: its proportional set size where readable, else its resident size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _sweep(parent: Path) -> None:
    """Remove empty cgroups of graders that were killed before they could (``<key>-<pid>-<n>``, pid gone)."""
    for leaf in parent.iterdir():
        parts = leaf.name.rsplit("-", 2)
        if leaf.is_dir() and len(parts) == 3 and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists():
            if not _read(leaf / "cgroup.procs").strip():
                with contextlib.suppress(OSError):
                    leaf.rmdir()


class MemoryWatchdog(threading.Thread):
    """Fallback limit: sum the memory of ``root`` and its descendants; over ``limit``, kill the largest.

    Like the kernel's OOM killer in a cgroup, it ends one process at a time (the
    largest), so a notebook whose helper processes take too much loses those
    helpers, not necessarily its kernel.  It polls every ``interval`` seconds:
    memory that grows faster than that can overshoot the limit briefly (the
    per-process address-space limit still holds).
    """

    def __init__(self, root: int, limit: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.limit, self.interval = root, limit, interval
        self.peak = 0
        self.kills = 0
        self._halt = threading.Event()

    def sample(self) -> tuple[int, list[tuple[int, int]]]:
        sizes = [(_process_memory(pid), pid) for pid in _descendants(self.root)]
        return sum(size for size, _ in sizes), sorted(sizes, reverse=True)

    def run(self) -> None:
        import signal

        while not self._halt.is_set():
            total, sizes = self.sample()
            self.peak = max(self.peak, total)
            if total > self.limit and sizes:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(sizes[0][1], signal.SIGKILL)
                    self.kills += 1
                continue                     # measure again at once: is it under the limit now?
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class MemoryGuard:
    """The total memory limit of one sandbox: a memory cgroup where one can be made, else a watchdog.

    ``wrap(cmd)`` returns the command that starts inside the cgroup (a shell writes
    its own pid into ``cgroup.procs``, then execs ``cmd``: every process started
    below inherits the cgroup, and the sandbox cannot leave it: its files
    belong to root); ``start(proc)`` starts the watchdog where no cgroup was
    made; ``finish()`` stops it, reads the peak and the OOM kills, kills what
    is left in the cgroup and removes it.  ``mechanism`` says which limit held:
    ``cgroup-v1``, ``cgroup-v2``, ``systemd-scope`` or ``watchdog``.
    """

    _counter = 0
    _systemd_ok: bool | None = None

    def __init__(self, limit: int, key: str, prefer: str = "auto"):
        self.limit, self.key = int(limit), key
        self.cgroup: Path | None = None
        self.watchdog: MemoryWatchdog | None = None
        self.mechanism = "watchdog"
        self.prefix: list[str] = []
        self._info: dict | None = None
        MemoryGuard._counter += 1
        name = f"{key}-{os.getpid()}-{MemoryGuard._counter}"
        if prefer == "auto":
            for make in (self._cgroup_v1, self._cgroup_v2, self._systemd_scope):
                try:
                    if make(name):
                        break
                except OSError:
                    self._remove_cgroup()
                    self.cgroup = None

    def _cgroup_v1(self, name: str) -> bool:
        v1, _ = _cgroup_mounts()
        if v1 is None:
            return False
        parent = v1 / "course-grading"
        parent.mkdir(exist_ok=True)
        _sweep(parent)
        leaf = parent / name
        if leaf.exists():
            leaf.rmdir()
        leaf.mkdir()
        self.cgroup = leaf
        (leaf / "memory.limit_in_bytes").write_text(str(self.limit))
        if (leaf / "memory.memsw.limit_in_bytes").exists():     # no escape into swap
            with contextlib.suppress(OSError):
                (leaf / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
        if int(_read(leaf / "memory.limit_in_bytes") or 0) > self.limit:
            raise OSError("the memory limit did not take")
        self.mechanism = "cgroup-v1"
        return True

    def _cgroup_v2(self, name: str) -> bool:
        _, v2 = _cgroup_mounts()
        if v2 is None or not os.access(v2, os.W_OK):
            return False
        parent = v2 / "course-grading"
        parent.mkdir(exist_ok=True)
        _sweep(parent)
        for folder in (v2, parent):      # fails (EBUSY) where the grader's own cgroup holds processes
            if "memory" not in _read(folder / "cgroup.subtree_control").split():
                (folder / "cgroup.subtree_control").write_text("+memory")
        leaf = parent / name
        leaf.mkdir()
        self.cgroup = leaf
        (leaf / "memory.max").write_text(str(self.limit))
        if (leaf / "memory.swap.max").exists():
            (leaf / "memory.swap.max").write_text("0")
        self.mechanism = "cgroup-v2"
        return True

    def _systemd_scope(self, name: str) -> bool:
        if not Path("/run/systemd/system").is_dir() or not shutil.which("systemd-run"):
            return False
        prefix = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit=course-grading-{name}",
                  "-p", f"MemoryMax={self.limit}", "-p", "MemorySwapMax=0"]
        if os.geteuid() != 0:
            prefix.insert(1, "--user")
        if MemoryGuard._systemd_ok is None:         # does it work here at all (a session bus, rights)?
            probe = [p for p in prefix if not p.startswith("--unit=")] + ["--", "true"]
            try:
                MemoryGuard._systemd_ok = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                MemoryGuard._systemd_ok = False
        if not MemoryGuard._systemd_ok:
            return False
        self.prefix = [*prefix, "--"]
        self.mechanism = "systemd-scope"
        return True

    def wrap(self, cmd: list[str]) -> list[str]:
        if self.cgroup is not None:
            return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs"), *cmd]
        return [*self.prefix, *cmd]

    def start(self, proc: subprocess.Popen) -> None:
        if self.mechanism == "watchdog":
            self.watchdog = MemoryWatchdog(proc.pid, self.limit)
            self.watchdog.start()

    def finish(self) -> dict:
        if self._info is not None:
            return self._info
        self._info = info = {"mechanism": self.mechanism, "limit_bytes": self.limit}
        if self.watchdog is not None:
            self.watchdog.stop()
            info.update(peak_bytes=self.watchdog.peak, oom_kills=self.watchdog.kills)
        elif self.cgroup is not None:
            peak = _read(self.cgroup / "memory.max_usage_in_bytes") or _read(self.cgroup / "memory.peak")
            events = _read(self.cgroup / "memory.oom_control") + _read(self.cgroup / "memory.events")
            kills = [int(v) for k, v in (ln.split()[:2] for ln in events.splitlines() if len(ln.split()) >= 2)
                     if k == "oom_kill" and v.isdigit()]
            info.update(peak_bytes=int(peak) if peak.strip().isdigit() else None, oom_kills=sum(kills))
            self._remove_cgroup()
        return info

    def _remove_cgroup(self) -> None:
        import signal

        if self.cgroup is None or not self.cgroup.exists():
            return
        for _ in range(100):
            try:
                self.cgroup.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:       # processes left (the sandbox's are ending): kill them, try again
                for pid in _read(self.cgroup / "cgroup.procs").split():
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.05)


def memory_mechanism(limits: Limits | None = None) -> str:
    """Which total memory limit a sandbox gets on this machine (made and removed at once), in words."""
    limits = limits or Limits()
    guard = MemoryGuard(limits.total_memory_bytes, "probe", limits.memory_guard)
    info = guard.finish()
    where = {"cgroup-v1": "a cgroup v1 memory limit", "cgroup-v2": "a cgroup v2 memory limit",
             "systemd-scope": "a systemd scope's MemoryMax",
             "watchdog": "the grader's watchdog (no memory cgroup could be made here)"}[info["mechanism"]]
    return f"{limits.total_memory_bytes / GiB:.1f} GiB per sandbox, all processes together: {where}"


# ---- running ---------------------------------------------------------------------------------
class _CappedReader(threading.Thread):
    """Drain a pipe; keep the first ``cap`` bytes (or, with ``tail``, the last ``cap``)."""

    def __init__(self, stream, cap: int, tail: bool = False):
        super().__init__(daemon=True)
        self.stream, self.cap, self.tail = stream, cap, tail
        self.total = 0
        self.head = bytearray()
        self.last: deque[bytes] = deque()
        self.last_size = 0

    def run(self) -> None:
        while True:
            chunk = self.stream.read(65536)
            if not chunk:
                break
            self.total += len(chunk)
            if self.tail:
                self.last.append(chunk)
                self.last_size += len(chunk)
                while self.last_size - len(self.last[0]) >= self.cap:
                    self.last_size -= len(self.last.popleft())
            elif len(self.head) < self.cap:
                self.head += chunk[: self.cap - len(self.head)]

    @property
    def data(self) -> bytes:
        return b"".join(self.last)[-self.cap:] if self.tail else bytes(self.head)


def execute_notebook(nb: dict, *, limits: Limits, slot: int = 0, sandbox: bool = True,
                     env: dict[str, str] | None = None, assignment: str = "assignment",
                     uid_base: int = DEFAULT_UID_BASE) -> RunResult:
    """Execute ``nb`` (a notebook dict) in a fresh sandbox; never raises for what the notebook does.

    ``sandbox=False`` runs the same runner as a plain subprocess of the grader,
    with the same protocol and limits on time and output but **no isolation**.
    """
    workdir = f"{HOME}/course/{assignment}"
    request = {"notebook": nb, "cwd": workdir, "limits": limits.to_json(), "reap_strays": sandbox}
    python = str(Path(sys.prefix).resolve() / "bin" / "python")
    inner = [python, RUNNER_PATH] if sandbox else [python, str(Path(__file__).resolve().with_name("runner.py"))]
    run_env = sandbox_env(env)
    if sandbox:
        # as root, a leased uid is held until the sandbox has ended and let go however this ends
        # (unprivileged, the user namespace maps the caller's own uid: nothing to lease)
        lease = _UidLease(uid_base, slot) if os.geteuid() == 0 else contextlib.nullcontext()
        with lease as uid:
            cmd = sandbox_command(inner, slot=slot, limits=limits, env=run_env, uid_base=uid_base, uid=uid)
            guard = MemoryGuard(limits.total_memory_bytes, f"uid{uid}" if uid is not None else f"slot{slot}",
                                limits.memory_guard)
            return _run(cmd, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, request, limits, None, guard)
    import tempfile
    tmp_home = tempfile.mkdtemp(prefix="grading-unsandboxed-")
    home = Path(tmp_home)
    workdir_path = home / "course" / assignment
    workdir_path.mkdir(parents=True)
    request["cwd"] = str(workdir_path)
    run_env.update(HOME=str(home), MPLCONFIGDIR=str(home / ".matplotlib"), IPYTHONDIR=str(home / ".ipython"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"), HF_HOME=str(home / "hf"),
                   HF_DATASETS_CACHE=str(home / "hf" / "datasets"), TMPDIR=str(home),
                   COURSE_OUTPUT_DIR=str(home / "build"))
    guard = MemoryGuard(limits.total_memory_bytes, f"unsandboxed-slot{slot}", limits.memory_guard)
    return _run(inner, run_env, request, limits, tmp_home, guard)


def _run(cmd: list[str], popen_env: dict, request: dict, limits: Limits, tmp_home: str | None,
         guard: MemoryGuard) -> RunResult:
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(guard.wrap(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=popen_env, start_new_session=True, cwd="/")
    except FileNotFoundError as e:
        guard.finish()
        raise SandboxUnavailable(f"cannot start the sandbox ({e.filename} missing): {INSTALL_HINT}") from None
    try:
        guard.start(proc)
        return _finish_run(proc, request, limits, tmp_home, guard, t0)
    finally:
        guard.finish()        # (already done on the normal path) the cgroup never outlives the run


def _finish_run(proc: subprocess.Popen, request: dict, limits: Limits, tmp_home: str | None,
                guard: MemoryGuard, t0: float) -> RunResult:
    out = _CappedReader(proc.stdout, limits.result_bytes + 1)
    err = _CappedReader(proc.stderr, 64 * 1024, tail=True)
    out.start()
    err.start()
    try:
        proc.stdin.write(json.dumps(request).encode("utf-8"))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        from .course import kill_group
        kill_group(proc)
    out.join(timeout=30)
    err.join(timeout=30)
    memory = guard.finish()
    if tmp_home:
        shutil.rmtree(tmp_home, ignore_errors=True)
    res = RunResult(status="ok", seconds=time.monotonic() - t0,
                    log_tail=err.data.decode("utf-8", "replace"), log_bytes=err.total, memory=memory)
    if timed_out:
        res.status = f"timeout (the notebook ran longer than {limits.wall_seconds:.0f} s)"
        return res
    if out.total > limits.result_bytes:
        res.status = f"output too large (more than {limits.result_bytes // MiB} MiB)"
        return res
    try:
        reply = json.loads(out.data.decode("utf-8"), parse_int=_parse_int)
        if not isinstance(reply, dict) or not isinstance(reply.get("notebook"), dict):
            raise ValueError("no notebook in the reply")
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        code = proc.returncode
        res.status = (f"no result (sandbox exit {code}: {str(e)[:80]})" if code
                      else f"no result ({str(e)[:80]})")
        if "bwrap:" in res.log_tail or "setpriv:" in res.log_tail:
            res.status += "; the sandbox itself failed: " + res.log_tail.strip().splitlines()[-1][:200]
        return res
    res.notebook = reply["notebook"]
    res.status = str(reply.get("status", "no status"))[:300]
    res.truncated_cells = [int(i) for i in reply.get("truncated_cells", []) if isinstance(i, int)][:10000]
    res.timed_out_cells = [int(i) for i in reply.get("timed_out_cells", []) if isinstance(i, int)][:10000]
    res.killed_processes = int(reply.get("killed_processes", 0)) if isinstance(reply.get("killed_processes"), int) else 0
    res.restarted_after = _ints(reply.get("restarted_after"))
    res.late_display_updates = _ints(reply.get("late_display_updates"))
    hooks = reply.get("hooks_reset")
    if isinstance(hooks, dict):
        for key, what in list(hooks.items())[:10000]:
            if isinstance(key, str) and key.isdigit() and isinstance(what, list):
                res.hooks_reset[int(key)] = [_safe_word(w) for w in what[:50] if isinstance(w, str)]
    return res


def _ints(value) -> list[int]:
    return [int(i) for i in value if type(i) is int][:10000] if isinstance(value, list) else []


def _safe_word(text: str) -> str:
    """A name from the (untrusted) reply, fit for a flag: letters, digits, ``._-``, at most 60 characters."""
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in "._-"))[:60] or "?"


def _parse_int(text: str):
    """An int of the reply; one too long for Python to read (over 4,300 digits) becomes an untagged NaN,
    which the evidence check rejects as malformed: that cell fails, not the student's whole run."""
    return int(text) if len(text.lstrip("-")) <= 4000 else float("nan")


def check_sandbox(limits: Limits | None = None) -> None:
    """Start one tiny sandbox; raise :class:`SandboxUnavailable` with the reason if it cannot run."""
    bwrap_path()
    if not shutil.which("prlimit") or not shutil.which("setpriv"):
        raise SandboxUnavailable("the grading sandbox needs `prlimit` and `setpriv` (Debian package util-linux)")
    limits = limits or Limits()
    inner = [str(Path(sys.prefix).resolve() / "bin" / "python"), "-c", "import course_lib, nbclient; print('sandbox-ok')"]
    cmd = sandbox_command(inner, slot=0, limits=limits, env=sandbox_env())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if proc.returncode != 0 or "sandbox-ok" not in proc.stdout:
        raise SandboxUnavailable("bubblewrap is installed but could not start a sandbox here "
                                 f"(exit {proc.returncode}: {proc.stderr.strip()[-300:]}); on a machine without "
                                 "user namespaces run the grader as root, or pass --no-sandbox "
                                 "(only for trusted submissions)")

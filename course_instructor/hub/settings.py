"""The class on the Hub: who, where, and how they log in (saved as JSON for jupyterhub_config.py)."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SETTINGS_ENV = "COURSE_HUB_SETTINGS"
USER_PYTHONPATH_ENV = "COURSE_HUB_USER_PYTHONPATH"
AUTHENTICATORS = ("pam", "dummy")


class HubError(RuntimeError):
    """The class cannot be set up or served as asked; the message says why."""


@dataclass
class HubSettings:
    instructor: str
    students: list[str]
    state_dir: str = "/srv/rlhf-hub"              # the Hub's database, cookie secret, the roles' configuration
    exchange: str = "/srv/nbgrader/exchange"      # nbgrader's exchange (Exchange.root)
    course_dir: str = ""                          # the instructor's course folder (default ~instructor/rlhf-course)
    course_src: str = str(REPO)                   # copied into course_dir by `setup` when it does not exist
    release_from: str = str(REPO / "dist" / "student" / "notebooks")   # <release_from>/<assignment>/*.ipynb
    student_lib: str = ""                         # on students' PYTHONPATH (the bundle's student course_lib)
    ip: str = "127.0.0.1"
    port: int = 8000
    authenticator: str = "pam"                    # pam (local accounts) | dummy (tests only: one shared password)
    dummy_password: str = ""
    course_id: str = "rlhf-ppo"
    assignment: str = "rlhf_ppo"
    python: str = sys.executable
    extra_env: dict = field(default_factory=dict)  # added to every single-user server's environment

    def __post_init__(self):
        if self.authenticator not in AUTHENTICATORS:
            raise HubError(f"authenticator {self.authenticator!r}: choose one of {', '.join(AUTHENTICATORS)}")
        if self.instructor in self.students:
            raise HubError(f"{self.instructor} cannot be both the instructor and a student")
        if not self.course_dir:
            self.course_dir = str(Path(home_of(self.instructor)) / "rlhf-course") if user_exists(self.instructor) else ""

    # ---- files --------------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    @property
    def settings_file(self) -> Path:
        return self.state / "hub-settings.json"

    def role_dir(self, role: str) -> Path:
        return self.state / "jupyter" / role

    def role_of(self, user: str) -> str:
        return "instructor" if user == self.instructor else "student"

    @property
    def bindir(self) -> Path:
        return Path(self.python).parent

    def save(self) -> Path:
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o755)
        tmp = self.settings_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True), encoding="utf-8")
        os.chmod(tmp, 0o600)        # holds the test password of the dummy authenticator
        os.replace(tmp, self.settings_file)
        return self.settings_file

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HubSettings":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def user_env(self, user: str) -> dict:
        """The environment of ``user``'s single-user server (and of nbgrader commands run for them)."""
        env = {
            "PATH": os.pathsep.join([str(self.bindir), "/usr/local/bin", "/usr/bin", "/bin"]),
            "JUPYTER_CONFIG_PATH": str(self.role_dir(self.role_of(user))),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            **self.extra_env,
        }
        # the Hub's own PYTHONPATH is not passed on (jupyterhub_config.py: env_keep); the tests put their
        # network guard first with COURSE_HUB_USER_PYTHONPATH
        path = [os.environ.get(USER_PYTHONPATH_ENV, "")]
        if self.role_of(user) == "student":
            path.append(self.student_lib)
        if any(path):
            env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
        return env


# ---- users -------------------------------------------------------------------------------
def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def home_of(name: str) -> str:
    return pwd.getpwnam(name).pw_dir


def run_as(user: str, cmd: list[str], env: dict, cwd: str | os.PathLike | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` as the Unix user ``user`` (we are root), with their home and ``env``."""
    pw = pwd.getpwnam(user)
    full = {**env, "HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell or "/bin/sh"}
    return subprocess.run(cmd, env=full, cwd=cwd or pw.pw_dir, user=pw.pw_uid, group=pw.pw_gid,
                          extra_groups=[], capture_output=True, text=True, timeout=timeout)


def chp_path() -> str:
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise HubError("configurable-http-proxy not found: install it with "
                       "`npm install -g configurable-http-proxy` (Node.js >= 18; `bash .ci/run` does it)")
    return found

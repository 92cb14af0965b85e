"""``python -m course_instructor.hub {setup,serve,collect,feedback}`` (as root; see the package docstring)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .exchange import collect, release_feedback
from .settings import SETTINGS_ENV, HubError, HubSettings, chp_path
from .setup import setup

DEFAULT_STATE = "/srv/rlhf-hub"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_instructor.hub",
                                description="A term of the course on JupyterHub (run as root).")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help="the Hub's folder (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="accounts, exchange, the instructor's course, the roles; release the assignment")
    s.add_argument("--instructor", required=True)
    s.add_argument("--students", required=True, help="student user names, separated by spaces or commas")
    s.add_argument("--create-users", action="store_true", help="create missing Unix accounts (useradd -m)")
    s.add_argument("--exchange", default="/srv/nbgrader/exchange")
    s.add_argument("--course-dir", default="", help="the instructor's course folder (default ~INSTRUCTOR/rlhf-course)")
    s.add_argument("--course-src", default=str(Path(__file__).resolve().parents[2]),
                   help="copied into --course-dir when that does not exist yet (default: this repository)")
    s.add_argument("--release-from", default=str(Path(__file__).resolve().parents[2] / "dist" / "student" / "notebooks"),
                   help="the student bundle's notebooks folder (default dist/student/notebooks)")
    s.add_argument("--student-lib", default="", help="a folder put on students' PYTHONPATH (the bundle: dist/student)")
    s.add_argument("--ip", default="127.0.0.1", help="where the Hub listens (default %(default)s; 0.0.0.0 behind TLS)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--authenticator", default="pam", choices=["pam", "dummy"])
    s.add_argument("--python", default=sys.executable,
                   help="the interpreter of the users' servers (default: this one; every user must be able to run it)")
    s.add_argument("--dummy-password", default="", help="dummy authenticator only (tests)")
    sub.add_parser("serve", help="run JupyterHub for the class set up before (foreground)")
    sub.add_parser("collect", help="nbgrader collect, with owners and times from the exchange")
    sub.add_parser("feedback", help="nbgrader generate_feedback and release_feedback")
    args = p.parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise HubError("run as root (the Hub starts each user's server as that user; "
                           "collect and feedback act as the instructor)")
        settings_file = Path(args.state_dir) / "hub-settings.json"
        if args.command == "setup":
            students = [x for x in args.students.replace(",", " ").split() if x]
            st = HubSettings(instructor=args.instructor, students=students, state_dir=args.state_dir,
                             exchange=args.exchange, course_dir=args.course_dir, course_src=args.course_src,
                             release_from=args.release_from,
                             student_lib=args.student_lib, ip=args.ip, port=args.port,
                             authenticator=args.authenticator, dummy_password=args.dummy_password,
                             python=args.python)
            setup(st, create_users=args.create_users)
            print(f"class ready: instructor {st.instructor}, {len(st.students)} students; course {st.course_dir}; "
                  f"exchange {st.exchange}; `{st.assignment}` "
                  f"released. Start the Hub: python -m course_instructor.hub --state-dir {args.state_dir} serve")
            return 0
        if not settings_file.is_file():
            raise HubError(f"no class set up in {args.state_dir}: run `setup` first")
        st = HubSettings.load(settings_file)
        if args.command == "serve":
            chp_path()
            repo = str(Path(__file__).resolve().parents[2])    # for jupyterhub_config.py's import (the Hub only)
            env = {**os.environ, SETTINGS_ENV: str(settings_file),
                   "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH", "")]))}
            cfg = Path(__file__).resolve().parent / "jupyterhub_config.py"
            os.chdir(st.state)
            os.execve(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", str(cfg)], env)
        if args.command == "collect":
            rec = collect(st)
            for sid, r in sorted(rec["collected"].items()):
                print(f"{sid}: submitted {r['exchange']} (their timestamp.txt says {r['claimed'] or 'nothing'})")
            if rec["forged"]:
                print(f"WARNING: folders named after another student, ignored: {', '.join(rec['forged'])}")
            return 0
        if args.command == "feedback":
            print(release_feedback(st)[-2000:])
            return 0
    except HubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A term on a real JupyterHub, driven in a real browser (headless Chromium through Playwright).

The class is set up as ``make hub`` does (``python -m course_instructor.hub setup``
then ``serve``): JupyterHub with configurable-http-proxy (npm), LocalProcessSpawner,
an instructor ``hubprof`` and two students ``hubstu1`` and ``hubstu2`` as Unix
users (created here; their homes are recreated empty at each run), nbgrader's
exchange a real folder (mode 1777), and the assignment released into it by the
instructor from the student bundle's notebooks (``python -m course_instructor.bundle``).
To keep the test to a few minutes the assignment is notebook 1 only.

The test logs in with JupyterHub's DummyAuthenticator (one shared password):
what is under test is nbgrader's exchange, the roles and the Unix
permissions; PAM, the authenticator ``make hub`` uses, would need passwords
for the test accounts in /etc/shadow of the machine running the suite.

1. Both students log in, open Nbgrader > Assignment List and fetch ``rlhf_ppo``;
   hubstu1 writes the solutions into notebook 1 (the contents API of their own
   server, as the editor does when it saves); hubstu2 leaves it as released.
   Both press Submit.
2. hubstu2 then tries to change their submission time (rewrites timestamp.txt
   of their inbound folder to 2000) and to submit in hubstu1's name (a folder
   named ``hubstu1+rlhf_ppo+2099...``).  The collection takes hubstu2's time
   from the exchange (the kernel's ctime of their own folder) and ignores the
   forged folder (owned by hubstu2, named hubstu1).
3. The instructor collects (``nbgrader collect`` + the exchange's owners and
   times), autogrades the collected ``submitted/`` with the sandboxed grader,
   overrides one score of hubstu2 in the Formgrader (notebook 1 has no written
   answer: a manual grade of an autograded cell is the same Formgrader step),
   and releases feedback.
4. Each student presses Fetch Feedback and opens it: their own scores, nobody else's.
5. A student is refused the Formgrader, the instructor's server and files, and
   the other student's server and files.

Screenshots go to build/screenshots/hub-*.png.  Needs root (Unix users, the Hub),
/usr/bin/chromium, configurable-http-proxy and bubblewrap: skipped without them,
a failure under CI.
"""
from __future__ import annotations

import csv
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netguard
from browser_helpers import CHROMIUM, launch_chromium, unavailable
from grading_fixtures import NB1, source, student_notebook
from hub_helpers import kill_user_processes, restore_modes, stop, tail, users_python, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "build" / "screenshots"
ASSIGNMENT = "rlhf_ppo"
INSTRUCTOR, STUDENTS = "hubprof", ["hubstu1", "hubstu2"]
PASSWORD = secrets.token_hex(8)
NB1_POINTS = 10



def _three_free_ports() -> int:
    for _ in range(50):
        base = 20000 + secrets.randbelow(30000)
        ok = True
        for p in range(base, base + 3):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no three free ports in a row")


def _recreate_user(name: str) -> None:
    kill_user_processes([name])
    try:
        pwd.getpwnam(name)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)
    except KeyError:
        pass
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)


def _as(user: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60)


def _hub_env() -> dict:
    env = netguard.guarded_env()
    env["COURSE_HUB_USER_PYTHONPATH"] = str(netguard.GUARDED_SITE)   # the users' servers and kernels too
    return env


def _hub_cli(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "course_instructor.hub", "--state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=timeout, env=_hub_env())
    assert proc.returncode == 0, f"hub {args[0]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if os.geteuid() != 0:
        unavailable("the JupyterHub term test creates Unix users and runs the Hub: run it as root", hint="")
    for what, ok in (("/usr/bin/chromium", CHROMIUM.exists()),
                     ("configurable-http-proxy (npm install -g configurable-http-proxy)",
                      shutil.which("configurable-http-proxy")),
                     ("bubblewrap", shutil.which("bwrap")), ("runuser", shutil.which("runuser")),
                     ("useradd", shutil.which("useradd"))):
        if not ok:
            unavailable(f"{what} not found", hint="")
    t0 = time.time()
    for user in [INSTRUCTOR, *STUDENTS]:
        _recreate_user(user)
    # a folder every user can reach (pytest's tmp folders are root's alone)
    base = Path(f"/tmp/course-hub-test-{secrets.token_hex(4)}")
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    # the course: notebook 1 only; released from the student bundle's copy of it
    src = base / "course-src"
    for folder in ("solutions", "notebooks"):
        (src / folder / ASSIGNMENT).mkdir(parents=True)
        shutil.copy2(REPO / folder / ASSIGNMENT / NB1, src / folder / ASSIGNMENT / NB1)
    shutil.copy2(REPO / "nbgrader_config.py", src)
    dist = base / "dist"
    proc = subprocess.run([sys.executable, "-m", "course_instructor.bundle", "--out", str(dist)],
                          capture_output=True, text=True, timeout=300, env=netguard.guarded_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    release_from = base / "release"
    (release_from / ASSIGNMENT).mkdir(parents=True)
    shutil.copy2(dist / "student" / "notebooks" / ASSIGNMENT / NB1, release_from / ASSIGNMENT / NB1)
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    python, modes = users_python(STUDENTS[0])
    port = _three_free_ports()
    state = base / "state"
    exchange = base / "exchange"
    log = base / "hub.log"
    hub_proc = None
    try:
        _hub_cli(state, "setup", "--instructor", INSTRUCTOR, "--students", " ".join(STUDENTS),
                 "--exchange", str(exchange), "--course-dir", f"/home/{INSTRUCTOR}/rlhf-course",
                 "--course-src", str(src), "--release-from", str(release_from), "--student-lib",
                 str(dist / "student"), "--port", str(port), "--authenticator", "dummy",
                 "--dummy-password", PASSWORD, "--python", python)
        with open(log, "wb") as fh:
            hub_proc = subprocess.Popen([sys.executable, "-m", "course_instructor.hub", "--state-dir", str(state),
                                         "serve"], stdout=fh, stderr=subprocess.STDOUT, env=_hub_env(), cwd=base,
                                        start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/hub/health", 90, hub_proc, log)
        yield {"url": url, "base": base, "state": state, "exchange": exchange, "log": log, "t0": t0,
               "course": Path(f"/home/{INSTRUCTOR}/rlhf-course"), "python": python}
    finally:
        if hub_proc is not None:
            stop(hub_proc)
        kill_user_processes([INSTRUCTOR, *STUDENTS])
        print(f"\n[hub log]\n{tail(log, 30)}")
        shutil.rmtree(base, ignore_errors=True)
        restore_modes(modes)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package is not installed", hint="")
    pw = sync_playwright().start()
    b = launch_chromium(pw)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


# ---- the browser side -------------------------------------------------------------------
def login(browser, hub, user: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    page.goto(f"{hub['url']}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=180_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    return ctx, page


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"hub-{name}.png"))


def open_assignments(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
    page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()
    page.wait_for_selector("#released_assignments_list, .nbgrader-mainarea-widget", timeout=60_000)
    return page.locator(".nbgrader-mainarea-widget")


def api(page, hub, user: str, method: str, path: str, body=None):
    """The user's own server's REST API, with the browser's cookies and its XSRF token."""
    xsrf = next((c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"), "")
    url = f"{hub['url']}/user/{user}/api/{path}"
    kw = {"headers": {"X-XSRFToken": xsrf}}
    if body is not None:
        kw["data"] = json.dumps(body)
        kw["headers"]["Content-Type"] = "application/json"
    return page.request.fetch(url, method=method, **kw)


def grades(course: Path) -> dict[str, dict]:
    with (course / "grades.csv").open(newline="", encoding="utf-8") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


def test_a_term_on_jupyterhub(hub, browser):
    t_start = time.time()
    pages = {}
    # ---- 1. log in, fetch, (solve), submit ----
    for user in STUDENTS:
        ctx, page = login(browser, hub, user)
        pages[user] = (ctx, page)
        widget = open_assignments(page)
        fetch = widget.locator("button", has_text=re.compile(r"^Fetch$")).first
        fetch.wait_for(timeout=60_000)
        shot(page, f"1-{user}-released")
        fetch.click()
        widget.locator("#fetched_assignments_list", has_text=ASSIGNMENT).wait_for(timeout=60_000)
        shot(page, f"2-{user}-fetched")
    r = api(pages["hubstu1"][1], hub, "hubstu1", "GET", f"contents/{ASSIGNMENT}/{NB1}")
    assert r.ok, r.text()
    fetched = r.json()["content"]
    solved = student_notebook(NB1, "all")
    assert [c["id"] for c in fetched["cells"]] == [c["id"] for c in solved["cells"]]
    r = api(pages["hubstu1"][1], hub, "hubstu1", "PUT", f"contents/{ASSIGNMENT}/{NB1}",
            {"type": "notebook", "format": "json", "content": solved})
    assert r.ok, r.text()
    for user in STUDENTS:
        page = pages[user][1]
        widget = page.locator(".nbgrader-mainarea-widget")
        widget.locator("button", has_text=re.compile(r"^Submit$")).first.click()
        widget.locator("#submitted_assignments_list", has_text=ASSIGNMENT).wait_for(timeout=60_000)
        shot(page, f"3-{user}-submitted")

    # ---- 2. hubstu2 tries to move their submission time and to submit in hubstu1's name ----
    inbound = hub["exchange"] / "rlhf-ppo" / "inbound"
    assert oct(inbound.stat().st_mode & 0o7777) == "0o2733"    # students can write, not list
    assert _as("hubstu2", f"ls {inbound}").returncode != 0
    mine = [d for d in inbound.iterdir() if d.name.startswith("hubstu2+")]
    assert len(mine) == 1 and mine[0].stat().st_uid == pwd.getpwnam("hubstu2").pw_uid
    proc = _as("hubstu2", f"chmod u+w '{mine[0]}/timestamp.txt' && "
                          f"echo '2000-01-01 00:00:00.000000 UTC' > '{mine[0]}/timestamp.txt'")
    assert proc.returncode == 0, proc.stderr
    forged = inbound / f"hubstu1+{ASSIGNMENT}+2099-01-01 00:00:00.000000 UTC+forged"
    proc = _as("hubstu2", f"mkdir '{forged}' && cp '{mine[0]}/{NB1}' '{forged}/' && "
                          f"echo '2099-01-01 00:00:00.000000 UTC' > '{forged}/timestamp.txt'")
    assert proc.returncode == 0, proc.stderr

    # ---- 3. the instructor: collect, autograde in sandboxes, the Formgrader, feedback ----
    out = _hub_cli(hub["state"], "collect").stdout
    course = hub["course"]
    times = json.loads((course / "build" / "exchange-times.json").read_text())
    assert set(times["collected"]) == set(STUDENTS), out
    assert times["forged"] == [forged.name]
    assert times["collected"]["hubstu2"]["claimed"].startswith("2000-01-01")
    assert not times["collected"]["hubstu2"]["exchange"].startswith("2000")
    assert times["collected"]["hubstu1"]["folder"].startswith("hubstu1+") and "forged" not in times["collected"]["hubstu1"]["folder"]
    for user in STUDENTS:       # the students' own timestamp.txt is not part of what is graded
        assert not (course / "submitted" / user / ASSIGNMENT / "timestamp.txt").exists()
    collected = json.loads((course / "submitted" / "hubstu1" / ASSIGNMENT / NB1).read_text())
    assert [source(c) for c in collected["cells"]] == [source(c) for c in solved["cells"]]

    t_grade = time.time()
    proc = subprocess.run([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course),
                           "autograde", "--submissions", "submitted", "--jobs", "2", "--timeout", "60"],
                          capture_output=True, text=True, timeout=1200, env=netguard.guarded_env())
    grade_seconds = time.time() - t_grade
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ins = pwd.getpwnam(INSTRUCTOR)
    subprocess.run(["chown", "-R", f"{ins.pw_uid}:{ins.pw_gid}", str(course)], check=True)
    rows = grades(course)
    assert rows["hubstu1"]["total_score"] == str(NB1_POINTS) and rows["hubstu1"]["status"] == "graded"
    assert rows["hubstu2"]["total_score"] == "0"
    assert rows["hubstu1"]["flags"] == "" and rows["hubstu2"]["flags"] == "", rows
    con = sqlite3.connect(course / "build" / "gradebook.db")
    db_times = dict(con.execute("SELECT student.id, submitted_assignment.timestamp FROM submitted_assignment "
                                "JOIN student ON submitted_assignment.student_id = student.id").fetchall())
    con.close()
    assert not str(db_times["hubstu2"]).startswith("2000"), db_times
    for user in STUDENTS:       # the gradebook's submission time is the exchange's record
        assert str(db_times[user])[:19] == times["collected"][user]["exchange"][:19], (db_times, times)

    ctx_i, page_i = login(browser, hub, INSTRUCTOR)
    page_i.goto(f"{hub['url']}/user/{INSTRUCTOR}/formgrader/manage_students/hubstu2/{ASSIGNMENT}")
    page_i.locator("a", has_text=Path(NB1).stem).first.click()
    score = page_i.locator("input.score#ex1-pad-tests")
    score.wait_for(timeout=60_000)
    score.fill("1")
    score.press("Tab")
    shot(page_i, "4-formgrader-override")
    deadline = time.time() + 30
    manual = None
    while time.time() < deadline:
        con = sqlite3.connect(course / "build" / "gradebook.db")
        manual = con.execute("SELECT grade.manual_score FROM grade JOIN base_cell ON grade.cell_id = base_cell.id "
                             "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
                             "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
                             "WHERE base_cell.name = 'ex1-pad-tests' AND submitted_assignment.student_id = "
                             "(SELECT id FROM student WHERE id = 'hubstu2')").fetchone()
        con.close()
        if manual and manual[0] == 1:
            break
        time.sleep(0.5)
    assert manual and manual[0] == 1, manual
    proc = subprocess.run([sys.executable, "-m", "course_instructor.grading", "--course-dir", str(course),
                           "report", "--no-feedback"], capture_output=True, text=True, timeout=300,
                          env=netguard.guarded_env())
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["chown", "-R", f"{ins.pw_uid}:{ins.pw_gid}", str(course)], check=True)
    assert grades(course)["hubstu2"]["total_score"] == "1"
    _hub_cli(hub["state"], "feedback")

    # ---- 4. each student fetches their feedback: their own scores only ----
    expect = {"hubstu1": f"{NB1_POINTS}.0 / {NB1_POINTS}.0", "hubstu2": f"1.0 / {NB1_POINTS}.0"}
    for user in STUDENTS:
        page = pages[user][1]
        widget = page.locator(".nbgrader-mainarea-widget")
        widget.locator("button", has_text="Fetch Feedback").first.click()
        deadline = time.time() + 90
        while True:          # the fetched feedback lands in ~/rlhf_ppo/feedback/<submission time>/
            r = api(page, hub, user, "GET", f"contents/{ASSIGNMENT}/feedback")
            if r.ok and r.json()["content"] or time.time() > deadline:
                break
            time.sleep(1)
        shot(page, f"5-{user}-feedback-fetched")
        assert r.ok, r.text()
        (stamp_dir,) = [x["name"] for x in r.json()["content"]]
        html_path = f"{ASSIGNMENT}/feedback/{stamp_dir}/{Path(NB1).stem}.html"
        page.goto(f"{hub['url']}/user/{user}/files/{html_path}")
        text = page.inner_text("body")
        shot(page, f"6-{user}-feedback")
        assert re.search(r"Score:\s*" + re.escape(expect[user]), text), text[:800]
        other = [u for u in STUDENTS if u != user][0]
        assert other not in page.content() and INSTRUCTOR not in page.content()

    # ---- 5. what a student is refused ----
    page = pages["hubstu1"][1]
    for path, what in ((f"/user/hubstu1/formgrader", "the Formgrader on their own server"),
                       (f"/user/{INSTRUCTOR}/formgrader", "the instructor's Formgrader"),
                       (f"/user/{INSTRUCTOR}/api/contents/rlhf-course", "the instructor's files"),
                       (f"/user/hubstu2/api/contents/{ASSIGNMENT}", "the other student's files"),
                       (f"/user/hubstu2/files/{ASSIGNMENT}/{NB1}", "the other student's notebook")):
        resp = page.request.get(hub["url"] + path, max_redirects=0)
        assert resp.status in (302, 403, 404), f"{what}: HTTP {resp.status}"
        if resp.status == 302:     # to the Hub, which does not grant it
            assert "/hub/" in resp.headers.get("location", ""), f"{what}: {resp.headers}"
    page.goto(f"{hub['url']}/user/{INSTRUCTOR}/lab")
    shot(page, "7-student-refused-instructor-server")
    assert "403" in page.inner_text("body") or "Forbidden" in page.inner_text("body")
    r = api(page, hub, "hubstu1", "GET", "contents/..%2F" + INSTRUCTOR)
    assert r.status in (400, 403, 404)
    # and on the machine itself (a terminal or a kernel of hubstu1): homes are private
    for target in (f"/home/{INSTRUCTOR}/rlhf-course/build/gradebook.db", f"/home/hubstu2/{ASSIGNMENT}/{NB1}"):
        proc = _as("hubstu1", f"cat '{target}'")
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, (target, proc.stderr)
    # the menu of a student has no Formgrader
    page.goto(f"{hub['url']}/user/hubstu1/lab")
    page.wait_for_selector("#jp-main-dock-panel")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
    items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    shot(page, "8-student-menu")
    assert "Assignment List" in items and not any("Formgrader" in i for i in items), items

    for ctx, _ in pages.values():
        ctx.close()
    ctx_i.close()
    total = time.time() - hub["t0"]
    print(f"\n[term on JupyterHub: {total:.0f} s in all ({time.time() - t_start:.0f} s in the browser "
          f"test, autograde {grade_seconds:.0f} s)]")

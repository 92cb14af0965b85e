"""JupyterHub configuration of the course (``make hub``; ``python -m course_instructor.hub serve``).

Everything specific to a class is in the settings file written by
``python -m course_instructor.hub setup`` (path in ``$COURSE_HUB_SETTINGS``):
who the instructor and the students are, the exchange, the authenticator.

* Spawner: LocalProcessSpawner: each user's JupyterLab runs as their own Unix
  user, in their home (0700), with the course's Python environment.  The Hub
  runs as root to start them.
* Proxy: configurable-http-proxy (npm), started and stopped by the Hub.
* Authenticator: PAM (the machine's accounts) for a class; ``dummy`` (one
  shared password) only for the tests.  ``allowed_users`` is the class list.
* Each user's server gets ``JUPYTER_CONFIG_PATH`` of their role
  (:mod:`course_instructor.hub.setup`): the Formgrader for the instructor only.
"""
import os
import sys

from course_instructor.hub.settings import SETTINGS_ENV, HubSettings, chp_path  # noqa: E402

c = get_config()  # noqa: F821
s = HubSettings.load(os.environ[SETTINGS_ENV])

c.JupyterHub.ip = s.ip
c.JupyterHub.port = s.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s.port + 2
c.JupyterHub.db_url = f"sqlite:///{s.state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(s.state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(s.state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True
c.JupyterHub.check_running_servers = False
c.ConfigurableHTTPProxy.command = [chp_path()]
c.ConfigurableHTTPProxy.pid_file = str(s.state / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % (s.port + 1)

# ---- who may log in ----
if s.authenticator == "dummy":
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = s.dummy_password
else:
    c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {s.instructor, *s.students}
c.Authenticator.admin_users = set()          # nobody may enter another user's server through the Hub

# ---- their servers ----
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [s.python, "-m", "jupyterhub.singleuser"]
c.Spawner.env_keep = ["LANG", "LC_ALL", "TZ"]   # not the Hub's PATH nor PYTHONPATH: the users' come from user_env
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.args = ["--ServerApp.shutdown_no_activity_timeout=7200",
                  "--MappingKernelManager.cull_idle_timeout=3600"]


def role_environment(spawner):
    """The role's configuration and the course's environment for this user's server."""
    spawner.environment.update(s.user_env(spawner.user.name))


c.Spawner.pre_spawn_hook = role_environment
c.JupyterHub.log_level = "INFO"
print(f"[course hub] {len(s.students)} students, instructor {s.instructor}, exchange {s.exchange}, "
      f"authenticator {s.authenticator}", file=sys.stderr)

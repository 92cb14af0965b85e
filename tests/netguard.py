"""The network guard of the tests, for the pytest process and for the processes the tests start.

Any connection (or name lookup) to a non-loopback address raises
``RuntimeError("network access attempted ...")``.  Loopback and Unix sockets
stay allowed: notebook kernels, ``torchrun``'s rendezvous and gloo talk
through them.

The pytest process installs it in ``conftest.pytest_configure``.  A process a
test starts (a training command, ``torchrun`` ranks, a papermill kernel) gets
it through ``tests/guarded_site/sitecustomize.py``: put that folder first on
``PYTHONPATH`` (:func:`guarded_env` does) and Python installs the guard at
start-up, before any library is imported.  Two switches, read from the
environment of such a process:

``COURSE_NETGUARD_LOG``  a file that gets one line per refused attempt, so a
                         test sees attempts that a library caught and hid;
``COURSE_NETGUARD_NO_SOCKETS=1``  refuse creating any socket at all, even a
                         loopback one (for commands that must open none).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

GUARDED_SITE = Path(__file__).resolve().parent / "guarded_site"
LOG_ENV = "COURSE_NETGUARD_LOG"
NO_SOCKETS_ENV = "COURSE_NETGUARD_NO_SOCKETS"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_local_host(host) -> bool:
    """True for loopback names/addresses and for the passive (bind) host None/''."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host)
    if host in ("", *_LOCAL_NAMES):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_local_address(family, address) -> bool:
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, (str, bytes)):
        return True  # Unix socket path
    if isinstance(address, tuple) and address:
        return is_local_host(address[0])
    return False


def _refuse(what) -> RuntimeError:
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"pid {os.getpid()}: {what}\n")
    return RuntimeError(f"network access attempted in a test: {what}")


def install(setattr_=setattr, no_sockets: bool = False) -> None:
    """Patch ``socket`` so that remote connections and lookups raise.

    ``setattr_`` is ``setattr`` (a started process keeps the guard for life)
    or a ``pytest.MonkeyPatch``'s ``setattr`` (undone at the end of the
    session).  ``no_sockets`` also refuses creating any socket.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if not is_local_address(self.family, address):
            raise _refuse(f"connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not is_local_address(self.family, address):
            raise _refuse(f"connect_ex to {address!r}")
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not is_local_address(None, address):
            raise _refuse(f"create_connection to {address!r}")
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if not is_local_host(host):
            raise _refuse(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def init(self, *args, **kwargs):
        raise _refuse(f"socket created (args {args!r}) where no socket may be opened")

    setattr_(socket.socket, "connect", connect)
    setattr_(socket.socket, "connect_ex", connect_ex)
    setattr_(socket, "create_connection", create_connection)
    setattr_(socket, "getaddrinfo", getaddrinfo)
    if no_sockets:
        setattr_(socket.socket, "__init__", init)


def guarded_env(base: dict | None = None, log: Path | None = None, no_sockets: bool = False) -> dict:
    """A copy of ``base`` (default ``os.environ``) under which a started Python process installs the guard."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(GUARDED_SITE), *filter(None, [env.get("PYTHONPATH")])])
    if log is not None:
        env[LOG_ENV] = str(log)
    if no_sockets:
        env[NO_SOCKETS_ENV] = "1"
    else:
        env.pop(NO_SOCKETS_ENV, None)
    return env


def attempts(log: Path) -> list[str]:
    """The refused attempts recorded in ``log`` (none when the file does not exist)."""
    log = Path(log)
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []

"""The conftest's network guard: remote connections fail loudly, loopback and Unix sockets work."""
import socket
import threading

import pytest


@pytest.mark.parametrize("address", [("93.184.216.34", 80), ("2606:2800:220:1::", 443), ("huggingface.co", 443)])
def test_remote_connect_is_refused(address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        with pytest.raises(RuntimeError, match="network access attempted in a test"):
            s.connect(address)
        with pytest.raises(RuntimeError, match="network access attempted in a test"):
            s.connect_ex(address)


def test_remote_create_connection_and_lookup_are_refused():
    with pytest.raises(RuntimeError, match="network access attempted in a test: create_connection"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(RuntimeError, match="network access attempted in a test: name lookup of 'huggingface.co'"):
        socket.getaddrinfo("huggingface.co", 443)


def test_hub_download_fails_without_touching_the_network(tmp_path):
    from huggingface_hub import hf_hub_download

    with pytest.raises(Exception) as err:  # offline mode refuses before any socket is opened
        hf_hub_download("lvwerra/gpt2-imdb", "config.json", cache_dir=tmp_path)
    assert "network access attempted" not in str(err.value)
    assert not list(tmp_path.rglob("config.json"))


def test_loopback_works():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted = []
        t = threading.Thread(target=lambda: accepted.append(server.accept()[0].recv(5)))
        t.start()
        with socket.create_connection(("localhost", port), timeout=5) as c:
            c.sendall(b"hello")
        t.join(5)
        assert accepted == [b"hello"]
    assert socket.getaddrinfo("127.0.0.1", 80)


def test_unix_sockets_work():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        a.sendall(b"kernel")
        assert b.recv(6) == b"kernel"


# ---- the same guard in the processes a test starts (tests/guarded_site/sitecustomize.py) ----
def _run_guarded(code: str, tmp_path, no_sockets: bool = False):
    import subprocess
    import sys

    import netguard

    log = tmp_path / "attempts.log"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=netguard.guarded_env(log=log, no_sockets=no_sockets))
    return proc, netguard.attempts(log)


def test_a_started_process_refuses_remote_connections_and_logs_them(tmp_path):
    proc, attempts = _run_guarded(
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('93.184.216.34', 80), timeout=1)\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"  # a library that swallows the error still leaves a line in the log
        "socket.getaddrinfo('huggingface.co', 443)\n", tmp_path)
    assert proc.returncode != 0
    assert "refused: network access attempted in a test: create_connection to ('93.184.216.34', 80)" in proc.stdout
    assert "network access attempted in a test: name lookup of 'huggingface.co'" in proc.stderr
    assert len(attempts) == 2 and "create_connection" in attempts[0] and "huggingface.co" in attempts[1]


def test_a_started_process_keeps_loopback(tmp_path):
    proc, attempts = _run_guarded(
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "c = socket.create_connection(s.getsockname(), timeout=5); c.sendall(b'ok')\n"
        "print(s.accept()[0].recv(2).decode())\n", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok" and attempts == []


def test_no_sockets_mode_refuses_even_a_loopback_socket(tmp_path):
    proc, attempts = _run_guarded("import socket\nsocket.socket()\n", tmp_path, no_sockets=True)
    assert proc.returncode != 0
    assert "where no socket may be opened" in proc.stderr
    assert len(attempts) == 1

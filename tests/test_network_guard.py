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

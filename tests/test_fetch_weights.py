"""scripts/fetch_weights.py against a file server on loopback: verified download, bad checksum, offline."""

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def file_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def weights_named_like_torchvision(folder: Path, payload: bytes) -> str:
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    name = f"resnet18-{prefix}.pth"
    (folder / name).write_bytes(payload)
    return name


def test_downloads_and_verifies_then_reuses(load_script, file_server, tmp_path, capsys):
    fetch_weights = load_script("fetch_weights")
    served, base = file_server
    name = weights_named_like_torchvision(served, b"weights" * 1000)
    out = tmp_path / "models"

    assert fetch_weights.main(["--url", f"{base}/{name}", "--output_dir", str(out)]) == 0
    assert (out / name).read_bytes() == b"weights" * 1000

    (served / name).unlink()  # a second call must not need the server
    assert fetch_weights.main(["--url", f"{base}/{name}", "--output_dir", str(out)]) == 0
    assert "already there" in capsys.readouterr().out


def test_checksum_mismatch_fails_and_leaves_nothing(load_script, file_server, tmp_path, capsys):
    fetch_weights = load_script("fetch_weights")
    served, base = file_server
    (served / "resnet18-00000000.pth").write_bytes(b"not the weights")
    out = tmp_path / "models"

    assert fetch_weights.main(["--url", f"{base}/resnet18-00000000.pth", "--output_dir", str(out)]) == 1
    assert "hash" in capsys.readouterr().err
    assert not (out / "resnet18-00000000.pth").exists()


def test_offline_says_where_to_put_the_file(load_script, tmp_path, capsys):
    fetch_weights = load_script("fetch_weights")
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "models"

    code = fetch_weights.main(["--url", f"http://127.0.0.1:{port}/resnet18-f37072fd.pth", "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(out / "resnet18-f37072fd.pth") in err
    assert "AUTOCLINT_WEIGHTS" in err


def test_default_url_is_torchvisions_resnet18(load_script):
    fetch_weights = load_script("fetch_weights")
    assert fetch_weights.DEFAULT_URL.endswith("/resnet18-f37072fd.pth")
    assert fetch_weights.expected_hash_prefix(fetch_weights.DEFAULT_URL) == "f37072fd"

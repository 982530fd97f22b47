"""The docker_daemon_config module (docker_exporter role), against stand-in endpoints.

The engine's API is a small HTTP server on a Unix socket that answers
GET /info; the metrics endpoint one on a loopback port. The real engine
(reload, restart, containers kept) is the docker_exporter Molecule
scenario's business.
"""

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import docker_daemon_config
import pytest
from conftest import ModuleFailed, free_port, run_module


def handler(status, body):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            payload = body() if callable(body) else body
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

        # A Unix socket's peer address is '': nothing to log or resolve.
        def address_string(self):
            return "unix"

    return Handler


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def serve():
    servers = []

    def start(server):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine(tmp_path, serve):
    """A stand-in engine API; engine.info is what GET /info answers."""

    path = tmp_path / "docker.sock"
    state = SimpleNamespace(info={"LiveRestoreEnabled": False}, socket=str(path))
    serve(UnixHTTPServer(str(path), handler(200, lambda: json.dumps(state.info).encode())))
    return state


@pytest.fixture
def metrics(serve):
    """A stand-in engine metrics endpoint on a free loopback port: its address."""
    server = serve(
        HTTPServer(("127.0.0.1", free_port()), handler(200, b"engine_daemon_engine_info 1\n"))
    )
    return f"127.0.0.1:{server.server_address[1]}"


def run(path, socket, settings, **kwargs):
    return run_module(
        docker_daemon_config,
        {"path": str(path), "settings": settings, "socket": socket, "timeout": 2},
        **kwargs,
    )


def test_merges_keeps_other_settings_and_backs_up(tmp_path, engine):
    path = tmp_path / "daemon.json"
    path.write_text('{"log-driver": "json-file", "live-restore": false}')
    address = f"127.0.0.1:{free_port()}"  # nothing listens there

    result = run(path, engine.socket, {"metrics-addr": address, "live-restore": True})

    assert result["changed"]
    assert json.loads(path.read_text()) == {
        "log-driver": "json-file",
        "live-restore": True,
        "metrics-addr": address,
    }
    assert Path(result["backup_file"]).read_text() == (
        '{"log-driver": "json-file", "live-restore": false}'
    )
    assert (path.stat().st_mode & 0o777) == 0o644
    # What the running engine does: no live-restore yet, no metrics endpoint.
    assert result["live_restore"] is False and result["engine_error"] == ""
    assert result["metrics_answering"] is False
    assert result["metrics_url"] == f"http://{address}/metrics"


def test_a_file_in_place_is_left_alone_and_the_engine_reported(tmp_path, engine, metrics):
    path = tmp_path / "daemon.json"
    text = json.dumps({"live-restore": True, "metrics-addr": metrics, "debug": True}, indent=4)
    path.write_text(text)
    engine.info = {"LiveRestoreEnabled": True}

    result = run(path, engine.socket, {"metrics-addr": metrics, "live-restore": True})

    assert not result["changed"]
    assert path.read_text() == text  # not even reformatted
    assert result["live_restore"] is True
    assert result["metrics_answering"] is True


def test_written_but_never_restarted_shows(tmp_path, engine):
    """A file an interrupted run wrote: in place, yet the endpoint does not answer."""
    address = f"127.0.0.1:{free_port()}"
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"live-restore": True, "metrics-addr": address}))

    result = run(path, engine.socket, {"metrics-addr": address, "live-restore": True})

    assert not result["changed"]
    assert result["metrics_answering"] is False


def test_check_and_diff_mode_write_nothing(tmp_path, engine):
    path = tmp_path / "daemon.json"
    path.write_text('{"log-driver": "json-file"}')

    result = run(
        path,
        engine.socket,
        {"metrics-addr": "0.0.0.0:9323", "live-restore": True},
        check_mode=True,
        diff=True,
    )

    assert result["changed"]
    assert path.read_text() == '{"log-driver": "json-file"}'
    assert '"metrics-addr": "0.0.0.0:9323"' in result["diff"]["after"]
    assert result["diff"]["before"] == '{"log-driver": "json-file"}'
    assert result["metrics_url"] == "http://127.0.0.1:9323/metrics"  # a wildcard, on loopback


def test_a_missing_file_is_created(tmp_path, engine):
    path = tmp_path / "etc-docker" / "daemon.json"

    result = run(path, engine.socket, {"live-restore": True})

    assert result["changed"] and "backup_file" not in result
    assert json.loads(path.read_text()) == {"live-restore": True}
    assert result["metrics_url"] == "" and result["metrics_answering"] is False


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_invalid_file_fails_and_stays(tmp_path, engine, text):
    path = tmp_path / "daemon.json"
    path.write_text(text)

    with pytest.raises(ModuleFailed, match="fix it first"):
        run(path, engine.socket, {"live-restore": True})

    assert path.read_text() == text


def test_an_engine_that_does_not_answer_is_reported(tmp_path):
    path = tmp_path / "daemon.json"

    result = run(path, str(tmp_path / "absent.sock"), {"live-restore": True})

    assert result["live_restore"] is False
    assert result["engine_error"].startswith("FileNotFoundError")

"""The served dashboard stays on this machine: it listens on loopback only and sends no usage statistics."""

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp and tcp6 (hex, kernel byte order)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:
                    found.add(address)
    return found


def test_config_keeps_the_server_local_and_quiet():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost" and config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["enableXsrfProtection"] is True and config["server"]["maxUploadSize"] <= 200


def test_the_running_server_listens_on_loopback_only(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port)],
        cwd=ROOT,
        env=dict(os.environ, CLARC_WORKSPACE=str(tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while not (addresses := _listening_addresses(port)) and time.time() < deadline:
            time.sleep(0.3)
        assert addresses, "the server did not start listening within 60 s"
        loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1
        assert addresses <= loopback, f"listening on {addresses}, not only on loopback"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)

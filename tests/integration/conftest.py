"""Shared fixtures: real zabkeeper server processes on 127.0.0.1, stopped after each test module."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def zabkeeper_bin():
    path = os.environ.get("ZABKEEPER_BIN") or os.path.join(ROOT, "target", "release", "zabkeeper")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run `cargo build --release` first")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(port, cmd, timeout=5.0):
    """Sends a four-letter word and returns the server's whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode()


class Server:
    """One zabkeeper server process."""

    def __init__(self, data_dir=None, port=None, tick_time=200, config_lines=None, log_name="server"):
        self.port = port or free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="zabkeeper-test-")
        self.tick_time = tick_time
        self.config_lines = config_lines
        self.proc = None
        self.log_path = os.path.join(self.data_dir, f"{log_name}.log")

    def args(self):
        if self.config_lines is not None:
            cfg = os.path.join(self.data_dir, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write(f"tickTime={self.tick_time}\n")
                f.write(f"dataDir={self.data_dir}\n")
                f.write(f"clientPort={self.port}\n")
                f.write("clientPortAddress=127.0.0.1\n")
                f.write("4lw.commands.whitelist=*\n")
                for line in self.config_lines:
                    f.write(line + "\n")
            return [zabkeeper_bin(), "server", "--config", cfg]
        return [
            zabkeeper_bin(), "server", "--port", str(self.port), "--data-dir", self.data_dir,
            "--tick-time", str(self.tick_time), "--four-letter-words", "*",
        ]

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if four_letter(self.port, "ruok", timeout=1.0) == "imok":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready on port {self.port}:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    def hosts(self):
        return f"127.0.0.1:{self.port}"

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.cleanup()


@pytest.fixture
def fresh_server():
    s = Server().start()
    yield s
    s.cleanup()


@pytest.fixture
def kazoo_client(server):
    from kazoo.client import KazooClient

    c = KazooClient(hosts=server.hosts(), timeout=10.0)
    c.start(timeout=10)
    yield c
    c.stop()
    c.close()

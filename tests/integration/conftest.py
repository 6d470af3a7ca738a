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


def wait_for(pred, timeout=10.0, what="condition"):
    """Polls `pred` until it holds; fails the test after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rss_mb(pid):
    """A process's resident memory (VmRSS) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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


class ServerProcess:
    """What zabkeeper's and Apache ZooKeeper's test processes share: a client port, a log
    file, and waiting until a four-letter word says the server serves."""

    def wait_for(self, cmd, ready, timeout, pause):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if ready(four_letter(self.port, cmd, timeout=1.0)):
                    return
            except OSError:
                pass
            time.sleep(pause)
        raise RuntimeError(f"{self.name} not ready on port {self.port}:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    def hosts(self):
        return f"127.0.0.1:{self.port}"

    def pause(self):
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


class Server(ServerProcess):
    """One zabkeeper server process."""

    name = "server"

    def __init__(self, data_dir=None, port=None, tick_time=200, config_lines=None, log_name="server",
                 extended_types=True):
        # TTL nodes (extendedTypesEnabled) are on in tests, as for the ApacheZooKeeper
        # fixture; off is the default of both servers.
        self.extended_types = extended_types
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
                # ZooKeeper's default AdminServer binds 0.0.0.0:8080: tests name their own.
                if not any(line.startswith("admin.") for line in self.config_lines):
                    f.write("admin.enableServer=false\n")
                if self.extended_types:
                    f.write("extendedTypesEnabled=true\n")
                for line in self.config_lines:
                    f.write(line + "\n")
            return [zabkeeper_bin(), "server", "--config", cfg]
        return [
            zabkeeper_bin(), "server", "--port", str(self.port), "--data-dir", self.data_dir,
            "--tick-time", str(self.tick_time), "--four-letter-words", "*",
        ] + (["--extended-types"] if self.extended_types else [])

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0):
        self.wait_for("ruok", lambda answer: answer == "imok", timeout, 0.05)

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


def kazoo_session(server):
    """A started kazoo client of `server`, stopped and closed after the test (a generator
    for fixtures)."""
    from kazoo.client import KazooClient

    c = KazooClient(hosts=server.hosts(), timeout=10.0)
    c.start(timeout=10)
    yield c
    c.stop()
    c.close()


@pytest.fixture
def kazoo_client(server):
    yield from kazoo_session(server)


class Ensemble:
    """n participants and m observers on 127.0.0.1, each configured by its own zoo.cfg:
    zabkeeper servers, or (kind="zookeeper") Apache ZooKeeper 3.8 started the same way,
    with `properties` as Java system properties (zabkeeper reads them as zoo.cfg keys).
    `dynamic_version` (a hex zxid) puts the `server.N` lines in a `dynamicConfigFile`
    named for that version (`zoo.cfg.dynamic.<version>`), as ZooKeeper 3.5+ keeps them
    once `reconfigEnabled` is on."""

    def __init__(self, participants=3, observers=0, tick_time=100, extra_lines=None,
                 kind="zabkeeper", properties=None, dynamic_version=None):
        self.kind = kind
        self.root = tempfile.mkdtemp(prefix=f"{kind}-ensemble-")
        total = participants + observers
        self.ids = list(range(1, total + 1))
        self.observers = set(range(participants + 1, total + 1))
        self.ports = {i: (free_port(), free_port(), free_port()) for i in self.ids}
        lines = []
        for i in self.ids:
            client, quorum, election = self.ports[i]
            role = ":observer" if i in self.observers else ""
            lines.append(f"server.{i}=127.0.0.1:{quorum}:{election}{role};127.0.0.1:{client}")
        self.servers = {}
        for i in self.ids:
            d = os.path.join(self.root, f"s{i}")
            os.makedirs(d)
            # clients ask for 10 s sessions: let them have it (tickTime*20 would be 2 s)
            extra = ["initLimit=20", "syncLimit=10", "maxSessionTimeout=10000"]
            if dynamic_version is None:
                extra += lines
            else:
                dynamic = os.path.join(d, f"zoo.cfg.dynamic.{dynamic_version}")
                with open(dynamic, "w") as f:
                    # the version is in the file's name only (ZooKeeper refuses it inside)
                    f.write("".join(line + "\n" for line in lines))
                extra.append(f"dynamicConfigFile={dynamic}")
            if i in self.observers:
                extra.append("peerType=observer")
            if extra_lines is not None:
                extra += extra_lines(i)
            if kind == "zookeeper":
                self.servers[i] = ApacheZooKeeper(
                    data_dir=d, port=self.ports[i][0], tick_time=tick_time, config_lines=extra,
                    myid=i, properties=properties)
                continue
            with open(os.path.join(d, "myid"), "w") as f:
                f.write(f"{i}\n")
            extra += [f"{k}={v}" for k, v in (properties or {}).items()]
            self.servers[i] = Server(data_dir=d, port=self.ports[i][0], tick_time=tick_time,
                                     config_lines=extra, log_name=f"server{i}")

    def start(self, timeout=60):
        for s in self.servers.values():
            s.start(wait=False)
        self.wait_serving(timeout)
        return self

    def mode(self, i):
        try:
            out = four_letter(self.ports[i][0], "srvr", timeout=1.0)
        except OSError:
            return None
        for line in out.splitlines():
            if line.startswith("Mode: "):
                return line[len("Mode: "):].strip()
        return None

    def wait_serving(self, timeout=60, ids=None):
        ids = ids or [i for i in self.ids if self.servers[i].proc and self.servers[i].proc.poll() is None]
        deadline = time.time() + timeout
        while time.time() < deadline:
            modes = {i: self.mode(i) for i in ids}
            if all(m in ("leader", "follower", "observer") for m in modes.values()) and \
                    list(modes.values()).count("leader") == 1:
                return modes
            time.sleep(0.1)
        raise RuntimeError(f"ensemble not serving: {modes}\n" +
                           "\n".join(f"--- server {i}\n{self.servers[i].log()}" for i in ids))

    def leader(self):
        for i in self.ids:
            if self.mode(i) == "leader":
                return i
        return None

    def hosts(self, ids=None):
        return ",".join(f"127.0.0.1:{self.ports[i][0]}" for i in (ids or self.ids))

    def cleanup(self):
        for s in self.servers.values():
            if s.proc and s.proc.poll() is None:
                s.resume()
            s.stop()
        shutil.rmtree(self.root, ignore_errors=True)


ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def apache_zookeeper_available():
    return os.path.exists("/usr/share/java/zookeeper.jar") and shutil.which("java") is not None


def server_kinds():
    """zabkeeper, then Apache ZooKeeper 3.8 as the reference where it is installed: the
    servers a test parametrized over both runs against."""
    return ["zabkeeper"] + (["zookeeper"] if apache_zookeeper_available() else [])


class ApacheZooKeeper(ServerProcess):
    """Apache ZooKeeper 3.8 (Debian's `zookeeper` package), standalone on 127.0.0.1: the
    reference that compatibility tests run against beside zabkeeper."""

    name = "Apache ZooKeeper"

    def __init__(self, tick_time=2000, config_lines=None, extended_types=True, port=None,
                 data_dir=None, myid=None, properties=None):
        self.extended_types = extended_types
        self.port = port or free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="apache-zk-test-")
        self.tick_time = tick_time
        self.config_lines = config_lines or []
        # Java system properties (-Dname=value) beyond extendedTypesEnabled.
        self.properties = properties or {}
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "zookeeper.log")
        if myid is not None:
            with open(os.path.join(self.data_dir, "myid"), "w") as f:
                f.write(f"{myid}\n")

    def start(self, wait=True):
        cfg = os.path.join(self.data_dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime={self.tick_time}\ndataDir={self.data_dir}\nclientPort={self.port}\n"
                    "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n")
            if not any(line.startswith("admin.") for line in self.config_lines):
                f.write("admin.enableServer=false\n")
            for line in self.config_lines:
                f.write(line + "\n")
        # Jars the zookeeper.jar manifest omits: the servlet API for its AdminServer
        # (Jetty), netty-codec and netty-resolver for TLS (NettyServerCnxnFactory), and
        # slf4j-simple so that its log says what went wrong.
        classpath = ZOOKEEPER_CLASSPATH + "".join(
            f":/usr/share/java/{jar}.jar"
            for jar in ["servlet-api", "netty-codec", "netty-resolver", "slf4j-simple"])
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m",
             f"-Dzookeeper.extendedTypesEnabled={'true' if self.extended_types else 'false'}",
             "-Dzookeeper.log.dir=" + self.data_dir]
            + [f"-D{k}={v}" for k, v in self.properties.items()]
            + ["-cp", classpath,
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        # ruok answers imok before sessions are served; srvr shows a Mode then.
        if wait:
            self.wait_for("srvr", lambda answer: "Mode: " in answer, 60, 0.1)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=["zabkeeper", "zookeeper"])
def any_server(request):
    """zabkeeper, then Apache ZooKeeper as the reference (skipped where it is not
    installed: `.ci/run` and `make test` install it)."""
    if request.param == "zookeeper":
        if not apache_zookeeper_available():
            pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
        s = ApacheZooKeeper().start()
    else:
        s = Server().start()
    s.kind = request.param
    yield s
    s.cleanup()

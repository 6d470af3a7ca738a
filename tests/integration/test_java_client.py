"""The plain Java client and Curator 5.4's recipes (Debian's libzookeeper-java and
libcurator-*-java, compiled here with javac) against zabkeeper standalone, a zabkeeper
3-server ensemble, and, as the reference, Apache ZooKeeper 3.8. `java/ZkClients.java` runs:
the plain client's create2 Stat, null data, a data watch, BadVersion, cversion over creates
and deletes, a multi whose container create answers with a Stat, an ephemeral sequential
node; Curator's CRUD and transaction, InterProcessMutex (6 threads on 3 sessions, never two
holders), LeaderLatch (one leader, then a successor), SimpleDistributedQueue (FIFO across
sessions), DistributedAtomicLong and SharedCount, CuratorCache (another session's create,
change, delete), DistributedDoubleBarrier, and service discovery."""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, Ensemble

JARS = ["zookeeper", "zookeeper-jute", "curator-client", "curator-framework", "curator-recipes",
        "curator-x-discovery", "guava", "jackson-core", "jackson-databind", "jackson-annotations",
        "slf4j-api", "slf4j-nop", "netty-handler", "netty-transport", "netty-common",
        "netty-buffer", "netty-codec", "netty-resolver", "netty-transport-native-epoll",
        "netty-transport-native-unix-common", "commons-io", "audience-annotations"]
SOURCE = os.path.join(ROOT, "tests", "integration", "java", "ZkClients.java")
OUT = os.path.join(ROOT, "target", "test-java")


def classpath():
    jars = [f"/usr/share/java/{j}.jar" for j in JARS if os.path.exists(f"/usr/share/java/{j}.jar")]
    return ":".join(jars + [OUT])


def missing():
    if shutil.which("javac") is None:
        return "javac (Debian's default-jdk-headless)"
    for j in ["zookeeper", "curator-recipes", "curator-x-discovery"]:
        if not os.path.exists(f"/usr/share/java/{j}.jar"):
            return f"/usr/share/java/{j}.jar (Debian's libzookeeper-java, libcurator-*-java)"
    return None


pytestmark = pytest.mark.skipif(missing() is not None,
                                reason=f"missing {missing()}; make test installs it as root")


@pytest.fixture(scope="module")
def compiled():
    os.makedirs(OUT, exist_ok=True)
    stale = not os.path.exists(os.path.join(OUT, "ZkClients.class")) or \
        os.path.getmtime(SOURCE) > os.path.getmtime(os.path.join(OUT, "ZkClients.class"))
    if stale:
        for f in glob.glob(os.path.join(OUT, "*.class")):
            os.remove(f)
        subprocess.run(["javac", "-nowarn", "-cp", classpath(), "-d", OUT, SOURCE],
                       check=True, capture_output=True, text=True)
    return OUT


def run_java(hosts):
    p = subprocess.run(["java", "-Xmx256m", "-cp", classpath(), "ZkClients", hosts],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    lines = p.stdout.splitlines()
    assert lines[-1] == "all ok", out
    assert [l for l in lines if l.startswith("ok ")] == [
        "ok plain-client", "ok curator-crud-transaction", "ok lock", "ok leader-latch", "ok queue",
        "ok counters", "ok cache", "ok barrier", "ok discovery"], out


def test_java_client_and_curator_standalone(compiled, any_server):
    run_java(any_server.hosts())


def test_java_client_and_curator_ensemble(compiled):
    e = Ensemble(participants=3).start()
    try:
        run_java(e.hosts())
    finally:
        e.cleanup()

"""The operator surface over HTTP: ZooKeeper's AdminServer (`/commands`, `/commands/<name>`
JSON) against zabkeeper and, as the reference, Apache ZooKeeper 3.8 in the same test; the
Prometheus endpoint (`metricsProvider.className=...PrometheusMetricsProvider`) scraped
with the Prometheus project's own Python parser (Debian's ZooKeeper has no Prometheus
provider jar, so that part runs on zabkeeper only); the AdminServer of a 3-server
ensemble; and the superuser digest."""

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from kazoo.client import KazooClient
from prometheus_client.parser import text_string_to_metric_families

from conftest import (ApacheZooKeeper, Ensemble, Server, apache_zookeeper_available,
                      four_letter, free_port)

PROMETHEUS = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"


def get(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def command(port, name):
    kind, body = get(port, f"/commands/{name}")
    assert kind.startswith("application/json"), kind
    return json.loads(body)


def count_znodes(kz, path="/"):
    return 1 + sum(count_znodes(kz, path.rstrip("/") + "/" + c) for c in kz.get_children(path))


def mntr(port):
    out = {}
    for line in four_letter(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        out[k] = v
    return out


@pytest.fixture(scope="module", params=["zabkeeper", "zookeeper"])
def admin_server(request):
    admin_port = free_port()
    lines = ["admin.enableServer=true", "admin.serverAddress=127.0.0.1",
             f"admin.serverPort={admin_port}"]
    if request.param == "zookeeper":
        if not apache_zookeeper_available():
            pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
        s = ApacheZooKeeper(config_lines=lines).start()
    else:
        s = Server(config_lines=lines, tick_time=2000).start()
    s.kind = request.param
    s.admin_port = admin_port
    deadline = time.time() + 30
    while True:
        try:
            get(admin_port, "/commands/ruok", timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    yield s
    s.cleanup()


@pytest.fixture
def kz(admin_server):
    c = KazooClient(hosts=f"127.0.0.1:{admin_server.port}", timeout=10)
    c.start(timeout=15)
    yield c
    c.stop()
    c.close()


def test_command_list_links_the_commands_monitoring_uses(admin_server):
    _kind, body = get(admin_server.admin_port, "/commands")
    for name in ["monitor", "ruok", "connections", "server_stats", "stats", "dirs",
                 "watches", "watch_summary", "configuration", "environment", "dump",
                 "initial_configuration", "last_snapshot", "observers", "set_trace_mask",
                 "system_properties", "observer_connection_stat_reset"]:
        assert f'<a href="/commands/{name}">{name}</a>' in body, name
    # ZooKeeper 3.8 registers 26 commands, each linked once.
    assert body.count("<a href=") == 26


def test_monitor_matches_mntr_and_counts_what_clients_did(admin_server, kz):
    base = f"/admin-{uuid.uuid4().hex[:8]}"
    kz.create(base, b"x")
    for i in range(3):
        kz.create(f"{base}/c{i}", b"y" * 10)
    kz.create(f"{base}/e", b"", ephemeral=True)
    for name in ["mntr", "monitor"]:
        m = command(admin_server.admin_port, name)
        text = mntr(admin_server.port)
        assert m["command"] == "monitor" and m["error"] is None
        assert m["server_state"] == "standalone"
        assert m["znode_count"] == int(text["zk_znode_count"])
        assert m["ephemerals_count"] == int(text["zk_ephemerals_count"]) >= 1
        # ZooKeeper counts the root twice (its node map holds it as "" and as "/").
        assert m["znode_count"] == count_znodes(kz) + 1
        assert isinstance(m["avg_latency"], float)
        assert m["packets_received"] >= 5
        assert m["open_file_descriptor_count"] > 0
        assert m["uptime"] > 0


def test_connections_watches_and_dump_show_the_live_session(admin_server, kz):
    path = f"/watched-{uuid.uuid4().hex[:8]}"
    kz.create(path, b"x")
    kz.create(path + "/eph", b"", ephemeral=True)
    kz.get(path, watch=lambda e: None)
    session = kz.client_id[0]
    conns = command(admin_server.admin_port, "connections")["connections"]
    mine = [c for c in conns if c.get("session_id") == session]
    assert len(mine) == 1, conns
    assert mine[0]["packets_received"] >= 3 and mine[0]["session_timeout"] == 10000
    assert mine[0]["last_cxid"] >= 3
    watches = command(admin_server.admin_port, "watches")["session_id_to_watched_paths"]
    assert path in watches[str(session)]
    by_path = command(admin_server.admin_port, "watches_by_path")["path_to_session_ids"]
    assert session in by_path[path]
    summary = command(admin_server.admin_port, "watch_summary")
    assert summary["num_total_watches"] >= 1 and summary["num_paths"] >= 1
    dump = command(admin_server.admin_port, "dump")
    assert path + "/eph" in dump["session_id_to_ephemeral_paths"][str(session)]


def test_stats_configuration_and_errors(admin_server, kz):
    kz.exists("/")
    stats = command(admin_server.admin_port, "stats")
    assert stats["command"] == "stats" and stats["error"] is None
    assert stats["server_stats"]["server_state"] == "standalone"
    assert stats["node_count"] >= 4
    # `stat`'s short form of each connection: counts, no session fields.
    assert stats["connections"] and all("session_id" not in c for c in stats["connections"])
    assert any(c["packets_received"] >= 2 for c in stats["connections"])
    conf = command(admin_server.admin_port, "conf")
    assert conf["command"] == "configuration"
    assert conf["client_port"] == admin_server.port and conf["tick_time"] == 2000
    assert conf["data_dir"].endswith("/version-2")
    assert command(admin_server.admin_port, "ruok") == {"command": "ruok", "error": None}
    assert command(admin_server.admin_port, "isro")["read_only"] is False
    assert command(admin_server.admin_port, "gtmk")["tracemask"] == 306
    assert command(admin_server.admin_port, "dirs")["datadir_size"] > 0
    unknown = command(admin_server.admin_port, "no_such_command")
    assert unknown["error"] == "Unknown command: no_such_command"
    with pytest.raises(urllib.error.HTTPError) as e:
        get(admin_server.admin_port, "/elsewhere")
    assert e.value.code == 404


def test_the_commands_beyond_the_four_letter_words(admin_server, kz):
    # initial_configuration: the zoo.cfg text the server was started with.
    with open(f"{admin_server.data_dir}/zoo.cfg") as f:
        assert command(admin_server.admin_port, "icfg")["initial_configuration"] == f.read()
    # last_snapshot: the zxid in hex (no 0x) and seconds; a standalone ZooKeeper takes one
    # at start-up, zabkeeper has none before its first (ZooKeeper's -1 then).
    snap = command(admin_server.admin_port, "last_snapshot")
    assert snap["error"] is None
    if snap["timestamp"] == -1:
        assert admin_server.kind == "zabkeeper" and snap["zxid"] == "ffffffffffffffff"
    else:
        int(snap["zxid"], 16)
        assert abs(snap["timestamp"] - time.time()) < 3600
    # No observers on a standalone server.
    obs = command(admin_server.admin_port, "observers")
    assert (obs["synced_observers"], obs["observers"]) == (0, [])
    assert command(admin_server.admin_port, "orst")["error"] is None
    # set_trace_mask takes traceMask as a query parameter; get_trace_mask reads it back.
    missing = command(admin_server.admin_port, "set_trace_mask")
    assert missing["error"] == "setTraceMask requires long traceMask argument"
    assert command(admin_server.admin_port, "stmk?traceMask=2")["tracemask"] == 2
    assert command(admin_server.admin_port, "gtmk")["tracemask"] == 2
    assert four_letter(admin_server.port, "gtmk").strip() == "2"
    assert command(admin_server.admin_port, "stmk?traceMask=306")["tracemask"] == 306
    props = command(admin_server.admin_port, "system_properties")
    assert props["file.separator"] == "/" and props["error"] is None


def test_stat_reset_zeroes_the_server_counters(admin_server, kz):
    for _ in range(5):
        kz.exists("/")
    assert command(admin_server.admin_port, "server_stats")["server_stats"]["packets_received"] >= 5
    assert command(admin_server.admin_port, "stat_reset")["error"] is None
    after = command(admin_server.admin_port, "server_stats")["server_stats"]
    assert after["packets_received"] <= 1 and after["max_latency"] <= 1, after


@pytest.fixture(scope="module")
def prometheus_server():
    metrics_port = free_port()
    s = Server(config_lines=[f"metricsProvider.className={PROMETHEUS}",
                             "metricsProvider.httpHost=127.0.0.1",
                             f"metricsProvider.httpPort={metrics_port}"]).start()
    s.metrics_port = metrics_port
    yield s
    s.cleanup()


def scrape(port):
    kind, body = get(port, "/metrics")
    assert kind.startswith("text/plain; version=0.0.4"), kind
    samples = {}
    for family in text_string_to_metric_families(body):
        assert family.type == "gauge", family
        for sample in family.samples:
            samples[sample.name] = sample.value
    return samples


def test_prometheus_scrape_has_zookeepers_metric_names_and_live_values(prometheus_server):
    before = scrape(prometheus_server.metrics_port)
    for name in ["znode_count", "ephemerals_count", "num_alive_connections",
                 "packets_received", "packets_sent", "avg_latency", "watch_count",
                 "global_sessions", "open_file_descriptor_count", "uptime",
                 "approximate_data_size", "outstanding_requests"]:
        assert name in before, name
    zk = KazooClient(hosts=f"127.0.0.1:{prometheus_server.port}", timeout=10)
    zk.start(timeout=15)
    try:
        base = f"/prom-{uuid.uuid4().hex[:8]}"
        zk.create(base, b"x")
        zk.create(base + "/e", b"", ephemeral=True)
        zk.get(base, watch=lambda e: None)
        after = scrape(prometheus_server.metrics_port)
        assert after["znode_count"] == before["znode_count"] + 2
        assert after["ephemerals_count"] == before["ephemerals_count"] + 1
        assert after["global_sessions"] == before["global_sessions"] + 1
        assert after["watch_count"] >= 1
        assert after["packets_received"] >= before["packets_received"] + 4
        text = mntr(prometheus_server.port)
        assert after["znode_count"] == float(text["zk_znode_count"])
    finally:
        zk.stop()
        zk.close()
    # No AdminServer was configured beside the metrics: the 4lw still answers.
    assert four_letter(prometheus_server.port, "ruok") == "imok"


def test_ensemble_admin_servers_agree_on_the_leader():
    admin_ports = {}

    def admin_lines(i):
        admin_ports[i] = free_port()
        return ["admin.serverAddress=127.0.0.1", f"admin.serverPort={admin_ports[i]}"]

    e = Ensemble(participants=3, extra_lines=admin_lines)
    try:
        e.start()
        deadline = time.time() + 30
        while True:
            views = {i: command(p, "leader") for i, p in admin_ports.items()}
            if all(v["error"] is None for v in views.values()):
                break
            assert time.time() < deadline, views
            time.sleep(0.2)
        leaders = {v["leader_id"] for v in views.values()}
        assert len(leaders) == 1, views
        (leader,) = leaders
        assert [i for i, v in views.items() if v["is_leader"]] == [leader]
        assert all(v["leader_ip"] == "127.0.0.1" for v in views.values())
        for i, p in admin_ports.items():
            assert len(command(p, "voting_view")["current_config"]) == 3
            z = command(p, "zabstate")
            assert (z["voting"], z["zabstate"]) == (True, "broadcast")
            m = command(p, "monitor")
            assert m["server_state"] == ("leader" if i == leader else "follower")
            assert m["quorum_size"] == 3
    finally:
        e.cleanup()


@pytest.mark.parametrize("kind", ["zabkeeper", "zookeeper"])
def test_super_digest_makes_a_superuser(kind):
    """zoo.cfg's DigestAuthenticationProvider.superDigest (ZooKeeper reads it as the
    system property zookeeper.DigestAuthenticationProvider.superDigest): who adds that
    digest may read and delete any znode, whatever its ACL."""
    import base64
    import hashlib

    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_digest_acl

    digest = base64.b64encode(hashlib.sha1(b"super:s3cret").digest()).decode()
    lines = [f"DigestAuthenticationProvider.superDigest=super:{digest}"]
    if kind == "zookeeper":
        if not apache_zookeeper_available():
            pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
        s = ApacheZooKeeper(config_lines=lines).start()
    else:
        s = Server(config_lines=lines, tick_time=2000).start()
    try:
        owner = KazooClient(hosts=s.hosts(), timeout=10,
                            auth_data=[("digest", "alice:pw")])
        owner.start(timeout=15)
        path = f"/private-{uuid.uuid4().hex[:8]}"
        owner.create(path, b"alice's", acl=[make_digest_acl("alice", "pw", all=True)])
        for auth, allowed in [([("digest", "super:s3cret")], True),
                              ([("digest", "super:wrong")], False), ([], False)]:
            c = KazooClient(hosts=s.hosts(), timeout=10, auth_data=auth)
            c.start(timeout=15)
            if allowed:
                assert c.get(path)[0] == b"alice's"
            else:
                with pytest.raises(NoAuthError):
                    c.get(path)
            c.stop()
            c.close()
        su = KazooClient(hosts=s.hosts(), timeout=10, auth_data=[("digest", "super:s3cret")])
        su.start(timeout=15)
        su.delete(path)
        assert owner.exists(path) is None
        su.stop()
        su.close()
        owner.stop()
        owner.close()
    finally:
        s.cleanup()

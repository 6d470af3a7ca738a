#!/usr/bin/env python3
"""`make jepsen`: a Jepsen-style test of the shipped `zabkeeper server` binary.

Each server runs in a network namespace of its own, joined to the others by a bridge in
a switch namespace; the clients (kazoo, in tests/jepsen/workload.py) run in one more
namespace, connected to every server. A seeded schedule of faults goes on while they
work: partitions (halves, leader isolation, ring, bridge, one-way) made with blackhole
routes inside the namespaces, kill -9 and restart, SIGSTOP/SIGCONT. Then everything is
healed, one last write is made, every server is read alone, and:

- the project's checker (`zabkeeper-check --model zk`) judges the history:
  linearizable writes and conditional writes per key, every read consistent with the
  zxid it was served at (no acknowledged write lost, nothing from the future),
  per-session monotonic zxids across reconnects, read-your-writes, and, with
  `zabkeeper.quorumReads` drawn on, reads and sync-then-reads linearizable;
- no two kazoo Lock holders overlap (a tenure ends at its release or when its session
  stops being known connected);
- every server serves the same data at the end.

It prints a timeline (faults and acknowledged writes per second), the longest gap
without an acknowledged write after each fault and heal, and writes everything under
target/jepsen/seed-<S>-n<N>/. Needs root (it makes network namespaces). Clock steps are
not made: CLOCK_REALTIME is not per namespace on Linux, so a step would move the host's
clock.

    make jepsen SEED=3 NODES=5 TIME=60
    python3 tests/jepsen/jepsen.py --seeds 1..10 --nodes 3 --time 30
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "zabkeeper")
CHECK = os.path.join(ROOT, "target", "release", "zabkeeper-check")
WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.py")
CLIENT_PORT = 2181
# Apache ZooKeeper 3.8 from Debian's package, for the same run as the reference.
ZK_CLASSPATH = ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar"]
                        + [f"/usr/share/java/{j}.jar" for j in ["servlet-api", "netty-codec",
                                                                "netty-resolver", "slf4j-simple"]])


def sh(*args, check=True):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True)


def now():
    return time.monotonic_ns()


class Net:
    """Namespaces: a switch with a bridge, one per server, one for the clients."""

    def __init__(self, n):
        self.tag = f"zj{os.getpid() % 100000}"
        self.n = n
        self.switch = f"{self.tag}sw"
        self.clients = f"{self.tag}c"
        self.made = []
        self.blocked = set()

    def ns(self, i):
        return f"{self.tag}n{i}"

    @staticmethod
    def ip(i):
        return f"10.77.0.{i}"

    def setup(self):
        sh("ip", "netns", "add", self.switch)
        self.made.append(self.switch)
        sh("ip", "-n", self.switch, "link", "set", "lo", "up")
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for k, (ns, ip) in enumerate([(self.ns(i), self.ip(i)) for i in range(1, self.n + 1)]
                                     + [(self.clients, self.ip(100))]):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{k}",
               "netns", self.switch)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", self.switch, "link", "set", f"p{k}", "master", "br0")
            sh("ip", "-n", self.switch, "link", "set", f"p{k}", "up")

    def block(self, i, j):
        """Drops what server i sends to server j (one way)."""
        if (i, j) not in self.blocked:
            sh("ip", "-n", self.ns(i), "route", "add", "blackhole", f"{self.ip(j)}/32")
            self.blocked.add((i, j))

    def cut(self, a, b):
        for i in a:
            for j in b:
                self.block(i, j)
                self.block(j, i)

    def heal(self):
        for i, j in sorted(self.blocked):
            sh("ip", "-n", self.ns(i), "route", "del", "blackhole", f"{self.ip(j)}/32", check=False)
        self.blocked.clear()

    def teardown(self):
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made.clear()


class Node:
    def __init__(self, net, i, root, quorum_reads, server):
        self.net, self.i, self.server = net, i, server
        self.dir = os.path.join(root, f"n{i}")
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "myid"), "w") as f:
            f.write(f"{i}\n")
        self.cfg = os.path.join(self.dir, "zoo.cfg")
        lines = ["tickTime=500", "initLimit=10", "syncLimit=5", f"dataDir={self.dir}",
                 f"clientPort={CLIENT_PORT}", f"clientPortAddress={net.ip(i)}",
                 "4lw.commands.whitelist=*", "admin.enableServer=false", "forceSync=yes",
                 "maxSessionTimeout=20000"]
        if quorum_reads and server == "zabkeeper":
            lines.append("zabkeeper.quorumReads=true")
        for j in range(1, net.n + 1):
            lines.append(f"server.{j}={net.ip(j)}:2888:3888;{net.ip(j)}:{CLIENT_PORT}")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(self.dir, "server.log")
        self.proc = None
        self.paused = False

    def start(self):
        log = open(self.log, "a")
        # `ip netns exec` execs the server: its pid is the server's.
        if self.server == "zookeeper":
            cmd = ["java", "-Xmx512m", f"-Dzookeeper.log.dir={self.dir}", "-cp", ZK_CLASSPATH,
                   "org.apache.zookeeper.server.quorum.QuorumPeerMain", self.cfg]
        else:
            cmd = [BIN, "server", "--config", self.cfg]
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.net.ns(self.i)] + cmd,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
                self.paused = False
            self.proc.kill()
            self.proc.wait(10)

    def pause(self):
        if self.alive() and not self.paused:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.alive() and self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    def stop(self):
        if self.alive():
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def four_letter(net, i, word):
    """A four-letter word to server i, from the clients' namespace."""
    script = (f"exec 3<>/dev/tcp/{net.ip(i)}/{CLIENT_PORT} && echo {word} >&3 && "
              "timeout 2 cat <&3")
    r = sh("ip", "netns", "exec", net.clients, "timeout", "3", "bash", "-c", script, check=False)
    return r.stdout


def mode(net, i):
    for line in four_letter(net, i, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[6:].strip()
    return None


def leader(net, nodes):
    for i in nodes:
        if nodes[i].alive() and not nodes[i].paused and mode(net, i) == "leader":
            return i
    return None


def wait_serving(net, nodes, timeout):
    deadline = time.time() + timeout
    modes = {}
    while time.time() < deadline:
        modes = {i: mode(net, i) for i in nodes}
        if list(modes.values()).count("leader") == 1 and all(
                m in ("leader", "follower") for m in modes.values()):
            return modes
        time.sleep(0.2)
    raise RuntimeError(f"the ensemble did not serve within {timeout} s: {modes}")


FAULTS = ["halves", "isolate-leader", "ring", "bridge", "one-way", "kill", "pause-leader", "pause"]


def apply_fault(kind, rng, net, nodes):
    """Starts fault `kind`; returns what it did, for the timeline and the heal."""
    ids = sorted(nodes)
    n = len(ids)
    if kind == "halves":
        s = ids[:]
        rng.shuffle(s)
        a, b = s[: n // 2], s[n // 2:]
        net.cut(a, b)
        return {"cut": [a, b]}
    if kind in ("isolate-leader", "one-way", "pause-leader"):
        lead = leader(net, nodes) or rng.choice(ids)
        others = [i for i in ids if i != lead]
        if kind == "isolate-leader":
            net.cut([lead], others)
            return {"isolated": lead}
        if kind == "one-way":
            for j in others:  # the leader still sends, but hears nobody
                net.block(j, lead)
            return {"deaf": lead}
        nodes[lead].pause()
        return {"paused": lead}
    if kind == "ring":
        # each server hears only its neighbours (with 3 servers that is everyone: then
        # one link is cut instead)
        if n < 5:
            a, b = rng.sample(ids, 2)
            net.cut([a], [b])
            return {"cut": [[a], [b]]}
        for k, i in enumerate(ids):
            for m, j in enumerate(ids):
                if i != j and (k - m) % n not in (1, n - 1):
                    net.block(i, j)
        return {"ring": ids}
    if kind == "bridge":
        s = ids[:]
        rng.shuffle(s)
        mid = n // 2
        a, bridge, b = s[:mid], s[mid], s[mid + 1:]
        net.cut(a, b)
        return {"cut": [a, b], "bridge": bridge}
    if kind == "kill":
        victim = (leader(net, nodes) if rng.random() < 0.5 else None) or rng.choice(ids)
        nodes[victim].kill()
        return {"killed": victim}
    victim = rng.choice(ids)
    nodes[victim].pause()
    return {"paused": victim}


def heal(net, nodes):
    net.heal()
    for node in nodes.values():
        node.resume()
        if not node.alive():
            node.start()


def check_locks(path):
    tenures = []
    if os.path.exists(path):
        with open(path) as f:
            tenures = [json.loads(line) for line in f if line.strip()]
    tenures.sort(key=lambda t: t["acquired"])
    overlaps = []
    for a, b in zip(tenures, tenures[1:]):
        if b["acquired"] < a["released"]:
            overlaps.append((a, b))
    return len(tenures), overlaps


def write_gaps(history, faults, t0):
    """Per fault: the first acknowledged write after it began and after its heal, and
    the longest stretch without one from its start until the next fault."""
    acks = sorted(ev["time"] for ev in history
                  if ev["type"] == "ok" and ev["f"] in ("setData", "create") and not ev.get("error"))
    out = []
    for k, f in enumerate(faults):
        start, healed = f["start"], f["healed"]
        until = faults[k + 1]["start"] if k + 1 < len(faults) else (acks[-1] if acks else healed)
        inside = [t for t in acks if start <= t <= until]
        first = next((t for t in acks if t >= start), None)
        first_after_heal = next((t for t in acks if t >= healed), None)
        points = [start] + inside + [until]
        longest = max((b - a for a, b in zip(points, points[1:])), default=0)
        out.append({"fault": f["kind"], "detail": f["detail"],
                    "at_s": round((start - t0) / 1e9, 1),
                    "first_ack_after_start_ms": None if first is None else round((first - start) / 1e6),
                    "first_ack_after_heal_ms": None if first_after_heal is None
                    else round((first_after_heal - healed) / 1e6),
                    "longest_gap_ms": round(longest / 1e6)})
    return out


def timeline(history, faults, t0, t_end):
    per_s = {}
    for ev in history:
        if ev["type"] == "ok" and ev["f"] == "setData" and not ev.get("error"):
            s = int((ev["time"] - t0) / 1e9)
            per_s[s] = per_s.get(s, 0) + 1
    lines = []
    marks = {}
    for f in faults:
        marks.setdefault(int((f["start"] - t0) / 1e9), []).append(f"{f['kind']} {f['detail']}")
        marks.setdefault(int((f["healed"] - t0) / 1e9), []).append("heal")
    for s in range(0, int((t_end - t0) / 1e9) + 1):
        n = per_s.get(s, 0)
        lines.append(f"{s:4d}s {n:5d} {'#' * min(60, n // 5):<60} {'; '.join(marks.get(s, []))}")
    return "\n".join(lines)


def run(seed, n, seconds, out_root, keep, server="zabkeeper"):
    rng = random.Random(seed)
    # drawn for both servers, so that the fault schedule is the same; ZooKeeper has no
    # quorum reads (a sync then a read is not linearizable there: ZOOKEEPER-1675)
    quorum_reads = rng.random() < 0.5 and server == "zabkeeper"
    out = os.path.join(out_root, f"seed-{seed}-n{n}" + ("" if server == "zabkeeper" else f"-{server}"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    work = tempfile.mkdtemp(prefix="zabkeeper-jepsen-")
    net = Net(n)
    nodes = {}
    workload = None
    result = {"seed": seed, "nodes": n, "seconds": seconds, "quorum_reads": quorum_reads,
              "server": server}
    try:
        net.setup()
        nodes = {i: Node(net, i, work, quorum_reads, server) for i in range(1, n + 1)}
        for node in nodes.values():
            node.start()
        wait_serving(net, nodes, 60)
        history_path = os.path.join(out, "history.jsonl")
        locks_path = os.path.join(out, "locks.jsonl")
        hosts = ",".join(f"{net.ip(i)}:{CLIENT_PORT}" for i in nodes)
        py = sys.executable
        args = ["ip", "netns", "exec", net.clients, py, WORKLOAD, "--hosts", hosts, "--history",
                history_path, "--locks", locks_path, "--seconds", str(seconds), "--seed", str(seed)]
        if quorum_reads:
            args.append("--quorum-reads")
        wl_log = open(os.path.join(out, "workload.log"), "w")
        workload = subprocess.Popen(args, stdout=wl_log, stderr=subprocess.STDOUT, text=True)
        # the faults begin once the keys exist
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(os.path.join(out, "workload.log")) as f:
                if "keys created" in f.read():
                    break
            if workload.poll() is not None:
                raise RuntimeError("the workload stopped before it began: see workload.log")
            time.sleep(0.1)
        t0 = now()
        end = t0 + int(seconds * 1e9)
        faults = []
        time.sleep(2)
        while now() < end - int(4e9):
            kind = rng.choice(FAULTS)
            start = now()
            detail = apply_fault(kind, rng, net, nodes)
            print(f"  {(start - t0) / 1e9:5.1f}s {kind} {detail}", flush=True)
            time.sleep(rng.uniform(2, 5))
            heal(net, nodes)
            faults.append({"kind": kind, "detail": detail, "start": start, "healed": now()})
            time.sleep(rng.uniform(2, 4))
        heal(net, nodes)
        workload.wait(timeout=seconds + 180)
        wl_log.close()
        t_end = now()
        wait_serving(net, nodes, 60)
        final = sh("ip", "netns", "exec", net.clients, py, WORKLOAD, "--final", "--hosts", hosts,
                   "--history", history_path, check=False)
        if final.returncode != 0:
            raise RuntimeError(f"final reads failed: {final.stderr[-2000:]}")
        served = json.loads(final.stdout.strip().splitlines()[-1])
        agree = len({json.dumps(v, sort_keys=True) for v in served.values()}) == 1
        zxids = {i: next((l for l in four_letter(net, i, "srvr").splitlines()
                          if l.startswith("Zxid:")), "?") for i in nodes}
        with open(os.path.join(out, "faults.jsonl"), "w") as f:
            for x in faults:
                f.write(json.dumps(x) + "\n")
        with open(history_path) as f:
            history = [json.loads(line) for line in f if line.strip()]
        check = sh(CHECK, "--model", "zk", "--json", "--html", os.path.join(out, "timeline.html"),
                   "--time-limit", "120", history_path, check=False)
        try:
            verdict = json.loads(check.stdout)
        except json.JSONDecodeError:
            verdict = {"error": check.stdout[-2000:] + check.stderr[-2000:]}
        lock_count, overlaps = check_locks(locks_path)
        gaps = write_gaps(history, faults, t0)
        oks = sum(1 for ev in history if ev["type"] == "ok")
        infos = sum(1 for ev in history if ev["type"] == "info")
        valid = check.returncode == 0
        result.update({
            "ops_ok": oks, "ops_info": infos, "faults": len(faults), "checker_ok": valid,
            "lock_tenures": lock_count, "lock_overlaps": len(overlaps), "servers_agree": agree,
            "zxids": zxids, "gaps": gaps, "checker": verdict,
            "passed": valid and not overlaps and agree,
        })
        report = [f"jepsen of {server}: seed {seed}, {n} servers, {seconds:.0f} s, "
                  f"quorumReads={'on' if quorum_reads else 'off'}",
                  f"operations: {oks} ok, {infos} unknown; faults: {len(faults)}",
                  f"checker (zk model): {'valid' if valid else 'NOT VALID'}"
                  f"{'' if valid else ': ' + check.stdout[-3000:]}",
                  f"locks: {lock_count} tenures, {len(overlaps)} overlapping",
                  f"servers agree at the end: {agree} ({zxids})",
                  "", "fault                 at s  first ack after start / heal ms  longest gap ms"]
        for g in gaps:
            report.append(f"{g['fault']:<20} {g['at_s']:5.1f}  {str(g['first_ack_after_start_ms']):>12} / "
                          f"{str(g['first_ack_after_heal_ms']):<12}  {g['longest_gap_ms']:>8}")
        report += ["", "acknowledged setData per second (faults marked):",
                   timeline(history, faults, t0, t_end)]
        with open(os.path.join(out, "report.txt"), "w") as f:
            f.write("\n".join(report) + "\n")
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        print("\n".join(report[:5 + len(gaps) + 2]), flush=True)
        return result
    finally:
        if workload and workload.poll() is None:
            workload.kill()
        for node in nodes.values():
            node.stop()
        for node in nodes.values():
            for name in ("server.log", "zookeeper.log"):
                if os.path.exists(os.path.join(node.dir, name)):
                    shutil.copy(os.path.join(node.dir, name),
                                os.path.join(out, f"server{node.i}-{name}"))
        net.teardown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def seeds_arg(s):
    if ".." in s:
        a, b = s.split("..")
        return list(range(int(a), int(b)))
    return [int(x) for x in s.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=seeds_arg, default=[1], help="N, N,M or A..B (B excluded)")
    p.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    p.add_argument("--time", type=float, default=60.0, help="seconds of workload per seed")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "jepsen"))
    p.add_argument("--keep", action="store_true", help="keep the servers' data dirs")
    p.add_argument("--servers", default="zabkeeper",
                   help="zabkeeper, zookeeper (Apache ZooKeeper 3.8 from Debian's package) or "
                        "both: zookeeper,zabkeeper, each seed on each in that order")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("jepsen: needs root to make network namespaces (ip netns)")
    for b in (BIN, CHECK):
        if not os.path.exists(b):
            sys.exit(f"jepsen: {b} is missing: cargo build --release --workspace")
    servers = args.servers.split(",")
    if "zookeeper" in servers and not os.path.exists("/usr/share/java/zookeeper.jar"):
        sys.exit("jepsen: --servers zookeeper needs Debian's zookeeper package")
    results = []
    for seed in args.seeds:
        for server in servers:
            print(f"{server}: seed {seed}, {args.nodes} servers, {args.time:.0f} s", flush=True)
            results.append(run(seed, args.nodes, args.time, args.out, args.keep, server))
    failed = [(r["server"], r["seed"]) for r in results if not r.get("passed")]
    print(f"\n{len(results) - len(failed)}/{len(results)} runs passed"
          + (f"; failed: {failed}" if failed else ""))
    print("write gaps per fault (ms): the longest stretch without an acknowledged write from "
          "the fault's start to the next fault, and the first acknowledgement after the heal")
    for server in servers:
        gaps = [g for r in results if r["server"] == server for g in r.get("gaps", [])]
        for kind in FAULTS:
            ys = sorted(g["longest_gap_ms"] for g in gaps if g["fault"] == kind)
            xs = sorted(g["first_ack_after_heal_ms"] for g in gaps
                        if g["fault"] == kind and g["first_ack_after_heal_ms"] is not None)
            if ys:
                print(f"  {server:<9} {kind:<15} {len(ys):3d}x  longest gap min/median/max "
                      f"{ys[0]}/{ys[len(ys) // 2]}/{ys[-1]}"
                      + (f"; after heal median/max {xs[len(xs) // 2]}/{xs[-1]}" if xs else ""))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

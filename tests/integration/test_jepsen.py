"""A short run of the Jepsen-style harness (tests/jepsen/jepsen.py, `make jepsen`) in
CI: real `zabkeeper server` processes in network namespaces of their own, seeded
partitions, kills and pauses, kazoo clients, and the checker's verdict. Needs root (CI
runs as root); the long runs are `make jepsen`."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JEPSEN = os.path.join(ROOT, "tests", "jepsen", "jepsen.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.mark.parametrize("seed,nodes", [(1, 3), (2, 5)])
def test_a_short_jepsen_run_passes(seed, nodes, tmp_path):
    out = subprocess.run([sys.executable, JEPSEN, "--seeds", str(seed), "--nodes", str(nodes),
                          "--time", "15", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    with open(tmp_path / "summary.json") as f:
        (result,) = json.load(f)
    # it did something: operations were acknowledged, faults happened, the checker ran
    assert result["passed"] and result["checker_ok"], result
    assert result["ops_ok"] > 200 and result["faults"] >= 1, result
    assert result["servers_agree"] and result["lock_overlaps"] == 0, result
    assert (tmp_path / f"seed-{seed}-n{nodes}" / "report.txt").exists()

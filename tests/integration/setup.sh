#!/usr/bin/env bash
# Sets up what the real-process tests need, so `make test` works on a fresh machine:
# - Python packages (kazoo, pytest, prometheus_client) in a virtualenv under target/test-venv;
# - node-zookeeper-client 1.1.3 from npm under target/test-node (Node.js and npm from
#   Debian when they are missing);
# - Debian's `zookeeper` package (zkCli.sh and Apache ZooKeeper 3.8, the reference server),
#   `zookeeper-bin` (the C client's cli_mt), a JDK to run ZooKeeper and to compile the
#   Java client test, and Curator 5.4's jars (`libcurator-recipes-java`,
#   `libcurator-discovery-java`), and iproute2 as root (network namespaces for the
#   Jepsen-style run), installed with apt-get when running as root; otherwise the
#   missing piece is named and the step fails.
# Prints the virtualenv's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/test-venv
PY=${PYTHON:-python3}

need_apt=()
[ -x /usr/share/zookeeper/bin/zkCli.sh ] || need_apt+=(zookeeper)
[ -x /usr/lib/zookeeper/bin/cli_mt ] || need_apt+=(zookeeper-bin)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
# javac and Curator's jars for test_java_client.py (the plain Java client is zookeeper's)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/curator-recipes.jar ] || need_apt+=(libcurator-recipes-java)
[ -f /usr/share/java/curator-x-discovery.jar ] || need_apt+=(libcurator-discovery-java)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# `ip netns` for the Jepsen-style run (test_jepsen.py, make jepsen), which runs as root only
[ "$(id -u)" != 0 ] || command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${need_apt[*]}" >&2
    echo "setup: install them (sudo apt-get install ${need_apt[*]}) and run make test again" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  mkdir -p target
  "$PY" -m venv "$VENV" >&2
fi
if ! "$VENV/bin/python" -c 'import kazoo, pytest, prometheus_client' >/dev/null 2>&1; then
  echo "setup: installing kazoo, pytest and prometheus_client into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check kazoo pytest prometheus_client >&2
fi
NODE_DIR=target/test-node
if [ ! -d "$NODE_DIR/node_modules/node-zookeeper-client" ]; then
  echo "setup: installing node-zookeeper-client into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" node-zookeeper-client@1.1.3 >&2
fi
echo "$VENV/bin/python"

#!/usr/bin/env bash
# make bench: every benchmark of the project, in one go, on this machine.
#   bench/dataplane.sh  the builtin data plane against no proxy, nginx, haproxy and caddy
#   bench/control.py    the control plane over nginx: PUT at 1, 1,000 and 10,000 proxies
#   bench/discovery.py  registry sync and health checking at scale
# Each prints its own summary; ratios are taken within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bench/dataplane.sh
/usr/bin/python3 bench/control.py
/usr/bin/python3 bench/discovery.py

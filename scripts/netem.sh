#!/usr/bin/env bash
# Runs TestNetworkLatency's workloads with the three nodes inside a private
# network namespace whose loopback has netem delay and loss, as issue 13
# asks: real packet loss, which the fault proxy's userspace delay cannot
# give. Needs root (or unprivileged user namespaces), ip(8), tc(8), and a
# kernel with sch_netem.
#
#   scripts/netem.sh zone    # 1 ms ± 0.2 ms, 0.5 % loss, each way
#   scripts/netem.sh cross   # 10 ms ± 2 ms
#
# Extra arguments go to go test (e.g. -latency.load 10m).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:?usage: scripts/netem.sh zone|cross [go test flags]}
shift
case "$profile" in
  zone)  netem="delay 1ms 0.2ms loss 0.5%" ;;
  cross) netem="delay 10ms 2ms" ;;
  *) echo "unknown profile $profile: zone or cross" >&2; exit 2 ;;
esac
go test -c -o /tmp/logx-netem.test .
# The namespace's own loopback carries every connection (127.0.0.0/8).
exec unshare -rn bash -c '
  set -euo pipefail
  ip link set lo up
  if ! tc qdisc add dev lo root netem '"$netem"' 2>/tmp/logx-netem.err; then
    echo "netem: $(cat /tmp/logx-netem.err): this kernel has no sch_netem; nothing measured" >&2
    exit 3
  fi
  tc qdisc show dev lo
  # The proxy adds no delay of its own: netem is the network.
  exec /tmp/logx-netem.test -test.run "^TestNetworkLatency$" -test.v -latency.profile netem "$@"
' bash "$@"

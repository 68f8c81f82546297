#!/bin/sh
# Ready program of the provisioner and controller instances: succeeds while
# the daemon's systemd unit is active (in NIGHTSHIFT_TEST_MODE=1, while the
# locally started process lives) and has kept running for a few seconds, so a
# daemon that exits at once on a bad flag or an unreachable broker fails the
# boot instead of passing it.
# Usage: daemon-ready.sh provisioner|controller
set -eu
daemon=${1:?usage: daemon-ready.sh provisioner|controller}
if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  pidf=${NIGHTSHIFT_HOME:?}/runs/${NIGHTSHIFT_RUN:?}/prod/$daemon/pid
  pid=$(cat "$pidf")
  kill -0 "$pid" 2>/dev/null || { echo "$daemon (pid $pid) is not running" >&2; exit 1; }
  # Seconds since start from /proc: ticks since boot vs uptime.
  start=$(awk '{print $22}' "/proc/$pid/stat")
  up=$(awk '{print int($1)}' /proc/uptime)
  age=$((up - start / $(getconf CLK_TCK)))
else
  unit=nightshift-$daemon
  systemctl is-active --quiet "$unit" || { echo "$unit is not active" >&2; systemctl status --no-pager "$unit" >&2 || true; exit 1; }
  since=$(systemctl show -p ActiveEnterTimestampMonotonic --value "$unit")
  now=$(awk '{print int($1)}' /proc/uptime)
  age=$((now - since / 1000000))
fi
[ "$age" -ge 3 ] || { echo "$daemon up for ${age}s; waiting until it has lasted 3s" >&2; exit 1; }

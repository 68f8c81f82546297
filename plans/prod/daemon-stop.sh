#!/bin/sh
# Terminate program of the provisioner and controller instances: stops the
# daemon before its instance is terminated, so it does not launch workers
# while the run is torn down. An absent daemon is fine.
# Usage: daemon-stop.sh provisioner|controller
set -eu
daemon=${1:?usage: daemon-stop.sh provisioner|controller}
if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  pidf=${NIGHTSHIFT_HOME:?}/runs/${NIGHTSHIFT_RUN:?}/prod/$daemon/pid
  [ -s "$pidf" ] || exit 0
  pid=$(cat "$pidf")
  kill "$pid" 2>/dev/null || exit 0
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
$sudo systemctl stop "nightshift-$daemon" 2>/dev/null || true

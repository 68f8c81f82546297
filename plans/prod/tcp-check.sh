#!/usr/bin/env bash
# Ready program run on the launching machine (ec2 ready_local = true):
# succeeds when HOST:PORT accepts a TCP connection within 3 seconds.
# Usage: tcp-check.sh HOST PORT
set -euo pipefail
host=${1:?usage: tcp-check.sh HOST PORT} port=${2:?usage: tcp-check.sh HOST PORT}
if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null; then
  exit 0
fi
echo "no TCP answer from $host:$port yet" >&2
exit 1

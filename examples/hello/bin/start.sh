#!/bin/sh
# Boot program: start hellod detached (its own session, so it outlives this
# script and the launch), wait for the port it chose, and export it.
# Usage: start.sh NAME GREETING [UPSTREAM_URL]
set -eu
name=$1 greeting=$2 upstream=${3:-}
dir=$(pwd)
rm -f "$dir/$name.port"
hellod=$(dirname "$0")/hellod.sh
# Build in the foreground so a compile error fails the boot step with its output.
"$hellod" version >/dev/null
if [ -n "$upstream" ]; then
  setsid "$hellod" serve --port-file "$dir/$name.port" --pid-file "$dir/$name.pid" \
    --greeting "$greeting" --upstream "$upstream" >>"$dir/$name.log" 2>&1 </dev/null &
else
  setsid "$hellod" serve --port-file "$dir/$name.port" --pid-file "$dir/$name.pid" \
    --greeting "$greeting" >>"$dir/$name.log" 2>&1 </dev/null &
fi
i=0
while [ ! -s "$dir/$name.port" ]; do
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then echo "$name did not report a port; see $dir/$name.log" >&2; exit 1; fi
  sleep 0.1
done
port=$(cat "$dir/$name.port")
pid=$(cat "$dir/$name.pid")
echo "$name listening on 127.0.0.1:$port (pid $pid)"
printf '{"port": %s, "pid": %s, "pid_file": "%s"}\n' "$port" "$pid" "$dir/$name.pid" >"$NIGHTSHIFT_OUTPUT"

#!/bin/sh
# Starts a child, records both pids in $1 (written atomically via rename),
# then blocks: the test kills us and checks /proc that both are gone.
sleep 300 &
child=$!
echo "$$ $child" >"$1.tmp"
mv "$1.tmp" "$1"
wait

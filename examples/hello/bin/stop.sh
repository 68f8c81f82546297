#!/bin/sh
# Terminate program: stop the daemon whose pid file the boot exported.
# Usage: stop.sh PID_FILE
set -eu
exec "$(dirname "$0")/hellod.sh" stop --pid-file "$1"

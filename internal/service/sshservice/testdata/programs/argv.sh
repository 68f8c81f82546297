#!/bin/sh
# Records its arguments and $INJ NUL-separated into the dir named by $1,
# so the test can compare byte for byte what arrived on the remote side.
out=$1
shift
printf '%s\0' "$@" >"$out/argv"
printf '%s' "$INJ" >"$out/env"
pwd >"$out/pwd"

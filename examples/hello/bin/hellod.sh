#!/bin/sh
# Runs hellod, building it first when the binary is missing or older than its
# source. Concurrent boots build into a temporary name and rename, so two
# services of one level never see a half-written binary.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.bin/hellod"
src="$here/hellod/main.go"
if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
  mkdir -p "$here/.bin"
  tmp="$bin.$$"
  (cd "$here/hellod" && go build -o "$tmp" .)
  mv -f "$tmp" "$bin"
fi
exec "$bin" "$@"

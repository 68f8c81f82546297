#!/bin/sh
# A service with no daemon: it records where the echo service lives, proving
# that exported attributes reach a second service of the same level.
# Usage: note.sh FILE TEXT
set -eu
printf '%s\n' "$2" >"$1"
echo "wrote $1"

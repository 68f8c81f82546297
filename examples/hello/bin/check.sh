#!/bin/sh
# Ready program: succeeds when URL answers 200 and contains EXPECT.
# Usage: check.sh URL [EXPECT]
set -eu
exec "$(dirname "$0")/hellod.sh" check --expect "${2:-}" "$1"

#!/bin/sh
# Boot program of the prod plan's provisioner and controller instances:
# fetches the Nightshift daemon from $NS_RELEASE_URL and runs it as the
# systemd unit nightshift-DAEMON, its broker URL and the run secret in 0600
# files (never on a command line). Re-running it updates and restarts the unit.
# Usage: daemon-boot.sh provisioner|controller
#
# Environment (from the plan): NS_RELEASE_URL, NS_AMQP_URL, NS_RUN_SECRET,
# NS_COMMAND_KEY (the run's command key: the controller signs drains with it,
# the provisioner hands its public half to workers),
# NS_JOBS_TOML (the run's jobs: the provisioner launches only these, the
# controller keeps them at policy); NS_AMQP_CA, the run CA's certificate, used
# (--amqp-ca-file) when NS_AMQP_URL is amqps://; provisioner: NS_EC2_REGION,
# NS_EC2_ENDPOINT_URL.
#
# NIGHTSHIFT_TEST_MODE=1: the step runs on the launching machine (tests
# against moto), so install under $NIGHTSHIFT_HOME and start the daemon
# detached in its own session instead of as a systemd unit; its environment
# still names the run, so teardown's process sweep finds it.
set -eu
daemon=${1:?usage: daemon-boot.sh provisioner|controller}
case $daemon in provisioner | controller) ;; *) echo "unknown daemon $daemon" >&2; exit 2 ;; esac
run=${NIGHTSHIFT_RUN:?NIGHTSHIFT_RUN is not set: run me from a Nightshift plan}
: "${NS_RELEASE_URL:?}" "${NS_AMQP_URL:?}" "${NS_RUN_SECRET:?}" "${NS_COMMAND_KEY:?}" "${NS_JOBS_TOML:?}"

sudo=""
if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  base=${NIGHTSHIFT_HOME:?}/runs/$run/prod/$daemon
  bin=$base/bin/$daemon
else
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  base=/var/lib/nightshift/$run/$daemon
  bin=/usr/local/bin/nightshift-$daemon
fi
$sudo install -d -m 0700 "$base" "$(dirname "$bin")"

echo "fetching $daemon from $NS_RELEASE_URL"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
curl -fsSL --retry 5 -o "$tmp" "$NS_RELEASE_URL/$daemon"
$sudo install -m 0755 "$tmp" "$bin"

put() { # FILE: write stdin to FILE, mode 0600
  $sudo sh -c "umask 077; cat > '$1'"
}
printf '%s\n' "$NS_AMQP_URL" | put "$base/amqp-url"
printf '%s\n' "$NS_RUN_SECRET" | put "$base/secret"
printf '%s\n' "$NS_COMMAND_KEY" | put "$base/command.key" # beside the secret, where the daemons look
printf '%s\n' "$NS_JOBS_TOML" | put "$base/jobs.toml"

set -- --run "$run" --home "$base" --amqp-url-file "$base/amqp-url" --secret-file "$base/secret" --jobs "$base/jobs.toml"
case $NS_AMQP_URL in
amqps://*)
  printf '%s\n' "${NS_AMQP_CA:?NS_AMQP_CA is needed for an amqps:// broker}" | put "$base/amqp-ca.pem"
  set -- "$@" --amqp-ca-file "$base/amqp-ca.pem"
  ;;
esac
# --home is the Nightshift home for both daemons (the provisioner keeps its
# ledger under it); the controller's store goes in its own --state-dir.
if [ "$daemon" = controller ]; then set -- "$@" --state-dir "$base"; fi
if [ "$daemon" = provisioner ]; then
  set -- "$@" --driver ec2
  [ -z "${NS_EC2_REGION:-}" ] || set -- "$@" --ec2-region "$NS_EC2_REGION"
  [ -z "${NS_EC2_ENDPOINT_URL:-}" ] || set -- "$@" --ec2-endpoint-url "$NS_EC2_ENDPOINT_URL"
fi

if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  if [ -s "$base/pid" ] && kill -0 "$(cat "$base/pid")" 2>/dev/null; then
    kill "$(cat "$base/pid")" || true
  fi
  # The secrets stay in files; the daemon does not need them in its environment.
  NS_AMQP_URL= NS_RUN_SECRET= NS_COMMAND_KEY= NS_AMQP_CA= NS_JOBS_TOML= setsid "$bin" "$@" >>"$base/$daemon.log" 2>&1 </dev/null &
  echo $! >"$base/pid"
  echo "$daemon started locally (pid $!), log $base/$daemon.log"
  printf '{"unit": "%s", "component": "%s", "pid_file": "%s", "log": "%s"}\n' "nightshift-$daemon" "$daemon" "$base/pid" "$base/$daemon.log" >"${NIGHTSHIFT_OUTPUT:?}"
  exit 0
fi

unit=nightshift-$daemon
{
  printf '[Unit]\nDescription=Nightshift %s for run %s\nAfter=network-online.target\nWants=network-online.target\n\n' "$daemon" "$run"
  printf '[Service]\nExecStart=%s' "$bin"
  for a in "$@"; do printf ' %s' "$a"; done
  # The AWS SDK finds credentials through the instance profile (IMDS).
  printf '\nRestart=always\nRestartSec=2\nKillMode=mixed\nTimeoutStopSec=30\n\n[Install]\nWantedBy=multi-user.target\n'
} | $sudo sh -c "cat > /etc/systemd/system/$unit.service"
$sudo systemctl daemon-reload
$sudo systemctl enable "$unit" >/dev/null
$sudo systemctl restart "$unit"
echo "$unit started"
printf '{"unit": "%s", "component": "%s", "log": "journalctl -u %s"}\n' "$unit" "$daemon" "$unit" >"${NIGHTSHIFT_OUTPUT:?}"

#!/bin/sh
# Boot program of the prod plan's broker: installs and configures
# rabbitmq-server on its EC2 instance (run over ssh by the ec2 driver) with a
# generated password, and exports url, host, port, management_url and
# check_host (the address the launching machine's TCP ready check connects
# to). The run's signing secret is not made here: the plan hands the
# launching machine's (${env.NIGHTSHIFT_RUN_SECRET}) to the daemons, so what
# mgmt signs there verifies on them.
#
# Re-running it (a resumed launch) keeps the password: it lives in
# /etc/nightshift, 0600, so daemons already configured keep working.
#
# NIGHTSHIFT_TEST_MODE=1 (tests against moto, whose instances do not exist):
# install nothing and export the shared test broker at 127.0.0.1:5672.
set -eu
out=${NIGHTSHIFT_OUTPUT:?NIGHTSHIFT_OUTPUT is not set: run me from a Nightshift plan}
gen() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  user=guest pw=guest host=127.0.0.1 check_host=127.0.0.1
else
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "installing rabbitmq-server"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
  fi
  $sudo systemctl enable --now rabbitmq-server
  $sudo rabbitmq-plugins enable rabbitmq_management >/dev/null
  $sudo install -d -m 0700 /etc/nightshift
  keep() { # FILE: print the value stored in FILE, generating it first
    if ! $sudo test -s "$1"; then
      gen | $sudo sh -c "umask 077; cat > '$1'"
    fi
    $sudo cat "$1"
  }
  pw=$(keep /etc/nightshift/broker-password)
  user=nightshift
  # The password goes in on stdin, not argv, so ps on the broker never shows it.
  if $sudo rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$user"; then
    printf '%s' "$pw" | $sudo rabbitmqctl change_password "$user" >/dev/null
  else
    printf '%s' "$pw" | $sudo rabbitmqctl add_user "$user" >/dev/null
  fi
  $sudo rabbitmqctl set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
  # Administrator: the controller reads queue depth through the management API.
  $sudo rabbitmqctl set_user_tags "$user" administrator >/dev/null
  # guest only works from localhost anyway; remove it so nothing relies on it.
  $sudo rabbitmqctl delete_user guest >/dev/null 2>&1 || true
  # The other instances reach the broker on its private address; the
  # launching machine on the one EC2 reported (public DNS or IP).
  host=$(hostname -I | awk '{print $1}')
  check_host=${NIGHTSHIFT_HOSTNAME:-$host}
fi
port=5672
echo "broker ready for configuration on $host:$port (user $user)"
printf '{"url": "amqp://%s:%s@%s:%s/", "host": "%s", "port": %s, "management_url": "http://%s:%s@%s:15672", "check_host": "%s"}\n' \
  "$user" "$pw" "$host" "$port" "$host" "$port" "$user" "$pw" "$host" "$check_host" >"$out"

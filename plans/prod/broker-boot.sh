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
# TLS: given NS_TLS_CERT, NS_TLS_KEY and NS_TLS_CA (a certificate and key
# from the run's CA, which the launching machine keeps with its key, and the
# CA's certificate) and NS_TLS_NAME (the name in the certificate), RabbitMQ
# serves AMQPS on 5671 and its management API over HTTPS on 15671, and plain
# AMQP and HTTP are off. The exported url is amqps:// with
# server_name_indication=NS_TLS_NAME: clients dial the private address and
# verify that name. Without them it serves plain AMQP on 5672 as before.
#
# NIGHTSHIFT_TEST_MODE=1 (tests against moto, whose instances do not exist):
# install nothing and export the shared test broker at 127.0.0.1:5672.
set -eu
out=${NIGHTSHIFT_OUTPUT:?NIGHTSHIFT_OUTPUT is not set: run me from a Nightshift plan}
gen() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

if [ "${NIGHTSHIFT_TEST_MODE:-}" = 1 ]; then
  # The shared test broker speaks plain AMQP only.
  user=guest pw=guest host=127.0.0.1 check_host=127.0.0.1 tls=""
else
  tls=""
  [ -z "${NS_TLS_CERT:-}" ] || tls=1
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "installing rabbitmq-server"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
  fi
  if [ -n "$tls" ]; then
    : "${NS_TLS_KEY:?}" "${NS_TLS_CA:?}" "${NS_TLS_NAME:?}"
    d=/etc/rabbitmq/nightshift-tls
    $sudo install -d -m 0750 -o rabbitmq -g rabbitmq "$d"
    printf '%s\n' "$NS_TLS_CA" | $sudo sh -c "cat > '$d/ca.pem'"
    printf '%s\n' "$NS_TLS_CERT" | $sudo sh -c "cat > '$d/server.pem'"
    printf '%s\n' "$NS_TLS_KEY" | $sudo sh -c "umask 077; cat > '$d/server.key'"
    $sudo chown rabbitmq:rabbitmq "$d/ca.pem" "$d/server.pem" "$d/server.key"
    $sudo chmod 0600 "$d/server.key"
    {
      echo "listeners.tcp = none"
      echo "listeners.ssl.default = 5671"
      for p in ssl_options management.ssl; do
        printf '%s.cacertfile = %s\n%s.certfile = %s\n%s.keyfile = %s\n' "$p" "$d/ca.pem" "$p" "$d/server.pem" "$p" "$d/server.key"
      done
      echo "ssl_options.verify = verify_none"
      echo "ssl_options.fail_if_no_peer_cert = false"
      echo "ssl_options.versions.1 = tlsv1.3"
      echo "ssl_options.versions.2 = tlsv1.2"
      echo "management.ssl.port = 15671"
    } | $sudo sh -c "cat > /etc/rabbitmq/rabbitmq.conf"
  fi
  $sudo systemctl enable --now rabbitmq-server
  $sudo rabbitmq-plugins enable rabbitmq_management >/dev/null
  if [ -n "$tls" ]; then
    # The configuration (and a re-served certificate) takes effect on start.
    $sudo systemctl restart rabbitmq-server
    $sudo rabbitmqctl -q await_startup
  fi
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
if [ -n "$tls" ]; then
  port=5671
  echo "broker ready for configuration on $host:$port over TLS as $NS_TLS_NAME (user $user)"
  printf '{"url": "amqps://%s:%s@%s:%s/?server_name_indication=%s", "host": "%s", "port": %s, "management_url": "https://%s:%s@%s:15671", "check_host": "%s"}\n' \
    "$user" "$pw" "$host" "$port" "$NS_TLS_NAME" "$host" "$port" "$user" "$pw" "$host" "$check_host" >"$out"
else
  port=5672
  echo "broker ready for configuration on $host:$port (user $user)"
  printf '{"url": "amqp://%s:%s@%s:%s/", "host": "%s", "port": %s, "management_url": "http://%s:%s@%s:15672", "check_host": "%s"}\n' \
    "$user" "$pw" "$host" "$port" "$host" "$port" "$user" "$pw" "$host" "$check_host" >"$out"
fi

#!/bin/sh
# Prints escape sequences (CSI, OSC, a C1 CSI, a bidi override, a carriage
# return forging a line) and the secret it was given ($2).
secret=$2
case $1 in
loud)
	printf 'booting \033]0;pwned\007\033[2J\033[31mred\033[0m \302\233 \342\200\256 secret=%s\n' "$secret"
	printf '{"banner": "\\u001b[31mhi\\u001b]0;t\\u0007\\u202e", "fingerprint": "%s", "dsn": "amqp://app:%s@mq/"}' "$secret" "$secret" >"$NIGHTSHIFT_OUTPUT"
	;;
broken)
	printf 'fatal \033[2J\033[H%s\r12:00:00 L2 broken ready\n' "$secret"
	exit 3
	;;
esac

#!/bin/sh
# Boot program of the driver parity test: it exports the same attributes
# whichever driver runs it, including numbers whose spelling matters.
# $1 selects what it writes; any further arguments are echoed back as the
# "seen" attribute, so a later level shows what it was given.
case "$1" in
numbers)
	printf '%s\n' '{"port": 5672, "ratio": 0.10, "scale": 1.50, "big": 123456789012345678901,' \
		'"exp": 2.5e3, "tiny": 1E-7, "neg": -0.0, "on": true, "off": false, "url": "amqp://h:5672/x?a=1",' \
		'"uni": "gr\u00fc\u00dfe"}' >"$NIGHTSHIFT_OUTPUT"
	;;
echo)
	shift
	printf '{"seen": "%s"}\n' "$*" >"$NIGHTSHIFT_OUTPUT"
	;;
dup)
	printf '%s\n' '{"port": 1, "port": 2}' >"$NIGHTSHIFT_OUTPUT"
	;;
esac

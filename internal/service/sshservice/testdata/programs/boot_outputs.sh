#!/bin/sh
# Boot program that exports attributes through $NIGHTSHIFT_OUTPUT.
# $1 selects what it writes, so one program covers several cases.
echo "booting in $(pwd)"
case "$1" in
ok)
	printf '%s\n' '{"url":"amqp://h:5672/","port":5672,"ratio":1.5e3,"small":0.25,"big":123456789012345678901,"on":true,"cwd":"'"$(pwd)"'"}' >"$NIGHTSHIFT_OUTPUT"
	;;
nothing) ;;
array)
	printf '%s\n' '{"good":"x","hosts":["a","b"]}' >"$NIGHTSHIFT_OUTPUT"
	;;
esac
echo "boot done"

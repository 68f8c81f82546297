#!/bin/sh
# Prints 30 numbered lines, half on stderr, then fails with status 3.
i=1
while [ "$i" -le 30 ]; do
	if [ $((i % 2)) -eq 0 ]; then echo "line $i" >&2; else echo "line $i"; fi
	i=$((i + 1))
done
exit 3

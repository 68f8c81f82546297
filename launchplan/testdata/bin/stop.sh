#!/bin/sh
# test fixture: launchplan only checks that this file exists and is executable
exit 0

#!/bin/sh
# Print a greeting for $1 (default: world).
echo "${GREETING:-Hello}, ${1:-world}!"

#!/usr/bin/env bash
# Debian's bubblewrap: the reward challenge runs submitted files in it (grpo_helpers/sandbox.py, docs/challenge.md).
# Without it the board still runs, says so in its first line, and only the RestrictedPython policy and seccomp hold.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bubblewrap is missing and cannot be installed here (needs root + apt-get): the sandbox tests will say so." >&2
  exit 0
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
bwrap --version

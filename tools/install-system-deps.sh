#!/bin/sh
# Installs the system packages the browser tests need: Debian's chromium (tests/web drive it with
# playwright-core; playwright's own browser download cannot run here). Idempotent: nothing happens when
# /usr/bin/chromium is there. `make test` runs it; without root or apt-get it says why and leaves the browser
# tests to skip themselves with the same reason.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: not root: cannot install chromium (tests/web will be skipped)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get: cannot install chromium (tests/web will be skipped)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "install-system-deps: installed $(/usr/bin/chromium --version)"

#!/bin/sh
# Installs the Debian packages some tests need, when missing. Idempotent: nothing happens when every program is
# there; without root or apt-get it says why and exits 0, and the tests that need a package skip saying so.
set -eu
# program:package  (who needs it)
NEEDS="
nft:nftables
slurmctld:slurm-wlm
slurmd:slurm-wlm
munged:munge
chromium:chromium
"
# nft: tests/e2e/test_netns.py firewalls the control plane's namespace to its gRPC port (issue 22).
# slurmctld, slurmd, munged: tests/slurm start a Slurm cluster of their own (issue 21).
# chromium: tests/web drive the dashboard in Debian's Chromium with playwright-core (its own browser download
# cannot run here; issue 24).
missing=""
for need in $NEEDS; do
    program=${need%%:*}
    package=${need#*:}
    if ! command -v "$program" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$program" ]; then
        case " $missing " in *" $package "*) ;; *) missing="$missing $package" ;; esac
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: not root: cannot install$missing (the tests that need them will skip)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get: cannot install$missing (the tests that need them will skip)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # one word per package
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-system-deps: installed$missing"

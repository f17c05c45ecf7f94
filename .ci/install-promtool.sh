#!/usr/bin/env bash
# Make `promtool` available for tests/test_monitoring.py (Debian's prometheus package ships it).
# Idempotent and non-interactive; never fails CI: without network or apt it says why and exits 0,
# and the promtool tests then skip with that reason.
set -u

if command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; then
    echo "install-promtool: $(command -v promtool || echo /usr/bin/promtool) already present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-promtool: no apt-get on this machine; promtool tests will skip"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
else
    SUDO=""
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d stops the package's postinst from starting a Prometheus server (it would take port 9090).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi

# Bounded: a network that hangs rather than refuses must not eat the CI budget.
ok=1
timeout 300 $SUDO apt-get update -qq >/tmp/install-promtool.log 2>&1 || ok=0
if [ "$ok" -eq 1 ]; then
    timeout 600 $SUDO apt-get install -y -qq --no-install-recommends prometheus >>/tmp/install-promtool.log 2>&1 || ok=0
fi
if [ "$made_policy" -eq 1 ]; then
    $SUDO rm -f "$policy"
fi

if [ "$ok" -eq 1 ] && command -v promtool >/dev/null 2>&1; then
    echo "install-promtool: installed $(promtool --version 2>&1 | head -1)"
else
    echo "install-promtool: could not install the prometheus package (no network?); promtool tests will skip."
    tail -3 /tmp/install-promtool.log 2>/dev/null | sed 's/^/  /'
fi
exit 0

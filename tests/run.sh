#!/bin/sh
# Runs every test of ipcwatch. Installs what the tests need when it is missing (Debian/Ubuntu):
#   promtool             (package prometheus)              checks /metrics and the Prometheus rules
#   prometheus-alertmanager                                 receives alerts in the end-to-end tests
#   systemd-analyze      (package systemd)                 rates the unit's hardening
#   unshare, ipcs, setpriv, prlimit (package util-linux)   throw-away IPC namespaces, child cleanup
#   openssl, curl                                           certificates and a TLS client for the TLS tests
#   chromium                                                loads the dashboard in a real (headless) browser
# then runs `cargo test --workspace`. Extra arguments go to cargo test.
set -eu
cd "$(dirname "$0")/.."

need=""
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
for tool in unshare ipcs setpriv prlimit; do
    command -v $tool >/dev/null 2>&1 || { need="$need util-linux"; break; }
done
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v chromium >/dev/null 2>&1 || need="$need chromium"

if [ -n "$need" ]; then
    echo "tests/run.sh: installing$need" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    # --no-install-recommends keeps it to the tools; the packages' services are not needed.
    $sudo apt-get install -y -q --no-install-recommends $need
fi

exec cargo test --workspace "$@"

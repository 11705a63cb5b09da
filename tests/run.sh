#!/bin/sh
# Runs every test of ipcwatch. Installs what the tests need when it is missing (Debian/Ubuntu):
#   promtool             (package prometheus)              checks /metrics and the Prometheus rules;
#                                                           prometheus scrapes for the Grafana test
#   prometheus-alertmanager                                 receives alerts in the end-to-end tests
#   systemd-analyze      (package systemd)                 rates the unit's hardening
#   unshare, ipcs, setpriv, prlimit (package util-linux)   throw-away IPC namespaces, child cleanup
#   openssl, curl                                           certificates and a TLS client for the TLS tests
#   chromium                                                loads the dashboard in a real (headless) browser
#   podman                                                  builds the container image offline
#   strace                                                  counts the sampler's syscalls per tick (dense-node test)
#   debootstrap, lintian, man-db                            the Debian package: a fresh Debian 12 root, its lint,
#                                                           and `man -l` on its pages
#   cargo-deb            (cargo install)                    builds the package
#   kubernetes-validate, cloudcoil-models-prometheus-operator (PyPI)
#                                                           validate the rendered Kubernetes base strictly
#   kubectl (on the machine image; no Debian package)      renders the kustomize base
#   netdata, netdata-pandas (PyPI, in target/netdata-clients) Netdata's real clients for /api/v1
#   clang, llvm, libbpf-dev                                 rebuild the committed eBPF object and compare
# As root it also mounts tracefs on /sys/kernel/tracing if nothing is mounted there (systemd
# does at boot; minimal VMs do not), which the eBPF probes attach through, and makes a probe
# that cannot load fail its test (IPCWATCH_TEST_BPF=require). Not as root, those tests say
# SKIPPED and why.
# then checks formatting (cargo fmt) and lints (cargo clippy -D warnings) and runs
# `cargo test --workspace`. Extra arguments go to cargo test.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
need=""
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
for tool in unshare ipcs setpriv prlimit; do
    command -v $tool >/dev/null 2>&1 || { need="$need util-linux"; break; }
done
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v podman >/dev/null 2>&1 || need="$need podman"
command -v strace >/dev/null 2>&1 || need="$need strace"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v lintian >/dev/null 2>&1 || need="$need lintian"
command -v man >/dev/null 2>&1 || need="$need man-db"
command -v objcopy >/dev/null 2>&1 || need="$need binutils"
command -v clang >/dev/null 2>&1 || need="$need clang"
command -v llvm-strip >/dev/null 2>&1 || need="$need llvm"
[ -e /usr/include/bpf/bpf_helpers.h ] || need="$need libbpf-dev"
command -v python3 >/dev/null 2>&1 || need="$need python3 python3-pip"
# The Netdata clients get a venv of their own: Debian splits ensurepip out of python3.
python3 -c "import ensurepip" >/dev/null 2>&1 || need="$need python3-venv"

if [ -n "$need" ]; then
    echo "tests/run.sh: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    # --no-install-recommends keeps it to the tools; the packages' services are not needed.
    $sudo apt-get install -y -q --no-install-recommends $need
fi

# Validators for the Kubernetes base, pinned so a new release cannot change the verdict.
if ! python3 -c 'import kubernetes_validate, cloudcoil.models.prometheus_operator' >/dev/null 2>&1; then
    echo "tests/run.sh: installing kubernetes-validate and prometheus-operator's CRD models (PyPI)" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        kubernetes-validate==1.37.0 cloudcoil-models-prometheus-operator==0.80.1.0
fi
# Netdata's real Python clients (Home Assistant's and netdata-pandas), in a venv of their own.
clients=target/netdata-clients
if ! "$clients/bin/python" -c 'import netdata, netdata_pandas' >/dev/null 2>&1; then
    echo "tests/run.sh: installing Netdata's Python clients in $clients" >&2
    python3 -m venv "$clients"
    # netdata-pandas's HTTP library (asks, on anyio 3) needs a trio that still has MultiError.
    "$clients/bin/pip" install -q --disable-pip-version-check netdata==1.3.0 netdata-pandas==0.0.46 trio==0.22.2
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "tests/run.sh: installing cargo-deb" >&2
    cargo install -q --locked cargo-deb --version 3.8.0
fi
command -v kubectl >/dev/null 2>&1 || {
    echo "tests/run.sh: kubectl is missing (it comes with the machine image; no Debian package has it)" >&2
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then
    if [ -d /sys/kernel/tracing ] && [ -z "$(ls -A /sys/kernel/tracing 2>/dev/null)" ]; then
        echo "tests/run.sh: mounting tracefs on /sys/kernel/tracing for the eBPF probes" >&2
        mount -t tracefs tracefs /sys/kernel/tracing ||
            echo "tests/run.sh: tracefs cannot be mounted: the eBPF probe tests will fail and say why" >&2
    fi
    export IPCWATCH_TEST_BPF=require
else
    echo "tests/run.sh: not root: the eBPF probe tests are skipped (each says SKIPPED and why)" >&2
fi

# The discipline is part of the suite: a formatting change or a clippy warning fails it.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
exec cargo test --workspace "$@"

#!/bin/sh
# What the eBPF probes cost, measured in one run (the machine's speed drifts by the hour, so
# only figures taken side by side compare):
#   1. the traced calls: a semop ping-pong and a msgsnd/msgrcv ping-pong between two
#      processes, without and with the probes, alternately (crates/probes/benches/overhead.rs);
#   2. the idle daemon (mode own): whole-process CPU with [ebpf] enabled = false and = true,
#      alternately, ROUNDS times SECONDS each.
#
#   tests/bench/ebpf.sh [SECONDS] [ROUNDS]     (default 30 s, 3 rounds); as root
#
# Not part of the test suite: it prints figures (docs/ebpf.md quotes them).
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-30}
rounds=${2:-3}
[ "$(id -u)" -eq 0 ] || { echo "ebpf.sh: loading BPF needs root" >&2; exit 2; }
cargo bench -q -p ipcwatch-probes --bench overhead 2>/dev/null
cargo build --release -q -p ipcwatch
bin=$PWD/target/release/ipcwatch
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

cpu_ns() { # every thread of $1
    total=0
    for t in /proc/$1/task/*; do
        ns=$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)
        total=$((total + ns))
    done
    echo $total
}

idle() { # $1: true or false -> CPU ms/s of the whole daemon over $secs
    printf '[namespaces]\nmode = "own"\n[ebpf]\nenabled = %s\n' "$1" >"$dir/cfg.toml"
    port=$((20000 + $$ % 20000))
    "$bin" --config "$dir/cfg.toml" --web.listen-address "127.0.0.1:$port" --log.level warn 2>"$dir/log" &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
    on=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ipcwatch_ebpf_enabled" {print $2}')
    [ "$on" = "$([ "$1" = true ] && echo 1 || echo 0)" ] || { echo "ebpf.sh: ipcwatch_ebpf_enabled is $on with enabled = $1" >&2; cat "$dir/log" >&2; exit 1; }
    sleep 3
    c0=$(cpu_ns "$pid")
    sleep "$secs"
    c1=$(cpu_ns "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    awk -v c=$((c1 - c0)) -v s="$secs" 'BEGIN { printf "%.3f", c / s / 1e6 }'
}

echo
echo "Idle daemon (mode own), whole process, $rounds rounds of $secs s, alternately:"
off="" on=""
i=0
while [ "$i" -lt "$rounds" ]; do
    a=$(idle false)
    b=$(idle true)
    echo "  round $((i + 1)): without probes $a ms/s, with probes $b ms/s"
    off="$off $a"
    on="$on $b"
    i=$((i + 1))
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
a=$(median $off)
b=$(median $on)
awk -v a="$a" -v b="$b" 'BEGIN { printf "  median: without %.3f ms/s, with %.3f ms/s (%+.0f%%)\n", a, b, (b / a - 1) * 100 }'

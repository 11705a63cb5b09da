#!/bin/sh
# Measures the release daemon as an operator sees it, inside a throw-away IPC namespace (the
# host's is never touched): CPU per second of the sampling thread and of the whole process,
# RSS, and scrapes per second with wrk, at three loads. The in-run baseline for scrapes is
# /-/healthy (a fixed 8-byte answer), so the ratio shows what /metrics costs beyond HTTP.
# RSS is read after the first census (owners, stale objects), whose duration is printed too.
#
#   tests/bench/daemon.sh [SECONDS]      (default 20 s of CPU measurement per load)
#
# Needs wrk (Debian package wrk) and curl. Not part of the test suite: it prints figures.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-20}
command -v wrk >/dev/null || { echo "daemon.sh: wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release -q -p ipcwatch -p ipcwatch-testkit
bin=$PWD/target/release
dir=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; sleep 1; rm -rf "$dir"' EXIT

# CPU nanoseconds (schedstat) of the threads of $1 whose name matches $2 (all for "").
cpu_ns() {
    total=0
    for t in /proc/$1/task/*; do
        name=$(cat "$t/comm" 2>/dev/null || true)
        case "$name" in *"$2"*) ;; *) continue ;; esac
        ns=$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)
        total=$((total + ns))
    done
    echo $total
}

measure() { # $1 label, $2 arrays, $3 queues, $4 segments, $5 charted
    mkfifo "$dir/in"
    unshare --user --map-root-user --ipc "$bin/ipcwatch-testkit" <"$dir/in" >"$dir/out" &
    exec 3>"$dir/in"
    echo "check-namespace" >&3
    echo "sysctl shmmni 32768" >&3
    seq "$2" | sed 's/.*/sem 0 4/' >&3
    seq "$3" | sed 's/.*/msg 0/' >&3
    seq "$4" | sed 's/.*/shm 0 4096/' >&3
    printf '[charts]\nmax_queue_dimensions = %s\n' "$5" >"$dir/cfg.toml"
    port=$((20000 + $$ % 20000))
    echo "spawn $dir/log $bin/ipcwatch --config $dir/cfg.toml --web.listen-address 127.0.0.1:$port --log.level warn" >&3
    n=$(( $2 + $3 + $4 + 3 ))
    while [ "$(wc -l <"$dir/out")" -lt "$n" ]; do sleep 0.2; done
    pid=$(tail -n 1 "$dir/out" | cut -d' ' -f2)
    until curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
    sleep 2
    s0=$(cpu_ns "$pid" ipcwatch-sampl); a0=$(cpu_ns "$pid" "")
    sleep "$secs"
    s1=$(cpu_ns "$pid" ipcwatch-sampl); a1=$(cpu_ns "$pid" "")
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    m=$(wrk -t2 -c10 -d10s "http://127.0.0.1:$port/metrics" | awk '/Requests\/sec/ {print $2}')
    z=$(wrk -t2 -c10 -d10s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" | awk '/Requests\/sec/ {print $2}')
    h=$(wrk -t2 -c10 -d10s "http://127.0.0.1:$port/-/healthy" | awk '/Requests\/sec/ {print $2}')
    bytes=$(curl -s "http://127.0.0.1:$port/metrics" | wc -c)
    census=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "ipcwatch_census_duration_seconds" {print $2 * 1000}')
    awk -v l="$1" -v s=$((s1 - s0)) -v a=$((a1 - a0)) -v secs="$secs" -v rss="$rss" \
        -v m="$m" -v z="$z" -v h="$h" -v b="$bytes" -v c="$census" 'BEGIN {
        printf "%-30s sampler %6.3f ms/s  process %6.3f ms/s  census %6.1f ms/round  RSS %5.1f MB  /metrics %s B: %8.0f req/s (gzip %8.0f)  /-/healthy %8.0f req/s  ratio %.2f\n",
            l, s / 1e6 / secs, a / 1e6 / secs, c, rss / 1024, b, m, z, h, m / h }'
    exec 3>&-
    wait
    rm -f "$dir/in" "$dir/out"
}

echo "CPU over $secs s per load (schedstat), then wrk -t2 -c10 -d10s per endpoint"
measure "idle" 0 0 0 100
measure "5000/1000/500, all charted" 5000 1000 500 1000
measure "32000/32000/4096, 100 charted" 32000 32000 4096 100

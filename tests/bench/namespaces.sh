#!/bin/sh
# What the whole release daemon costs a node with N container IPC namespaces, as a
# DaemonSet's resources must allow for: CPU (all threads, census passes included) averaged
# over SECONDS, peak and final RSS, series and /metrics size. Inside a throw-away user, IPC
# and mount namespace whose /dev/shm (a tmpfs of its own) holds 3 small files; each
# container namespace holds one semaphore array, one queue and one segment and shares that
# mount namespace, as PrivateIPC= units and `unshare --ipc` jobs do.
#
#   tests/bench/namespaces.sh [N] [SECONDS]     (default 100 namespaces, 70 s: one census)
#
# Not part of the test suite: it prints figures.
set -eu
cd "$(dirname "$0")/../.."
n=${1:-100}
secs=${2:-70}
cargo build -q --release -p ipcwatch -p ipcwatch-testkit
bin=$PWD/target/release/ipcwatch
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
. tests/bench/namespaces-setup.sh
start_namespaces "$n"
# IPCWATCH_BENCH_CONFIG=FILE runs the daemon with that config (to see what a part costs).
config=${IPCWATCH_BENCH_CONFIG:+--config $IPCWATCH_BENCH_CONFIG}
# IPCWATCH_BENCH_WRAP="heaptrack -o FILE" runs it under a profiler (its figures then include the tool's).
# IPCWATCH_BENCH_PROCESSES=N: N more processes (sleep) in the shared namespaces, for the
# census's walk of /proc.
i=0
while [ $i -lt "${IPCWATCH_BENCH_PROCESSES:-0}" ]; do
    echo "spawn $dir/sleep.out sleep 100000" >&3
    i=$((i + 1))
done
echo "spawn $dir/daemon.log ${IPCWATCH_BENCH_WRAP:-} $bin --web.listen-address 127.0.0.1:$port $config" >&3
until [ "$(cat "$dir/out" 2>/dev/null | wc -l)" -ge $((n + ${IPCWATCH_BENCH_PROCESSES:-0} + 6)) ]; do sleep 0.2; done
pid=$(tail -n 1 "$dir/out" | awk '{print $2}')
# Under a wrapper, the daemon is the wrapper's child (or, after exec, the same process).
pid=$(pgrep -P "$pid" -f "$bin" || echo "$pid")
until curl -sf "127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
sleep 12 # every namespace found (each at the tick after it starts) and the first census done
# CPU nanoseconds of every thread (schedstat: exact, where /proc/PID/stat counts 10 ms ticks).
# Nanoseconds on CPU from schedstat (exact, where utime/stime sample at clock ticks and miss
# work that starts and ends between two), summed over the threads. `%.0f`: mawk's `%d` stops
# at 2^31.
cpu_ns() { cat /proc/"$pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
# One thread's: $1 is its name (comm, cut at 15 characters).
thread_ns() {
    for t in /proc/"$pid"/task/*; do
        if [ "$(cat "$t/comm")" = "$1" ]; then awk '{ printf "%.0f", $1 }' "$t/schedstat"; fi
    done
}
t0=$(cpu_ns)
c0=$(thread_ns ipcwatch-census)
s0=$(thread_ns ipcwatch-sample)
# Prometheus scrapes meanwhile, every 15 s with gzip (its default interval and encoding):
# what a user pays includes the scrapes.
# (Without fd 3: the driver stops when the last writer of its input closes it.)
( while :; do curl -s -o /dev/null -H 'Accept-Encoding: gzip' "127.0.0.1:$port/metrics"; sleep 15; done ) 3>&- &
scraper=$!
sleep "$secs"
t1=$(cpu_ns)
c1=$(thread_ns ipcwatch-census)
s1=$(thread_ns ipcwatch-sample)
pkill -P "$scraper" 2>/dev/null || true
kill "$scraper" 2>/dev/null || true
metrics=$(curl -s --compressed "127.0.0.1:$port/metrics")
# IPCWATCH_METRICS_OUT=FILE keeps the scrape, to see what each namespace costs in series.
if [ -n "${IPCWATCH_METRICS_OUT:-}" ]; then printf '%s\n' "$metrics" > "$IPCWATCH_METRICS_OUT"; fi
printf 'namespaces: %s (+ the daemon'"'"'s own)\n' "$n"
printf 'whole-daemon CPU: %s ms/s over %s s\n' "$(echo "($t1 - $t0) / 1000000 / $secs" | bc -l | xargs printf '%.2f')" "$secs"
printf '  census thread: %s ms/s, sampler thread: %s ms/s\n' \
    "$(echo "($c1 - $c0) / 1000000 / $secs" | bc -l | xargs printf '%.2f')" \
    "$(echo "($s1 - $s0) / 1000000 / $secs" | bc -l | xargs printf '%.2f')"
grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | sed 's/VmHWM/peak RSS/; s/VmRSS/RSS/'
printf 'series: %s\n' "$(printf '%s\n' "$metrics" | grep -vc '^#')"
printf '/metrics: %s bytes\n' "$(printf '%s\n' "$metrics" | wc -c)"
# A scrape as Prometheus makes it (gzip), one a second so each renders a new sample: median.
scrapes=$(for i in 1 2 3 4 5; do
    sleep 1
    curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%{time_total}\n' "127.0.0.1:$port/metrics"
done | sort -n | sed -n 3p)
printf 'scrape: %s ms (median of 5, gzip)\n' "$(echo "$scrapes * 1000" | bc -l | xargs printf '%.1f')"
printf 'census pass: %s s over %s processes\n' \
    "$(printf '%s\n' "$metrics" | awk '/^ipcwatch_census_duration_seconds / { print $2 }')" "$(ls /proc | grep -c '^[0-9]')"
# A graceful stop, so that a wrapper (heaptrack) writes its output.
kill -TERM "$pid" 2>/dev/null || true
sleep 2

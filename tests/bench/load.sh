#!/bin/sh
# Load and soak for the release daemon, inside a throw-away IPC namespace (the host's is never
# touched; all traffic stays on 127.0.0.1). Not part of the test suite: it prints figures.
#
#   tests/bench/load.sh scrape [SECONDS]    wrk at full speed on /metrics (default 60 s) with
#                                           1,000 queues charted: errors, req/s, RSS before/after
#   tests/bench/load.sh churn [MINUTES]     10,000 queues and arrays and 1,250 segments,
#                                           100 of each replaced per second (default 30 min):
#                                           RSS every minute, which must stay flat
set -eu
cd "$(dirname "$0")/../.."
mode=${1:-scrape}
command -v wrk >/dev/null || { echo "load.sh: wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release -q -p ipcwatch -p ipcwatch-testkit
bin=$PWD/target/release
dir=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; sleep 1; rm -rf "$dir"' EXIT
mkfifo "$dir/in"
unshare --user --map-root-user --ipc "$bin/ipcwatch-testkit" <"$dir/in" >"$dir/out" &
exec 3>"$dir/in"
echo "check-namespace" >&3
echo "sysctl shmmni 32768" >&3
port=$((20000 + $$ % 20000))
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start() { # $1: max_queue_dimensions; waits for $2 replies first; $3: seconds of history
    printf '[charts]\nmax_queue_dimensions = %s\nhistory = %s\n' "$1" "${3:-3600}" >"$dir/cfg.toml"
    echo "spawn $dir/log $bin/ipcwatch --config $dir/cfg.toml --web.listen-address 127.0.0.1:$port --log.level warn" >&3
    while [ "$(wc -l <"$dir/out")" -lt "$2" ]; do sleep 0.2; done
    pid=$(tail -n 1 "$dir/out" | cut -d' ' -f2)
    until curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
}

case "$mode" in
scrape)
    secs=${2:-60}
    seq 1000 | sed 's/.*/msg 0/' >&3
    start 1000 1003
    sleep 2
    before=$(rss "$pid")
    wrk -t2 -c32 -d"${secs}s" "http://127.0.0.1:$port/metrics" >"$dir/wrk"
    after=$(rss "$pid")
    cat "$dir/wrk"
    errors=$(grep -E "Non-2xx|Socket errors" "$dir/wrk" || true)
    echo "RSS before ${before} kB, after ${after} kB; errors: ${errors:-none}"
    [ -z "$errors" ]
    ;;
churn)
    mins=${2:-30}
    echo "churn pool 10000 100" >&3
    # A minute of history, full after the first minute: from then on RSS must stay flat.
    # (With the default hour, RSS grows for an hour as history fills, up to its bound.)
    start 100 4 60
    # Let the pool fill (10,000 of each) before the first reading.
    until [ "$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^sysvipc_message_queues / {print $2}')" = 10000 ]; do sleep 1; done
    echo "minute  RSS(kB)  queues  failed_samples  slow_samples"
    m=0
    while [ "$m" -le "$mins" ]; do
        body=$(curl -s "http://127.0.0.1:$port/metrics")
        q=$(echo "$body" | awk '/^sysvipc_message_queues / {print $2}')
        f=$(echo "$body" | awk '/^ipcwatch_samples_failed_total / {print $2}')
        s=$(echo "$body" | awk '/^ipcwatch_samples_slow_total / {print $2}')
        echo "$m $(rss "$pid") $q $f $s" | awk '{printf "%6d %8d %7d %15d %13d\n", $1, $2, $3, $4, $5}'
        m=$((m + 1))
        [ "$m" -le "$mins" ] && sleep 60
    done
    ;;
*) echo "usage: load.sh scrape [SECONDS] | churn [MINUTES]" >&2; exit 2 ;;
esac

#!/bin/sh
# Two builds of the daemon, alternately, over the same N container namespaces (the load of
# namespaces.sh: namespaces-setup.sh), with a gzip scrape every 15 s: whole-process CPU, peak RSS, RSS at the end and a scrape's time (median of 5) of each run.
# This machine's speed drifts by up to 40% from hour to hour; runs that alternate in one
# session compare two builds where figures from different hours cannot.
#
#   tests/bench/namespaces-ab.sh BASELINE [N] [SECONDS] [ROUNDS]
#       BASELINE: another build's binary (e.g. a worktree's target/release/ipcwatch);
#       compared with this tree's release build. Defaults: 1000 namespaces, 62 s, 2 rounds.
#
# Not part of the test suite: it prints figures.
set -eu
cd "$(dirname "$0")/../.."
base=${1:?usage: namespaces-ab.sh BASELINE [N] [SECONDS] [ROUNDS]}
n=${2:-1000}
secs=${3:-62}
rounds=${4:-2}
cargo build -q --release -p ipcwatch -p ipcwatch-testkit
current=$PWD/target/release/ipcwatch
. tests/bench/namespaces-setup.sh
start_namespaces "$n"
lines=$((n + 5))
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
r=0
while [ $r -lt "$rounds" ]; do
    for bin in "$base" "$current"; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        echo "spawn $dir/daemon.log $bin --web.listen-address 127.0.0.1:$port" >&3
        lines=$((lines + 1))
        until [ "$(wc -l < "$dir/out")" -ge $lines ]; do sleep 0.2; done
        pid=$(tail -n 1 "$dir/out" | awk '{print $2}')
        until curl -sf "127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
        sleep 12 # every namespace watched, the first census done
        t0=$(cpu_ns "$pid")
        # (Without fd 3: the driver stops when the last writer of its input closes it.)
        ( while :; do curl -s -o /dev/null -H 'Accept-Encoding: gzip' "127.0.0.1:$port/metrics"; sleep 15; done ) 3>&- &
        scraper=$!
        sleep "$secs"
        kill "$scraper"
        t1=$(cpu_ns "$pid")
        # A scrape as Prometheus makes it (gzip), one a second so each renders a new sample.
        scrape=$(for i in 1 2 3 4 5; do
            sleep 1
            curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%{time_total}\n' "127.0.0.1:$port/metrics"
        done | sort -n | sed -n 3p)
        name=baseline
        [ "$bin" = "$current" ] && name=current
        printf '%-8s %s ms/s, peak RSS %s, RSS at the end %s, scrape %s ms\n' "$name" \
            "$(echo "($t1 - $t0) / 1000000 / $secs" | bc -l | xargs printf '%.2f')" \
            "$(awk '/VmHWM/ { print $2, $3 }' /proc/"$pid"/status)" \
            "$(awk '/VmRSS/ { print $2, $3 }' /proc/"$pid"/status)" \
            "$(echo "$scrape * 1000" | bc -l | xargs printf '%.1f')"
        kill "$pid"
        sleep 1
    done
    r=$((r + 1))
done

#!/bin/sh
# What the whole release daemon costs a node with N container IPC namespaces, as a
# DaemonSet's resources must allow for: CPU (all threads, census passes included) averaged
# over SECONDS, peak and final RSS, series and /metrics size. Inside a throw-away user + IPC
# namespace; each container namespace holds one semaphore array, one queue and one segment.
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
tk=$PWD/target/release/ipcwatch-testkit
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkfifo "$dir/in"
unshare --user --map-root-user --ipc "$tk" < "$dir/in" > "$dir/out" &
driver=$!
exec 3> "$dir/in"
trap 'exec 3>&-; wait $driver 2>/dev/null; rm -rf "$dir"' EXIT
echo check-namespace >&3
i=0
while [ $i -lt "$n" ]; do
    echo "spawn $dir/holder.out unshare --ipc $tk --hold check-namespace;sem,0,1;msg,0;shm,0,4096" >&3
    i=$((i + 1))
done
echo "spawn $dir/daemon.log $bin --web.listen-address 127.0.0.1:$port" >&3
until [ "$(wc -l < "$dir/out")" -ge $((n + 2)) ]; do sleep 0.2; done
pid=$(tail -n 1 "$dir/out" | awk '{print $2}')
until curl -sf "127.0.0.1:$port/-/ready" >/dev/null; do sleep 0.2; done
sleep 12 # every namespace found (rescan every 10 s) and the first census done
# CPU nanoseconds of every thread (schedstat: exact, where /proc/PID/stat counts 10 ms ticks).
cpu_ns() { cat /proc/"$pid"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
t0=$(cpu_ns)
sleep "$secs"
t1=$(cpu_ns)
metrics=$(curl -s "127.0.0.1:$port/metrics")
printf 'namespaces: %s (+ the daemon'"'"'s own)\n' "$n"
printf 'whole-daemon CPU: %s ms/s over %s s\n' "$(echo "($t1 - $t0) / 1000000 / $secs" | bc -l | xargs printf '%.2f')" "$secs"
grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | sed 's/VmHWM/peak RSS/; s/VmRSS/RSS/'
printf 'series: %s\n' "$(printf '%s\n' "$metrics" | grep -vc '^#')"
printf '/metrics: %s bytes\n' "$(printf '%s\n' "$metrics" | wc -c)"

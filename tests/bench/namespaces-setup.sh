# Sourced by namespaces.sh and namespaces-ab.sh: the shape of load they measure. Starts the
# test kit's driver inside a throw-away user, IPC and mount namespace whose /dev/shm (a
# tmpfs of its own) holds 3 small files, and N container IPC namespaces under it, each with
# one semaphore array, one queue and one segment, sharing that mount namespace as
# PrivateIPC= units and `unshare --ipc` jobs do. Sets dir (its scratch folder, removed on
# exit), tk (the test kit) and driver; fd 3 writes the driver's commands, and each command
# adds a line to $dir/out.
#
#   start_namespaces N
start_namespaces() {
    tk=$PWD/target/release/ipcwatch-testkit
    dir=$(mktemp -d)
    mkfifo "$dir/in"
    unshare --user --map-root-user --ipc --mount "$tk" < "$dir/in" > "$dir/out" &
    driver=$!
    exec 3> "$dir/in"
    trap 'exec 3>&-; wait $driver 2>/dev/null; rm -rf "$dir"' EXIT
    echo check-namespace >&3
    echo "run $dir/mount.out mount -t tmpfs -o size=64m tmpfs /dev/shm" >&3
    for f in 1 2 3; do echo "write /dev/shm/file$f 4096" >&3; done
    i=0
    while [ $i -lt "$1" ]; do
        echo "spawn $dir/holder.out unshare --ipc $tk --hold check-namespace;sem,0,1;msg,0;shm,0,4096" >&3
        i=$((i + 1))
    done
}

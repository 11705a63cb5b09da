//! A dense node (issue 19): 200 IPC namespaces that share one mount namespace, whose /dev/shm
//! holds files, as systemd units with PrivateIPC= do. What must not grow with them is
//! counted, not timed: walks of /proc and /dev/shm listings per census, series per namespace,
//! and the sampler thread's syscalls per tick and namespace (strace -c). Absolute times are
//! the benchmark's (tests/bench/namespaces.sh).

use std::process::Command;
use std::time::Duration;

use crate::alerts::eventually;
use crate::http::{get, samples};
use crate::ns::Namespace;

const NAMESPACES: usize = 200;

/// The thread of `pid` named `name`.
fn thread(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        (comm.trim() == name).then(|| t.file_name().to_str()?.parse().ok()).flatten()
    })
}

/// Syscalls of thread `tid` over `seconds`, by name, as `strace -c` counts them.
fn syscalls(tid: u32, seconds: u32) -> std::collections::BTreeMap<String, u64> {
    let out = std::env::temp_dir().join(format!("ipcwatch-dense-strace-{}", std::process::id()));
    let status = Command::new("timeout")
        .args(["-s", "INT", &seconds.to_string(), "strace", "-c", "-o"])
        .arg(&out)
        .args(["-p", &tid.to_string()])
        .status()
        .expect("strace (tests/run.sh installs it)");
    // timeout's own code when it stopped strace; strace's when it failed to attach.
    assert!(status.code() == Some(124) || status.success(), "strace: {status}");
    let text = std::fs::read_to_string(&out).expect("strace -c output");
    let _ = std::fs::remove_file(&out);
    // "% time  seconds  usecs/call  calls  errors syscall": calls is the 4th column from the
    // left, the name the last.
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let calls = f.get(3)?.parse().ok()?;
            let name = f.last()?.to_string();
            (name != "total").then_some((name, calls))
        })
        .collect()
}

#[test]
fn two_hundred_namespaces_sharing_a_dev_shm_cost_what_one_does() {
    let mut ns = Namespace::with_mount("dense");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=16m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    for f in 1..=3 {
        ns.cmd(&format!("write /dev/shm/file{f} 4096"));
    }
    let inodes: Vec<u64> = (0..NAMESPACES).map(|_| ns.hold(&["sem 0 1", "msg 0", "shm 0 4096"]).1).collect();
    let (port, pid, log) = ns.daemon("[holders]\ninterval = 2\n");
    let watched = || {
        let body = get(port, "/metrics").body;
        body.lines().filter(|l| l.starts_with("sysvipc_namespace_info{")).count() == NAMESPACES + 1
            && body.contains("ipcwatch_census_proc_walks")
    };
    assert!(eventually(30, watched), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    // A census that saw them all.
    std::thread::sleep(Duration::from_secs(3));
    let body = get(port, "/metrics").body;
    let m = samples(&body);

    // One walk of /proc and one /dev/shm listing per census, for 201 namespaces.
    assert_eq!(m.get("ipcwatch_census_proc_walks"), Some(&1.0), "{body}");
    assert_eq!(m.get("ipcwatch_census_dev_shm_listings"), Some(&1.0));

    // Series per container namespace (one array, one queue, one segment; the shared
    // /dev/shm's series are the home namespace's): 39 with its raised orphaned-memory alert,
    // the target 40. Before the sparse encoding of trouble counts, owners' zeros and
    // collector results: 57.
    for inode in &inodes {
        let label = format!("ipc_namespace=\"{inode}\"");
        let series = body.lines().filter(|l| !l.starts_with('#') && l.contains(&label)).count();
        assert!(
            series <= 40,
            "{inode}: {series} series\n{}",
            body.lines().filter(|l| l.contains(&label)).collect::<Vec<_>>().join("\n")
        );
        assert!(!body.contains(&format!("posix_shm_files{{{label}")), "the shared /dev/shm is repeated");
    }

    // Syscalls per tick and namespace: every tick enters each namespace once and the home one
    // once more, so setns counts the ticks.
    let tid = thread(pid, "ipcwatch-sample").expect("the sampler thread");
    let calls = syscalls(tid, 6);
    let setns = *calls.get("setns").expect("setns calls") as f64;
    let ticks = setns / (NAMESPACES + 1) as f64;
    assert!(ticks >= 2.0, "{ticks} ticks in 6 s: {calls:?}");
    let total: u64 = calls.values().sum();
    let per_namespace = total as f64 / ticks / NAMESPACES as f64;
    println!("{ticks:.1} ticks, {per_namespace:.1} syscalls per tick and namespace: {calls:?}");
    // setns, SEM_INFO, MSG_INFO, SHM_INFO and one *_STAT_ANY per object: 7 (a semaphore
    // array's walk is one call); the limits every 10 s, the POSIX queues each minute, the
    // scans and /dev/shm add about one.
    assert!(per_namespace <= 9.0, "{per_namespace:.1} syscalls per tick and namespace: {calls:?}");
    // No file is opened per namespace and tick: the window holds one full scan (a stat file
    // per namespace) and some POSIX reads, well under one open per namespace and tick.
    let opens = (calls.get("openat").copied().unwrap_or(0) + calls.get("openat2").copied().unwrap_or(0))
        as f64
        / ticks;
    assert!(opens < NAMESPACES as f64 / 2.0, "{opens:.0} opens per tick: {calls:?}");
}

//! POSIX IPC: /dev/shm per mount namespace and POSIX message queues per IPC namespace, against
//! real queues and a real tmpfs in throw-away user + IPC + mount namespaces.

use std::time::Duration;

use crate::alerts::eventually;
use crate::http::{free_port, get, ns_samples, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

fn inode(ns: &mut Namespace) -> u64 {
    ns.cmd("check-namespace").trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap()
}

/// (`name{labels}` with `ipc_namespace="N"` as the only label) -> value.
fn value(m: &std::collections::BTreeMap<String, f64>, name: &str, ipc: u64) -> Option<f64> {
    m.get(&format!("{name}{{ipc_namespace=\"{ipc}\"}}")).copied()
}

/// Starts the daemon in `ns` with `config`; returns its port, pid and log.
fn daemon(ns: &mut Namespace, config: &str) -> (u16, u32, std::path::PathBuf) {
    let path = ns.path("posix.toml");
    std::fs::write(&path, config).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (pid, log) = ns.spawn(IPCWATCH, &["--config", path.to_str().unwrap(), "--web.listen-address", &addr]);
    wait_ready(port, &log);
    (port, pid, log)
}

#[test]
fn a_full_dev_shm_reads_exactly_as_statfs_and_raises_the_alert() {
    let mut ns = Namespace::with_mount("devshm");
    let own = inode(&mut ns);
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    // 90% of 1 MiB, and a glibc-style named semaphore. A live process maps the biggest file
    // and holds the semaphore open; the third file is left over.
    ns.cmd("write /dev/shm/PostgreSQL.1234 868352");
    ns.cmd("write /dev/shm/sem.lock 32");
    ns.cmd("write /dev/shm/leftover 73728");
    ns.keep(&["map /dev/shm/PostgreSQL.1234", "open /dev/shm/sem.lock"]);
    let (_, stat) = ns.run("stat", &["-f", "-c", "%b:%f:%S:%c:%d", "/dev/shm"]);
    let f: Vec<u64> = stat.trim().split(':').map(|v| v.parse().unwrap()).collect();
    let (size, used, inodes_used) = (f[0] * f[2], (f[0] - f[1]) * f[2], f[3] - f[4]);
    assert_eq!(size, 1 << 20, "{stat}");
    let (_, mnt) = ns.run("readlink", &["/proc/self/ns/mnt"]);
    let mnt = mnt.trim().trim_start_matches("mnt:[").trim_end_matches(']').to_string();

    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped = std::fs::read_to_string(crate::alerts::repo("alerts/ipc.conf")).unwrap();
    std::fs::write(rules.join("ipc.conf"), shipped.replace("every: 10s", "every: 1s")).unwrap();
    let (port, _, log) = daemon(
        &mut ns,
        &format!("[namespaces]\nmode = \"own\"\n[alerts]\nrules = \"{}\"\n", rules.display()),
    );
    let body = get(port, "/metrics").body;
    let m = ns_samples(&body);
    let shm =
        |name: &str| m.get(&format!("{name}{{ipc_namespace=\"{own}\",mnt_namespace=\"{mnt}\"}}")).copied();
    assert_eq!(shm("posix_shm_size_bytes"), Some(size as f64), "{body}");
    assert_eq!(shm("posix_shm_used_bytes"), Some(used as f64), "statfs's figure: {stat}");
    assert_eq!(shm("posix_shm_files"), Some(3.0));
    assert_eq!(shm("posix_shm_semaphores"), Some(1.0));
    assert_eq!(shm("posix_shm_inodes"), Some(inodes_used as f64));
    crate::daemon::promtool_check(&body);

    // The census finds the one file nothing maps or holds open.
    let census = eventually(10, || get(port, "/metrics").body.contains("posix_shm_unused_files"));
    let m = ns_samples(&get(port, "/metrics").body);
    assert!(census);
    let unused = m.get(&format!("posix_shm_unused_files{{ipc_namespace=\"{own}\",mnt_namespace=\"{mnt}\"}}"));
    assert_eq!(unused, Some(&1.0), "{m:?}");
    assert_eq!(
        m.get(&format!("posix_shm_unused_bytes{{ipc_namespace=\"{own}\",mnt_namespace=\"{mnt}\"}}")),
        Some(&73728.0)
    );
    let file = |name: &str, metric: &str| {
        m.get(&format!(
            "{metric}{{ipc_namespace=\"{own}\",mnt_namespace=\"{mnt}\",name=\"{name}\",uid=\"0\"}}"
        ))
        .copied()
    };
    assert_eq!(file("PostgreSQL.1234", "posix_shm_file_bytes"), Some(868352.0), "{m:?}");
    assert_eq!(file("PostgreSQL.1234", "posix_shm_file_unused"), Some(0.0), "mapped");
    assert_eq!(file("sem.lock", "posix_shm_file_unused"), Some(0.0), "held open");
    assert_eq!(file("leftover", "posix_shm_file_unused"), Some(1.0));

    let alarm = || -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
        doc["alarms"]["ipc.posix_shm_bytes.posix_shm_used"].clone()
    };
    let raised = eventually(10, || alarm()["status"] == "CRITICAL");
    let a = alarm();
    assert!(raised, "{a}\n{}", std::fs::read_to_string(&log).unwrap());
    assert!((a["value"].as_f64().unwrap() - used as f64 * 100.0 / size as f64).abs() < 0.01, "{a}");
    assert!(a["info"].as_str().unwrap().contains("--shm-size"), "says how to raise it: {a}");
}

#[test]
fn two_namespaces_have_their_own_queues_and_limits_read_without_side_effects() {
    let mut ns = Namespace::with_mount("mqueues");
    let own = inode(&mut ns);
    ns.cmd("mq-sysctl queues_max 11");
    ns.cmd("mq /a 10 100");
    ns.cmd("mq /b 4 64");
    assert_eq!(ns.cmd("mq-send /b 10 4"), "4", "b holds 4 of 4: full");
    // A second IPC namespace with other limits and queues, and no mqueue mount anywhere: the
    // daemon reaches it through a private fsmount.
    let (holder, other, _) = ns.hold(&[
        "mq-sysctl queues_max 33",
        "mq-sysctl msg_max 22",
        "mq /x 22 128",
        "mq-send /x 5 3",
        "mq /y 1 1",
    ]);
    // This namespace's own mount, to watch the queues' time stamps from outside.
    let dir = ns.path("mq");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap().to_string();
    let (code, out) = ns.run("mount", &["-t", "mqueue", "mqueue", &dir]);
    assert_eq!(code, "0", "{out}");
    let (a, b) = (format!("{dir}/a"), format!("{dir}/b"));
    let times = |ns: &mut Namespace| ns.run("stat", &["-c", "%.9X:%.9Z", &a, &b]).1;
    let before = times(&mut ns);

    let (port, pid, _) = daemon(&mut ns, "[namespaces]\nrescan = 1\n");
    let wait = eventually(10, || {
        value(&ns_samples(&get(port, "/metrics").body), "posix_mqueue_queues", other) == Some(2.0)
    });
    let body = get(port, "/metrics").body;
    assert!(wait, "{body}");
    let m = ns_samples(&body);
    for (ipc, queues, limit, full, charge) in [
        (own, 2.0, 11.0, 1.0, (10 * 100 + 10 * 48 + 10 * 48 + 4 * 64 + 4 * 48 + 4 * 48) as f64),
        (other, 2.0, 33.0, 0.0, (22 * 128 + 22 * 48 + 22 * 48 + 1 + 48 + 48) as f64),
    ] {
        assert_eq!(value(&m, "posix_mqueue_queues", ipc), Some(queues), "{ipc}: {body}");
        assert_eq!(value(&m, "posix_mqueue_queues_limit", ipc), Some(limit), "{ipc}");
        // A container's trouble counts have series only while not 0.
        let full = if ipc == other && full == 0.0 { None } else { Some(full) };
        assert_eq!(value(&m, "posix_mqueue_queues_full", ipc), full, "{ipc}");
        assert_eq!(value(&m, "posix_mqueue_charge_bytes", ipc), Some(charge), "{ipc}");
    }
    assert_eq!(value(&m, "posix_mqueue_messages_limit", other), Some(22.0));
    let queue = |ipc: u64, name: &str, metric: &str| {
        m.get(&format!("{metric}{{ipc_namespace=\"{ipc}\",name=\"{name}\",owner=\"root\"}}")).copied()
    };
    assert_eq!(queue(own, "/b", "posix_mqueue_queue_messages"), Some(4.0), "{body}");
    assert_eq!(queue(own, "/b", "posix_mqueue_queue_max_messages"), Some(4.0));
    assert_eq!(queue(other, "/x", "posix_mqueue_queue_messages"), Some(3.0));
    assert_eq!(queue(other, "/x", "posix_mqueue_queue_message_size_bytes"), Some(128.0));
    assert_eq!(value(&m, "posix_mqueue_messages_limit", own), Some(10.0), "a new namespace starts at 10");
    // Several seconds of reads changed no time stamp.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(times(&mut ns), before, "reading the queues must not touch atime or ctime");

    // The daemon reads each namespace through a private mount of its mqueue filesystem, kept
    // while it watches it: its own and the other's.
    let own_device = ns.run("stat", &["-c", "%d", &dir]).1.trim().to_string();
    let mqueue_devices = |ns: &mut Namespace| {
        let mut devices = Vec::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let path = fd.unwrap().path();
            let (_, kind) = ns.run("stat", &["-f", "-L", "-c", "%t", path.to_str().unwrap()]);
            if kind.trim() == "19800202" {
                devices
                    .push(ns.run("stat", &["-L", "-c", "%d", path.to_str().unwrap()]).1.trim().to_string());
            }
        }
        devices
    };
    let held = mqueue_devices(&mut ns);
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.contains(&own_device), "{held:?} {own_device}");

    // The other namespace ends: its mount is let go of at once (it would keep its queues and
    // their owners' charges alive), and nothing else in it is held.
    ns.cmd(&format!("signal {holder} 9"));
    ns.cmd(&format!("wait {holder}"));
    assert!(eventually(10, || !get(port, "/metrics").body.contains(&other.to_string())));
    assert_eq!(mqueue_devices(&mut ns), [own_device]);
    // Of /dev/shm, only the daemon's own is held (its use is read through it each tick).
    let own_shm = ns.run("stat", &["-c", "%d", "/dev/shm"]).1.trim().to_string();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let path = fd.unwrap().path();
        let target = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
        if target.contains("/dev/shm") {
            let device = ns.run("stat", &["-L", "-c", "%d", path.to_str().unwrap()]).1.trim().to_string();
            assert_eq!(device, own_shm, "{} -> {target}", path.display());
            continue;
        }
        let pinned = target.starts_with("/dev/mqueue") || target.ends_with("/root");
        assert!(!pinned, "{} -> {target}", path.display());
    }
}

#[test]
fn the_rlimit_charge_formula_matches_a_real_emfile() {
    // Its own mount namespace: the daemon, unprivileged on the host, may then mount the
    // namespace's mqueue filesystem to list its queues.
    let mut ns = Namespace::with_mount("rlimit");
    let own = inode(&mut ns);
    ns.cmd("mq-sysctl queues_max 100000");
    let (_, limits) = ns.run("cat", &["/proc/self/limits"]);
    let line = limits.lines().find(|l| l.starts_with("Max msgqueue size")).unwrap();
    let limit: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    // Queues of 10 messages of 1,000 bytes until the kernel refuses one.
    let answer = ns.cmd("mq-fill-user 10 1000");
    let (made, errno) = answer.split_once(' ').unwrap();
    let made: u64 = made.parse().unwrap();
    assert_eq!(errno, "24", "EMFILE: {answer}");
    let charge = 10 * 1000 + 10 * 48 + 10 * 48;
    assert_eq!(made, limit / charge, "{made} queues of {charge} B under {limit} B");
    let (port, _, _) = daemon(&mut ns, "[namespaces]\nmode = \"own\"\n[holders]\ninterval = 1\n");
    let m = ns_samples(&get(port, "/metrics").body);
    assert_eq!(value(&m, "posix_mqueue_charge_bytes", own), Some((made * charge) as f64));
    assert!(made * charge <= limit && (made + 1) * charge > limit);
    // Per user, against the limit read from one of the user's processes (by the census).
    let user = |m: &std::collections::BTreeMap<String, f64>, name: &str| {
        m.get(&format!("{name}{{uid=\"0\",owner=\"root\"}}")).copied()
    };
    let found = eventually(10, || {
        user(&ns_samples(&get(port, "/metrics").body), "posix_mqueue_user_bytes_limit").is_some()
    });
    let body = get(port, "/metrics").body;
    assert!(found, "{body}");
    let m = ns_samples(&body);
    assert_eq!(user(&m, "posix_mqueue_user_bytes"), Some((made * charge) as f64));
    assert_eq!(user(&m, "posix_mqueue_user_bytes_limit"), Some(limit as f64));
    crate::daemon::promtool_check(&body);
}

#[test]
fn a_fill_shorter_than_the_alerts_interval_still_raises_it() {
    let mut ns = Namespace::with_mount("short-fill");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    // The shipped rules as they are: evaluated every 10 s.
    let (port, _, log) = daemon(&mut ns, "[namespaces]\nmode = \"own\"\n");
    let alarm = || {
        let doc: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
        doc["alarms"]["ipc.posix_shm_bytes.posix_shm_used"].clone()
    };
    let status = || alarm()["status"].as_str().unwrap_or("").to_string();
    assert!(eventually(12, || status() == "CLEAR"), "{}", status());
    // Just after an evaluation, 94% of /dev/shm for 3 s, gone before the next one: only the
    // history of the interval shows it.
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let just_evaluated = || alarm()["next_update"].as_f64().is_some_and(|next| next - now() >= 8.5);
    assert!(eventually(12, just_evaluated), "{}", alarm());
    ns.cmd("write /dev/shm/burst 985000");
    std::thread::sleep(Duration::from_secs(3));
    let (code, out) = ns.run("rm", &["/dev/shm/burst"]);
    assert_eq!(code, "0", "{out}");
    assert!(
        eventually(12, || status() == "CRITICAL"),
        "status {}:\n{}",
        status(),
        std::fs::read_to_string(&log).unwrap()
    );
}

//! Every IPC namespace on the host: the daemon, in one namespace, watches three more held by
//! `unshare --ipc` processes, each against its own limits, and lets go of one when it ends.

use std::time::Duration;

use crate::alerts::{eventually, repo, Alertmanager};
use crate::http::{get, ns_samples, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

fn metric(m: &std::collections::BTreeMap<String, f64>, name: &str, ns: u64) -> Option<f64> {
    m.get(&format!("{name}{{ipc_namespace=\"{ns}\"}}")).copied()
}

#[test]
fn each_namespace_is_watched_against_its_own_limits_and_a_gone_one_leaves() {
    let mut ns = Namespace::new("fleet");
    ns.cmd("sem 0 1");
    let own: u64 =
        ns.cmd("check-namespace").trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap();
    // Three more namespaces with their own limits and objects. The first is near its SEMMNI.
    let near: Vec<&str> =
        std::iter::once("sysctl sem 250 100 32 10").chain(std::iter::repeat_n("sem 0 2", 9)).collect();
    let (near_pid, near_ns, _) = ns.hold(&near);
    let (_, queues_ns, _) = ns.hold(&["sysctl msgmni 5", "msg 0", "msg 0", "msg 0"]);
    let (_, shm_ns, _) = ns.hold(&["sysctl shmmni 7", "shm 0 10000", "shm 0 20000"]);

    let am = Alertmanager::start(&ns.path("am"));
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(repo("alerts/ipc.conf")).unwrap().replace("every: 10s", "every: 1s");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    let config = ns.path("fleet.toml");
    std::fs::write(
        &config,
        format!("[namespaces]\nrescan = 1\n[alerts]\nrules = \"rules\"\nalertmanagers = [\"http://127.0.0.1:{}\"]\n", am.port),
    )
    .unwrap();
    let port = crate::http::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (daemon, log) =
        ns.spawn(IPCWATCH, &["--config", config.to_str().unwrap(), "--web.listen-address", &addr]);
    wait_ready(port, &log);

    let all_seen = || {
        let m = ns_samples(&get(port, "/metrics").body);
        [own, near_ns, queues_ns, shm_ns].iter().all(|n| metric(&m, "sysvipc_semaphore_arrays", *n).is_some())
    };
    assert!(eventually(10, all_seen), "not every namespace is watched:\n{}", get(port, "/metrics").body);
    let body = get(port, "/metrics").body;
    let m = ns_samples(&body);
    assert_eq!(metric(&m, "sysvipc_semaphore_arrays", own), Some(1.0), "{body}");
    assert_eq!(metric(&m, "sysvipc_semaphore_arrays_limit", own), Some(32000.0));
    assert_eq!(metric(&m, "sysvipc_semaphore_arrays", near_ns), Some(9.0));
    assert_eq!(metric(&m, "sysvipc_semaphores", near_ns), Some(18.0));
    assert_eq!(metric(&m, "sysvipc_semaphore_arrays_limit", near_ns), Some(10.0));
    assert_eq!(metric(&m, "sysvipc_message_queues", queues_ns), Some(3.0));
    assert_eq!(metric(&m, "sysvipc_message_queues_limit", queues_ns), Some(5.0));
    assert_eq!(metric(&m, "sysvipc_shared_memory_segments", shm_ns), Some(2.0));
    assert_eq!(metric(&m, "sysvipc_shared_memory_bytes", shm_ns), Some(30000.0));
    assert_eq!(metric(&m, "sysvipc_shared_memory_segments_limit", shm_ns), Some(7.0));
    assert_eq!(m.get("ipcwatch_namespaces_all"), Some(&1.0));
    let info = |n: u64| {
        body.lines().find(|l| l.starts_with(&format!("sysvipc_namespace_info{{ipc_namespace=\"{n}\",")))
    };
    let near_info = info(near_ns).unwrap_or_else(|| panic!("no info for {near_ns}:\n{body}"));
    assert!(
        near_info.contains("comm=\"ipcwatch-testki\"") && near_info.contains("host=\"false\""),
        "{near_info}"
    );

    // The namespace near its SEMMNI raises the ported rule under its own chart and label;
    // the daemon's own namespace stays CLEAR.
    let status = |chart: &str, n: u64, s: &str| {
        format!("ipcwatch_alert_status{{alert=\"semaphore_arrays_used\",chart=\"{chart}\",ipc_namespace=\"{n}\",status=\"{s}\"}}")
    };
    let near_chart = format!("ipc_ns_{near_ns}.ipc_semaphore_arrays");
    assert!(
        eventually(10, || ns_samples(&get(port, "/metrics").body).get(&status(
            &near_chart,
            near_ns,
            "WARNING"
        )) == Some(&1.0)),
        "{}",
        get(port, "/metrics").body
    );
    let m = ns_samples(&get(port, "/metrics").body);
    assert_eq!(m.get(&status("system.ipc_semaphore_arrays", own, "CLEAR")), Some(&1.0));
    let at_am = || {
        am.alerts().as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "semaphore_arrays_used"
                && a["labels"]["ipc_namespace"].as_str() == Some(near_ns.to_string().as_str())
        })
    };
    assert!(eventually(15, at_am), "Alertmanager has no alert with the namespace: {}", am.alerts());
    // The log line names the namespace, its chart and its owner.
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("alert status changed") && l.contains(&format!("chart={near_chart}")))
        .unwrap_or_else(|| panic!("no log line for {near_chart}:\n{text}"));
    assert!(line.contains(&format!("ipc_namespace=\"{near_ns}\"")) && line.contains("owner="), "{line}");

    // Its last process ends: its series leave within two ticks, its alert is resolved.
    ns.cmd(&format!("signal {near_pid} 9"));
    ns.cmd(&format!("wait {near_pid}"));
    let gone = || !get(port, "/metrics").body.contains(&format!("ipc_namespace=\"{near_ns}\""));
    assert!(eventually(3, gone), "series of the ended namespace remain:\n{}", get(port, "/metrics").body);
    assert!(eventually(15, || !at_am()), "not resolved at Alertmanager: {}", am.alerts());
    // And the daemon holds no descriptor of any namespace.
    std::thread::sleep(Duration::from_millis(200));
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{daemon}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("ipc:["))
        .collect();
    assert!(fds.is_empty(), "namespace descriptors held: {fds:?}");
}

#[test]
fn without_capabilities_mode_all_watches_its_own_namespace_and_says_why() {
    let mut ns = Namespace::new("nocaps");
    ns.cmd("sem 0 2");
    let (_, other, _) = ns.hold(&["sem 0 5"]);
    let port = crate::http::free_port();
    let addr = format!("127.0.0.1:{port}");
    // No capabilities at all: root without its bounding set.
    let (_, log) =
        ns.spawn("setpriv", &["--bounding-set=-all", "--", IPCWATCH, "--web.listen-address", &addr]);
    wait_ready(port, &log);
    let body = get(port, "/metrics").body;
    let m = ns_samples(&body);
    assert_eq!(m.get("ipcwatch_namespaces_all"), Some(&0.0), "{body}");
    assert!(!body.contains(&format!("ipc_namespace=\"{other}\"")), "{body}");
    assert_eq!(m.get("ipcwatch_namespaces_watched"), Some(&1.0));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("needs CAP_SYS_ADMIN")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("WARN") && line.contains("watching the daemon's own only"), "{line}");
    assert_eq!(text.matches("watching the daemon's own only").count(), 1, "said once: {text}");
    // Nor can it mount its namespace's mqueue filesystem: the posix collector says so, once.
    let posix = text.lines().filter(|l| l.contains("collector failed") && l.contains("collector=\"posix\""));
    assert_eq!(posix.count(), 1, "{text}");
}

#[test]
fn only_the_sampler_thread_holds_capabilities() {
    let mut ns = Namespace::new("caps");
    let port = crate::http::free_port();
    let addr = format!("127.0.0.1:{port}");
    // Root of a fresh user namespace: every capability, as under AmbientCapabilities.
    let (pid, log) = ns.spawn(IPCWATCH, &["--web.listen-address", &addr]);
    wait_ready(port, &log);
    let mut seen = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap().trim().to_string();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_string();
        let eff = u64::from_str_radix(&eff, 16).unwrap();
        seen.push((name, eff));
    }
    let admin_ptrace = (1u64 << 21) | (1 << 19);
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.iter().any(|(n, _)| n == "ipcwatch-census"), "{seen:?}");
    for (name, eff) in &seen {
        // comm is cut at 15 characters: "ipcwatch-sampler" reads "ipcwatch-sample". The
        // census thread also keeps CAP_IPC_OWNER, to read the last pids of every semaphore.
        let want = match name.as_str() {
            "ipcwatch-sample" => admin_ptrace,
            "ipcwatch-census" => admin_ptrace | (1 << 15),
            _ => 0,
        };
        assert_eq!(*eff, want, "thread {name}: CapEff {eff:#x}; all: {seen:x?}");
    }
}

#[test]
fn snapshot_all_namespaces_lists_each_with_its_owner() {
    let mut ns = Namespace::new("snapall");
    ns.cmd("sem 0 2");
    let (_, other, _) = ns.hold(&["sysctl msgmni 3", "msg 0", "msg 0"]);
    // A second one: the caller's own namespace must be sampled as its own whatever the
    // order of the visits (the visiting thread returns home after each round).
    ns.hold(&["sem 0 7"]);
    let (code, text) = ns.run(IPCWATCH, &["snapshot", "--all-namespaces", "--json"]);
    assert_eq!(code, "0", "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{text}");
    assert_eq!(list[0]["snapshot"]["semaphores"]["arrays"], 1, "the caller's namespace first");
    let held = list.iter().find(|n| n["namespace"]["inode"] == other).unwrap();
    assert_eq!(held["namespace"]["comm"], "ipcwatch-testki");
    assert_eq!(held["snapshot"]["message_queues"]["queues"], 2);
    assert_eq!(held["snapshot"]["limits"]["msgmni"], 3);
    let (code, table) = ns.run(IPCWATCH, &["snapshot", "--all-namespaces"]);
    assert_eq!(code, "0", "{table}");
    assert!(table.contains(&format!("== IPC namespace {other} oldest process")), "{table}");
    assert_eq!(table.matches("RESOURCE").count(), 3, "{table}");
}

#[test]
fn a_reload_to_mode_own_lets_the_other_namespaces_go() {
    let mut ns = Namespace::new("toown");
    ns.cmd("sem 0 1");
    let (_, other, _) = ns.hold(&["sem 0 3"]);
    let config = ns.path("mode.toml");
    std::fs::write(&config, "[namespaces]\nmode = \"all\"\nrescan = 1\n").unwrap();
    let port = crate::http::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (pid, log) =
        ns.spawn(IPCWATCH, &["--config", config.to_str().unwrap(), "--web.listen-address", &addr]);
    wait_ready(port, &log);
    let has = |n: u64| get(port, "/metrics").body.contains(&format!("ipc_namespace=\"{n}\""));
    assert!(eventually(10, || has(other)), "{}", get(port, "/metrics").body);
    std::fs::write(&config, "[namespaces]\nmode = \"own\"\n").unwrap();
    ns.cmd(&format!("signal {pid} 1"));
    assert!(
        eventually(10, || !has(other)),
        "the other namespace stays after mode own:\n{}",
        get(port, "/metrics").body
    );
    let m = ns_samples(&get(port, "/metrics").body);
    assert_eq!(m.get("ipcwatch_namespaces_watched"), Some(&1.0));
    // The daemon's own namespace is still sampled as itself, not as the other.
    let own: Vec<f64> =
        m.iter().filter(|(k, _)| k.starts_with("sysvipc_semaphore_arrays{")).map(|(_, v)| *v).collect();
    assert_eq!(own, [1.0]);
}

/// (`sysvipc_namespace_info` line of namespace `inode`.)
fn info_line(port: u16, inode: u64) -> String {
    get(port, "/metrics")
        .body
        .lines()
        .find(|l| l.starts_with(&format!("sysvipc_namespace_info{{ipc_namespace=\"{inode}\",")))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_joiner_changes_neither_the_anchor_nor_dev_shm_and_a_gone_anchor_is_replaced() {
    let mut ns = Namespace::with_mount("anchor");
    // A container: its own IPC and mount namespaces, a 1 MiB /dev/shm, one array.
    let script = ns.path("container.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\nmount -t tmpfs -o size=1m tmpfs /dev/shm\nexec {} --hold 'check-namespace;sem,0,1'\n",
            crate::ns::testkit().display()
        ),
    )
    .unwrap();
    let (holder, out) = ns.spawn("unshare", &["--ipc", "--mount", "sh", script.to_str().unwrap()]);
    assert!(eventually(10, || std::fs::read_to_string(&out).unwrap_or_default().contains("holding")));
    let inode: u64 = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("ok ipc:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let (port, daemon, log) = ns.daemon("[namespaces]\nrescan = 1\n");
    let anchored = |pid: u32| info_line(port, inode).contains(&format!("pid=\"{pid}\""));
    assert!(eventually(10, || anchored(holder)), "{}", info_line(port, inode));
    let shm_size = || {
        ns_samples(&get(port, "/metrics").body)
            .iter()
            .find(|(k, _)| k.starts_with(&format!("posix_shm_size_bytes{{ipc_namespace=\"{inode}\"")))
            .map(|(_, v)| *v)
    };
    assert!(eventually(10, || shm_size() == Some(1048576.0)), "{:?}", shm_size());
    // The container's /dev/shm is read each tick but never kept open: a descriptor would keep
    // its tmpfs, and what fills it, alive after the container ends. (A tick's read holds one
    // for microseconds: a descriptor seen is looked at again.)
    let device =
        |ns: &mut Namespace, path: &str| ns.run("stat", &["-L", "-c", "%d", path]).1.trim().to_string();
    let container_shm = device(&mut ns, &format!("/proc/{holder}/root/dev/shm"));
    let held = |ns: &mut Namespace| -> Vec<String> {
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{daemon}/fd"))
            .unwrap()
            .map(|fd| fd.unwrap().path().display().to_string())
            .collect();
        fds.into_iter().filter(|fd| device(ns, fd) == container_shm).collect()
    };
    let seen = held(&mut ns);
    std::thread::sleep(Duration::from_millis(300));
    let kept: Vec<String> = held(&mut ns).into_iter().filter(|fd| seen.contains(fd)).collect();
    assert!(kept.is_empty(), "the container's /dev/shm is held open: {kept:?}");

    // A joiner of the IPC namespace only (the host's mount namespace, its 25 GB /dev/shm).
    let pid = holder.to_string();
    let (joiner, _) = ns.spawn("nsenter", &["-t", &pid, "--ipc", "sleep", "60"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(anchored(holder), "a joiner took the anchor: {}", info_line(port, inode));
    assert_eq!(shm_size(), Some(1048576.0), "the joiner's /dev/shm was read");
    let started = info_line(port, inode);

    // The anchor ends while the joiner holds the namespace: it is re-anchored at once, and
    // keeps its series (the same namespace), with no stream of warnings.
    ns.cmd(&format!("signal {holder} 9"));
    assert!(eventually(5, || anchored(joiner)), "{}", info_line(port, inode));
    assert!(get(port, "/metrics")
        .body
        .contains(&format!("sysvipc_semaphore_arrays{{ipc_namespace=\"{inode}\"}} 1")));
    assert_ne!(info_line(port, inode), started, "the anchor's start is in the label");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.matches("WARN").count() < 4, "{text}");
}

#[test]
fn a_new_namespace_on_a_reused_inode_starts_with_no_history_or_alerts() {
    let mut ns = Namespace::new("reuse");
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(crate::alerts::repo("alerts/ipc.conf"))
        .unwrap()
        .replace("every: 10s", "every: 1s");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    let (port, _, _) = ns.daemon("[namespaces]\nrescan = 1\n[alerts]\nrules = \"rules\"\n");
    // Five namespaces at their SEMMNI of 1: each raises semaphore_arrays_used.
    let status = |inode: u64| {
        let doc: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
        doc["alarms"][format!("ipc_ns_{inode}.ipc_semaphore_arrays.semaphore_arrays_used")]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut ended = Vec::new();
    for _ in 0..5 {
        let (pid, inode, _) = ns.hold(&["sysctl sem 250 100 32 1", "sem 0 1"]);
        ended.push((pid, inode));
    }
    for (_, inode) in &ended {
        assert!(eventually(10, || status(*inode) == "CRITICAL"), "{inode}: {}", status(*inode));
    }
    let before: Vec<(u64, String)> = ended.iter().map(|(_, i)| (*i, info_line(port, *i))).collect();
    for (pid, _) in &ended {
        ns.cmd(&format!("signal {pid} 9"));
        ns.cmd(&format!("wait {pid}"));
    }
    // New namespaces until the kernel hands one of those inodes out again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reused = loop {
        assert!(std::time::Instant::now() < deadline, "no inode was reused");
        let (pid, inode, _) = ns.hold(&[]);
        if let Some((_, old)) = before.iter().find(|(i, _)| *i == inode) {
            break (pid, inode, old.clone());
        }
        ns.cmd(&format!("signal {pid} 9"));
        ns.cmd(&format!("wait {pid}"));
    };
    let (pid, inode, old_info) = reused;
    assert!(
        eventually(10, || info_line(port, inode).contains(&format!("pid=\"{pid}\""))),
        "{}",
        info_line(port, inode)
    );
    assert_ne!(info_line(port, inode), old_info, "the same started label");
    // No alert state and no history from the namespace that had the inode before.
    assert!(eventually(5, || status(inode) == "CLEAR"), "{}", status(inode));
    let data: serde_json::Value = serde_json::from_str(
        &get(port, &format!("/api/v1/data?chart=ipc_ns_{inode}.ipc_semaphore_arrays&after=-60&format=json"))
            .body,
    )
    .unwrap();
    let values: Vec<f64> = data["data"].as_array().unwrap().iter().filter_map(|r| r[1].as_f64()).collect();
    assert!(values.iter().all(|v| *v == 0.0), "history of the old namespace: {values:?}");
}

/// A namespace that appears between two scans is watched from the next tick: the daemon looks
/// at the processes started since the last tick. With `rescan = 3600` only that can find it.
#[test]
fn a_new_namespace_is_watched_within_two_seconds_without_waiting_for_a_scan() {
    let mut ns = Namespace::new("quick");
    let (port, _, log) = ns.daemon("[namespaces]\nrescan = 3600\n");
    // The first scan is done: the daemon's own namespace is watched.
    assert!(eventually(5, || get(port, "/metrics").body.contains("sysvipc_semaphore_arrays{")));
    let started = std::time::Instant::now();
    let (_, inode, _) = ns.hold(&["sem 0 1"]);
    let line = format!("sysvipc_semaphore_arrays{{ipc_namespace=\"{inode}\"}} 1");
    let seen = eventually(5, || get(port, "/metrics").body.contains(&line));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(seen, "not watched {:?} after it appeared:\n{text}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

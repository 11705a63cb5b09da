//! The eBPF probes against the real kernel: refusals and waits made in throw-away namespaces
//! are counted for that namespace only. Loading BPF needs root (CAP_BPF and CAP_PERFMON):
//! tests/run.sh sets IPCWATCH_TEST_BPF=require when it runs as root, and then a probe that
//! cannot load fails the test; otherwise these tests say they are skipped, and why.

use std::time::{Duration, Instant};

use ipcwatch_probes::Probes;
use ipcwatch_sampler::probes::CallKind;

use crate::ns::Namespace;

/// The probes, or `None` (with the reason printed) where BPF is not permitted and not required.
pub fn probes_or_skip(test: &str) -> Option<Probes> {
    match Probes::load(10) {
        Ok(p) => Some(p),
        Err(e) if std::env::var("IPCWATCH_TEST_BPF").as_deref() != Ok("require") => {
            eprintln!("SKIPPED {test}: eBPF probes cannot load here ({e}); tests/run.sh runs it as root");
            None
        }
        Err(e) => panic!("IPCWATCH_TEST_BPF=require, and the probes cannot load: {e}"),
    }
}

fn inode(ns: &mut Namespace) -> u64 {
    ns.cmd("check-namespace").trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap()
}

/// Refreshes until `done` holds (the kernel counts at once; the ring buffer is read per refresh).
fn refreshed_until(probes: &mut Probes, done: impl Fn(&Probes) -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        probes.refresh(&|_| true).expect("the maps read");
        if done(probes) || Instant::now() > until {
            return done(probes);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refused_allocations_are_counted_per_namespace_with_who_asked() {
    let Some(mut probes) = probes_or_skip("refused_allocations_are_counted_per_namespace_with_who_asked")
    else {
        return;
    };
    let mut ns = Namespace::new("probe-refusals");
    let mut other = Namespace::new("probe-quiet");
    let (me, quiet) = (inode(&mut ns), inode(&mut other));
    ns.cmd("sysctl sem 250 1000 32 4");
    ns.cmd("sysctl msgmni 2");
    ns.cmd("sysctl shmmni 3");
    ns.cmd("mq-sysctl queues_max 1");
    assert_eq!(ns.cmd("try sem 10"), "4 6");
    assert_eq!(ns.cmd("try msg 5"), "2 3");
    assert_eq!(ns.cmd("try shm 5 4096"), "3 2");
    assert_eq!(ns.cmd("try-mq 3"), "1 2");
    let counted = |p: &Probes| {
        let n = p.namespace(me);
        [
            n.refused(CallKind::Sem),
            n.refused(CallKind::Msg),
            n.refused(CallKind::Shm),
            n.refused(CallKind::Mq),
        ]
    };
    assert!(refreshed_until(&mut probes, |p| counted(p) == [6, 3, 2, 2]), "counted {:?}", counted(&probes));
    let n = probes.namespace(me);
    assert!(n.refusals.iter().all(|r| r.errno == 28), "all ENOSPC: {:?}", n.refusals);
    assert_eq!(probes.namespace(quiet).refusals, vec![], "the quiet namespace has none");
    let mine: Vec<_> = probes.recent().iter().filter(|f| f.ipc_namespace == me).collect();
    assert_eq!(mine.len(), 13, "{mine:?}");
    let first = mine[0];
    assert_eq!((first.kind, first.errno, first.comm.as_str()), (CallKind::Sem, 28, "ipcwatch-testki"));
    assert_eq!(first.pid, ns.pid(), "the driver made the calls");
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - first.time_ms).abs() < 10_000, "a time near now: {} vs {now_ms}", first.time_ms);
    assert_eq!(n.last_failure.as_ref().map(|f| f.kind), Some(CallKind::Mq), "the latest is the mq_open");
}

#[test]
fn a_blocked_semop_and_a_blocked_msgsnd_add_their_wait_to_their_namespace() {
    let Some(mut probes) =
        probes_or_skip("a_blocked_semop_and_a_blocked_msgsnd_add_their_wait_to_their_namespace")
    else {
        return;
    };
    let mut ns = Namespace::new("probe-waits");
    let me = inode(&mut ns);
    let mut other = Namespace::new("probe-waits-quiet");
    let quiet = inode(&mut other);
    other.num("sem 0 1");
    let sem = ns.num("sem 0 1");
    let queue = ns.num("msg 0");
    ns.cmd(&format!("capacity {queue} 100"));
    assert_eq!(ns.cmd(&format!("fill {queue} 50")), "2");
    assert_eq!(ns.cmd(&format!("try-send {queue} 50 3")), "3");
    let started = Instant::now();
    assert_eq!(ns.cmd(&format!("sem-wait {sem} 2000")), "timeout");
    ns.cmd(&format!("send-wait {queue} 50 1500"));
    let took = started.elapsed().as_secs_f64();
    assert!(refreshed_until(&mut probes, |p| p.namespace(me).send_wait.sum_ns > 1_000_000_000));
    let n = probes.namespace(me);
    let q = probes.namespace(quiet);
    assert_eq!(
        (q.semaphore_wait.count(), q.send_wait.count()),
        (0, 0),
        "the other namespace waited on nothing"
    );
    let sem_wait = n.semaphore_wait.sum_ns as f64 / 1e9;
    let send_wait = n.send_wait.sum_ns as f64 / 1e9;
    assert!((1.95..2.3).contains(&sem_wait), "semop waited {sem_wait} s");
    assert!((1.45..1.8).contains(&send_wait), "msgsnd waited {send_wait} s (of {took} s in all)");
    assert_eq!(n.semaphore_wait.count(), 1);
    // The fill's 2 sends and the refused one that found the queue full, the 3 refused, the
    // one that waited.
    assert_eq!(n.send_wait.count(), 7);
    assert_eq!(n.send_refused, 4);
    let on_queue =
        n.objects.iter().find(|o| o.kind == CallKind::Msg && i64::from(o.id) == queue).expect("the queue");
    // The one that waited 1.5 s; a cold call may also take over the 16 µs that count as waiting.
    assert_eq!(on_queue.send_refused, 4, "{on_queue:?}");
    assert!(on_queue.waits >= 1 && on_queue.wait_ns >= 1_450_000_000, "{on_queue:?}");
    let on_sem =
        n.objects.iter().find(|o| o.kind == CallKind::Sem && i64::from(o.id) == sem).expect("the array");
    assert!(on_sem.waits >= 1 && on_sem.wait_ns >= 1_950_000_000, "{on_sem:?}");
}

/// Root here, as CI runs: the daemon on the host can load the probes. Else the reason.
fn host_root_or_skip(test: &str) -> bool {
    let root =
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root && std::env::var("IPCWATCH_TEST_BPF").as_deref() == Ok("require") {
        panic!("IPCWATCH_TEST_BPF=require, and the tests do not run as root");
    }
    if !root {
        eprintln!(
            "SKIPPED {test}: the daemon loads the eBPF probes only as root; tests/run.sh runs it as root"
        );
    }
    root
}

fn value(m: &std::collections::BTreeMap<String, f64>, key: &str) -> Option<f64> {
    m.get(key).copied()
}

#[test]
fn a_refusal_in_a_container_is_counted_alerted_and_named_within_seconds() {
    if !host_root_or_skip("a_refusal_in_a_container_is_counted_alerted_and_named_within_seconds") {
        return;
    }
    use crate::http::{get, ns_samples, wait_ready};
    let mut ns = Namespace::new("probe-daemon");
    let me = inode(&mut ns);
    ns.cmd("sysctl sem 250 1000 32 4");
    ns.cmd("sysctl msgmni 1");
    ns.cmd("sysctl shmmni 1");
    ns.cmd("mq-sysctl queues_max 1");
    let config = ns.path("probes.toml");
    std::fs::write(&config, "[namespaces]\nrescan = 1\n").unwrap();
    let port = crate::http::free_port();
    let log = ns.path("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let _daemon = crate::ns::KillOnDrop(
        crate::ns::dies_with_test(crate::ns::IPCWATCH)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    wait_ready(port, &log);
    let pid = _daemon.0.id();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("eBPF probes attached"), "{text}");
    let watched = format!("sysvipc_semaphore_arrays_limit{{ipc_namespace=\"{me}\"}}");
    assert!(
        crate::alerts::eventually(10, || ns_samples(&get(port, "/metrics").body).contains_key(&watched)),
        "the namespace is not watched"
    );
    // No thread keeps CAP_BPF (39) or CAP_PERFMON (38) once the probes are attached.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for set in ["CapEff:", "CapPrm:"] {
            let caps = status.lines().find_map(|l| l.strip_prefix(set)).unwrap().trim();
            let caps = u64::from_str_radix(caps, 16).unwrap();
            assert_eq!(caps & (3 << 38), 0, "a thread holds CAP_BPF or CAP_PERFMON in {set} {caps:#x}");
        }
    }

    let started = Instant::now();
    assert_eq!(ns.cmd("try sem 10"), "4 6");
    assert_eq!(ns.cmd("try msg 3"), "1 2");
    assert_eq!(ns.cmd("try shm 4 4096"), "1 3");
    assert_eq!(ns.cmd("try-mq 2"), "1 1");
    let counted =
        format!("sysvipc_allocation_failures_total{{ipc_namespace=\"{me}\",kind=\"sem\",errno=\"ENOSPC\"}}");
    let critical = format!(
        "ipcwatch_alert_status{{alert=\"ipc_allocation_refused\",chart=\"ipc_ns_{me}.allocation_failures\",ipc_namespace=\"{me}\",status=\"CRITICAL\"}}"
    );
    let mut seen_after = None;
    let until = Instant::now() + Duration::from_secs(10);
    let mut m = Default::default();
    while Instant::now() < until {
        m = ns_samples(&get(port, "/metrics").body);
        if value(&m, &counted) == Some(6.0) && value(&m, &critical) == Some(1.0) {
            seen_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen_after = seen_after.unwrap_or_else(|| panic!("not counted and alerted within 10 s: {m:#?}"));
    eprintln!("refusals counted and alerted {:.2} s after they were made", seen_after.as_secs_f64());
    let msg =
        format!("sysvipc_allocation_failures_total{{ipc_namespace=\"{me}\",kind=\"msg\",errno=\"ENOSPC\"}}");
    assert_eq!(value(&m, &msg), Some(2.0));
    let body = get(port, "/metrics").body;
    let last = body
        .lines()
        .find(|l| {
            l.starts_with("sysvipc_allocation_failure_last_timestamp_seconds{") && l.contains(&me.to_string())
        })
        .unwrap_or_else(|| panic!("no latest refusal: {body}"));
    assert!(
        last.contains("kind=\"mq\"")
            && last.contains("call=\"mq_open\"")
            && last.contains("comm=\"ipcwatch-testki\"")
            && last.contains(&format!("pid=\"{}\"", ns.pid())),
        "{last}"
    );
    crate::daemon::promtool_check(&body);

    let (code, table) = ns
        .run(crate::ns::IPCWATCH, &["snapshot", "--failures", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, "0", "{table}");
    let mine: Vec<&str> = table.lines().filter(|l| l.contains(&me.to_string())).collect();
    assert_eq!(mine.len(), 12, "{table}");
    assert!(mine[0].contains("mq_open") && mine[11].contains("semget"), "newest first: {table}");
    assert!(mine
        .iter()
        .all(|l| l.contains("ipcwatch-testki") && l.contains("ENOSPC") && l.contains(&ns.pid().to_string())));
}

#[test]
fn with_probes_disabled_or_refused_the_daemon_serves_everything_else() {
    use crate::http::{get, samples};
    // Disabled in the config.
    let mut ns = Namespace::new("probe-off");
    ns.cmd("sem 0 1");
    let (port, _, log) = ns.daemon("[ebpf]\nenabled = false\n");
    let m = samples(&get(port, "/metrics").body);
    assert_eq!(value(&m, "ipcwatch_ebpf_enabled"), Some(0.0));
    assert_eq!(value(&m, "sysvipc_semaphore_arrays"), Some(1.0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("eBPF probes off").count(), 1, "{text}");
    let failures = get(port, "/failures").body;
    assert!(
        failures.contains("\"enabled\": false") && failures.contains("[ebpf] enabled = false"),
        "{failures}"
    );
    // Root of a user namespace: no CAP_BPF over the kernel, so the kernel refuses them.
    let mut ns = Namespace::new("probe-nocap");
    ns.cmd("sem 0 2");
    let (port, _, log) = ns.daemon("");
    let m = samples(&get(port, "/metrics").body);
    assert_eq!(value(&m, "ipcwatch_ebpf_enabled"), Some(0.0));
    assert_eq!(value(&m, "sysvipc_semaphores"), Some(2.0));
    let text = std::fs::read_to_string(&log).unwrap();
    let off: Vec<&str> = text.lines().filter(|l| l.contains("eBPF probes off")).collect();
    assert_eq!(off.len(), 1, "{text}");
    assert!(off[0].contains("everything else runs"), "{}", off[0]);
    let (code, table) = ns
        .run(crate::ns::IPCWATCH, &["snapshot", "--failures", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, "0", "{table}");
    assert!(table.contains("probes are off"), "{table}");
}

/// The clang that built the committed object (Debian 12's): with it, a rebuild is the same
/// bytes; with another, the rebuild must still load and count the same.
const COMMITTED_WITH_CLANG: &str = "Debian clang version 14.0.6";

#[test]
fn the_committed_object_is_what_its_source_builds_and_the_rebuild_counts_the_same() {
    let Some(mut committed) =
        probes_or_skip("the_committed_object_is_what_its_source_builds_and_the_rebuild_counts_the_same")
    else {
        return;
    };
    let bpf = crate::alerts::repo("crates/probes/bpf");
    let out = std::env::temp_dir().join(format!("ipcwatch-bpf-{}.o", std::process::id()));
    let built = std::process::Command::new(bpf.join("build.sh"))
        .arg(&out)
        .output()
        .expect("crates/probes/bpf/build.sh runs");
    assert!(
        built.status.success(),
        "build.sh failed (it needs clang, llvm and libbpf-dev; tests/run.sh installs them): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let rebuilt = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let clang = std::process::Command::new("clang").arg("--version").output().unwrap();
    let clang = String::from_utf8_lossy(&clang.stdout).lines().next().unwrap_or("").to_string();
    if clang.starts_with(COMMITTED_WITH_CLANG) {
        assert!(
            rebuilt == ipcwatch_probes::OBJECT,
            "crates/probes/bpf/ipcwatch.bpf.o is not what ipcwatch.bpf.c builds: run crates/probes/bpf/build.sh and commit it"
        );
    } else {
        eprintln!("{clang} is not {COMMITTED_WITH_CLANG}: the rebuild is checked by what it counts only");
    }
    let mut fresh = ipcwatch_probes::Probes::load_object(&rebuilt, 10).expect("the rebuilt object loads");
    let mut ns = Namespace::new("probe-rebuild");
    let me = inode(&mut ns);
    let sem = ns.num("sem 0 1");
    ns.cmd("sysctl sem 250 1000 32 2");
    assert_eq!(ns.cmd("try sem 5"), "1 4");
    assert_eq!(ns.cmd(&format!("sem-wait {sem} 300")), "timeout");
    for probes in [&mut committed, &mut fresh] {
        assert!(refreshed_until(probes, |p| p.namespace(me).semaphore_wait.count() == 1));
        let n = probes.namespace(me);
        assert_eq!((n.refused(CallKind::Sem), n.refused(CallKind::Msg)), (4, 0));
        assert!(n.semaphore_wait.sum_ns >= 300_000_000, "{:?}", n.semaphore_wait);
    }
}

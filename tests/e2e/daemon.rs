//! The daemon in a throw-away IPC namespace, scraped over real HTTP.

use std::process::Command;
use std::time::Duration;

use crate::http::{free_port, get, get_gzip, request, samples, wait_metrics, wait_ready};
use crate::ns::{dies_with_test, recv, KillOnDrop, Namespace, IPCWATCH};

/// Starts the daemon inside `ns` on a free port; returns (port, pid, log path).
fn start(ns: &mut Namespace, extra: &[&str]) -> (u16, u32, std::path::PathBuf) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--web.listen-address", addr.as_str()];
    args.extend_from_slice(extra);
    let (pid, log) = ns.spawn(IPCWATCH, &args);
    wait_ready(port, &log);
    (port, pid, log)
}

#[test]
fn metrics_equal_the_kernel_and_pass_promtool() {
    let mut ns = Namespace::new("metrics");
    ns.cmd("sysctl sem 250 20 32 10");
    ns.cmd("sysctl msgmni 50");
    ns.cmd("sysctl shmmni 40");
    ns.cmd("sysctl shmall 5000");
    for n in [7, 3, 1] {
        ns.cmd(&format!("sem 0 {n}"));
    }
    let q1 = ns.num("msg 0x1234");
    ns.cmd(&format!("send {q1} 100 3"));
    let q2 = ns.num("msg 0x80000001");
    ns.cmd(&format!("capacity {q2} 500"));
    ns.cmd(&format!("fill {q2} 250"));
    ns.num("shm 0x99 5000"); // orphaned
    let seg = ns.num("shm 0 40961");
    ns.cmd(&format!("attach {seg} 12288"));

    let (port, _, _) = start(&mut ns, &[]);
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let m = samples(&r.body);
    let expect = [
        ("sysvipc_semaphore_arrays", 3.0),
        ("sysvipc_semaphore_arrays_limit", 10.0),
        ("sysvipc_semaphores", 11.0),
        ("sysvipc_semaphores_limit", 20.0),
        ("sysvipc_semaphores_per_array_limit", 250.0),
        ("sysvipc_semaphore_ops_per_call_limit", 32.0),
        ("sysvipc_semaphore_value_limit", 32767.0),
        ("sysvipc_message_queues", 2.0),
        ("sysvipc_message_queues_limit", 50.0),
        ("sysvipc_messages", 5.0),
        ("sysvipc_message_bytes", 800.0),
        ("sysvipc_message_size_limit_bytes", 8192.0),
        ("sysvipc_message_queue_default_capacity_bytes", 16384.0),
        ("sysvipc_shared_memory_segments", 2.0),
        ("sysvipc_shared_memory_segments_limit", 40.0),
        ("sysvipc_shared_memory_bytes", 45961.0),
        ("sysvipc_shared_memory_pages", 2.0 + 11.0),
        ("sysvipc_shared_memory_pages_limit", 5000.0),
        ("sysvipc_shared_memory_segment_size_limit_bytes", 18446744073692774399.0),
        ("sysvipc_shared_memory_resident_bytes", 12288.0),
        ("sysvipc_shared_memory_swapped_bytes", 0.0),
        ("sysvipc_shared_memory_orphaned_segments", 1.0),
        ("sysvipc_shared_memory_orphaned_bytes", 5000.0),
        (r#"sysvipc_message_queue_messages{key="0x00001234",id="0",owner="root"}"#, 3.0),
        (r#"sysvipc_message_queue_bytes{key="0x00001234",id="0",owner="root"}"#, 300.0),
        (r#"sysvipc_message_queue_capacity_bytes{key="0x00001234",id="0",owner="root"}"#, 16384.0),
        (r#"sysvipc_message_queue_bytes{key="0x80000001",id="1",owner="root"}"#, 500.0),
        (r#"sysvipc_message_queue_capacity_bytes{key="0x80000001",id="1",owner="root"}"#, 500.0),
        (r#"ipcwatch_collector_success{collector="sem"}"#, 1.0),
        (r#"ipcwatch_collector_success{collector="msg"}"#, 1.0),
        (r#"ipcwatch_collector_success{collector="shm"}"#, 1.0),
        (r#"ipcwatch_collector_success{collector="limits"}"#, 1.0),
    ];
    for (name, want) in expect {
        assert_eq!(m.get(name).copied(), Some(want), "{name}\n{}", r.body);
    }
    assert!(m.keys().any(|k| k.starts_with("ipcwatch_build_info{version=")), "{}", r.body);
    assert!(m.keys().any(|k| k.starts_with("ipcwatch_collector_duration_seconds{collector=\"shm\"}")));
    assert!(m.contains_key("process_resident_memory_bytes"));
    for line in r.body.lines().filter(|l| l.starts_with("sysvipc_") && !l.contains('{')) {
        let name = line.split(' ').next().unwrap();
        assert!(
            r.body.contains(&format!("# HELP {name} ")) && r.body.contains(&format!("# TYPE {name} gauge")),
            "{name}"
        );
    }

    promtool_check(&r.body);

    // The gzip form (what Prometheus asks for) is written as it is rendered: the same series.
    let z = get_gzip(port, "/metrics");
    assert_eq!(z.status, 200);
    promtool_check(&z.body);
    let stable = |body: &str| -> Vec<String> {
        samples(body)
            .into_iter()
            .filter(|(k, _)| k.starts_with("sysvipc_") || k.starts_with("posix_"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect()
    };
    assert_eq!(stable(&z.body), stable(&r.body));
    assert!(z.body.len() > 4096 && z.body.ends_with('\n'), "{}", z.body);
}

/// Prometheus's own linter, not our eyes: `promtool check metrics` must say nothing.
pub fn promtool_check(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package `prometheus`; tests/run.sh installs it)");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn a_removed_queue_loses_its_series_and_the_cap_holds() {
    let mut ns = Namespace::new("queues");
    let small = ns.num("msg 0");
    ns.cmd(&format!("send {small} 10 1"));
    let big = ns.num("msg 0");
    ns.cmd(&format!("send {big} 1000 2"));
    let gone = ns.num("msg 0");
    ns.cmd(&format!("send {gone} 500 1"));
    let config = ns.path("cap.toml");
    std::fs::write(&config, "[charts]\nmax_queue_dimensions = 2\n").unwrap();
    let (port, _, _) = start(&mut ns, &["--config", config.to_str().unwrap()]);
    let series = |m: &std::collections::BTreeMap<String, f64>| -> Vec<String> {
        m.keys().filter(|k| k.starts_with("sysvipc_message_queue_bytes{")).cloned().collect()
    };
    let m = samples(&get(port, "/metrics").body);
    let ids: Vec<String> = series(&m);
    assert_eq!(ids.len(), 2, "capped at 2, the biggest first: {ids:?}");
    assert!(ids.iter().all(|k| !k.contains(&format!("id=\"{small}\""))), "{ids:?}");
    assert_eq!(m["sysvipc_message_queues"], 3.0, "totals are never capped");

    ns.cmd(&format!("rm msg {gone}"));
    let m = wait_metrics(port, |m| m.get("sysvipc_message_queues") == Some(&2.0));
    let ids = series(&m);
    assert!(ids.iter().all(|k| !k.contains(&format!("id=\"{gone}\""))), "stale series: {ids:?}");
    assert_eq!(ids.len(), 2, "the next biggest queue takes the free slot: {ids:?}");
}

#[test]
fn http_routes_methods_and_landing_page() {
    let mut ns = Namespace::new("routes");
    ns.cmd("sem 0 4");
    let (port, _, _) = start(&mut ns, &[]);
    assert_eq!(get(port, "/-/healthy").status, 200);
    assert_eq!(get(port, "/-/ready").status, 200);
    assert_eq!(get(port, "/nope").status, 404);
    let post = request(port, "POST", "/metrics").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = request(port, "HEAD", "/metrics").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let page = get(port, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("ipcwatch") && page.body.contains("href=\"metrics\""));
    assert!(page.body.contains("<td>Semaphores (SEMMNS)</td><td>4</td><td>1024000000</td>"), "{}", page.body);
}

#[test]
fn sighup_with_a_bad_config_keeps_serving() {
    let mut ns = Namespace::new("sighup");
    let config = ns.path("ipcwatch.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    let (port, pid, log) = start(&mut ns, &["--config", config.to_str().unwrap()]);
    std::fs::write(&config, "[log]\nlevel = \"info\"\nbogus = 1\n").unwrap();
    ns.cmd(&format!("signal {pid} 1"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(port, "/-/healthy").status, 200);
    assert_eq!(get(port, "/metrics").status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ipcwatch.toml:3: unknown field `bogus`"), "{text}");
    assert!(text.contains("keeping the current configuration"), "{text}");
    // A good config is taken.
    std::fs::write(&config, "[log]\nlevel = \"debug\"\n").unwrap();
    ns.cmd(&format!("signal {pid} 1"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(std::fs::read_to_string(&log).unwrap().contains("configuration reloaded"));
    // SIGTERM stops it cleanly.
    ns.cmd(&format!("signal {pid} 15"));
    assert_eq!(ns.cmd(&format!("wait {pid}")), "0");
}

#[test]
fn a_busy_port_is_one_clear_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(IPCWATCH).args(["--web.listen-address", &addr]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert_eq!(last, format!("ipcwatch: cannot listen on {addr}: Address already in use (os error 98)"));
}

#[test]
fn bad_flags_and_configs_are_one_line_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[sampling]\nupdate_every = 0\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--config", bad.to_str().unwrap()],
            "bad.toml:2: update_every: 0 is not between 1 and 3600 seconds",
        ),
        (vec!["--config", "/nonexistent.toml"], "/nonexistent.toml: cannot read config"),
        (vec!["check-config", bad.to_str().unwrap()], "update_every"),
        (vec!["--log.level", "loud"], "loud"),
        (vec!["--web.listen-address", "nonsense"], "listen_addresses: `nonsense`"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, want) in cases {
        let out = Command::new(IPCWATCH).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.lines().next().unwrap_or("").contains(want), "{args:?}: {err}");
    }
    let good = Command::new(IPCWATCH)
        .args(["check-config", concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/ipcwatch.toml")])
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(IPCWATCH).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in
        ["--config", "--web.listen-address", "--path.procfs", "--log.level", "snapshot", "check-config"]
    {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn systemd_notifications_ready_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("ipcwatch-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = free_port();
    // The daemon only reads; running it in the test's own namespace creates nothing there.
    let mut child = KillOnDrop(
        dies_with_test(IPCWATCH)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = recv(&sock, &mut buf).expect("no notification within 10 s");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert_eq!(get(port, "/-/ready").status, 200, "READY is sent only once serving");
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    while !seen.contains("STOPPING=1") {
        let n = recv(&sock, &mut buf).expect("no STOPPING within 10 s");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(child.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_unit_is_hardened_as_far_as_its_capabilities_allow() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../systemd/ipcwatch.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("PrivateIPC=")),
        "PrivateIPC hides the host's IPC"
    );
    assert!(text.contains("Type=notify"));
    let exposure = |unit: &std::path::Path| -> f64 {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(unit)
            .output()
            .expect("systemd-analyze is needed (Debian package `systemd`; tests/run.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let line =
            text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
        line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    // Every namespace: CAP_SYS_ADMIN and CAP_SYS_PTRACE cost 0.6, and CAP_IPC_OWNER (the
    // census reading other users' semaphore pids) 0.1 more; the eBPF probes (CAP_BPF, the
    // bpf and perf_event_open calls, loaded at start only) 0.3 more; nothing else.
    let all = exposure(std::path::Path::new(unit));
    assert!(all <= 2.4, "{all}");
    // The daemon's own namespace only, with the drop-in the unit's comment gives.
    let dir = std::env::temp_dir().join(format!("ipcwatch-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let own = dir.join("ipcwatch.service");
    let caps = "CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_IPC_OWNER CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH";
    assert!(text.contains(&format!("CapabilityBoundingSet={caps}\n")), "the unit's capabilities changed");
    let text = text
        .replace(&format!("CapabilityBoundingSet={caps}"), "CapabilityBoundingSet=")
        .replace(&format!("AmbientCapabilities={caps}"), "AmbientCapabilities=")
        .replace("SystemCallFilter=setns capset bpf perf_event_open", "SystemCallFilter=setns capset")
        .replace("RestrictNamespaces=ipc", "RestrictNamespaces=yes");
    std::fs::write(&own, text).unwrap();
    let own_level = exposure(&own);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(own_level <= 1.4, "{own_level}");
}

#[test]
fn the_watchdog_is_pinged_on_its_own_clock_whatever_update_every() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("ipcwatch-watchdog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = dir.join("slow.toml");
    // A sample every 60 s, a watchdog of 2 s: pinging only after samples would get us killed.
    std::fs::write(&config, "[sampling]\nupdate_every = 60\n[charts]\nhistory = 3600\n").unwrap();
    let port = free_port();
    let child = KillOnDrop(
        dies_with_test(IPCWATCH)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
            ])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "2000000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    let mut pings = 0;
    let mut buf = [0u8; 4096];
    while pings < 3 {
        let n = recv(&sock, &mut buf).expect("a watchdog ping within 10 s");
        pings += String::from_utf8_lossy(&buf[..n]).matches("WATCHDOG=1").count();
    }
    let took = started.elapsed();
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
    assert!(took < Duration::from_secs(8), "3 pings took {took:?}: not on a 1 s clock");
}

#[test]
fn a_missing_rules_path_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-norules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.toml");
    std::fs::write(&config, "[alerts]\nrules = \"/nonexistent/rules\"\n").unwrap();
    for args in [vec!["check-config", config.to_str().unwrap()], vec!["--config", config.to_str().unwrap()]] {
        let out = Command::new(IPCWATCH).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim(),
            format!("ipcwatch: {}:2: rules: /nonexistent/rules does not exist", config.display())
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_low_open_file_limit_lowers_the_cap_instead_of_failing_accepts() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("log");
    let port = free_port();
    let _daemon = KillOnDrop(
        dies_with_test("prlimit")
            .args(["--nofile=256:256", "--", IPCWATCH, "--web.listen-address", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("prlimit (util-linux) is needed; tests/run.sh installs it"),
    );
    wait_ready(port, &log_path);
    // 300 idle clients: more than 256 descriptors allow.
    let idle: Vec<_> = (0..300).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(2));
    drop(idle);
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(log.contains("max_connections lowered to fit the open-file limit"), "{log}");
    assert!(!log.contains("accepting a connection failed"), "accept never ran out of descriptors:\n{log}");
}

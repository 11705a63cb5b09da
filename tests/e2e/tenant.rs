//! What a hostile container can put in front of ipcwatch: names made to collide or to drive
//! the admin's terminal. Each test reproduces the attack against real namespaces and fails
//! without its fix (issue 20).

use std::os::unix::ffi::OsStrExt;

use crate::alerts::eventually;
use crate::http::{free_port, get, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

#[test]
fn dev_shm_names_that_differ_only_in_invalid_utf8_stay_two_series() {
    let mut ns = Namespace::with_mount("non-utf8");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    // `dup\xff` and `dup\xfe`, the biggest files there, written through the namespace's root.
    let shm = std::path::PathBuf::from(format!("/proc/{}/root/dev/shm", ns.pid()));
    for b in [0xff_u8, 0xfe] {
        let bytes = [b'd', b'u', b'p', b];
        std::fs::write(shm.join(std::ffi::OsStr::from_bytes(&bytes)), vec![1u8; 16384]).unwrap();
    }
    let (port, _, _) = daemon(&mut ns);
    let names = || -> Vec<String> {
        let body = get(port, "/metrics").body;
        let mut n: Vec<String> = body
            .lines()
            .filter(|l| l.starts_with("posix_shm_file_bytes{"))
            .filter_map(|l| l.split("name=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect();
        n.sort();
        n
    };
    // The exposition escapes the backslash once more: `dup\\xfe` is the name `dup\xfe`.
    assert!(
        eventually(10, || names() == ["dup\\\\xfe", "dup\\\\xff"]),
        "{:?}\n{}",
        names(),
        get(port, "/metrics").body
    );
}

#[test]
fn names_in_snapshot_tables_cannot_drive_the_terminal() {
    let mut ns = Namespace::with_mount("terminal");
    // A queue whose name clears the screen and turns the text red.
    ns.cmd("mq /\u{1b}[2J\u{1b}[31mevil 10 100");
    let (code, table) = ns.run(IPCWATCH, &["snapshot"]);
    assert_eq!(code, "0", "{table}");
    assert!(!table.contains('\u{1b}'), "an escape sequence reached the terminal:\n{table:?}");
    assert!(table.contains("/\\x1b[2J\\x1b[31mevil"), "{table}");
    // JSON keeps the name exact (escaped by JSON itself).
    let json = ns.snapshot_json();
    let names: Vec<&str> = json["posix"]["queues"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/\u{1b}[2J\u{1b}[31mevil"]);
}

/// A "container": new mount and IPC namespaces inside `ns`, set up by `setup` (shell, run
/// as root of the container before it holds), holding one semaphore array. Returns its
/// IPC namespace inode. A setup that must hand a descriptor to the holder execs `$HOLD`
/// itself (exec, so the holder keeps the parent-death signal and dies with the test).
fn container(ns: &mut Namespace, name: &str, setup: &str) -> u64 {
    let script = ns.path(&format!("{name}.sh"));
    let testkit = crate::ns::testkit();
    // $HOLD is the holder's command line, for a setup that must exec it itself (to pass on
    // a descriptor).
    let hold = format!("{} --hold 'check-namespace;sem,0,1'", testkit.display());
    std::fs::write(&script, format!("set -e\nexport HOLD=\"{hold}\"\n{setup}\neval \"exec $HOLD\"\n"))
        .unwrap();
    let (_, out) = ns.spawn("unshare", &["--mount", "--ipc", "sh", script.to_str().unwrap()]);
    let mut text = String::new();
    assert!(
        eventually(10, || {
            text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("holding")
        }),
        "the container did not start: {text}"
    );
    text.lines().next().unwrap().trim_start_matches("ok ipc:[").trim_end_matches(']').parse().unwrap()
}

/// The daemon in `ns`, watching every namespace, with a census every second.
fn daemon(ns: &mut Namespace) -> (u16, u32, std::path::PathBuf) {
    ns.daemon("[namespaces]\nrescan = 1\n[holders]\ninterval = 1\n")
}

#[test]
fn a_dev_shm_symlink_to_a_host_path_is_not_followed() {
    let mut ns = Namespace::new("symlink");
    let (port, _, log) = daemon(&mut ns);
    // /dev/shm -> /etc: followed through /proc/PID/root, the absolute link would resolve
    // against the daemon's root and list the host's /etc.
    let evil = container(&mut ns, "symlink", "mount -t tmpfs tmpfs /dev\nln -s /etc /dev/shm");
    let label = format!("ipc_namespace=\"{evil}\"");
    assert!(
        eventually(10, || get(port, "/metrics")
            .body
            .contains(&format!("sysvipc_semaphore_arrays{{{label}}} 1"))),
        "the container is not watched"
    );
    // Two census passes later: nothing of /etc is published, and the log says why.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let body = get(port, "/metrics").body;
    let leaked: Vec<&str> =
        body.lines().filter(|l| l.starts_with("posix_shm") && l.contains(&label)).collect();
    assert!(leaked.is_empty(), "the host's /etc was read through the link:\n{}", leaked.join("\n"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/dev/shm is a symbolic link: not followed"), "{text}");
    assert!(
        body.contains(&format!("ipcwatch_collector_success{{collector=\"devshm\",{label}}} 0")),
        "{body}"
    );
}

#[test]
fn a_fuse_dev_shm_that_never_answers_stalls_nothing() {
    let mut ns = Namespace::new("fuse");
    let (port, pid, log) = daemon(&mut ns);
    let calm = ns.hold(&["sem 0 1", "sem 0 1"]).1;
    // A FUSE mount on /dev/shm whose server never reads a request: every statfs, stat or
    // lookup on it waits for good.
    let fuse = container(
        &mut ns,
        "fuse",
        "exec python3 -c 'import os,subprocess; fd=os.open(\"/dev/fuse\", os.O_RDWR); os.set_inheritable(fd, True); \
         subprocess.run([\"mount\",\"-i\",\"-t\",\"fuse\",\"-o\",f\"fd={fd},rootmode=40000,user_id=0,group_id=0\",\"hang\",\"/dev/shm\"], pass_fds=[fd], check=True); \
         os.execvp(\"sh\", [\"sh\", \"-c\", \"exec \" + os.environ[\"HOLD\"]])'",
    );
    let arrays = |inode: u64| format!("sysvipc_semaphore_arrays{{ipc_namespace=\"{inode}\"}}");
    assert!(
        eventually(10, || {
            let body = get(port, "/metrics").body;
            body.contains(&format!("{} 1", arrays(fuse))) && body.contains(&format!("{} 2", arrays(calm)))
        }),
        "the namespaces are not watched:\n{}",
        get(port, "/metrics").body
    );
    // Several ticks and census passes later the daemon is healthy, every namespace's series
    // are there, and the FUSE one is said to be skipped.
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let healthy = crate::http::request(port, "GET", "/-/healthy").map(|r| r.status);
        assert_eq!(healthy.ok(), Some(200), "{}", std::fs::read_to_string(&log).unwrap());
    }
    let body = get(port, "/metrics").body;
    assert!(
        body.contains(&format!("{} 1", arrays(fuse))) && body.contains(&format!("{} 2", arrays(calm))),
        "{body}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/dev/shm is on FUSE: not read"), "{text}");
    // SIGTERM still ends it at once.
    ns.cmd(&format!("signal {pid} 15"));
    let code = ns.cmd(&format!("wait {pid}"));
    assert_eq!(code, "0", "{}", std::fs::read_to_string(&log).unwrap());
}

/// The daemon in `ns` with web configuration `web` (TLS: /-/ready is not plain HTTP), once
/// its first sample is taken; its port and log.
fn tls_daemon(ns: &mut Namespace, web: &std::path::Path) -> (u16, std::path::PathBuf) {
    let port = free_port();
    let (_, log) = ns.spawn(
        IPCWATCH,
        &["--web.config.file", web.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}")],
    );
    let ready =
        eventually(10, || std::fs::read_to_string(&log).unwrap_or_default().contains("first sample taken"));
    assert!(ready, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    (port, log)
}

#[test]
fn clients_cannot_flood_the_log() {
    let mut ns = Namespace::new("log-flood");
    let (_, cert, key) = crate::tls::certificates(&ns.dir);
    let web = ns.path("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: {}\n  key_file: {}\n", cert.display(), key.display()),
    )
    .unwrap();
    let (port, log) = tls_daemon(&mut ns, &web);
    // 60 handshakes that send an IP address as SNI (rustls warns about each).
    let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
    let before = lines();
    for _ in 0..60 {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"), "no handshake");
    }
    assert_eq!(lines(), before, "{}", std::fs::read_to_string(&log).unwrap());

    // A broken web configuration: every connection is refused, and logged at most 20 times.
    std::fs::write(&web, "tls_server_config:\n  cert_file: /nonexistent\n").unwrap();
    for _ in 0..100 {
        let _ = crate::http::request(port, "GET", "/metrics");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let refused = text.lines().filter(|l| l.contains("web configuration unusable")).count();
    assert!((1..=20).contains(&refused), "{refused} lines:\n{text}");
}

/// Hostile clients from tests/tools/flood.py, killed with the test; returns once they are
/// connected.
fn flood(args: &[&str]) -> (crate::ns::KillOnDrop, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut child = crate::ns::dies_with_test("python3")
        .arg(crate::alerts::repo("tests/tools/flood.py"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the flood did not start");
    (crate::ns::KillOnDrop(child), out)
}

/// The slowest of `n` scrapes, each of which must succeed.
fn worst_scrape(n: usize, mut scrape: impl FnMut() -> u16) -> std::time::Duration {
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..n {
        let started = std::time::Instant::now();
        assert_eq!(scrape(), 200);
        worst = worst.max(started.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    worst
}

fn metric(port: u16, name: &str) -> f64 {
    let body = get(port, "/metrics").body;
    crate::http::samples(&body).get(name).copied().unwrap_or_else(|| panic!("no {name}:\n{body}"))
}

#[test]
fn slowloris_connections_do_not_keep_scrapes_out() {
    let mut ns = Namespace::new("slowloris");
    let port = free_port();
    let (_, log) = ns.spawn(IPCWATCH, &["--web.listen-address", &format!("127.0.0.1:{port}")]);
    wait_ready(port, &log);
    // 1,500 connections trickling their headers: more than the 512 slots.
    let (_flood, _) = flood(&["slowloris", &port.to_string(), "1500", "30"]);
    let worst = worst_scrape(20, || crate::http::request(port, "GET", "/metrics").map_or(0, |r| r.status));
    eprintln!("slowloris: the slowest of 20 scrapes took {worst:?} with 1,500 slow connections open");
    assert!(worst < std::time::Duration::from_secs(2), "{worst:?}");
    assert!(metric(port, "ipcwatch_http_connections_evicted_total") > 0.0);
}

#[test]
fn wrong_passwords_never_keep_a_right_one_waiting() {
    let mut ns = Namespace::new("bcrypt-flood");
    let (ca, _, _) = crate::tls::certificates(&ns.dir);
    let web = ns.path("web.yml");
    crate::tls::web_config(&web, "prometheus", "right");
    let (port, _) = tls_daemon(&mut ns, &web);
    let scrape = || crate::tls::curl(&ca, port, "/metrics", Some("prometheus:right")).0;
    assert_eq!(scrape(), 200, "the right password passes (and is remembered)");
    // 520 clients sending a wrong password over TLS, as fast as they can.
    let (_flood, _) = flood(&["wrongpass", &port.to_string(), "520", "20", ca.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let worst = worst_scrape(20, scrape);
    eprintln!(
        "bcrypt flood: the slowest of 20 scrapes took {worst:?} with 520 clients sending wrong passwords"
    );
    assert!(worst < std::time::Duration::from_secs(3), "{worst:?}");
    let (_, text) = crate::tls::curl(&ca, port, "/metrics", Some("prometheus:right"));
    let throttled = crate::http::samples(text.split("\r\n\r\n").nth(1).unwrap_or(""))
        .get("ipcwatch_http_auth_throttled_total")
        .copied();
    assert!(throttled.is_some_and(|t| t > 0.0), "{throttled:?}");
}

#[test]
fn clients_that_never_read_huge_answers_pin_no_memory() {
    use std::io::Write;
    let mut ns = Namespace::new("no-read");
    // A chart with 100 dimensions: the per-queue bytes chart.
    for _ in 0..100 {
        ns.cmd("msg 0");
    }
    let port = free_port();
    let (pid, log) = ns.spawn(IPCWATCH, &["--web.listen-address", &format!("127.0.0.1:{port}")]);
    wait_ready(port, &log);
    // Twelve clients ask for ten years of it in HTML and never read a byte.
    let request = "GET /api/v1/data?chart=system.message_queue_bytes&after=-9223372036854775808&format=html HTTP/1.1\r\nHost: x\r\n\r\n";
    let clients: Vec<std::net::TcpStream> = (0..12)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    eprintln!("12 clients not reading ten-year HTML answers: daemon RSS {} MB", rss_kb / 1024);
    assert!(rss_kb < 64 * 1024, "RSS {rss_kb} kB");
    // The daemon still answers everyone else.
    assert_eq!(get(port, "/-/healthy").status, 200);
    drop(clients);
}

#[test]
fn a_notification_storm_runs_few_notifiers_without_capabilities_or_our_environment() {
    let mut ns = Namespace::new("storm");
    let log = ns.path("notified");
    let script = ns.path("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho start >> {log}\necho \"$(grep CapEff /proc/self/status) $(env | grep -c SECRET) $IPCWATCH_ALERT_NAME\" >> {log}\nsleep 0.3\necho end >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(crate::alerts::repo("alerts/ipc.conf"))
        .unwrap()
        .replace("every: 10s", "every: 1s")
        .replace("delay: down 5m multiplier 1.5 max 1h", "")
        .replace("delay: down 15m multiplier 1.5 max 1h", "");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    let config = ns.path("storm.toml");
    std::fs::write(
        &config,
        format!("[namespaces]\nrescan = 1\n[alerts]\nrules = \"rules\"\nexec = \"{}\"\n", script.display()),
    )
    .unwrap();
    let port = free_port();
    // A secret in the daemon's environment, which no notifier may see.
    let (pid, daemon_log) = ns.spawn(
        "env",
        &[
            "IPCWATCH_TEST_SECRET=leak",
            IPCWATCH,
            "--config",
            config.to_str().unwrap(),
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ],
    );
    wait_ready(port, &daemon_log);
    // 60 namespaces at their SEMMNI of 1: each raises semaphore_arrays_used at once.
    for _ in 0..60 {
        ns.hold(&["sysctl sem 250 100 32 1", "sem 0 1"]);
    }
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(60, || text().matches("semaphore_arrays_used").count() >= 60),
        "{} notifications:\n{}",
        text().matches("semaphore_arrays_used").count(),
        std::fs::read_to_string(&daemon_log).unwrap()
    );
    let text = text();
    // At most four ran at once.
    let mut running = 0i32;
    let mut most = 0;
    for line in text.lines() {
        match line {
            "start" => running += 1,
            "end" => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert!((1..=4).contains(&most), "{most} notifiers ran at once");
    // None had a capability or saw the daemon's environment.
    for line in text.lines().filter(|l| l.starts_with("CapEff")) {
        assert!(line.starts_with("CapEff:\t0000000000000000 0 "), "{line}");
    }
    // The daemon kept few descriptors and still accepts.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert!(fds < 200, "{fds} descriptors open");
    assert_eq!(get(port, "/-/healthy").status, 200);
    assert!(get(port, "/metrics")
        .body
        .contains("ipcwatch_notifications_dropped_total{reason=\"exec_busy\"}"));
}

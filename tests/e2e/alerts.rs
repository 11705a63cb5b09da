//! Alerts end to end: the daemon raises and clears the ported rules on a real kernel, runs
//! the exec notifier, and a real Alertmanager receives the alert and its resolution.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{free_port, get, request, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

pub(crate) fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

/// Starts the daemon in `ns` with a config file written from `config`.
fn start(ns: &mut Namespace, config: &str) -> (u16, u32, PathBuf) {
    let port = free_port();
    let path = ns.path("ipcwatch.toml");
    std::fs::write(&path, config).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let (pid, log) = ns.spawn(IPCWATCH, &["--config", path.to_str().unwrap(), "--web.listen-address", &addr]);
    wait_ready(port, &log);
    (port, pid, log)
}

fn alarm(port: u16, key: &str) -> serde_json::Value {
    let body = get(port, "/api/v1/alarms?all").body;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    doc["alarms"][key].clone()
}

/// Polls until `check` holds or `secs` pass; returns whether it held.
pub(crate) fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

const ARRAYS: &str = "system.ipc_semaphore_arrays.semaphore_arrays_used";

#[test]
fn the_ported_rule_goes_warning_and_clears_on_a_real_kernel() {
    let mut ns = Namespace::new("alert-ported");
    ns.cmd("sysctl sem 250 20 32 10");
    let out = ns.path("exec.out");
    let script = ns.path("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv | grep ^IPCWATCH_ | sort >> {}\necho --- >> {}\n",
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config =
        format!("[alerts]\nrules = \"{}\"\nexec = \"{}\"\n", repo("alerts").display(), script.display());
    let (port, _, log) = start(&mut ns, &config);
    assert!(eventually(5, || alarm(port, ARRAYS)["status"] == "CLEAR"), "{}", alarm(port, ARRAYS));
    let first = alarm(port, ARRAYS)["last_updated"].as_i64().unwrap();

    let ids: Vec<i64> = (0..9).map(|_| ns.num("sem 0 1")).collect();
    // `every: 10s`: WARNING at the next evaluation, 90% of SEMMNI.
    assert!(eventually(15, || alarm(port, ARRAYS)["status"] == "WARNING"), "{}", alarm(port, ARRAYS));
    let a = alarm(port, ARRAYS);
    assert_eq!(a["value"], 90.0);
    assert!(a["last_updated"].as_i64().unwrap() - first <= 11, "{a}");
    let body = get(port, "/metrics").body;
    let metrics = crate::http::samples(&body);
    let status = |s: &str| {
        format!("ipcwatch_alert_status{{alert=\"semaphore_arrays_used\",chart=\"system.ipc_semaphore_arrays\",status=\"{s}\"}}")
    };
    assert_eq!(metrics.get(&status("WARNING")), Some(&1.0), "{body}");
    assert_eq!(metrics.get(&status("CLEAR")), Some(&0.0));
    let value = "ipcwatch_alert_value{alert=\"semaphore_arrays_used\",chart=\"system.ipc_semaphore_arrays\"}";
    assert_eq!(metrics.get(value), Some(&90.0), "{body}");
    let raised: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms").body).unwrap();
    assert!(
        raised["alarms"].get(ARRAYS).is_some() && raised["alarms"].as_object().unwrap().len() == 1,
        "{raised}"
    );

    // The exec notifier ran with the alert in its environment.
    assert!(eventually(5, || std::fs::read_to_string(&out).is_ok_and(|t| t.contains("---"))));
    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "IPCWATCH_ALERT_NAME=semaphore_arrays_used",
        "IPCWATCH_ALERT_CHART=system.ipc_semaphore_arrays",
        "IPCWATCH_ALERT_STATUS=WARNING",
        "IPCWATCH_ALERT_OLD_STATUS=CLEAR",
        "IPCWATCH_ALERT_VALUE=90",
        "IPCWATCH_ALERT_UNITS=%",
        "IPCWATCH_ALERT_SUMMARY=IPC semaphore arrays used",
        "IPCWATCH_ALERT_INFO=IPC semaphore arrays utilization",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }

    for id in ids {
        ns.cmd(&format!("rm sem {id}"));
    }
    // The evaluation after the removal may still see 90% in its `lookup: max -10s`; the next
    // one, 10 s later, clears: up to 20 s.
    assert!(eventually(25, || alarm(port, ARRAYS)["status"] == "CLEAR"), "{}", alarm(port, ARRAYS));
    // The CLEAR notification waits out `delay: down 5m`.
    let a = alarm(port, ARRAYS);
    assert_eq!(a["delay"], 300, "{a}");
    let text = std::fs::read_to_string(&log).unwrap();
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("alert status changed") && l.contains("semaphore_arrays_used"))
        .collect();
    assert!(
        changes.iter().any(|l| l.contains("old_status=\"CLEAR\"")
            && l.contains("status=\"WARNING\"")
            && l.contains("value=90")),
        "{changes:?}"
    );
    assert!(
        changes.iter().any(|l| l.contains("old_status=\"WARNING\"") && l.contains("status=\"CLEAR\"")),
        "{changes:?}"
    );
}

pub(crate) struct Alertmanager {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Alertmanager {
    pub fn start(dir: &Path) -> Alertmanager {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let child = crate::ns::dies_with_test("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .expect("prometheus-alertmanager is needed (tests/run.sh installs it)");
        let am = Alertmanager { child, port, dir: dir.to_path_buf() };
        assert!(
            eventually(20, || request(port, "GET", "/-/ready").is_ok_and(|r| r.status == 200)),
            "Alertmanager did not start"
        );
        am
    }

    pub fn alerts(&self) -> serde_json::Value {
        serde_json::from_str(&get(self.port, "/api/v2/alerts").body).unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn alertmanager_receives_the_alert_and_its_resolution() {
    let mut ns = Namespace::new("alert-am");
    ns.cmd("sysctl sem 250 20 32 10");
    let am = Alertmanager::start(&ns.path("am"));
    // The ported rule with a fast clock and no delay, so the test takes seconds.
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(repo("alerts/ipc.conf"))
        .unwrap()
        .replace("every: 10s", "every: 1s")
        .replace("delay: down 5m multiplier 1.5 max 1h", "delay: down 1s");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    let config = format!(
        "[alerts]\nrules = \"rules\"\nalertmanagers = [\"http://127.0.0.1:{}\"]\ninstance = \"testhost\"\n",
        am.port
    );
    let (port, _, log) = start(&mut ns, &config);
    let ids: Vec<i64> = (0..9).map(|_| ns.num("sem 0 1")).collect();
    let firing = || {
        am.alerts().as_array().unwrap().iter().any(|a| a["labels"]["alertname"] == "semaphore_arrays_used")
    };
    assert!(
        eventually(15, firing),
        "Alertmanager has no alert: {}\n{}",
        am.alerts(),
        std::fs::read_to_string(&log).unwrap()
    );
    let a = am
        .alerts()
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "semaphore_arrays_used")
        .unwrap()
        .clone();
    assert_eq!(a["labels"]["chart"], "system.ipc_semaphore_arrays");
    assert_eq!(a["labels"]["instance"], "testhost");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["annotations"]["summary"], "IPC semaphore arrays used");
    assert_eq!(a["annotations"]["value"], "90%");
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(alarm(port, ARRAYS)["status"], "WARNING");

    for id in ids {
        ns.cmd(&format!("rm sem {id}"));
    }
    assert!(eventually(15, || !firing()), "not resolved in Alertmanager: {}", am.alerts());
}

#[test]
fn alertmanager_down_is_retried_without_blocking_sampling() {
    let mut ns = Namespace::new("alert-am-down");
    ns.cmd("sysctl sem 250 20 32 10");
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(repo("alerts/ipc.conf")).unwrap().replace("every: 10s", "every: 1s");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    let am_port = free_port(); // nothing listens yet
    let config = format!("[alerts]\nrules = \"rules\"\nalertmanagers = [\"http://127.0.0.1:{am_port}\"]\n");
    let (port, _, log) = start(&mut ns, &config);
    for _ in 0..9 {
        ns.cmd("sem 0 1");
    }
    assert!(eventually(10, || alarm(port, ARRAYS)["status"] == "WARNING"));
    assert!(eventually(5, || std::fs::read_to_string(&log).unwrap().contains("retrying with backoff")));
    // Sampling carries on while delivery retries (an alert's last_updated moves with a change
    // only: the chart's last entry moves every sample).
    let updated = || {
        let chart = get(port, "/api/v1/chart?chart=system.ipc_semaphore_arrays").body;
        serde_json::from_str::<serde_json::Value>(&chart).unwrap()["last_entry"].as_i64().unwrap()
    };
    let before = updated();
    assert!(eventually(5, || updated() > before));
    // Alertmanager comes up on that port: the retry delivers.
    let dir = ns.path("am-late");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n").unwrap();
    let child = crate::ns::dies_with_test("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = crate::ns::KillOnDrop(child);
    let got = eventually(60, || {
        request(am_port, "GET", "/api/v2/alerts").is_ok_and(|r| r.body.contains("semaphore_arrays_used"))
    });
    drop(child);
    assert!(got, "the alert never reached the late Alertmanager");
}

#[test]
fn check_alerts_lists_every_error() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-check-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.conf"), "alarm: one\non: system.ipc_semaphores\ncalc: $semaphores +\n")
        .unwrap();
    std::fs::write(
        dir.join("b.conf"),
        "alarm: two\non: system.ipc_semaphores\nwhatever: 1\n\nalarm: three\non: x\ncalc: 1\n",
    )
    .unwrap();
    let out = Command::new(IPCWATCH).args(["check-alerts", dir.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains("a.conf:3: one: unexpected end of expression"), "{err}");
    assert!(lines[1].contains("b.conf:3: two: unknown key `whatever`"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 rules valid, 2 errors"));
    let ok =
        Command::new(IPCWATCH).args(["check-alerts", repo("alerts").to_str().unwrap()]).output().unwrap();
    assert!(ok.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let check = Command::new("promtool")
        .args(["check", "rules", repo("alerts/ipcwatch.rules.yml").to_str().unwrap()])
        .output()
        .expect("promtool is needed (tests/run.sh installs it)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let test = Command::new("promtool")
        .args(["test", "rules", "ipcwatch.rules.test.yml"])
        .current_dir(repo("alerts"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn a_bad_or_empty_rules_set_is_refused_at_start_and_on_sighup_and_raised_alerts_stay() {
    let mut ns = Namespace::new("alert-reload");
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    // `first` is raised from the start (WARNING while any semaphore count is >= 0).
    let first = "alarm: first\non: system.ipc_semaphores\ncalc: $semaphores\nevery: 1s\nwarn: $this >= 0\n";
    std::fs::write(rules.join("a.conf"), first).unwrap();
    let (port, pid, log) = start(&mut ns, "[alerts]\nrules = \"rules\"\n");
    let names = || -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
        let mut n: Vec<String> = doc["alarms"]
            .as_object()
            .unwrap()
            .values()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let first_status =
        || alarm(port, "system.ipc_semaphores.first")["status"].as_str().unwrap_or("").to_string();
    assert!(eventually(5, || names() == ["first"] && first_status() == "WARNING"), "{:?}", names());
    let reloads = |what: &str| std::fs::read_to_string(&log).unwrap().matches(what).count();

    // Garbage, a broken rule beside good ones, and an empty folder: each refused, the
    // running rules kept, and `first` still raised (no resolution was sent for it).
    let broken = format!("{first}\nalarm: second\non: system.ipc_semaphore_arrays\ncalc: $arrays\nevery: 1s\n\nalarm: broken\non: system.ipc_semaphores\ncalc: (\n");
    for (n, content) in [(1, Some("\u{0}\u{1}garbage {{{{ \n")), (2, Some(broken.as_str())), (3, None)] {
        match content {
            Some(c) => std::fs::write(rules.join("a.conf"), c).unwrap(),
            None => std::fs::remove_file(rules.join("a.conf")).unwrap(),
        }
        ns.cmd(&format!("signal {pid} 1"));
        assert!(
            eventually(5, || reloads("keeping the current configuration and rules") == n),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert_eq!(names(), ["first"]);
        assert_eq!(first_status(), "WARNING");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("a.conf:14: broken:") && text.contains("holds no alert rule"), "{text}");
    assert!(!text.contains("configuration reloaded"), "{text}");

    // A good set is taken.
    std::fs::write(rules.join("a.conf"), broken.replace("calc: (\n", "calc: $semaphores\n")).unwrap();
    ns.cmd(&format!("signal {pid} 1"));
    assert!(eventually(5, || names() == ["broken", "first", "second"]), "{:?}", names());

    // At start, and in check-config, the same set is refused with one line and exit 2.
    std::fs::write(rules.join("a.conf"), &broken).unwrap();
    let config = ns.path("ipcwatch.toml");
    for args in [vec!["check-config", config.to_str().unwrap()], vec!["--config", config.to_str().unwrap()]] {
        let (code, out) = ns.run(IPCWATCH, &args);
        assert_eq!(code, "2", "{args:?}: {out}");
        let last = out.lines().last().unwrap_or("");
        assert!(last.starts_with("ipcwatch: rules: 1 rule error(s) in") && last.contains("broken"), "{out}");
    }
    // Unless alerting is off.
    std::fs::write(&config, "[alerts]\nenabled = false\nrules = \"nowhere\"\n").unwrap();
    let (code, out) = ns.run(IPCWATCH, &["check-config", config.to_str().unwrap()]);
    assert_eq!(code, "0", "{out}");
}

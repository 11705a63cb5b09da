//! TLS and basic auth from an exporter-toolkit web configuration file, checked by the real
//! clients: a real Prometheus server scrapes the daemon over HTTPS with basic auth, and curl
//! sees the 401s, the headers and a password rotated without a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::alerts::eventually;
use crate::http::free_port;
use crate::ns::{dies_with_test, KillOnDrop, Namespace, IPCWATCH};

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed (tests/run.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ipcwatch test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]]
        .concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"))
}

pub(crate) fn web_config(path: &Path, user: &str, password: &str) {
    let hash = bcrypt::hash(password, 6).unwrap();
    let text = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  {user}: {hash}\n"
    );
    // Written whole and renamed, as config management does, so no reader sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// curl over TLS: (status, headers and body).
pub(crate) fn curl(ca: &Path, port: u16, path: &str, user: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}{path}"));
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.output().expect("curl is needed (tests/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_is_down() {
    let mut ns = Namespace::new("tls");
    for n in [2, 3, 5] {
        ns.cmd(&format!("sem 0 {n}"));
    }
    let dir = ns.path("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, _, _) = certificates(&dir);
    let web = dir.join("web.yml");
    web_config(&web, "prom", "scrape-pass");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_, log) = ns.spawn(
        IPCWATCH,
        &[
            "--web.listen-address",
            &addr,
            "--web.config.file",
            web.to_str().unwrap(),
            "--web.telemetry-path",
            "/ipc-metrics",
        ],
    );
    assert!(
        eventually(10, || curl(&ca, port, "/-/ready", Some("prom:scrape-pass")).0 == 200),
        "not serving over TLS; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Without credentials, or with wrong ones: 401 and the Basic challenge.
    let (status, text) = curl(&ca, port, "/ipc-metrics", None);
    assert_eq!(status, 401, "{text}");
    assert!(text.to_lowercase().contains("www-authenticate: basic"), "{text}");
    assert_eq!(curl(&ca, port, "/ipc-metrics", Some("prom:nope")).0, 401);
    let (status, text) = curl(&ca, port, "/ipc-metrics", Some("prom:scrape-pass"));
    assert_eq!(status, 200, "{text}");
    assert!(text.to_lowercase().contains("x-frame-options: deny"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_eq!(crate::http::samples(body).get("sysvipc_semaphore_arrays"), Some(&3.0), "{text}");
    assert_eq!(curl(&ca, port, "/metrics", Some("prom:scrape-pass")).0, 404, "the telemetry path moved");

    // A real Prometheus: one job with the right password, one with a wrong one.
    let prom_port = free_port();
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    metrics_path: /ipc-metrics\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prom\n      password: {password}\n    static_configs:\n      - targets: ['{addr}']\n",
            ca.display()
        )
    };
    std::fs::write(
        &config,
        format!("scrape_configs:\n{}{}", job("ipcwatch", "scrape-pass"), job("wrongpass", "nope")),
    )
    .unwrap();
    let _prometheus = KillOnDrop(
        dies_with_test("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prom_dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is needed (Debian package prometheus; tests/run.sh installs it)"),
    );
    let targets = || -> Option<serde_json::Value> {
        let r = crate::http::request(prom_port, "GET", "/api/v1/targets").ok()?;
        serde_json::from_str(&r.body).ok()
    };
    let health = |doc: &serde_json::Value, job: &str| -> (String, String) {
        let t =
            doc["data"]["activeTargets"].as_array().into_iter().flatten().find(|t| t["labels"]["job"] == job);
        t.map(|t| {
            (
                t["health"].as_str().unwrap_or("").to_string(),
                t["lastError"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
    };
    let mut last = serde_json::Value::Null;
    let settled = eventually(30, || {
        last = targets().unwrap_or_default();
        health(&last, "ipcwatch").0 == "up" && health(&last, "wrongpass").0 == "down"
    });
    assert!(
        settled,
        "targets never settled: {last}\nprometheus log:\n{}",
        std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default()
    );
    assert!(health(&last, "wrongpass").1.contains("401"), "{last}");
    // The scraped samples are the kernel's.
    let query = || -> Option<String> {
        let r = crate::http::request(
            prom_port,
            "GET",
            "/api/v1/query?query=sysvipc_semaphores%7Bjob%3D%22ipcwatch%22%7D",
        )
        .ok()?;
        let doc: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        doc["data"]["result"][0]["value"][1].as_str().map(str::to_string)
    };
    let mut value = None;
    assert!(
        eventually(10, || {
            value = query();
            value.is_some()
        }),
        "no sample in Prometheus"
    );
    assert_eq!(value.as_deref(), Some("10"), "2 + 3 + 5 semaphores");

    // A new password takes effect without a restart; the old one stops working.
    web_config(&web, "prom", "rotated-pass");
    assert!(eventually(5, || curl(&ca, port, "/ipc-metrics", Some("prom:rotated-pass")).0 == 200));
    assert_eq!(curl(&ca, port, "/ipc-metrics", Some("prom:scrape-pass")).0, 401);
}

#[test]
fn client_certificates_are_required_and_verified_when_configured() {
    let mut ns = Namespace::new("mtls");
    let dir = ns.path("mtls");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, _, _) = certificates(&dir);
    // A client certificate from the same CA, and one self-signed.
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req"][..], &ec, &["-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=prometheus"]]
        .concat());
    // A v3 certificate (rustls refuses v1) for client authentication.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let sign = "x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext";
    run(&sign.split(' ').collect::<Vec<_>>());
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue"],
    ]
    .concat());
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n",
    )
    .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_, log) =
        ns.spawn(IPCWATCH, &["--web.listen-address", &addr, "--web.config.file", web.to_str().unwrap()]);
    let get = |cert: Option<&str>| -> u16 {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"]).arg(&ca);
        if let Some(c) = cert {
            cmd.arg("--cert")
                .arg(dir.join(format!("{c}.crt")))
                .arg("--key")
                .arg(dir.join(format!("{c}.key")));
        }
        let out = cmd.arg(format!("https://127.0.0.1:{port}/-/healthy")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    };
    assert!(
        eventually(10, || get(Some("client")) == 200),
        "the CA's client is served; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(get(None), 0, "no client certificate: no handshake");
    assert_eq!(get(Some("rogue")), 0, "a certificate from another CA: no handshake");
}

#[test]
fn alerts_reach_an_alertmanager_over_tls_with_basic_auth() {
    let mut ns = Namespace::new("am-tls");
    ns.cmd("sysctl sem 250 20 32 10");
    let dir = ns.path("am-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, _, _) = certificates(&dir);
    web_config(&dir.join("am-web.yml"), "ipcwatch", "am-pass");
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let am_port = free_port();
    let _am = KillOnDrop(
        dies_with_test("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg(format!("--web.config.file={}", dir.join("am-web.yml").display()))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("am.log")).unwrap())
            .spawn()
            .expect("prometheus-alertmanager is needed (tests/run.sh installs it)"),
    );
    assert!(
        eventually(20, || curl(&ca, am_port, "/-/ready", Some("ipcwatch:am-pass")).0 == 200),
        "Alertmanager did not start over TLS"
    );

    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let fast = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../alerts/ipc.conf"))
        .unwrap()
        .replace("every: 10s", "every: 1s");
    std::fs::write(rules.join("ipc.conf"), fast).unwrap();
    std::fs::write(dir.join("am-password"), "am-pass\n").unwrap();
    let config = dir.join("ipcwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[alerts]\nrules = \"rules\"\nalertmanagers = [\"https://127.0.0.1:{am_port}\"]\nalertmanager_ca_file = \"ca.crt\"\nalertmanager_username = \"ipcwatch\"\nalertmanager_password_file = \"am-password\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let (_, log) = ns.spawn(
        IPCWATCH,
        &["--config", config.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}")],
    );
    for _ in 0..9 {
        ns.cmd("sem 0 1");
    }
    let firing = || {
        let (status, text) = curl(&ca, am_port, "/api/v2/alerts", Some("ipcwatch:am-pass"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let alerts: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        status == 200
            && alerts.as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == "semaphore_arrays_used" && a["labels"]["severity"] == "warning"
            })
    };
    assert!(
        eventually(20, firing),
        "no alert at the TLS Alertmanager; ipcwatch log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

//! Delivering notifications to people and to Alertmanager, off the sampling thread.
//!
//! [`Delivery::notify`] never blocks: notifications go through a channel to a tokio task.
//! * `exec`: runs a program per notification with the alert in `IPCWATCH_*` environment
//!   variables, killed after a timeout; failures are logged.
//! * Alertmanager: POSTs the alerts that are raised to each `/api/v2/alerts`, re-sends them
//!   every minute with an `endsAt` in the future so they stay active, and sends the
//!   resolution. An Alertmanager that is down is retried with exponential backoff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{Notification, Status};

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Program run for every notification (a rule's own `exec:` wins).
    pub exec: Option<PathBuf>,
    pub exec_timeout: Duration,
    /// Alertmanager base URLs, such as `http://127.0.0.1:9093` or `https://am:9093`.
    pub alertmanagers: Vec<String>,
    /// PEM CA certificates that Alertmanager's https certificate must chain to (else the
    /// system's roots).
    pub alertmanager_ca: Option<Vec<u8>>,
    /// Credentials sent to every Alertmanager.
    pub alertmanager_auth: Option<AlertmanagerAuth>,
    /// The `instance` label sent to Alertmanager.
    pub instance: String,
}

/// How ipcwatch authenticates to Alertmanager.
#[derive(Clone, PartialEq)]
pub enum AlertmanagerAuth {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for AlertmanagerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs and debug output.
        match self {
            AlertmanagerAuth::Basic { username, .. } => write!(f, "Basic({username}, <secret>)"),
            AlertmanagerAuth::Bearer(_) => f.write_str("Bearer(<secret>)"),
        }
    }
}

impl AlertmanagerAuth {
    fn header(&self) -> String {
        use base64::Engine;
        match self {
            AlertmanagerAuth::Basic { username, password } => {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
                )
            }
            AlertmanagerAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// A client for http:// and https:// Alertmanagers: the configured CA, else the system's
/// roots. A CA that does not parse is logged and leaves https to fail visibly.
fn client(ca: Option<&[u8]>) -> HttpsClient {
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions");
    let tls = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                match cert.map_err(|e| e.to_string()).and_then(|c| roots.add(c).map_err(|e| e.to_string())) {
                    Ok(()) => {}
                    Err(e) => tracing::error!(error = %e, "Alertmanager CA file: a certificate is unusable"),
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// How often raised alerts are re-sent so Alertmanager keeps them active.
const RESEND: Duration = Duration::from_secs(60);
/// How long a sent alert stays active in Alertmanager without a re-send.
const ACTIVE_FOR: Duration = Duration::from_secs(300);
/// How long resolutions keep being re-sent (in case an Alertmanager was down).
const RESOLVED_KEPT: Duration = Duration::from_secs(900);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

enum Message {
    Notify(Box<Notification>),
    Configure(DeliveryConfig),
}

/// Notifications waiting for the delivery task; beyond it they are dropped (and counted).
const QUEUE: usize = 1024;
/// Exec notifiers running at once; more wait, up to [`EXEC_WAITING`], and beyond are dropped.
const EXEC_AT_ONCE: usize = 4;
const EXEC_WAITING: usize = 256;
/// The same alert's same status is run through the exec notifier at most once in this long
/// (a flapping or repeating alert in a thousand namespaces is still a thousand programs).
const REPEAT_MIN: Duration = Duration::from_secs(60);
/// Drops are logged at most once in this long, with the counts so far.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Notifications dropped since start, by why: the queue to the delivery task was full, too
/// many exec notifiers were running and waiting, or the same alert and status ran the exec
/// notifier less than a minute ago.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub queue_full: std::sync::atomic::AtomicU64,
    pub exec_busy: std::sync::atomic::AtomicU64,
    pub repeat: std::sync::atomic::AtomicU64,
}

impl DeliveryStats {
    /// (reason label, count) for each reason.
    pub fn dropped(&self) -> [(&'static str, u64); 3] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("queue_full", self.queue_full.load(Relaxed)),
            ("exec_busy", self.exec_busy.load(Relaxed)),
            ("repeat", self.repeat.load(Relaxed)),
        ]
    }
}

/// A handle the sampling loop keeps; cloning shares the same delivery task.
#[derive(Clone)]
pub struct Delivery {
    tx: mpsc::Sender<Message>,
    config: mpsc::UnboundedSender<Message>,
    stats: std::sync::Arc<DeliveryStats>,
}

impl Delivery {
    /// Starts the delivery task on `runtime`.
    pub fn start(config: DeliveryConfig, runtime: &tokio::runtime::Handle) -> Delivery {
        let (tx, rx) = mpsc::channel(QUEUE);
        // Reconfigurations are rare and never dropped.
        let (config_tx, config_rx) = mpsc::unbounded_channel();
        let stats = std::sync::Arc::new(DeliveryStats::default());
        runtime.spawn(run(config, rx, config_rx, stats.clone()));
        Delivery { tx, config: config_tx, stats }
    }

    /// Hands a notification over without ever blocking; a full queue drops it (counted).
    pub fn notify(&self, n: Notification) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Message::Notify(Box::new(n))) {
            self.stats.queue_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn configure(&self, config: DeliveryConfig) {
        let _ = self.config.send(Message::Configure(config));
    }

    /// What was dropped, for the daemon's own metrics.
    pub fn stats(&self) -> std::sync::Arc<DeliveryStats> {
        self.stats.clone()
    }
}

/// Runs exec notifiers at most [`EXEC_AT_ONCE`] at a time, and says why one is not run.
struct ExecRunner {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    last: HashMap<(String, String), (Status, Instant)>,
    stats: std::sync::Arc<DeliveryStats>,
    logged: Option<Instant>,
}

impl ExecRunner {
    fn new(stats: std::sync::Arc<DeliveryStats>) -> ExecRunner {
        ExecRunner {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(EXEC_AT_ONCE)),
            queued: Default::default(),
            last: HashMap::new(),
            stats,
            logged: None,
        }
    }

    fn run(&mut self, config: &DeliveryConfig, n: &Notification) {
        use std::sync::atomic::Ordering;
        if n.exec.is_none() && config.exec.is_none() {
            return;
        }
        let now = Instant::now();
        let key = (n.name.clone(), n.chart.clone());
        if self.last.get(&key).is_some_and(|(s, at)| *s == n.status && now.duration_since(*at) < REPEAT_MIN) {
            self.stats.repeat.fetch_add(1, Ordering::Relaxed);
            return self.log_drops();
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= EXEC_AT_ONCE + EXEC_WAITING {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.exec_busy.fetch_add(1, Ordering::Relaxed);
            return self.log_drops();
        }
        if self.last.len() >= 10_000 {
            self.last.retain(|_, (_, at)| now.duration_since(*at) < REPEAT_MIN);
        }
        self.last.insert(key, (n.status, now));
        run_exec(config, n, self.slots.clone(), self.queued.clone());
    }

    /// One line per [`DROP_LOG_EVERY`] at most, with the counts so far.
    fn log_drops(&mut self) {
        let now = Instant::now();
        if self.logged.is_some_and(|at| now.duration_since(at) < DROP_LOG_EVERY) {
            return;
        }
        self.logged = Some(now);
        let [(_, queue_full), (_, exec_busy), (_, repeat)] = self.stats.dropped();
        tracing::warn!(
            queue_full,
            exec_busy,
            repeat,
            "alert notifications dropped so far (ipcwatch_notifications_dropped_total); exec notifiers run {EXEC_AT_ONCE} at a time"
        );
    }
}

/// An alert as Alertmanager sees it.
#[derive(Debug, Clone)]
/// An alert as Alertmanager is told of it. Plain strings, made JSON only when sent: a
/// thousand raised alerts are kept, and a JSON map costs several times its text.
struct AmAlert {
    labels: Vec<(&'static str, String)>,
    summary: String,
    info: String,
    value: String,
    starts_at: f64,
    /// Set once resolved.
    ended_at: Option<f64>,
}

struct Target {
    url: String,
    next_attempt: Instant,
    backoff: Duration,
    failing: bool,
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A Unix time as UTC calendar fields: `(year, month, day, hour, minute, second)`. The one
/// date conversion of the workspace (Alertmanager's times here, Netdata's /api/v1/data rows
/// in the exporter); Howard Hinnant's civil-from-days, exact for any i64 day.
pub fn utc(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
}

/// RFC 3339 in UTC, what Alertmanager's API takes.
pub fn rfc3339(unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc(unix.floor() as i64);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn severity(s: Status) -> &'static str {
    match s {
        Status::Critical => "critical",
        _ => "warning",
    }
}

async fn run(
    mut config: DeliveryConfig,
    mut rx: mpsc::Receiver<Message>,
    mut config_rx: mpsc::UnboundedReceiver<Message>,
    stats: std::sync::Arc<DeliveryStats>,
) {
    let mut client = client(config.alertmanager_ca.as_deref());
    let mut alerts: HashMap<(String, String), AmAlert> = HashMap::new();
    let mut targets = make_targets(&config.alertmanagers);
    let mut exec = ExecRunner::new(stats);
    loop {
        let next = targets.iter().map(|t| t.next_attempt).min();
        let wake = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            m = rx.recv() => match m { Some(m) => Some(m), None => return },
            Some(m) = config_rx.recv() => Some(m),
            _ = wake => None,
        };
        match message {
            Some(Message::Configure(c)) => {
                if c.alertmanagers != config.alertmanagers {
                    targets = make_targets(&c.alertmanagers);
                }
                if c.alertmanager_ca != config.alertmanager_ca {
                    client = self::client(c.alertmanager_ca.as_deref());
                }
                config = c;
                continue;
            }
            Some(Message::Notify(n)) => {
                exec.run(&config, &n);
                if track(&mut alerts, &n, &config.instance) {
                    // A change goes out at once to every Alertmanager not backing off.
                    for t in targets.iter_mut().filter(|t| !t.failing) {
                        t.next_attempt = Instant::now();
                    }
                }
            }
            None => {}
        }
        let now = now_unix();
        alerts.retain(|_, a| a.ended_at.is_none_or(|end| now - end < RESOLVED_KEPT.as_secs_f64()));
        let due: Vec<usize> =
            (0..targets.len()).filter(|&i| targets[i].next_attempt <= Instant::now()).collect();
        if due.is_empty() {
            continue;
        }
        let body = payload(&alerts, now);
        for i in due {
            let t = &mut targets[i];
            match post(&client, &t.url, config.alertmanager_auth.as_ref(), body.clone()).await {
                Ok(()) => {
                    if t.failing {
                        tracing::info!(alertmanager = %t.url, "Alertmanager reachable again");
                    }
                    t.failing = false;
                    t.backoff = Duration::from_secs(1);
                    t.next_attempt = Instant::now() + RESEND;
                }
                Err(e) => {
                    if !t.failing {
                        tracing::warn!(alertmanager = %t.url, error = %e, "sending alerts to Alertmanager failed; retrying with backoff");
                    }
                    t.failing = true;
                    t.next_attempt = Instant::now() + t.backoff;
                    t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn make_targets(urls: &[String]) -> Vec<Target> {
    urls.iter()
        .map(|u| Target {
            url: format!("{}/api/v2/alerts", u.trim_end_matches('/')),
            next_attempt: Instant::now() + RESEND,
            backoff: Duration::from_secs(1),
            failing: false,
        })
        .collect()
}

/// Updates the Alertmanager view; `true` if it changed.
fn track(alerts: &mut HashMap<(String, String), AmAlert>, n: &Notification, instance: &str) -> bool {
    let key = (n.name.clone(), n.chart.clone());
    if n.status.is_raised() {
        let starts_at = match alerts.get(&key) {
            Some(a) if a.ended_at.is_none() => a.starts_at,
            _ => n.when,
        };
        let mut labels = vec![
            ("alertname", n.name.clone()),
            ("chart", n.chart.clone()),
            ("instance", instance.to_string()),
            ("severity", severity(n.status).to_string()),
        ];
        for (k, v) in &n.labels {
            match labels.iter_mut().find(|(have, _)| have == k) {
                Some(l) => l.1.clone_from(v),
                None => labels.push((k, v.clone())),
            }
        }
        let (summary, info, value) = (n.summary.clone(), n.info.clone(), n.value_string.clone());
        alerts.insert(key, AmAlert { labels, summary, info, value, starts_at, ended_at: None });
        true
    } else if let Some(a) = alerts.get_mut(&key) {
        if a.ended_at.is_none() {
            a.ended_at = Some(n.when);
            (a.summary, a.info, a.value) = (n.summary.clone(), n.info.clone(), n.value_string.clone());
            return true;
        }
        false
    } else {
        false
    }
}

fn payload(alerts: &HashMap<(String, String), AmAlert>, now: f64) -> Bytes {
    let list: Vec<serde_json::Value> = alerts
        .values()
        .map(|a| {
            let labels: serde_json::Map<String, serde_json::Value> =
                a.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({
                "labels": labels,
                "annotations": { "summary": a.summary, "info": a.info, "value": a.value },
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ended_at.unwrap_or(now + ACTIVE_FOR.as_secs_f64())),
            })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

async fn post(
    client: &HttpsClient,
    url: &str,
    auth: Option<&AlertmanagerAuth>,
    body: Bytes,
) -> Result<(), String> {
    let mut req = hyper::Request::post(url).header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a.header());
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text).trim()))
    }
}

/// The environment the exec program receives.
pub fn exec_environment(n: &Notification) -> Vec<(String, String)> {
    let fixed = [
        ("IPCWATCH_ALERT_NAME", n.name.clone()),
        ("IPCWATCH_ALERT_CHART", n.chart.clone()),
        ("IPCWATCH_ALERT_FAMILY", n.family.clone()),
        ("IPCWATCH_ALERT_STATUS", n.status.name().to_string()),
        ("IPCWATCH_ALERT_OLD_STATUS", n.old_status.name().to_string()),
        ("IPCWATCH_ALERT_VALUE", if n.value.is_finite() { n.value.to_string() } else { String::new() }),
        (
            "IPCWATCH_ALERT_OLD_VALUE",
            if n.old_value.is_finite() { n.old_value.to_string() } else { String::new() },
        ),
        ("IPCWATCH_ALERT_VALUE_STRING", n.value_string.clone()),
        ("IPCWATCH_ALERT_UNITS", n.units.clone()),
        ("IPCWATCH_ALERT_SUMMARY", n.summary.clone()),
        ("IPCWATCH_ALERT_INFO", n.info.clone()),
        ("IPCWATCH_ALERT_WHEN", (n.when as i64).to_string()),
        ("IPCWATCH_ALERT_DURATION", (n.duration as i64).to_string()),
        ("IPCWATCH_ALERT_NON_CLEAR_DURATION", (n.non_clear_duration as i64).to_string()),
        ("IPCWATCH_ALERT_TO", n.to.clone()),
        ("IPCWATCH_ALERT_CLASS", n.class.clone()),
        ("IPCWATCH_ALERT_TYPE", n.type_.clone()),
        ("IPCWATCH_ALERT_COMPONENT", n.component.clone()),
        ("IPCWATCH_ALERT_SOURCE", n.source.clone()),
        ("IPCWATCH_ALERT_ID", n.alarm_id.to_string()),
        ("IPCWATCH_ALERT_EVENT_ID", n.unique_id.to_string()),
        ("IPCWATCH_ALERT_REPEAT", if n.repeat { "1" } else { "0" }.to_string()),
        ("IPCWATCH_HOST", n.host.clone()),
    ];
    let fixed = fixed.into_iter().map(|(k, v)| (k.to_string(), v));
    // IPCWATCH_IPC_NAMESPACE, IPCWATCH_CONTAINER_ID, IPCWATCH_POD, ...
    fixed.chain(n.labels.iter().map(|(k, v)| (format!("IPCWATCH_{}", k.to_uppercase()), v.clone()))).collect()
}

/// Most of a notifier's stderr kept for the log; the rest is read and dropped, so a chatty
/// program can neither block on a full pipe nor grow our memory.
const STDERR_KEPT: u64 = 4096;

/// How an exec notifier run ended.
#[derive(Debug, PartialEq)]
enum ExecEnd {
    Done,
    Failed { exit: std::process::ExitStatus, stderr: String },
    TimedOut,
    Error(String),
}

fn run_exec(
    config: &DeliveryConfig,
    n: &Notification,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let program = match (&n.exec, &config.exec) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(p)) => p.clone(),
        (None, None) => return,
    };
    let env = exec_environment(n);
    let timeout = config.exec_timeout;
    let (name, status) = (n.name.clone(), n.status.name());
    tokio::spawn(async move {
        let _slot = slots.acquire_owned().await;
        let _counted = Dequeue(queued);
        let shown = program.display();
        match exec(&program, env, timeout).await {
            ExecEnd::Done => tracing::debug!(program = %shown, alert = %name, status, "exec notifier done"),
            ExecEnd::Failed { exit, stderr } => {
                tracing::error!(program = %shown, alert = %name, exit = %exit, stderr = %stderr, "exec notifier failed")
            }
            ExecEnd::TimedOut => {
                tracing::error!(program = %shown, alert = %name, timeout_s = timeout.as_secs(), "exec notifier timed out and was killed")
            }
            ExecEnd::Error(e) => {
                tracing::error!(program = %shown, alert = %name, error = %e, "cannot run the exec notifier")
            }
        }
    });
}

/// Takes a finished notifier off the count of those running and waiting.
struct Dequeue(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Dequeue {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The search path a notifier gets: its environment is the alert's and nothing of ours.
const NOTIFIER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a notifier with the alert in its environment; its stderr is captured for the log.
/// It gets a clean environment (PATH and the alert) and, the daemon having set
/// no_new_privs and dropped this thread's capabilities, no capabilities even as root.
async fn exec(program: &Path, env: Vec<(String, String)>, timeout: Duration) -> ExecEnd {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", NOTIFIER_PATH)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ExecEnd::Error(e.to_string()),
    };
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let mut kept = Vec::new();
        let _ = (&mut stderr).take(STDERR_KEPT).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        (child.wait().await, kept)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((Ok(exit), _)) if exit.success() => ExecEnd::Done,
        Ok((Ok(exit), kept)) => {
            ExecEnd::Failed { exit, stderr: String::from_utf8_lossy(&kept).trim().to_string() }
        }
        Ok((Err(e), _)) => ExecEnd::Error(e.to_string()),
        // Dropping the future drops the child, which kill_on_drop kills.
        Err(_) => ExecEnd::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(status: Status, when: f64) -> Notification {
        Notification {
            host: "h".into(),
            unique_id: 1,
            alarm_id: 1,
            when,
            name: "semaphore_arrays_used".into(),
            chart: "system.ipc_semaphore_arrays".into(),
            family: "ipc semaphores".into(),
            status,
            old_status: Status::Clear,
            value: 90.0,
            old_value: 0.0,
            value_string: "90%".into(),
            source: "1@x".into(),
            duration: 0.0,
            non_clear_duration: 0.0,
            units: "%".into(),
            summary: "IPC semaphore arrays used".into(),
            info: "info".into(),
            to: "sysadmin".into(),
            exec: None,
            class: "Utilization".into(),
            type_: "System".into(),
            component: "IPC".into(),
            repeat: false,
            labels: vec![("ipc_namespace", "4026532281".into())],
        }
    }

    #[test]
    fn raised_alerts_stay_active_and_resolutions_end_now() {
        let mut alerts = HashMap::new();
        assert!(track(&mut alerts, &note(Status::Warning, 1000.0), "db1"));
        assert!(track(&mut alerts, &note(Status::Critical, 1010.0), "db1"), "severity change is news");
        let body: serde_json::Value = serde_json::from_slice(&payload(&alerts, 1020.0)).unwrap();
        let a = &body[0];
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["instance"], "db1");
        assert_eq!(a["startsAt"], rfc3339(1000.0), "the alert started at the first raise");
        assert_eq!(a["endsAt"], rfc3339(1020.0 + 300.0), "active for 5 minutes past each send");
        assert!(track(&mut alerts, &note(Status::Clear, 1030.0), "db1"));
        let body: serde_json::Value = serde_json::from_slice(&payload(&alerts, 1040.0)).unwrap();
        assert_eq!(body[0]["endsAt"], rfc3339(1030.0));
        assert!(!track(&mut alerts, &note(Status::Clear, 1050.0), "db1"), "already resolved");
    }

    /// An executable script at `path`, written by another process: while this one held a
    /// descriptor open for writing, a child forked meanwhile by another test's thread would
    /// inherit it until its own exec, and running the script would fail with ETXTBSY.
    fn script(path: &Path, text: &str) {
        let source = path.with_extension("txt");
        std::fs::write(&source, text).unwrap();
        let status =
            std::process::Command::new("install").arg("-m").arg("755").arg(&source).arg(path).status();
        assert!(status.is_ok_and(|s| s.success()), "install {} {}", source.display(), path.display());
    }

    #[tokio::test]
    async fn exec_gets_the_alert_and_is_killed_after_its_timeout() {
        let dir = std::env::temp_dir().join(format!("ipcwatch-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (fast, slow) = (dir.join("fast.sh"), dir.join("slow.sh"));
        let (out, late) = (dir.join("out"), dir.join("late"));
        script(&fast, &format!("#!/bin/sh\necho \"$IPCWATCH_ALERT_NAME $IPCWATCH_ALERT_STATUS $IPCWATCH_ALERT_VALUE\" > {}\n", out.display()));
        script(&slow, &format!("#!/bin/sh\nsleep 3\ntouch {}\n", late.display()));
        // The fast notifier gets all the time a loaded machine may take to start a shell.
        let config = |exec: &PathBuf, timeout: u64| DeliveryConfig {
            exec: Some(exec.clone()),
            exec_timeout: Duration::from_secs(timeout),
            alertmanagers: vec![],
            instance: "h".into(),
            alertmanager_ca: None,
            alertmanager_auth: None,
        };
        let mut runner = ExecRunner::new(Default::default());
        let started = std::time::Instant::now();
        runner.run(&config(&fast, 60), &note(Status::Warning, 0.0));
        let mut other = note(Status::Warning, 0.0);
        other.chart = "another.chart".into();
        runner.run(&config(&slow, 1), &other);
        // The slow one sleeps 3 s: past 4 s it would have written, had it not been killed.
        while started.elapsed() < Duration::from_secs(4)
            || (!std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n'))
                && started.elapsed() < Duration::from_secs(60))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "semaphore_arrays_used WARNING 90\n");
        assert!(!late.exists(), "the slow notifier was killed at its timeout");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_failing_notifiers_stderr_is_captured_and_bounded() {
        let dir = std::env::temp_dir().join(format!("ipcwatch-exec-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (bad, chatty) = (dir.join("bad.sh"), dir.join("chatty.sh"));
        script(&bad, "#!/bin/sh\necho \"no route to pager\" >&2\nexit 3\n");
        script(&chatty, "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x >&2\nexit 1\n");
        let end = exec(&bad, vec![], Duration::from_secs(5)).await;
        match end {
            ExecEnd::Failed { exit, stderr } => {
                assert_eq!(exit.code(), Some(3));
                assert_eq!(stderr, "no route to pager");
            }
            other => panic!("{other:?}"),
        }
        match exec(&chatty, vec![], Duration::from_secs(5)).await {
            ExecEnd::Failed { stderr, .. } => assert_eq!(stderr.len(), STDERR_KEPT as usize),
            other => panic!("a megabyte of stderr neither blocks nor is kept whole: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_606_160.9), "2026-11-25T11:29:20Z");
    }

    #[tokio::test]
    async fn the_same_alert_and_status_runs_the_notifier_once_a_minute() {
        let stats = std::sync::Arc::new(DeliveryStats::default());
        let mut runner = ExecRunner::new(stats.clone());
        let config = DeliveryConfig {
            exec: Some(PathBuf::from("/bin/true")),
            exec_timeout: Duration::from_secs(5),
            alertmanagers: Vec::new(),
            alertmanager_ca: None,
            alertmanager_auth: None,
            instance: "i".into(),
        };
        runner.run(&config, &note(Status::Warning, 1.0));
        runner.run(&config, &note(Status::Warning, 2.0));
        assert_eq!(stats.dropped()[2], ("repeat", 1));
        // A new status is no repeat.
        runner.run(&config, &note(Status::Clear, 3.0));
        assert_eq!(stats.dropped()[2], ("repeat", 1));
    }
}

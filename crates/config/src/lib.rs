//! The TOML configuration (`config/ipcwatch.toml` is the commented default). Every key is
//! optional; unknown keys and bad values are errors that name the file, line and key. It
//! also says what each part of the daemon is to be set up with.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipcwatch_alerts::{AlertmanagerAuth, DeliveryConfig, Host};
use ipcwatch_pipeline::PipelineConfig;
use ipcwatch_sampler::{SamplerConfig, Source};
use serde::Deserialize;

/// The most memory chart history may take. Alert lookups need minutes to an hour; a week
/// of 100,000 queues would need hundreds of GiB, so such a config is refused up front.
pub const HISTORY_BUDGET: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub web: Web,
    pub sampling: Sampling,
    pub charts: Charts,
    pub log: Log,
    pub alerts: Alerts,
    pub namespaces: Namespaces,
    pub holders: Holders,
    pub ebpf: Ebpf,
    /// The file this came from (relative paths in it resolve against its folder).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// `host:port`, `[v6]:port` or `:port` (every interface).
    pub listen_addresses: Vec<String>,
    /// Most connections open at once; a newcomer beyond it takes the slot of the one that
    /// has waited longest without a request in flight.
    pub max_connections: usize,
    /// Most connections one client address may hold.
    pub max_connections_per_client: usize,
    /// exporter-toolkit's web configuration file (TLS, basic auth, headers); relative to
    /// this file's folder.
    pub config_file: Option<PathBuf>,
    /// Where the metrics are served.
    pub telemetry_path: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Seconds between samples, aligned to wall-clock boundaries like Netdata.
    pub update_every: u64,
    pub procfs: PathBuf,
    /// The host's root filesystem, where the daemon runs in a container with the host's `/`
    /// mounted (`/host`): user names come from its `etc/passwd`, and `pod_logs` lies under it.
    pub rootfs: PathBuf,
    /// Also watch POSIX message queues (per IPC namespace) and /dev/shm (per mount namespace).
    pub posix: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Charts {
    /// Most queues with their own dimensions and series (the biggest first).
    pub max_queue_dimensions: usize,
    /// Seconds of history kept per dimension for alert lookups.
    pub history: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    /// "all": every IPC namespace on the host (needs CAP_SYS_ADMIN, and CAP_SYS_PTRACE for
    /// other users' processes); "own": the daemon's only.
    pub mode: NamespaceMode,
    /// Seconds between searches for new and vanished namespaces.
    pub rescan: u64,
    /// Most namespaces watched; beyond it the ones with the most objects are kept.
    pub max: usize,
    /// The kubelet's pod log folders, which name pods by UID.
    pub pod_logs: PathBuf,
    /// Most per-queue series over all namespaces together (the biggest queues first).
    pub max_queue_series: usize,
}

/// Who holds what: the slow census of owners, stale and orphaned objects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Holders {
    pub enabled: bool,
    /// Seconds between censuses (each walks every object and checks its processes).
    pub interval: u64,
    /// Seconds unused, with every last user gone, before an array or queue is stale.
    pub stale_after: u64,
    /// Seconds with nothing attached before a segment is orphaned.
    pub orphan_after: u64,
    /// Owners reported by name per namespace; the rest are summed as `other`.
    pub max_owners: usize,
}

impl Default for Holders {
    fn default() -> Self {
        Holders { enabled: true, interval: 60, stale_after: 3600, orphan_after: 3600, max_owners: 20 }
    }
}

/// The kernel-side probes: refused and blocked IPC calls, counted in eBPF maps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ebpf {
    /// Load them at start (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and tracefs);
    /// where they cannot load, the daemon runs without them and says why.
    pub enabled: bool,
    /// Arrays and queues per namespace with series of their own, the longest waited on first.
    pub max_objects: usize,
}

impl Default for Ebpf {
    fn default() -> Self {
        Ebpf { enabled: true, max_objects: 10 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceMode {
    All,
    Own,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            mode: NamespaceMode::All,
            rescan: 30,
            max: 1000,
            pod_logs: PathBuf::from("/var/log/pods"),
            max_queue_series: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A text that is not one of the five log levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log level (error, warn, info, debug, trace)")]
pub struct UnknownLogLevel(pub String);

impl std::str::FromStr for LogLevel {
    type Err = UnknownLogLevel;
    fn from_str(s: &str) -> Result<Self, UnknownLogLevel> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(UnknownLogLevel(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// false: no alert rules at all (an empty or missing rules folder is then no error).
    pub enabled: bool,
    /// Folder (or file) of Netdata-syntax rules; relative to the config file's folder.
    /// Unset: the rules built in from alerts/ipc.conf.
    pub rules: Option<PathBuf>,
    /// Program run on every notification, with the alert in environment variables.
    pub exec: Option<PathBuf>,
    /// Seconds the exec program may run before it is killed.
    pub exec_timeout: u64,
    /// Alertmanager base URLs (`http://host:9093`).
    pub alertmanagers: Vec<String>,
    /// The `instance` label sent to Alertmanager (default: the host name).
    pub instance: Option<String>,
    /// PEM CA certificates for https Alertmanagers (default: the system's roots).
    pub alertmanager_ca_file: Option<PathBuf>,
    /// Basic auth to Alertmanager: the user, and a file holding the password.
    pub alertmanager_username: Option<String>,
    pub alertmanager_password_file: Option<PathBuf>,
    /// Or a file holding a bearer token.
    pub alertmanager_bearer_token_file: Option<PathBuf>,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen_addresses: vec![":9917".into()],
            max_connections: 512,
            max_connections_per_client: 64,
            config_file: None,
            telemetry_path: "/metrics".into(),
        }
    }
}
impl Default for Sampling {
    fn default() -> Self {
        Sampling { update_every: 1, procfs: PathBuf::from("/proc"), rootfs: PathBuf::from("/"), posix: true }
    }
}
impl Default for Charts {
    fn default() -> Self {
        Charts { max_queue_dimensions: 100, history: 3600 }
    }
}
impl Default for Log {
    fn default() -> Self {
        Log { level: LogLevel::Info }
    }
}
impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            enabled: true,
            rules: None,
            exec: None,
            exec_timeout: 10,
            alertmanagers: Vec::new(),
            instance: None,
            alertmanager_ca_file: None,
            alertmanager_username: None,
            alertmanager_password_file: None,
            alertmanager_bearer_token_file: None,
        }
    }
}
/// Command-line flags that override the file (`None` or empty: keep the file's value).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen_addresses: Vec<String>,
    pub procfs: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    pub web_config: Option<PathBuf>,
    pub telemetry_path: Option<String>,
}

impl Config {
    /// The file at `path` (or the defaults), with `flags` on top, validated: what the daemon
    /// runs with, at start and at every reload.
    pub fn with_flags(path: Option<&Path>, flags: &Flags) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        flags.apply(&mut config);
        config.validate().map_err(|(key, problem)| ConfigError::invalid(key, problem))?;
        // Checked here, not in validate: a config file is checked on machines it does not
        // run on, but the daemon needs the host's root where it runs.
        let rootfs = &config.sampling.rootfs;
        if !rootfs.is_dir() {
            return Err(ConfigError::invalid(
                "rootfs (--path.rootfs)",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        let procfs = &config.sampling.procfs;
        if !procfs.join("self").exists() && !procfs.join("1").exists() {
            return Err(ConfigError::invalid(
                "procfs (--path.procfs)",
                format!("{} is not a proc file system (it has no self or 1)", procfs.display()),
            ));
        }
        Ok(config)
    }
}

impl Flags {
    pub fn apply(&self, c: &mut Config) {
        if let Some(w) = &self.web_config {
            // A flag's path is relative to where ipcwatch was started, not to the config file.
            c.web.config_file = Some(std::path::absolute(w).unwrap_or_else(|_| w.clone()));
        }
        if let Some(t) = &self.telemetry_path {
            c.web.telemetry_path = t.clone();
        }
        if !self.listen_addresses.is_empty() {
            c.web.listen_addresses = self.listen_addresses.clone();
        }
        if let Some(p) = &self.rootfs {
            c.sampling.rootfs = p.clone();
        }
        if let Some(p) = &self.procfs {
            c.sampling.procfs = p.clone();
        }
        if let Some(l) = self.log_level {
            c.log.level = l;
        }
    }
}

/// A configuration problem, phrased for the operator as `file:line: key: problem`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the OS error is in the message, not a `source`, so that
    /// the one line printed says it once).
    #[error("{}: cannot read config: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    /// Not TOML, or a key or type serde refused (an unknown key, a string for a number).
    #[error("{file}{}: {message}", at(*line))]
    Syntax { file: String, line: Option<usize>, message: String },
    /// A value serde took but ipcwatch cannot use; `file` is `None` for a flag or a default.
    #[error("{}{key}: {problem}", place(file.as_deref(), *line))]
    Invalid { file: Option<String>, line: Option<usize>, key: &'static str, problem: String },
    /// The rules the config names did not load.
    #[error(transparent)]
    Rules(#[from] ipcwatch_pipeline::rules::Error),
    /// The web configuration file (TLS, basic auth) is wrong.
    #[error("web config: {0}")]
    Web(String),
}

/// `:LINE`, or nothing.
fn at(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// `FILE:LINE: `, `FILE: `, or nothing (a flag's or a default's problem).
fn place(file: Option<&str>, line: Option<usize>) -> String {
    file.map(|f| format!("{f}{}: ", at(line))).unwrap_or_default()
}

impl ConfigError {
    fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: None, line: None, key, problem: problem.into() }
    }

    /// The same problem, said to be in `file` (if it does not name one already).
    fn in_file(self, name: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { file: None, line, key, problem } => {
                ConfigError::Invalid { file: Some(name.to_string()), line, key, problem }
            }
            other => other,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        let name = path.display().to_string();
        let mut config = Config::parse(&text, &name)?;
        config.source = Some(path.to_path_buf());
        // Secrets and the CA are read now, so a missing or unreadable one is a config error.
        config.delivery().map_err(|e| e.in_file(&name))?;
        // A rules path that is not there would switch alerting off without a word.
        if let Some(rules) = config.alerts.rules.as_ref().filter(|_| config.alerts.enabled) {
            let resolved = config.resolve(rules);
            if !resolved.exists() {
                return Err(ConfigError::Invalid {
                    file: Some(name),
                    line: find_key_line(&text, "rules"),
                    key: "rules",
                    problem: format!("{} does not exist", resolved.display()),
                });
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().trim().replace('\n', " ");
            ConfigError::Syntax { file: name.to_string(), line, message }
        })?;
        config.validate().map_err(|(key, problem)| ConfigError::Invalid {
            file: Some(name.to_string()),
            line: find_key_line(text, key),
            key,
            problem,
        })?;
        Ok(config)
    }

    /// Checks values serde cannot: `(key, problem)` for the first bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.web.listen_addresses.is_empty() {
            return Err(("listen_addresses", "needs at least one address".into()));
        }
        for (i, a) in self.web.listen_addresses.iter().enumerate() {
            if !valid_listen_address(a) {
                return Err(("listen_addresses", format!("`{a}` is not host:port, [v6]:port or :port")));
            }
            if self.web.listen_addresses[..i].contains(a) {
                return Err(("listen_addresses", format!("`{a}` is listed twice")));
            }
        }
        if !(1..=3600).contains(&self.sampling.update_every) {
            return Err((
                "update_every",
                format!("{} is not between 1 and 3600 seconds", self.sampling.update_every),
            ));
        }
        if self.charts.history < self.sampling.update_every || self.charts.history > 7 * 86400 {
            return Err((
                "history",
                format!("{} is not between update_every and 604800 seconds", self.charts.history),
            ));
        }
        if self.ebpf.max_objects > 1000 {
            return Err(("max_objects", "must be at most 1000".into()));
        }
        if self.charts.max_queue_dimensions > 100_000 {
            return Err(("max_queue_dimensions", "must be at most 100000".into()));
        }
        let history = self.registry().history_bytes();
        if history > HISTORY_BUDGET {
            return Err((
                "history",
                format!(
                    "{} s of history for up to {} queues needs {} MiB, over the {} MiB budget: lower history or max_queue_dimensions",
                    self.charts.history,
                    self.charts.max_queue_dimensions,
                    history >> 20,
                    HISTORY_BUDGET >> 20
                ),
            ));
        }
        let path = &self.web.telemetry_path;
        let taken = ["/", "/-/healthy", "/-/ready", "/api/v1/alarms"];
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || taken.contains(&path.as_str()) {
            return Err(("telemetry_path", format!("`{path}` must be a path such as /metrics, not one of / /-/healthy /-/ready /api/v1/alarms")));
        }
        if !(1..=3600).contains(&self.namespaces.rescan) {
            return Err(("rescan", format!("{} is not between 1 and 3600 seconds", self.namespaces.rescan)));
        }
        let h = &self.holders;
        if !(1..=86_400).contains(&h.interval) {
            return Err(("interval", format!("{} is not between 1 and 86400 seconds", h.interval)));
        }
        if h.stale_after > 365 * 86_400 || h.orphan_after > 365 * 86_400 {
            let key = if h.stale_after > 365 * 86_400 { "stale_after" } else { "orphan_after" };
            return Err((key, "must be at most a year (31536000 seconds)".into()));
        }
        if !(1..=1000).contains(&h.max_owners) {
            return Err(("max_owners", "must be between 1 and 1000".into()));
        }
        if self.namespaces.max_queue_series > 1_000_000 {
            return Err(("max_queue_series", "must be at most 1000000".into()));
        }
        if !(1..=100_000).contains(&self.namespaces.max) {
            return Err(("max", "must be between 1 and 100000 namespaces".into()));
        }
        if !(1..=65_536).contains(&self.web.max_connections) {
            return Err(("max_connections", "must be between 1 and 65536".into()));
        }
        if self.web.max_connections_per_client == 0 {
            return Err(("max_connections_per_client", "must be at least 1".into()));
        }
        if !(1..=3600).contains(&self.alerts.exec_timeout) {
            return Err(("exec_timeout", "must be between 1 and 3600 seconds".into()));
        }
        for url in &self.alerts.alertmanagers {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(("alertmanagers", format!("`{url}` must be an http:// or https:// URL")));
            }
        }
        let a = &self.alerts;
        match (&a.alertmanager_username, &a.alertmanager_password_file, &a.alertmanager_bearer_token_file) {
            (Some(_), None, _) => {
                return Err(("alertmanager_username", "needs alertmanager_password_file".into()))
            }
            (None, Some(_), _) => {
                return Err(("alertmanager_password_file", "needs alertmanager_username".into()))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err((
                    "alertmanager_bearer_token_file",
                    "give basic auth or a bearer token, not both".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    pub fn update_every(&self) -> Duration {
        Duration::from_secs(self.sampling.update_every)
    }

    /// History rows per chart.
    pub fn history_rows(&self) -> usize {
        (self.charts.history / self.sampling.update_every).max(1) as usize
    }

    /// The per-second sampler: totals and the walks the outputs need, no per-array detail.
    pub fn sampler(&self) -> SamplerConfig {
        SamplerConfig {
            procfs: self.sampling.procfs.clone(),
            source: Source::Auto,
            segment_memory: false,
            semaphore_detail: false,
            posix: self.sampling.posix,
        }
    }

    fn registry(&self) -> ipcwatch_charts::RegistryConfig {
        ipcwatch_charts::RegistryConfig {
            history_rows: self.history_rows(),
            max_queue_dimensions: self.charts.max_queue_dimensions,
            max_owner_dimensions: self.holders.max_owners + 1,
            probes: false,
        }
    }

    pub fn fleet(&self) -> ipcwatch_pipeline::FleetConfig {
        let n = &self.namespaces;
        ipcwatch_pipeline::FleetConfig {
            mode: match n.mode {
                NamespaceMode::All => ipcwatch_pipeline::Mode::All,
                NamespaceMode::Own => ipcwatch_pipeline::Mode::Own,
            },
            rescan: Duration::from_secs(n.rescan),
            max: n.max,
            max_queue_series: n.max_queue_series,
            // One pidfd per namespace, from what the open-file limit leaves after the
            // connections and the daemon's own descriptors.
            max_anchors: ipcwatch_sampler::open_file_limit()
                .map_or(0, |fds| fds.saturating_sub(128 + self.web.max_connections))
                .min(n.max),
            procfs: self.sampling.procfs.clone(),
            pod_logs: self.pod_logs(),
        }
    }

    /// The kubelet's pod log folders, under the host's root.
    pub fn pod_logs(&self) -> PathBuf {
        let logs = self.resolve(&self.namespaces.pod_logs);
        match logs.strip_prefix("/") {
            Ok(rel) if self.sampling.rootfs != Path::new("/") => self.sampling.rootfs.join(rel),
            _ => logs,
        }
    }

    /// The passwd file that names users: the host's under `rootfs`, or `None` for NSS.
    pub fn passwd_file(&self) -> Option<PathBuf> {
        (self.sampling.rootfs != Path::new("/")).then(|| self.sampling.rootfs.join("etc/passwd"))
    }

    /// The census's settings.
    pub fn holders(&self) -> ipcwatch_holders::HoldersConfig {
        let h = &self.holders;
        ipcwatch_holders::HoldersConfig {
            thresholds: ipcwatch_holders::Thresholds {
                stale_after: h.stale_after as i64,
                orphan_after: h.orphan_after as i64,
            },
            max_owners: h.max_owners,
        }
    }

    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            update_every: self.update_every(),
            history_rows: self.history_rows(),
            max_queue_dimensions: self.charts.max_queue_dimensions,
            max_owner_dimensions: self.holders.max_owners + 1,
            // Known once the fleet has tried to load them.
            probes: false,
        }
    }

    /// What alert delivery needs; reads the CA, password and token files it names.
    pub fn delivery(&self) -> Result<DeliveryConfig, ConfigError> {
        let a = &self.alerts;
        let read = |key: &'static str, p: &Path| {
            let path = self.resolve(p);
            std::fs::read(&path).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
        };
        let secret = |key: &'static str, p: &Path| -> Result<String, ConfigError> {
            let bytes = read(key, p)?;
            let text = String::from_utf8(bytes).map_err(|_| ConfigError::invalid(key, "not UTF-8 text"))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        };
        let auth = match (
            &a.alertmanager_username,
            &a.alertmanager_password_file,
            &a.alertmanager_bearer_token_file,
        ) {
            (Some(u), Some(p), _) => Some(AlertmanagerAuth::Basic {
                username: u.clone(),
                password: secret("alertmanager_password_file", p)?,
            }),
            (_, _, Some(t)) => Some(AlertmanagerAuth::Bearer(secret("alertmanager_bearer_token_file", t)?)),
            _ => None,
        };
        Ok(DeliveryConfig {
            exec: a.exec.as_ref().map(|p| self.resolve(p)),
            exec_timeout: Duration::from_secs(a.exec_timeout),
            alertmanagers: a.alertmanagers.clone(),
            instance: a.instance.clone().unwrap_or_else(|| Host::this_machine().hostname),
            alertmanager_ca: a
                .alertmanager_ca_file
                .as_ref()
                .map(|p| read("alertmanager_ca_file", p))
                .transpose()?,
            alertmanager_auth: auth,
        })
    }

    /// A sample this old means the sampler is stuck: three intervals, and at least 5 s.
    pub fn stale_after(&self) -> Duration {
        (3 * self.update_every()).max(Duration::from_secs(5))
    }

    /// The configured rules (or the built-in ones); a missing rules path is a config error.
    pub fn rules(&self) -> Result<Vec<ipcwatch_alerts::Rule>, ConfigError> {
        if !self.alerts.enabled {
            return Ok(Vec::new());
        }
        Ok(ipcwatch_pipeline::rules::load(self.rules_path().as_deref())?)
    }

    /// The web configuration file, resolved; `None` for plain HTTP without auth.
    pub fn web_config_path(&self) -> Option<PathBuf> {
        self.web.config_file.as_ref().map(|p| self.resolve(p))
    }

    /// The rules file or folder, resolved; `None` for the built-in rules.
    pub fn rules_path(&self) -> Option<PathBuf> {
        self.alerts.rules.as_ref().map(|p| self.resolve(p))
    }

    /// A path from the config, resolved against the config file's folder when relative.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match (&self.source, p.is_relative()) {
            (Some(src), true) => src.parent().unwrap_or(Path::new(".")).join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// `:port`, an IP socket address (`127.0.0.1:9917`, `[::1]:9917`), or `name:port` where the
/// name is a DNS name: not a URL, not a broken bracket, not an IPv4 address out of range.
fn valid_listen_address(a: &str) -> bool {
    if let Some(port) = a.strip_prefix(':') {
        return port.parse::<u16>().is_ok();
    }
    if a.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = a.rsplit_once(':') else { return false };
    let dns_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All digits and dots is an IPv4 address, and it did not parse as one above.
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    dns_name && port.parse::<u16>().is_ok()
}

/// The line of `key` in `text`, from the TOML parser's spans: the key itself in whatever
/// table holds it (validated keys are unique across tables), never a longer key that starts
/// the same (`max` is not `max_connections`).
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    fn find(table: &toml::de::DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
        table.iter().find_map(|(k, v)| {
            if k.get_ref().as_ref() == key {
                return Some(k.span());
            }
            match v.get_ref() {
                toml::de::DeValue::Table(t) => find(t, key),
                _ => None,
            }
        })
    }
    let table = toml::de::DeTable::parse(text).ok()?;
    let span = find(table.get_ref(), key)?;
    Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ipcwatch.toml");
        let mut c = Config::load(&path).unwrap();
        assert_eq!(c.alerts.rules.as_deref(), Some(Path::new("../alerts")));
        c.alerts.rules = None;
        c.source = None;
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = Config::parse("[web]\n\nlisten = [\":1\"]\n", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:3: unknown field `listen`"), "{e}");
    }

    #[test]
    fn bad_value_names_the_line() {
        let e = Config::parse("[sampling]\nupdate_every = \"fast\"\n", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:2:"), "{e}");
        let e = Config::parse("[sampling]\nupdate_every = 0\n", "x.toml").unwrap_err().to_string();
        assert_eq!(e, "x.toml:2: update_every: 0 is not between 1 and 3600 seconds");
        let e =
            Config::parse("[web]\nlisten_addresses = [\"nonsense\"]\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("listen_addresses: `nonsense`"), "{e}");
        let e = Config::parse("[log]\nlevel = \"loud\"\n", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:2:") && e.contains("loud"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_own_line_not_a_longer_key_that_starts_alike() {
        let text = "[web]\nmax_connections = 512\n\n[namespaces]\n# max = 5\nmax = 0\n";
        let e = Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:6: max:"), "{e}");
        // A key in an inline table, and one with spaces before `=`, are found as well.
        let e = Config::parse("namespaces = { rescan = 0 }\n", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:1: rescan:"), "{e}");
    }

    #[test]
    fn listen_addresses_are_checked_before_bind() {
        for bad in ["[::1", "999.1.1.1:9917", "http://127.0.0.1:9917", "host:99999", "a b:1", ":x"] {
            let text = format!("[web]\nlisten_addresses = [\"{bad}\"]\n");
            let e = Config::parse(&text, "x.toml").unwrap_err().to_string();
            assert!(e.starts_with("x.toml:2: listen_addresses:"), "{bad}: {e}");
        }
        for good in [":9917", "127.0.0.1:9917", "[::1]:9917", "localhost:9917", "db-1.example.com:80"] {
            let text = format!("[web]\nlisten_addresses = [\"{good}\"]\n");
            assert!(Config::parse(&text, "x.toml").is_ok(), "{good}");
        }
        let e =
            Config::parse("[web]\nlisten_addresses = [\":1\", \":1\"]\n", "x.toml").unwrap_err().to_string();
        assert_eq!(e, "x.toml:2: listen_addresses: `:1` is listed twice");
    }

    #[test]
    fn alertmanager_auth_is_whole_and_its_files_exist() {
        let e = Config::parse("[alerts]\nalertmanager_username = \"u\"\n", "x.toml").unwrap_err().to_string();
        assert_eq!(e, "x.toml:2: alertmanager_username: needs alertmanager_password_file");
        let e =
            Config::parse("[alerts]\nalertmanagers = [\"ftp://am\"]\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("must be an http:// or https:// URL"), "{e}");
        let dir = std::env::temp_dir().join(format!("ipcwatch-am-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[alerts]\nalertmanager_username = \"u\"\nalertmanager_password_file = \"pw\"\n",
        )
        .unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("alertmanager_password_file: ") && e.contains("pw: No such file"), "{e}");
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        let auth = Config::load(&file).unwrap().delivery().unwrap().alertmanager_auth;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(auth, Some(AlertmanagerAuth::Basic { username: "u".into(), password: "s3cret".into() }));
    }

    #[test]
    fn errors_say_what_kind_of_problem_they_are() {
        let e = Config::parse("[web]\nlisten = [\":1\"]\n", "x.toml").unwrap_err();
        assert!(matches!(&e, ConfigError::Syntax { line: Some(2), .. }), "{e:?}");
        let e = Config::parse("namespaces = { rescan = 0 }\n", "x.toml").unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { key: "rescan", line: Some(1), .. }), "{e:?}");
        let e = Config::load(Path::new("/nonexistent/ipcwatch.toml")).unwrap_err();
        assert!(matches!(&e, ConfigError::Read { .. }), "{e:?}");
        assert!(e.to_string().starts_with("/nonexistent/ipcwatch.toml: cannot read config: "), "{e}");
    }

    #[test]
    fn history_memory_has_a_budget() {
        let e = Config::parse("[charts]\nhistory = 604800\nmax_queue_dimensions = 100000\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("x.toml:2: history: 604800 s of history for up to 100000 queues needs "),
            "{e}"
        );
        assert!(e.ends_with("over the 64 MiB budget: lower history or max_queue_dimensions"), "{e}");
        // The defaults are far inside it.
        assert!(Config::default().registry().history_bytes() < 16 << 20);
        assert!(Config::parse("[charts]\nhistory = 86400\nmax_queue_dimensions = 10\n", "x.toml").is_ok());
    }

    #[test]
    fn a_missing_rules_path_is_a_config_error() {
        let dir = std::env::temp_dir().join(format!("ipcwatch-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[alerts]\nrules = \"nonexistent\"\n").unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains(":2: rules: ") && e.ends_with("nonexistent does not exist"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = Config { source: Some(PathBuf::from("/etc/ipcwatch/ipcwatch.toml")), ..Default::default() };
        assert_eq!(c.resolve(Path::new("rules")), PathBuf::from("/etc/ipcwatch/rules"));
        assert_eq!(c.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }
}

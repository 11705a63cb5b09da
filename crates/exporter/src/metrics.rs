//! `/metrics`: Prometheus text format 0.0.4, written straight from a published sample. Every
//! family is built from the sample it shows, so series of vanished queues disappear with them
//! and nothing registered can go stale.

use std::fmt::Write as _;
use std::io::Write as _;

use bytes::Bytes;
use ipcwatch_charts::figures::{
    FIGURES, POSIX_QUEUE_FIGURES, POSIX_QUEUE_LABELS, POSIX_QUEUE_SERIES, QUEUE_FIGURES, QUEUE_LABELS,
};
use ipcwatch_charts::owners::OWNER_FIGURES;
use ipcwatch_holders::HoldersPublished;
use ipcwatch_pipeline::{FleetPublished, NamespacePublished};
use prometheus::core::Collector;

use crate::State;

/// The exact Content-Type of text format 0.0.4; Prometheus 3 rejects a scrape without it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// ipcwatch's own families: name, help, labels and type, written once.
struct SelfMetric {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const BUILD_INFO: SelfMetric = SelfMetric {
    name: "ipcwatch_build_info",
    help: "ipcwatch's version and revision; always 1.",
    kind: "gauge",
};
const COLLECTOR_SUCCESS: SelfMetric = SelfMetric {
    name: "ipcwatch_collector_success",
    help: "Whether the collector's last sample succeeded (1) or failed (0).",
    kind: "gauge",
};
const COLLECTOR_DURATION: SelfMetric = SelfMetric {
    name: "ipcwatch_collector_duration_seconds",
    help: "How long the collector's last sample took.",
    kind: "gauge",
};
const SAMPLES_FAILED: SelfMetric = SelfMetric {
    name: "ipcwatch_samples_failed_total",
    help: "Samples in which at least one collector failed.",
    kind: "counter",
};
const SAMPLES_SLOW: SelfMetric = SelfMetric {
    name: "ipcwatch_samples_slow_total",
    help: "Samples that took longer than the update interval.",
    kind: "counter",
};
const ALERT_STATUS: SelfMetric = SelfMetric {
    name: "ipcwatch_alert_status",
    help: "1 for the alert's current status (Netdata's names), 0 for the others.",
    kind: "gauge",
};
const ALERT_VALUE: SelfMetric =
    SelfMetric { name: "ipcwatch_alert_value", help: "The alert's last computed value.", kind: "gauge" };

const ALERT_STATUSES: [&str; 5] = ["CLEAR", "WARNING", "CRITICAL", "UNDEFINED", "UNINITIALIZED"];

/// A sample value: integers are written exactly (a u64 limit such as SHMMAX would lose its
/// low digits as f64), floats in Prometheus's spelling.
#[derive(Clone, Copy)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

/// Writes the text format into a String, or through it into a gzip stream: at a thousand
/// namespaces the body is 3 MB of text and its gzip a tenth of that, so Prometheus's scrapes
/// (always gzip) never hold the whole text.
pub(crate) struct Text<'a> {
    out: String,
    gzip: Option<&'a mut flate2::write::GzEncoder<Vec<u8>>>,
}

/// How much text a gzip render holds before compressing it.
const SPILL_BYTES: usize = 32 * 1024;

impl Text<'static> {
    /// Text kept whole in memory: for answers other than /metrics (allmetrics' Prometheus
    /// format), which are small and not compressed as they are written.
    pub(crate) fn plain() -> Self {
        Text { out: String::new(), gzip: None }
    }

    pub(crate) fn into_string(self) -> String {
        self.out
    }
}

impl Text<'_> {
    /// Hands the text so far to the gzip stream (a family boundary is as good as any).
    fn spill(&mut self, at_least: usize) {
        if let Some(gz) = self.gzip.as_deref_mut() {
            if self.out.len() >= at_least {
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(self.out.as_bytes());
                self.out.clear();
            }
        }
    }

    pub(crate) fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.spill(SPILL_BYTES);
        self.help(name, help);
        self.kind(name, kind);
    }

    pub(crate) fn help(&mut self, name: &str, help: &str) {
        let _ = write!(self.out, "# HELP {name} ");
        escape(&mut self.out, help, false);
        self.out.push('\n');
    }

    pub(crate) fn kind(&mut self, name: &str, kind: &str) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        self.sample_at(name, labels, value, None);
    }

    /// A sample, with its timestamp in milliseconds if given.
    pub(crate) fn sample_at(&mut self, name: &str, labels: &[(&str, &str)], value: Value, ms: Option<i64>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape(&mut self.out, v, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) if v.is_nan() => self.out.push_str("NaN"),
            Value::Float(v) if v.is_infinite() => self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Value::Float(v) => {
                let _ = write!(self.out, "{v}");
            }
        }
        if let Some(ms) = ms {
            let _ = write!(self.out, " {ms}");
        }
        self.out.push('\n');
    }
}

/// Escapes `\` and newlines (and `"` in label values), as the text format requires.
pub(crate) fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

const NAMESPACE_INFO: SelfMetric = SelfMetric {
    name: "sysvipc_namespace_info",
    help: "What owns each IPC namespace; always 1. Join on ipc_namespace.",
    kind: "gauge",
};
const NOTIFICATIONS_DROPPED: SelfMetric = SelfMetric {
    name: "ipcwatch_notifications_dropped_total",
    help: "Alert notifications not delivered, by reason: queue_full (the delivery queue held 1024), exec_busy (4 exec notifiers running and 256 waiting), repeat (the same alert and status ran the exec notifier less than a minute ago).",
    kind: "counter",
};
const HTTP_OPEN: SelfMetric =
    SelfMetric { name: "ipcwatch_http_connections", help: "HTTP connections open.", kind: "gauge" };
const HTTP_EVICTED: SelfMetric = SelfMetric {
    name: "ipcwatch_http_connections_evicted_total",
    help: "Connections without a request in flight closed to make room for a new one (slow or idle clients).",
    kind: "counter",
};
const HTTP_REFUSED: SelfMetric = SelfMetric {
    name: "ipcwatch_http_connections_refused_total",
    help: "Connections closed at once: every slot they could take was serving a request.",
    kind: "counter",
};
const HTTP_AUTH_THROTTLED: SelfMetric = SelfMetric {
    name: "ipcwatch_http_auth_throttled_total",
    help: "Requests answered 429, and connections closed, without a password check: their address failed basic auth 10 times in a minute, or 4 checks were waiting already.",
    kind: "counter",
};
const NAMESPACES: SelfMetric =
    SelfMetric { name: "ipcwatch_namespaces", help: "IPC namespaces found on the host.", kind: "gauge" };
const NAMESPACES_WATCHED: SelfMetric =
    SelfMetric { name: "ipcwatch_namespaces_watched", help: "IPC namespaces sampled.", kind: "gauge" };
const NAMESPACES_SKIPPED: SelfMetric = SelfMetric {
    name: "ipcwatch_namespaces_skipped",
    help: "IPC namespaces left out beyond [namespaces] max (the fewest objects first).",
    kind: "gauge",
};
const NAMESPACES_ALL: SelfMetric = SelfMetric {
    name: "ipcwatch_namespaces_all",
    help: "1 if other IPC namespaces can be entered (mode all with CAP_SYS_ADMIN), 0 if only the daemon's own is watched.",
    kind: "gauge",
};
const VISITS_FAILED: SelfMetric = SelfMetric {
    name: "ipcwatch_namespace_visits_failed_total",
    help: "Visits to IPC namespaces that failed.",
    kind: "counter",
};
const DISCOVERY: SelfMetric = SelfMetric {
    name: "ipcwatch_namespace_discovery_seconds",
    help: "How long the last search for IPC namespaces took.",
    kind: "gauge",
};

const REMOVED_IN_USE: SelfMetric = SelfMetric {
    name: "sysvipc_owner_removed_in_use_total",
    help: "Objects of the owner removed while a process that used them still ran (systemd-logind RemoveIPC=yes, a stray ipcrm); each is logged.",
    kind: "counter",
};
const CENSUS_PIDS_UNKNOWN: SelfMetric = SelfMetric {
    name: "ipcwatch_census_pids_unknown",
    help: "Semaphore arrays whose last pids could not be read (no read permission or CAP_IPC_OWNER): never called stale.",
    kind: "gauge",
};
const CENSUS_DURATION: SelfMetric = SelfMetric {
    name: "ipcwatch_census_duration_seconds",
    help: "How long the last census of owners and stale objects took (per namespace, and all together).",
    kind: "gauge",
};
const CENSUS_PROC_WALKS: SelfMetric = SelfMetric {
    name: "ipcwatch_census_proc_walks",
    help: "Walks of /proc the last census made, for every namespace together (1, or 2 with POSIX queues' owners to look up).",
    kind: "gauge",
};
const CENSUS_DEV_SHM_LISTINGS: SelfMetric = SelfMetric {
    name: "ipcwatch_census_dev_shm_listings",
    help: "/dev/shm folders the last census listed: one per mount namespace, however many IPC namespaces share it.",
    kind: "gauge",
};
const CENSUS_TIMESTAMP: SelfMetric = SelfMetric {
    name: "ipcwatch_census_timestamp_seconds",
    help: "Unix time the last census of owners and stale objects ended.",
    kind: "gauge",
};

const USER_BYTES: SelfMetric = SelfMetric {
    name: "posix_mqueue_user_bytes",
    help: "What the user's POSIX queues, in every IPC namespace, charge against the user's RLIMIT_MSGQUEUE (computed: the kernel exports no counter). mq_open fails with EMFILE beyond the limit.",
    kind: "gauge",
};
const USER_BYTES_LIMIT: SelfMetric = SelfMetric {
    name: "posix_mqueue_user_bytes_limit",
    help: "The user's RLIMIT_MSGQUEUE (soft; from one of its processes, read every census; unlimited reads as 2^64-1).",
    kind: "gauge",
};

/// POSIX queues one by one (capped per namespace), and the RLIMIT_MSGQUEUE charge per user.
fn render_posix(t: &mut Text, namespaces: &[ipcwatch_pipeline::NamespacePublished], state: &State) {
    const NS: &str = "ipc_namespace";
    fn queues(n: &ipcwatch_pipeline::NamespacePublished) -> Vec<&ipcwatch_sampler::posix::PosixQueue> {
        let mut q: Vec<&ipcwatch_sampler::posix::PosixQueue> = n
            .published
            .snapshot
            .posix
            .as_ref()
            .and_then(|p| p.queues.as_ref())
            .map_or(Vec::new(), |q| q.items.iter().collect());
        let fill = |q: &ipcwatch_sampler::posix::PosixQueue| q.messages as f64 / q.max_messages.max(1) as f64;
        q.sort_by(|a, b| fill(b).total_cmp(&fill(a)).then_with(|| a.name.cmp(&b.name)));
        q.truncate(POSIX_QUEUE_SERIES);
        q
    }
    let mut per_user: Vec<(u32, u64)> = Vec::new();
    for n in namespaces {
        for q in n
            .published
            .snapshot
            .posix
            .as_ref()
            .and_then(|p| p.queues.as_ref())
            .iter()
            .flat_map(|q| q.items.iter())
        {
            match per_user.iter_mut().find(|(u, _)| *u == q.owner) {
                Some((_, b)) => *b = b.saturating_add(q.charge_bytes),
                None => per_user.push((q.owner, q.charge_bytes)),
            }
        }
    }
    if per_user.is_empty() {
        return;
    }
    let mut names = state.user_names.lock().unwrap_or_else(|p| p.into_inner());
    let [name, owner] = POSIX_QUEUE_LABELS;
    for f in POSIX_QUEUE_FIGURES {
        t.family(f.metric, f.help, "gauge");
        for n in namespaces {
            for q in queues(n) {
                let owner_name = names.name(q.owner);
                t.sample(
                    f.metric,
                    &[(NS, &n.label), (name, &q.name), (owner, &owner_name)],
                    Value::Int((f.read)(q)),
                );
            }
        }
    }
    per_user.sort_unstable();
    let limits = state.holders().map(|h| h.mqueue_user_limits.clone()).unwrap_or_default();
    t.family(USER_BYTES.name, USER_BYTES.help, USER_BYTES.kind);
    for (uid, bytes) in &per_user {
        let owner = names.name(*uid);
        t.sample(USER_BYTES.name, &[("uid", &uid.to_string()), ("owner", &owner)], Value::Int(*bytes));
    }
    if limits.iter().any(|(u, _)| per_user.iter().any(|(p, _)| p == u)) {
        t.family(USER_BYTES_LIMIT.name, USER_BYTES_LIMIT.help, USER_BYTES_LIMIT.kind);
        for (uid, limit) in limits.iter().filter(|(u, _)| per_user.iter().any(|(p, _)| p == u)) {
            let owner = names.name(*uid);
            t.sample(
                USER_BYTES_LIMIT.name,
                &[("uid", &uid.to_string()), ("owner", &owner)],
                Value::Int(*limit),
            );
        }
    }
}

const SHM_UNUSED: [(&str, &str); 2] = [
    (
        "posix_shm_unused_files",
        "Files in /dev/shm that no process of its mount namespace maps or holds open (checked every census).",
    ),
    (
        "posix_shm_unused_bytes",
        "Bytes allocated to /dev/shm files nothing maps or holds open: they fill size= for nobody.",
    ),
];

/// The biggest /dev/shm files of each namespace and the unused ones (from the census).
fn render_dev_shm_files(
    t: &mut Text,
    h: &HoldersPublished,
    shown: &dyn Fn(&ipcwatch_holders::NamespaceHolders) -> bool,
) {
    const NS: &str = "ipc_namespace";
    let spaces: Vec<(&ipcwatch_holders::NamespaceHolders, &ipcwatch_holders::DevShmFiles, String)> = h
        .namespaces
        .iter()
        .filter(|n| shown(n))
        .filter_map(|n| n.dev_shm.as_deref().map(|d| (&**n, d, d.mnt_namespace.to_string())))
        .collect();
    if spaces.is_empty() {
        return;
    }
    for (i, (metric, help)) in SHM_UNUSED.iter().enumerate() {
        t.family(metric, help, "gauge");
        for (n, d, mnt) in &spaces {
            let v = if i == 0 { d.unused_files } else { d.unused_bytes };
            t.sample(metric, &[(NS, &n.label), ("mnt_namespace", mnt)], Value::Int(v));
        }
    }
    let now = ipcwatch_holders::unix_now();
    type FileRead = fn(&ipcwatch_holders::ShmFileUse, i64) -> u64;
    let files: [(&str, &str, FileRead); 3] = [
        (
            "posix_shm_file_bytes",
            "Bytes allocated to one of the biggest /dev/shm files (the top 5 per namespace).",
            |f, _| f.file.bytes,
        ),
        (
            "posix_shm_file_age_seconds",
            "Seconds since one of the biggest /dev/shm files was last modified.",
            |f, now| (now - f.file.modified).max(0) as u64,
        ),
        (
            "posix_shm_file_unused",
            "1 if no process of the mount namespace maps or holds the file open.",
            |f, _| !f.in_use as u64,
        ),
    ];
    for (metric, help, read) in files {
        t.family(metric, help, "gauge");
        for (n, d, mnt) in &spaces {
            for f in &d.largest {
                let owner = f.file.owner.to_string();
                let labels = [
                    (NS, &*n.label),
                    ("mnt_namespace", mnt.as_str()),
                    ("name", &f.file.name),
                    ("uid", &owner),
                ];
                t.sample(metric, &labels, Value::Int(read(f, now)));
            }
        }
    }
}

/// The census's families: usage by owner, stale objects and removals, per namespace. Only
/// for namespaces the latest sample still watches: a census is up to a minute old, and a
/// namespace that ended since must leave with its other series.
fn render_holders(t: &mut Text, all: &HoldersPublished, watched: &[ipcwatch_pipeline::NamespacePublished]) {
    const NS: &str = "ipc_namespace";
    // A census's namespace is shown while the latest sample watches it; its /dev/shm files
    // only where that sample shows the /dev/shm (once per mount namespace).
    let by_label: std::collections::HashMap<&str, &ipcwatch_pipeline::NamespacePublished> =
        watched.iter().map(|w| (&*w.label, w)).collect();
    let h = &HoldersPublished {
        namespaces: all.namespaces.iter().filter(|n| by_label.contains_key(&*n.label)).cloned().collect(),
        visits_failed: all.visits_failed,
        duration_seconds: all.duration_seconds,
        timestamp: all.timestamp,
        mqueue_user_limits: Vec::new(),
        proc_walks: all.proc_walks,
        dev_shm_listings: all.dev_shm_listings,
    };
    let mut uid = String::with_capacity(10);
    for f in OWNER_FIGURES {
        t.family(f.metric, f.help, "gauge");
        for n in &h.namespaces {
            let home = by_label.get(&*n.label).is_some_and(|w| w.home);
            // In a container namespace an owner's figure is written only while it holds some:
            // who holds nothing is not in the breakdown (sum by (owner) is unchanged).
            for o in n.pass.owners.iter().filter(|o| home || (f.read)(&o.usage) != 0) {
                uid.clear();
                if let Some(u) = o.uid {
                    let _ = write!(uid, "{u}");
                }
                t.sample(
                    f.metric,
                    &[(NS, &n.label), ("owner", &o.name), ("uid", &uid)],
                    Value::Int((f.read)(&o.usage)),
                );
            }
        }
    }
    let dev_shm_shown = |n: &ipcwatch_holders::NamespaceHolders| {
        by_label.get(&*n.label).is_some_and(|w| w.published.snapshot.dev_shm.is_some())
    };
    render_dev_shm_files(t, h, &dev_shm_shown);
    t.family(REMOVED_IN_USE.name, REMOVED_IN_USE.help, REMOVED_IN_USE.kind);
    for n in &h.namespaces {
        for r in &n.pass.removed_in_use {
            uid.clear();
            if let Some(u) = r.uid {
                let _ = write!(uid, "{u}");
            }
            t.sample(
                REMOVED_IN_USE.name,
                &[(NS, &n.label), ("owner", &r.name), ("uid", &uid)],
                Value::Int(r.total),
            );
        }
    }
    t.family(CENSUS_PIDS_UNKNOWN.name, CENSUS_PIDS_UNKNOWN.help, CENSUS_PIDS_UNKNOWN.kind);
    for n in h
        .namespaces
        .iter()
        .filter(|n| n.pass.pids_unknown != 0 || by_label.get(&*n.label).is_some_and(|w| w.home))
    {
        t.sample(CENSUS_PIDS_UNKNOWN.name, &[(NS, &n.label)], Value::Int(n.pass.pids_unknown));
    }
    t.family(CENSUS_DURATION.name, CENSUS_DURATION.help, CENSUS_DURATION.kind);
    t.sample(CENSUS_DURATION.name, &[], Value::Float(h.duration_seconds));
    // Per namespace only the home one's, as with the collectors' durations.
    for n in h.namespaces.iter().filter(|n| by_label.get(&*n.label).is_some_and(|w| w.home)) {
        t.sample(CENSUS_DURATION.name, &[(NS, &n.label)], Value::Float(n.pass.duration_seconds));
    }
    for (m, v) in [(&CENSUS_PROC_WALKS, all.proc_walks), (&CENSUS_DEV_SHM_LISTINGS, all.dev_shm_listings)] {
        t.family(m.name, m.help, m.kind);
        t.sample(m.name, &[], Value::Int(v));
    }
    t.family(CENSUS_TIMESTAMP.name, CENSUS_TIMESTAMP.help, CENSUS_TIMESTAMP.kind);
    t.sample(CENSUS_TIMESTAMP.name, &[], Value::Int(h.timestamp.max(0) as u64));
}

/// The whole body: every namespace's figures when there is a fresh sample, ipcwatch's own
/// series, and the process's. Every IPC series carries `ipc_namespace`.
pub(crate) fn render(published: Option<&FleetPublished>, state: &State) -> String {
    let queues =
        published.map_or(0, |p| p.namespaces.iter().map(|n| n.published.queues.queues().len()).sum());
    let spaces = published.map_or(0, |p| p.namespaces.len());
    // About 3 KB a container namespace (39 series), more for the home one and each queue.
    let mut t = Text { out: String::with_capacity(16 * 1024 + spaces * 3200 + queues * 3 * 140), gzip: None };
    render_into(&mut t, published, state);
    t.out
}

/// The body, gzip-compressed as it is written.
pub(crate) fn render_gzip(published: Option<&FleetPublished>, state: &State) -> Bytes {
    let spaces = published.map_or(0, |p| p.namespaces.len());
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(8 * 1024 + spaces * 320),
        flate2::Compression::fast(),
    );
    let mut t = Text { out: String::with_capacity(SPILL_BYTES + 4 * 1024), gzip: Some(&mut gz) };
    render_into(&mut t, published, state);
    t.spill(0);
    Bytes::from(gz.finish().unwrap_or_default())
}

fn render_into(t: &mut Text, published: Option<&FleetPublished>, state: &State) {
    let empty = Vec::new();
    let namespaces = published.map_or(&empty, |p| &p.namespaces);
    const NS: &str = "ipc_namespace";
    let mut mnt = String::with_capacity(12);
    for f in FIGURES {
        let mut first = true;
        for n in namespaces.iter().filter(|n| n.home || !f.constant) {
            let snapshot = &n.published.snapshot;
            if let Some(v) = (f.read)(snapshot).filter(|&v| n.home || !f.sparse || v != 0) {
                if std::mem::take(&mut first) {
                    t.family(f.metric, f.help, "gauge");
                }
                if f.per_mount {
                    mnt.clear();
                    if let Some(m) = snapshot.dev_shm.as_ref().and_then(|d| d.mnt_namespace) {
                        let _ = write!(mnt, "{m}");
                    }
                    t.sample(f.metric, &[(NS, &n.label), ("mnt_namespace", &mnt)], Value::Int(v));
                } else {
                    t.sample(f.metric, &[(NS, &n.label)], Value::Int(v));
                }
            }
        }
    }
    let mut id = String::with_capacity(12);
    let mut key = String::with_capacity(10);
    for f in QUEUE_FIGURES {
        let mut first = true;
        for n in namespaces {
            for q in n.published.queues.queues() {
                let Some(v) = (f.read)(q) else { continue };
                if std::mem::take(&mut first) {
                    t.family(f.metric, f.help, "gauge");
                }
                id.clear();
                key.clear();
                let _ = write!(id, "{}", q.id);
                let _ = write!(key, "{}", q.key);
                let [k, i, o] = QUEUE_LABELS;
                t.sample(f.metric, &[(NS, &n.label), (k, &key), (i, &id), (o, &q.owner)], Value::Int(v));
            }
        }
    }
    if !namespaces.is_empty() {
        t.family(NAMESPACE_INFO.name, NAMESPACE_INFO.help, NAMESPACE_INFO.kind);
        for n in namespaces {
            let i = &n.identity;
            let s = |v: &Option<String>| v.clone().unwrap_or_default();
            let (pid, host) = (i.pid.to_string(), if i.host { "true" } else { "false" });
            let started = i.started.to_string();
            let (cid, uid, pod, pns, unit) =
                (s(&i.container_id), s(&i.pod_uid), s(&i.pod), s(&i.pod_namespace), s(&i.unit));
            let labels = [
                (NS, &*n.label),
                ("host", host),
                ("container_id", &cid),
                ("pod_uid", &uid),
                ("pod", &pod),
                ("pod_namespace", &pns),
                ("unit", &unit),
                ("comm", &i.comm),
                ("pid", &pid),
                ("started", &started),
            ];
            t.sample(NAMESPACE_INFO.name, &labels, Value::Int(1));
        }
    }
    render_posix(t, namespaces, state);
    if let Some(p) = published {
        crate::probes::render(t, p);
    }
    if let Some(h) = state.holders() {
        render_holders(t, &h, namespaces);
    }
    t.family(BUILD_INFO.name, BUILD_INFO.help, BUILD_INFO.kind);
    t.sample(
        BUILD_INFO.name,
        &[("version", &state.build.version), ("revision", &state.build.revision)],
        Value::Int(1),
    );
    if let Some(p) = published {
        for (m, v) in [
            (&NAMESPACES, p.seen as u64),
            (&NAMESPACES_WATCHED, p.namespaces.len() as u64),
            (&NAMESPACES_SKIPPED, p.skipped as u64),
            (&NAMESPACES_ALL, p.all_namespaces as u64),
            (&VISITS_FAILED, p.visits_failed),
        ] {
            t.family(m.name, m.help, m.kind);
            t.sample(m.name, &[], Value::Int(v));
        }
        t.family(DISCOVERY.name, DISCOVERY.help, DISCOVERY.kind);
        t.sample(DISCOVERY.name, &[], Value::Float(p.discovery_seconds));
    }
    if let Some(d) = state.delivery.get() {
        t.family(NOTIFICATIONS_DROPPED.name, NOTIFICATIONS_DROPPED.help, NOTIFICATIONS_DROPPED.kind);
        for (reason, n) in d.dropped() {
            t.sample(NOTIFICATIONS_DROPPED.name, &[("reason", reason)], Value::Int(n));
        }
    }
    if let Some(c) = state.connections.get() {
        let (evicted, refused) = c.counts();
        for (m, v) in [
            (&HTTP_OPEN, c.open() as u64),
            (&HTTP_EVICTED, evicted),
            (&HTTP_REFUSED, refused),
            (&HTTP_AUTH_THROTTLED, state.auth_throttled.load(std::sync::atomic::Ordering::Relaxed)),
        ] {
            t.family(m.name, m.help, m.kind);
            t.sample(m.name, &[], Value::Int(v));
        }
    }
    let collectors =
        || namespaces.iter().flat_map(|n| n.published.snapshot.collectors.iter().map(move |c| (n, c)));
    if collectors().next().is_some() {
        t.family(COLLECTOR_SUCCESS.name, COLLECTOR_SUCCESS.help, COLLECTOR_SUCCESS.kind);
        // A container's collectors only while they fail, as its alerts only while raised.
        for (n, c) in collectors().filter(|(n, c)| n.home || !c.ok) {
            t.sample(
                COLLECTOR_SUCCESS.name,
                &[("collector", c.name), (NS, &n.label)],
                Value::Int(c.ok as u64),
            );
        }
        // Durations of the home namespace's collectors only: a container's are the same calls
        // made after a setns, and at a thousand containers their series would cost more than
        // they tell.
        t.family(COLLECTOR_DURATION.name, COLLECTOR_DURATION.help, COLLECTOR_DURATION.kind);
        for (n, c) in collectors().filter(|(n, _)| n.home) {
            t.sample(
                COLLECTOR_DURATION.name,
                &[("collector", c.name), (NS, &n.label)],
                Value::Float(c.duration_seconds),
            );
        }
    }
    if !namespaces.is_empty() {
        t.family(SAMPLES_FAILED.name, SAMPLES_FAILED.help, SAMPLES_FAILED.kind);
        for n in namespaces {
            t.sample(SAMPLES_FAILED.name, &[(NS, &n.label)], Value::Int(n.published.failed_samples));
        }
        // Every namespace is sampled in the one tick: only the home namespace's count says
        // whether ticks overran.
        t.family(SAMPLES_SLOW.name, SAMPLES_SLOW.help, SAMPLES_SLOW.kind);
        for n in namespaces.iter().filter(|n| n.home) {
            t.sample(SAMPLES_SLOW.name, &[(NS, &n.label)], Value::Int(n.published.slow_samples));
        }
    }
    let alerts = || {
        namespaces.iter().flat_map(|n| {
            n.published
                .alerts
                .alerts
                .iter()
                .filter(|a| a.status != ipcwatch_alerts::Status::Removed)
                .map(move |a| (n, &**a))
        })
    };
    // The home namespace has a series for every status of every alert; a container's only for
    // its raised alerts (WARNING, CRITICAL), as Prometheus's own ALERTS has only firing ones:
    // a thousand idle containers would otherwise cost 84 series each.
    let shown = |(n, a): &(&NamespacePublished, &ipcwatch_alerts::Alert)| n.home || a.status.is_raised();
    if alerts().any(|x| shown(&x)) {
        t.family(ALERT_STATUS.name, ALERT_STATUS.help, ALERT_STATUS.kind);
        for (n, a) in alerts().filter(shown) {
            let status = a.status.name();
            let statuses = if n.home { &ALERT_STATUSES[..] } else { std::slice::from_ref(&status) };
            for s in statuses {
                let labels =
                    [("alert", a.rule.name.as_str()), ("chart", &*a.chart), (NS, &n.label), ("status", s)];
                t.sample(ALERT_STATUS.name, &labels, Value::Int((status == *s) as u64));
            }
        }
        t.family(ALERT_VALUE.name, ALERT_VALUE.help, ALERT_VALUE.kind);
        for (n, a) in alerts().filter(shown) {
            let labels = [("alert", a.rule.name.as_str()), ("chart", &*a.chart), (NS, &n.label)];
            t.sample(ALERT_VALUE.name, &labels, Value::Float(a.value));
        }
    }
    state.process.render(&mut t.out);
}

/// The daemon's own CPU, memory and descriptors (`process_*`), through the prometheus crate's
/// collector, which reads /proc/self.
pub(crate) struct ProcessMetrics {
    #[cfg(target_os = "linux")]
    collector: prometheus::process_collector::ProcessCollector,
}

impl ProcessMetrics {
    pub(crate) fn new() -> ProcessMetrics {
        ProcessMetrics {
            #[cfg(target_os = "linux")]
            collector: prometheus::process_collector::ProcessCollector::for_self(),
        }
    }

    fn render(&self, out: &mut String) {
        #[cfg(target_os = "linux")]
        {
            use prometheus::Encoder;
            let mut buf = Vec::with_capacity(1024);
            match prometheus::TextEncoder::new().encode(&self.collector.collect(), &mut buf) {
                Ok(()) => out.push_str(&String::from_utf8_lossy(&buf)),
                Err(e) => tracing::error!(error = %e, "encoding the process metrics failed"),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = out;
    }
}

#[cfg(test)]
mod tests {
    use super::{Text, Value};

    #[test]
    fn label_values_are_escaped_as_the_exposition_format_wants() {
        // `\\`, `\"` and `\n` only: a JSON string's `\t` or `\u0001` would be refused.
        let mut t = Text::plain();
        t.sample_at("m", &[("owner", "a\tb\"c\\d\ne\u{1}")], Value::Float(1.5), Some(7));
        assert_eq!(t.into_string(), "m{owner=\"a\tb\\\"c\\\\d\\ne\u{1}\"} 1.5 7\n");
    }
}

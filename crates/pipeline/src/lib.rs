//! One tick of ipcwatch, as a library: take a sample, choose the queues with series of their
//! own, feed the charts, run the alert rules that are due, and publish one immutable
//! [`Published`] value for the outputs (/metrics, /api/v1/alarms, the landing page).
//!
//! A [`Pipeline`] has no thread, no HTTP and no kernel of its own: the daemon gives it a
//! [`Sampler`](ipcwatch_sampler::Sampler), a test gives it a closure that returns snapshots.
//! Rendering is left to the outputs, which do it on demand; the tick only does what every
//! sample needs.

#![forbid(unsafe_code)]

mod collectors;
pub mod rules;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipcwatch_alerts::{Board, Engine, Host, Notification, Rule};
use ipcwatch_charts::{QueueChoice, Registry, RegistryConfig};
use ipcwatch_sampler::{Sampler, Snapshot};

use collectors::CollectorLog;
use ipcwatch_holders::NamespaceHolders;
use ipcwatch_sampler::UserNames as OwnerNames;

/// Time until the next tick: the next multiple of `every` on the wall clock, as Netdata
/// aligns its collection to whole seconds.
pub fn until_next_tick(every: Duration) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let every_ns = every.as_nanos().max(1);
    let into = now.as_nanos() % every_ns;
    Duration::from_nanos((every_ns - into) as u64)
}

/// Where a pipeline's snapshots come from: the kernel in the daemon, fed values in tests.
pub trait SnapshotSource: Send {
    fn snapshot(&mut self) -> Snapshot;
}

impl SnapshotSource for Sampler {
    fn snapshot(&mut self) -> Snapshot {
        Sampler::snapshot(self)
    }
}

impl<F: FnMut() -> Snapshot + Send> SnapshotSource for F {
    fn snapshot(&mut self) -> Snapshot {
        self()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineConfig {
    /// The sampling interval: the rules' default `every`, and what a slow tick overran.
    pub update_every: Duration,
    /// History rows kept per chart dimension.
    pub history_rows: usize,
    /// Most queues with series of their own (the biggest first).
    pub max_queue_dimensions: usize,
    /// Most owners with dimensions of their own on the per-owner charts (with `other`).
    pub max_owner_dimensions: usize,
    /// Whether the eBPF probes run (their charts, and the alert on them, exist only then).
    pub probes: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            update_every: Duration::from_secs(1),
            history_rows: 3600,
            max_queue_dimensions: 100,
            max_owner_dimensions: 21,
            probes: false,
        }
    }
}

impl PipelineConfig {
    fn registry(&self) -> RegistryConfig {
        RegistryConfig {
            history_rows: self.history_rows,
            max_queue_dimensions: self.max_queue_dimensions,
            max_owner_dimensions: self.max_owner_dimensions,
            probes: self.probes,
        }
    }
}

/// Everything the outputs may show for one sample. Immutable once published.
#[derive(Debug, Clone)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The namespace's alert transitions, newest last (shared; later ticks add to it).
    pub alarm_log: Arc<std::sync::Mutex<std::collections::VecDeque<LogEntry>>>,
    /// The namespace's charts and their history (live: later ticks add rows).
    pub charts: Arc<RwLock<Registry>>,
    /// The queues with series of their own, the same ones the charts have dimensions for.
    pub queues: QueueChoice,
    /// The alerts after this tick's evaluation; shared with earlier ticks while unchanged.
    pub alerts: Arc<Board>,
    /// Ticks in which a collector failed, and ticks that overran `update_every`, since start.
    pub failed_samples: u64,
    pub slow_samples: u64,
    /// When the tick finished, on the monotonic clock (staleness is judged on it, so a wall
    /// clock jump neither hides a stuck sampler nor fakes one).
    pub finished: Instant,
}

/// One alert transition, as Netdata's `/api/v1/alarm_log` lists it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Unique and increasing across every namespace.
    pub unique_id: u64,
    pub alarm_id: u64,
    pub when: i64,
    /// The alert's chart, shared with it (a namespace logs a dozen transitions at start).
    pub chart: Arc<str>,
    pub family: &'static str,
    /// The alert's rule; its name is the entry's.
    pub rule: Arc<Rule>,
    pub status: ipcwatch_alerts::Status,
    pub old_status: ipcwatch_alerts::Status,
    pub value: f64,
    pub old_value: f64,
    pub delay: f64,
    /// Seconds the previous status lasted.
    pub duration: i64,
}

impl LogEntry {
    /// The alert's name.
    pub fn name(&self) -> &str {
        &self.rule.name
    }
}

/// Most transitions kept per namespace.
pub const ALARM_LOG_ENTRIES: usize = 1000;

/// Up to this many entries, a namespace's alarm log grows by what it needs only.
const SMALL_ALARM_LOG: usize = 64;

static NEXT_LOG_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_log_id() -> u64 {
    use std::sync::atomic::Ordering;
    // Seeded with the start time, as Netdata's ids are, so they grow across restarts.
    let _ = NEXT_LOG_ID.compare_exchange(
        0,
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed)
}

/// What one tick produced.
#[derive(Debug)]
pub struct Tick {
    pub published: Arc<Published>,
    /// Notifications whose delay has passed, for delivery (exec, Alertmanager).
    pub notifications: Vec<Notification>,
    /// How long the tick took, sampling included.
    pub took: Duration,
}

pub struct Pipeline {
    source: Box<dyn SnapshotSource>,
    /// For a namespace other than the daemon's own: the chart-id prefix and the labels its
    /// alerts carry.
    scope: Option<Scope>,
    config: PipelineConfig,
    /// Shared with the HTTP side, which reads chart history for /api/v1 (a read lock per
    /// query; the tick holds the write lock only to add its row).
    registry: Arc<RwLock<Registry>>,
    engine: Engine,
    owners: OwnerNames,
    /// The last tick's queue choice, handed on while the queues do not change.
    last_queues: QueueChoice,
    collectors: CollectorLog,
    board: Arc<Board>,
    board_generation: u64,
    failed: u64,
    slow: u64,
    /// The namespace's latest census (owners, stale objects), charted every tick until the
    /// next one arrives.
    holders: Option<Arc<NamespaceHolders>>,
    /// Whether `holders` changed since the last tick charted it.
    holders_changed: bool,
    alarm_log: Arc<std::sync::Mutex<std::collections::VecDeque<LogEntry>>>,
}

impl Pipeline {
    pub fn new(
        source: Box<dyn SnapshotSource>,
        config: PipelineConfig,
        rules: impl IntoIterator<Item = impl Into<Arc<Rule>>>,
        host: Host,
    ) -> Pipeline {
        let engine = Engine::new(rules, host, config.update_every.as_secs_f64());
        Pipeline {
            source,
            scope: None,
            registry: Arc::new(RwLock::new(Registry::new(config.registry()))),
            board: Arc::new(engine.board()),
            board_generation: engine.generation(),
            engine,
            config,
            owners: OwnerNames::default(),
            last_queues: QueueChoice::default(),
            collectors: CollectorLog::default(),
            failed: 0,
            slow: 0,
            holders: None,
            holders_changed: true,
            alarm_log: Default::default(),
        }
    }

    /// The census the next ticks chart (`None`: none, or it is too old to show).
    pub fn set_holders(&mut self, holders: Option<Arc<NamespaceHolders>>) {
        // Compared while the old one is still held: an address cannot have been reused.
        let same = match (&self.holders, &holders) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.holders_changed |= !same;
        self.holders = holders;
    }

    /// A reload: new caps and history depth, new rules (alerts that survive keep their state).
    pub fn reconfigure(
        &mut self,
        source: Box<dyn SnapshotSource>,
        config: PipelineConfig,
        rules: impl IntoIterator<Item = impl Into<Arc<Rule>>>,
    ) {
        self.source = source;
        self.registry.write().unwrap_or_else(|p| p.into_inner()).set_config(config.registry());
        self.engine.set_rules(rules);
        self.config = config;
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Adds or drops the eBPF probes' charts (and so the alerts on them).
    pub fn set_probes(&mut self, on: bool) {
        self.config.probes = on;
        self.registry.write().unwrap_or_else(|p| p.into_inner()).set_config(self.config.registry());
    }

    /// The charts, read-locked.
    pub fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Names this pipeline's alerts for IPC namespace `inode`: chart ids in notifications and
    /// views become `ipc_ns_<inode>.name` (`None`: Netdata's own ids, the daemon's namespace),
    /// and `labels` (ipc_namespace and the owner) go with every notification and view.
    pub fn set_scope(&mut self, inode: Option<String>, labels: Vec<(&'static str, String)>) {
        // `pod=db/postgres-0 container_id=4f1d...`: the owner labels, for log lines.
        let owner = labels
            .iter()
            .filter(|(k, _)| *k != "ipc_namespace" && *k != "pod_namespace" && *k != "pod_uid")
            .map(|(k, v)| match (*k, labels.iter().find(|(k, _)| *k == "pod_namespace")) {
                ("pod", Some((_, ns))) => format!("pod={ns}/{v}"),
                _ => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        self.engine.set_namespace(inode);
        self.scope = Some(Scope { labels, owner });
        self.board_generation = u64::MAX; // rebuild the view with the new names
    }

    /// The namespace is gone: every alert ends, raised ones are resolved now.
    pub fn end(&mut self, now: f64) -> Vec<Notification> {
        let mut out = self.engine.end(now).notifications;
        for n in &mut out {
            self.scoped(n);
        }
        out
    }

    fn scoped(&self, n: &mut Notification) {
        if let Some(s) = &self.scope {
            n.labels.clone_from(&s.labels);
        }
    }

    /// One tick: sample, choose queues, chart, evaluate the rules that are due, publish.
    pub fn tick(&mut self) -> Tick {
        let started = Instant::now();
        let snapshot = self.source.snapshot();
        self.tick_with(snapshot, started)
    }

    /// One tick on a snapshot taken elsewhere (inside another namespace) from `started`.
    pub fn tick_with(&mut self, snapshot: Snapshot, started: Instant) -> Tick {
        let cap = self.config.max_queue_dimensions;
        self.tick_capped(snapshot, started, cap)
    }

    /// [`Pipeline::tick_with`], with at most `queue_cap` queues given series this time (a
    /// share of a cap over every namespace).
    pub fn tick_capped(&mut self, snapshot: Snapshot, started: Instant, queue_cap: usize) -> Tick {
        if self.collectors.observe(&snapshot) {
            self.failed += 1;
        }
        let owners = &mut self.owners;
        let cap = queue_cap.min(self.config.max_queue_dimensions);
        let queues = QueueChoice::choose_again(&snapshot, cap, |uid| owners.name(uid), &self.last_queues);
        self.last_queues = queues.clone();
        {
            let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
            registry.update(&snapshot, &queues);
            let census = self.holders.as_deref().map(|h| ipcwatch_charts::owners::OwnerCensus {
                owners: &h.pass.owners,
                totals: &h.pass.totals,
            });
            registry.update_holders(census, self.holders_changed);
            self.holders_changed = false;
        }
        let outcome = {
            let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
            self.engine.evaluate(&registry, snapshot.timestamp)
        };
        // Every line says which namespace and owner the alert is about.
        let (ipc_namespace, owner) =
            self.scope.as_ref().map_or(("", ""), |s| (s.namespace(), s.owner.as_str()));
        for t in &outcome.transitions {
            let (old, new) = (t.old_status.name(), t.status.name());
            let error = t.error.as_deref().unwrap_or("");
            let chart = &t.chart;
            if t.status.is_raised() {
                tracing::warn!(alert = %t.name, %chart, ipc_namespace, owner, old_status = old, status = new, value = t.value, notify_in_s = t.delay, error, "alert status changed");
            } else {
                tracing::info!(alert = %t.name, %chart, ipc_namespace, owner, old_status = old, status = new, value = t.value, notify_in_s = t.delay, error, "alert status changed");
            }
        }
        let mut notifications = outcome.notifications;
        for n in &mut notifications {
            self.scoped(n);
            tracing::info!(alert = %n.name, chart = %n.chart, ipc_namespace, owner, status = n.status.name(), value = n.value, "alert notification sent");
        }
        if self.engine.generation() != self.board_generation {
            let mut board = self.engine.board();
            if let Some(s) = &self.scope {
                board.labels.clone_from(&s.labels);
            }
            self.board = Arc::new(board);
            self.board_generation = self.engine.generation();
        }
        if !outcome.transitions.is_empty() {
            let mut log = self.alarm_log.lock().unwrap_or_else(|p| p.into_inner());
            // A small log gets exactly the room its transitions need, not the next power of
            // two: each namespace's first ones (every alert leaving UNINITIALIZED) grew it to
            // 32 entries for 17, 1.6 MB at 1,000 namespaces. Transitions are rare, so the
            // reallocations this costs are too; a long log grows as usual.
            if log.len() + outcome.transitions.len() <= SMALL_ALARM_LOG {
                log.reserve_exact(outcome.transitions.len());
            }
            for t in &outcome.transitions {
                let Some(a) =
                    self.board.alerts.iter().find(|a| a.rule.name == t.name && *a.chart == *t.chart)
                else {
                    continue;
                };
                let when = snapshot.timestamp as i64;
                let previous = log.iter().rev().find(|e| e.alarm_id == a.id).map_or(when, |e| e.when);
                log.push_back(LogEntry {
                    unique_id: next_log_id(),
                    alarm_id: a.id,
                    when,
                    chart: a.chart.clone(),
                    family: a.family,
                    rule: a.rule.clone(),
                    status: t.status,
                    old_status: t.old_status,
                    value: t.value,
                    old_value: a.old_value,
                    delay: t.delay,
                    duration: when - previous,
                });
                while log.len() > ALARM_LOG_ENTRIES {
                    log.pop_front();
                }
            }
        }

        let took = started.elapsed();
        if took > self.config.update_every {
            self.slow += 1;
            tracing::warn!(took_ms = took.as_millis() as u64, "sample took longer than update_every");
        }
        let published = Arc::new(Published {
            snapshot,
            charts: self.registry.clone(),
            alarm_log: self.alarm_log.clone(),
            queues,
            alerts: self.board.clone(),
            failed_samples: self.failed,
            slow_samples: self.slow,
            finished: Instant::now(),
        });
        Tick { published, notifications, took }
    }
}

/// How a namespace's alerts are labelled (their charts' names are the engine's).
#[derive(Debug, Clone)]
struct Scope {
    labels: Vec<(&'static str, String)>,
    /// What owns the namespace, as one text for log lines (empty: nothing known).
    owner: String,
}

impl Scope {
    fn namespace(&self) -> &str {
        self.labels.iter().find(|(k, _)| *k == "ipc_namespace").map_or("", |(_, v)| v.as_str())
    }
}

mod fleet;
pub use fleet::{
    Fleet, FleetConfig, FleetPublished, FleetTick, Member, Mode, NamespacePublished, ProbesPublished,
};

#[cfg(test)]
mod tests;

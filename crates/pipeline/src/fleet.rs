//! Every IPC namespace on the host, each with a pipeline of its own: the daemon's namespace
//! keeps Netdata's chart ids, the others' charts are `ipc_ns_<inode>.<name>`, and every
//! series and notification carries the namespace and what owns it.
//!
//! Namespaces are found every `rescan` seconds from the processes under procfs; each tick
//! visits each one from this thread (setns in, sample, setns home). A namespace whose last
//! process is gone leaves at the next visit: its series vanish and its raised alerts are
//! resolved at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcwatch_alerts::{Host, Notification, Rule};
use ipcwatch_sampler::namespaces::{self, Identity, VisitError, Visitor, INIT_IPC_NAMESPACE};
use ipcwatch_sampler::{CollectorReport, Origin, Sampler, SamplerConfig, Snapshot};

use crate::{Pipeline, PipelineConfig, Published};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every namespace the daemon can see and enter.
    All,
    /// The daemon's own only.
    Own,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub mode: Mode,
    /// How often to look for new and vanished namespaces.
    pub rescan: Duration,
    /// Most namespaces watched; beyond it the ones with the most objects are kept.
    pub max: usize,
    /// Most per-queue series over all namespaces together (the biggest queues first); each
    /// namespace is also held to the pipeline's own per-namespace cap.
    pub max_queue_series: usize,
    /// Most pidfds held to enter namespaces quickly (one per namespace); beyond it, or with
    /// 0, namespaces are entered through their /proc files.
    pub max_anchors: usize,
    pub procfs: PathBuf,
    /// The kubelet's pod log folders (pod names by UID), read when present.
    pub pod_logs: PathBuf,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            mode: Mode::All,
            rescan: Duration::from_secs(30),
            max: 1000,
            max_queue_series: 1000,
            max_anchors: 1000,
            procfs: PathBuf::from("/proc"),
            pod_logs: PathBuf::from("/var/log/pods"),
        }
    }
}

/// One watched namespace.
pub struct Member {
    pub identity: Arc<Identity>,
    /// `ipc_namespace` label value: the inode in decimal.
    pub label: Arc<str>,
    pids: Vec<u32>,
    /// A pidfd on the namespace's oldest process, so a visit needs no path lookup.
    anchor: Option<namespaces::Anchor>,
    pipeline: Pipeline,
    /// Objects at the last sample, to choose which namespaces to keep beyond `max`.
    objects: u64,
}

/// One namespace's share of a tick.
#[derive(Debug, Clone)]
pub struct NamespacePublished {
    pub identity: Arc<Identity>,
    pub label: Arc<str>,
    /// The daemon's home namespace (the host's, or its own): it keeps Netdata's chart ids and
    /// every series; the others are containers', whose clear alerts have none.
    pub home: bool,
    pub published: Arc<Published>,
}

/// Everything a tick publishes, every namespace's.
#[derive(Debug, Clone)]
pub struct FleetPublished {
    /// The daemon's own namespace first, then by inode.
    pub namespaces: Vec<NamespacePublished>,
    /// Namespaces found, and those left out beyond `max`.
    pub seen: usize,
    pub skipped: usize,
    /// Visits that failed since start (no access, or the namespace changed under us).
    pub visits_failed: u64,
    /// How long the last discovery took.
    pub discovery_seconds: f64,
    /// Whether other namespaces can be entered at all (mode all, with the capabilities).
    pub all_namespaces: bool,
    /// The eBPF probes: whether they run, and the latest refusals they saw.
    pub probes: ProbesPublished,
    pub finished: Instant,
}

/// The eBPF probes' state, for /metrics and `snapshot --failures`.
#[derive(Debug, Clone, Default)]
pub struct ProbesPublished {
    pub enabled: bool,
    /// Why they do not run (disabled in the config, or the kernel refused them).
    pub reason: Option<Arc<str>>,
    pub health: ipcwatch_probes::Health,
    /// The latest refusals in every watched namespace, oldest first (shared while unchanged).
    pub recent: Arc<Vec<ipcwatch_sampler::probes::Failure>>,
}

impl FleetPublished {
    /// One namespace's tick as a whole publication (tests, benchmarks, single-namespace use).
    pub fn single(published: Arc<Published>, identity: Identity) -> FleetPublished {
        FleetPublished {
            namespaces: vec![NamespacePublished {
                label: identity.inode.to_string().into(),
                home: true,
                identity: Arc::new(identity),
                published,
            }],
            seen: 1,
            skipped: 0,
            visits_failed: 0,
            discovery_seconds: 0.0,
            all_namespaces: false,
            probes: ProbesPublished::default(),
            finished: Instant::now(),
        }
    }
}

pub struct FleetTick {
    pub published: Arc<FleetPublished>,
    pub notifications: Vec<Notification>,
    pub took: Duration,
}

pub struct Fleet {
    config: FleetConfig,
    pipeline_config: PipelineConfig,
    /// Shared by every namespace's engine.
    rules: Vec<Arc<Rule>>,
    host: Host,
    sampler: Sampler,
    /// `None`: only the daemon's own namespace is watched.
    visitor: Option<Visitor>,
    /// The namespace Netdata's `system.*` charts describe, which never leaves: the host's
    /// (PID 1's under procfs) when other namespaces can be entered, else the daemon's own.
    /// In a pod the two differ: the pod's own namespace is then watched like any other.
    home: u64,
    members: BTreeMap<u64, Member>,
    /// Scans made, to read the anchors' identities again every sixth.
    scans: u64,
    next_scan: Option<Instant>,
    /// Between full scans, new processes are looked at every tick: a new namespace is watched
    /// from the next tick, not the next scan.
    new_processes: namespaces::NewProcesses,
    /// Every namespace the last scan found, watched or left out beyond `max`.
    found: ipcwatch_sampler::NumberSet<u64>,
    /// Reused every tick to share the queue-series cap out.
    queue_buffer: Vec<(u64, u64, usize)>,
    /// Reused every tick: the mount namespaces whose /dev/shm a sample already shows.
    dev_shm_shown: ipcwatch_sampler::NumberSet<u64>,
    seen: usize,
    skipped: usize,
    visits_failed: u64,
    discovery_seconds: f64,
    /// Loaded once at start (the capabilities it takes are dropped after), read every tick.
    probes: Option<ipcwatch_probes::Probes>,
    probes_published: ProbesPublished,
}

/// A source for member pipelines: the fleet samples them itself (inside their namespace).
struct Visited;

impl crate::SnapshotSource for Visited {
    fn snapshot(&mut self) -> Snapshot {
        Snapshot::default()
    }
}

/// Capabilities in this thread's effective set (from /proc/thread-self/status).
fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    namespaces::effective_capabilities(&status)
}

const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;

impl Fleet {
    pub fn new(
        sampler: SamplerConfig,
        pipeline_config: PipelineConfig,
        rules: Vec<Rule>,
        host: Host,
        config: FleetConfig,
    ) -> Fleet {
        let visitor = Visitor::new(&config.procfs);
        let mut fleet = Fleet {
            visitor: None,
            home: INIT_IPC_NAMESPACE,
            sampler: Sampler::new(sampler),
            members: BTreeMap::new(),
            scans: 0,
            next_scan: None,
            new_processes: namespaces::NewProcesses::default(),
            found: Default::default(),
            queue_buffer: Vec::new(),
            dev_shm_shown: Default::default(),
            seen: 1,
            skipped: 0,
            visits_failed: 0,
            discovery_seconds: 0.0,
            probes: None,
            probes_published: ProbesPublished::default(),
            config,
            pipeline_config,
            rules: rules.into_iter().map(Arc::new).collect(),
            host,
        };
        fleet.visitor = fleet.visitor_for_mode(visitor.ok());
        fleet.set_home();
        fleet
    }

    /// The namespace that keeps Netdata's chart ids ([`Fleet::home`]), whether it is the
    /// host's, and a pid to enter it through until the first scan lists its processes.
    fn wanted_home(&self) -> (u64, bool, u32) {
        let own = namespaces::own_namespace();
        let host = self.visitor.as_ref().and_then(|_| namespaces::host_namespace(&self.config.procfs));
        match (host, own) {
            (Some(host), own) if Some(host) != own => (host, true, 1),
            (host, own) => {
                let home = own.or(host).unwrap_or(INIT_IPC_NAMESPACE);
                let pid = namespaces::pid_in(&self.config.procfs).unwrap_or_else(std::process::id);
                (home, host.is_some() || home == INIT_IPC_NAMESPACE, pid)
            }
        }
    }

    /// Makes [`Fleet::wanted_home`] the home: namespaces watched before stay, with chart ids
    /// that follow the new home.
    fn set_home(&mut self) {
        let (home, host, pid) = self.wanted_home();
        if host && namespaces::own_namespace() != Some(home) {
            tracing::info!(host = home, "the host's IPC namespace (PID 1's) is not the daemon's own: system.* charts describe the host's");
        }
        self.home = home;
        self.next_scan = None;
        // Namespaces watched before keep their history; their chart ids follow the new home.
        // One that can no longer be visited ends (with its alerts resolved) at the next tick.
        for (inode, m) in &mut self.members {
            m.pipeline.set_scope((*inode != home).then(|| inode.to_string()), Self::labels(&m.identity));
        }
        if !self.members.contains_key(&home) {
            self.add(Identity { inode: home, host, pid, ..Default::default() }, vec![pid]);
        }
    }

    /// The visitor, if the mode asks for every namespace and this thread may enter them.
    fn visitor_for_mode(&self, visitor: Option<Visitor>) -> Option<Visitor> {
        if self.config.mode == Mode::Own {
            return None;
        }
        let caps = effective_caps();
        let missing: Vec<&str> = [(CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_SYS_PTRACE, "CAP_SYS_PTRACE")]
            .into_iter()
            .filter(|(bit, _)| caps & bit == 0)
            .map(|(_, name)| name)
            .collect();
        if caps & CAP_SYS_ADMIN == 0 {
            tracing::warn!(missing = %missing.join(" "), "namespaces mode \"all\" needs CAP_SYS_ADMIN to enter other IPC namespaces; watching the daemon's own only");
            return None;
        }
        if !missing.is_empty() {
            tracing::warn!(missing = %missing.join(" "), "without CAP_SYS_PTRACE, namespaces of other users' processes are not found");
        }
        visitor
    }

    /// The eBPF probes, loaded by the caller while it held CAP_BPF (or why there are none).
    pub fn set_probes(&mut self, probes: Result<ipcwatch_probes::Probes, String>) {
        self.probes_published = match &probes {
            Ok(_) => ProbesPublished { enabled: true, ..Default::default() },
            Err(reason) => ProbesPublished { reason: Some(reason.as_str().into()), ..Default::default() },
        };
        self.probes = probes.ok();
        // Their charts and alert, in every namespace, only where they run.
        self.pipeline_config.probes = self.probes.is_some();
        for m in self.members.values_mut() {
            m.pipeline.set_probes(self.pipeline_config.probes);
        }
    }

    /// Reads what the probes counted since the last tick (nothing when nothing changed).
    fn refresh_probes(&mut self) {
        let Some(probes) = &mut self.probes else { return };
        let (found, members) = (&self.found, &self.members);
        let known = |inode: u64| members.contains_key(&inode) || found.contains(&inode);
        if let Err(e) = probes.refresh(&known) {
            // A map that cannot be read now will not be later: say so once and stop.
            tracing::error!(error = %e, "the eBPF probes stopped");
            self.probes = None;
            self.probes_published =
                ProbesPublished { reason: Some(e.to_string().into()), ..Default::default() };
            return;
        }
        let recent = probes.recent();
        let published = &mut self.probes_published;
        published.health = probes.health();
        if published.recent.len() != recent.len() || published.recent.last() != recent.back() {
            published.recent = Arc::new(recent.iter().cloned().collect());
        }
    }

    /// A reload: new settings and rules for every namespace's pipeline.
    pub fn reconfigure(
        &mut self,
        sampler: SamplerConfig,
        pipeline_config: PipelineConfig,
        rules: Vec<Rule>,
        config: FleetConfig,
    ) {
        self.sampler = Sampler::new(sampler);
        if config != self.config {
            self.config = config;
            self.visitor = self.visitor_for_mode(Visitor::new(&self.config.procfs).ok());
            self.next_scan = None;
        }
        self.rules = rules.into_iter().map(Arc::new).collect();
        self.pipeline_config = PipelineConfig { probes: self.probes.is_some(), ..pipeline_config };
        if self.wanted_home().0 != self.home {
            self.set_home();
        }
        for (inode, m) in &mut self.members {
            let config = member_config(&self.pipeline_config, &self.rules, *inode == self.home);
            m.pipeline.reconfigure(Box::new(Visited), config, self.rules.iter().cloned());
        }
    }

    /// Hands every watched namespace its part of the latest census (`None`: stop charting
    /// one, as when it is too old).
    pub fn set_holders(&mut self, holders: Option<&ipcwatch_holders::HoldersPublished>) {
        let by_inode: std::collections::HashMap<u64, &Arc<ipcwatch_holders::NamespaceHolders>> =
            holders.map(|h| h.namespaces.iter().map(|n| (n.inode, n)).collect()).unwrap_or_default();
        for (inode, m) in &mut self.members {
            m.pipeline.set_holders(by_inode.get(inode).map(|n| Arc::clone(n)));
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.pipeline_config
    }

    fn labels(identity: &Identity) -> Vec<(&'static str, String)> {
        let mut labels = vec![("ipc_namespace", identity.inode.to_string())];
        labels.extend(identity.owner().map(|(k, v)| (k, v.to_string())));
        labels
    }

    fn add(&mut self, identity: Identity, pids: Vec<u32>) {
        let config = member_config(&self.pipeline_config, &self.rules, identity.inode == self.home);
        let mut pipeline =
            Pipeline::new(Box::new(Visited), config, self.rules.iter().cloned(), self.host.clone());
        pipeline.set_scope(
            (identity.inode != self.home).then(|| identity.inode.to_string()),
            Self::labels(&identity),
        );
        let inode = identity.inode;
        let anchor = self.anchor(inode, &[identity.pid]);
        let member = Member {
            label: inode.to_string().into(),
            identity: Arc::new(identity),
            pids,
            anchor,
            pipeline,
            objects: 0,
        };
        self.members.insert(inode, member);
    }

    /// Finds namespaces that came and went; ends the pipelines of the gone.
    fn rescan(&mut self, now: f64, out: &mut Vec<Notification>) {
        let started = Instant::now();
        let known: Vec<&Identity> = self.members.values().map(|m| &*m.identity).collect();
        // Every sixth scan (a minute by default) reads the anchors' names and cgroups again.
        let refresh = self.scans.is_multiple_of(6);
        self.scans += 1;
        self.new_processes.reset(&self.config.procfs);
        let members = &self.members;
        let alive = |inode: u64| members.get(&inode)?.anchor.as_ref().map(namespaces::Anchor::is_alive);
        let scan = match namespaces::scan_known(
            &self.config.procfs,
            &self.config.pod_logs,
            &known,
            refresh,
            &alive,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, procfs = %self.config.procfs.display(), "cannot scan for IPC namespaces");
                return;
            }
        };
        self.discovery_seconds = started.elapsed().as_secs_f64();
        let found: BTreeMap<u64, namespaces::Found> =
            scan.namespaces.into_iter().map(|f| (f.identity.inode, f)).collect();
        self.found = found.keys().copied().collect();
        let gone: Vec<u64> =
            self.members.keys().copied().filter(|i| *i != self.home && !found.contains_key(i)).collect();
        for inode in gone {
            self.remove(inode, now, out);
        }
        self.seen = found.len().max(1);
        // Beyond `max`, keep the namespaces with the most objects (the daemon's own always).
        let mut candidates: Vec<(u64, u64)> = found
            .keys()
            .filter(|i| **i != self.home)
            .map(|i| (self.members.get(i).map_or(0, |m| m.objects), *i))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let keep = self.config.max.saturating_sub(1);
        self.skipped = candidates.len().saturating_sub(keep);
        let keepers: std::collections::HashSet<u64> = candidates.iter().take(keep).map(|(_, i)| *i).collect();
        for (_, inode) in candidates.iter().skip(keep) {
            self.remove(*inode, now, out);
        }
        for (inode, f) in found {
            let kept = inode == self.home || keepers.contains(&inode);
            // A new anchor with none of the processes seen before: the kernel reused the
            // inode of an ended namespace. The old one ends (its alerts resolved) and the new
            // one starts with no history and no alert state.
            let reused = self.members.get(&inode).is_some_and(|m| {
                inode != self.home
                    && m.identity.pid != f.identity.pid
                    && !m.pids.iter().any(|p| f.pids.binary_search(p).is_ok())
            });
            if reused {
                tracing::info!(ipc_namespace = inode, comm = %f.identity.comm, "a new IPC namespace reuses an ended one's inode");
                self.remove(inode, now, out);
            }
            match self.members.get_mut(&inode) {
                Some(m) => {
                    if m.identity.pid != f.identity.pid || m.anchor.is_none() {
                        m.anchor = None;
                        let anchor = self.anchor(inode, &[f.identity.pid]);
                        let m = self.members.get_mut(&inode).expect("just seen");
                        m.anchor = anchor;
                    }
                    let m = self.members.get_mut(&inode).expect("just seen");
                    m.pids = f.pids;
                    if *m.identity != f.identity {
                        m.identity = Arc::new(f.identity);
                        m.pipeline.set_scope(
                            (inode != self.home).then(|| inode.to_string()),
                            Self::labels(&m.identity),
                        );
                    }
                }
                None if kept => self.add(f.identity, f.pids),
                None => {}
            }
        }
    }

    /// An anchor for a namespace other than ours, while the descriptor budget allows.
    fn anchor(&self, inode: u64, pids: &[u32]) -> Option<namespaces::Anchor> {
        let anchors = self.members.values().filter(|m| m.anchor.is_some()).count();
        if inode == self.home || anchors >= self.config.max_anchors {
            return None;
        }
        self.visitor.as_ref().and_then(|v| pids.first().and_then(|pid| v.anchor(inode, *pid)))
    }

    fn remove(&mut self, inode: u64, now: f64, out: &mut Vec<Notification>) {
        self.sampler.forget_namespace(inode);
        if let Some(mut m) = self.members.remove(&inode) {
            tracing::info!(ipc_namespace = inode, comm = %m.identity.comm, "IPC namespace gone");
            out.extend(m.pipeline.end(now));
        }
    }

    /// Adds each namespace's /dev/shm to its sample. A /dev/shm belongs to a mount namespace,
    /// which many IPC namespaces may share (PrivateIPC= units, `unshare --ipc` jobs share the
    /// host's): it is charted, exported and alerted on once, with the home namespace if that
    /// shares it, else with the first (lowest inode) that does. A thousand units that share
    /// the host's /dev/shm then raise one alert when it fills, not a thousand.
    fn add_dev_shm(&mut self, inodes: &[u64], samples: &mut [Result<Snapshot, VisitError>]) {
        let home_first = inodes.iter().position(|i| *i == self.home).into_iter();
        let others = (0..inodes.len()).filter(|i| inodes[*i] != self.home);
        let shown = &mut self.dev_shm_shown;
        shown.clear();
        if !self.sampler.config().posix {
            return;
        }
        for i in home_first.chain(others) {
            let (Ok(snapshot), Some(m)) = (&mut samples[i], self.members.get(&inodes[i])) else { continue };
            // Shown (or tried) already with another namespace: not read again, and no
            // report of its own.
            let mnt = self.sampler.mount_namespace(m.identity.pid);
            if mnt.is_some_and(|mnt| !shown.insert(mnt)) {
                continue;
            }
            self.sampler.add_dev_shm_in(snapshot, m.identity.pid, mnt);
        }
    }

    /// One tick over every watched namespace.
    pub fn tick(&mut self) -> FleetTick {
        let started = Instant::now();
        let mut notifications = Vec::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // A process started since the last tick in a namespace no scan found: scan now.
        if self.visitor.is_some() && self.next_scan.is_some() {
            let (found, members) = (&self.found, &self.members);
            let known = |inode: u64| found.contains(&inode) || members.contains_key(&inode);
            if self.new_processes.found_new(&self.config.procfs, known) {
                self.next_scan = None;
            }
        }
        if self.visitor.is_some() && self.next_scan.is_none_or(|t| started >= t) {
            self.rescan(now, &mut notifications);
            self.next_scan = Some(started + self.config.rescan);
        }
        // Sample every namespace in one round of visits (straight from one to the next, home
        // once), then run the pipelines back home.
        let t0 = Instant::now();
        let inodes: Vec<u64> = self.members.keys().copied().collect();
        let targets: Vec<(u64, &[u32], Option<&namespaces::Anchor>)> =
            self.members.iter().map(|(i, m)| (*i, m.pids.as_slice(), m.anchor.as_ref())).collect();
        let sampler = &mut self.sampler;
        let home = self.home;
        // Which namespace each visit is in (in visit order): the sampler then needs no lookup
        // of its own.
        let mut next = self.members.keys().copied();
        let samples = match &self.visitor {
            Some(v) => v.visit_all(&targets, || {
                if let Some(inode) = next.next() {
                    sampler.set_target(inode, inode != home);
                }
                sampler.snapshot()
            }),
            // Without a visitor (mode own, or the capabilities gone after a reload) only the
            // daemon's own namespace can be sampled; the others end.
            None => Ok(targets
                .iter()
                .map(|(i, ..)| {
                    if *i != home {
                        return Err(VisitError::Gone);
                    }
                    // Named, so the sampler need not read its own namespace's link each tick.
                    sampler.set_target(*i, false);
                    Ok(sampler.snapshot())
                })
                .collect()),
        };
        let samples = samples.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the sampler thread could not return to its own namespace");
            targets.iter().map(|_| Err(VisitError::Return(std::io::Error::other(e.to_string())))).collect()
        });
        let mut samples = samples;
        self.add_dev_shm(&inodes, &mut samples);
        self.refresh_probes();
        let caps = queue_shares(&samples, self.config.max_queue_series, &mut self.queue_buffer);
        let mut namespaces = Vec::with_capacity(self.members.len());
        let mut gone = Vec::new();
        for ((inode, sample), cap) in inodes.into_iter().zip(samples).zip(caps) {
            let snapshot = match sample {
                Ok(mut s) => {
                    s.probes = self.probes.as_ref().map(|p| p.namespace(inode));
                    s
                }
                // The daemon's own namespace never goes.
                Err(VisitError::Gone) if inode != home => {
                    gone.push(inode);
                    continue;
                }
                Err(e) => {
                    self.visits_failed += 1;
                    failed_snapshot(&e)
                }
            };
            let m = self.members.get_mut(&inode).expect("listed above");
            m.objects = object_count(&snapshot);
            let tick = m.pipeline.tick_capped(snapshot, t0, cap);
            notifications.extend(tick.notifications);
            namespaces.push(NamespacePublished {
                home: inode == self.home,
                identity: m.identity.clone(),
                label: m.label.clone(),
                published: tick.published,
            });
        }
        if !gone.is_empty() {
            // Its processes are gone: it ended, or others hold it now; the next tick looks.
            self.next_scan = None;
        }
        for inode in gone {
            self.remove(inode, now, &mut notifications);
        }
        // The daemon's own namespace first.
        namespaces.sort_by_key(|n| (n.identity.inode != self.home, n.identity.inode));
        let published = Arc::new(FleetPublished {
            namespaces,
            seen: self.seen,
            skipped: self.skipped,
            visits_failed: self.visits_failed,
            discovery_seconds: self.discovery_seconds,
            all_namespaces: self.visitor.is_some(),
            probes: self.probes_published.clone(),
            finished: Instant::now(),
        });
        FleetTick { published, notifications, took: started.elapsed() }
    }
}

/// Each namespace's share of `total` per-queue series: the biggest queues of all namespaces
/// (bytes, then messages) win, wherever they are.
fn queue_shares(
    samples: &[Result<Snapshot, VisitError>],
    total: usize,
    all: &mut Vec<(u64, u64, usize)>,
) -> Vec<usize> {
    all.clear();
    for (i, s) in samples.iter().enumerate() {
        if let Ok(Some(msg)) = s.as_ref().map(|s| s.message_queues.as_ref()) {
            all.extend(msg.items.iter().map(|q| (q.bytes, q.messages, i)));
        }
    }
    if all.len() > total {
        if total > 0 {
            all.select_nth_unstable_by(total - 1, |a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        }
        all.truncate(total);
    }
    let mut shares = vec![0; samples.len()];
    for (_, _, i) in all.iter() {
        shares[*i] += 1;
    }
    shares
}

/// The pipeline settings of one namespace. The daemon's own keeps the configured history;
/// the others keep only as much as the rules' `lookup` windows need (the shipped rules need
/// none), so a thousand containers do not cost a thousand hours of history.
fn member_config(base: &PipelineConfig, rules: &[Arc<Rule>], own: bool) -> PipelineConfig {
    if own {
        return *base;
    }
    let every = base.update_every.as_secs_f64().max(1.0);
    let window = rules.iter().filter_map(|r| r.lookup.as_ref()).map(|l| -l.after).fold(0.0, f64::max);
    let rows = (window / every).ceil() as usize + 2;
    PipelineConfig { history_rows: rows.min(base.history_rows), ..*base }
}

fn object_count(s: &Snapshot) -> u64 {
    s.semaphores.as_ref().map_or(0, |x| x.arrays)
        + s.message_queues.as_ref().map_or(0, |x| x.queues)
        + s.shared_memory.as_ref().map_or(0, |x| x.segments)
}

/// A sample of a namespace that could not be entered: every collector failed, and says why.
fn failed_snapshot(e: &VisitError) -> Snapshot {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let error: std::sync::Arc<str> = e.to_string().into();
    let report = |name| CollectorReport {
        name,
        ok: false,
        source: Origin::None,
        duration_seconds: 0.0,
        error: Some(error.clone()),
    };
    Snapshot {
        timestamp: now,
        collectors: ipcwatch_sampler::SYSV_COLLECTORS.iter().map(|n| report(n)).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcwatch_sampler::{Key, MessageQueue, MessageQueues};

    fn with_queues(bytes: &[u64]) -> Result<Snapshot, VisitError> {
        let items = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| MessageQueue {
                key: Key(0),
                id: i as i32,
                owner: 0,
                creator: 0,
                mode: 0o600,
                messages: 1,
                bytes: *b,
                capacity_bytes: None,
                last_send_pid: 0,
                last_recv_pid: 0,
                last_send_time: 0,
                last_recv_time: 0,
                changed_time: 0,
            })
            .collect();
        Ok(Snapshot {
            message_queues: Some(MessageQueues { items, ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn the_total_queue_cap_goes_to_the_biggest_queues_wherever_they_are() {
        let samples =
            vec![with_queues(&[1, 2, 3]), Err(VisitError::Gone), with_queues(&[100, 200]), with_queues(&[])];
        let mut buffer = Vec::new();
        assert_eq!(queue_shares(&samples, 3, &mut buffer), [1, 0, 2, 0]);
        assert_eq!(queue_shares(&samples, 100, &mut buffer), [3, 0, 2, 0], "under the cap: all");
        assert_eq!(queue_shares(&samples, 0, &mut buffer), [0, 0, 0, 0]);
    }
}

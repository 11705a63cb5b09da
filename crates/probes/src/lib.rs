//! Kernel-side counts of the System V and POSIX IPC calls the kernel refused or made wait,
//! per IPC namespace, from eBPF programs on the syscall tracepoints.
//!
//! [`Probes::load`] loads the committed object (`bpf/ipcwatch.bpf.o`, built from
//! `bpf/ipcwatch.bpf.c` by `bpf/build.sh`) and attaches it; that needs CAP_BPF and
//! CAP_PERFMON (or CAP_SYS_ADMIN), which the daemon drops right after. From then on the
//! kernel counts into maps, and [`Probes::refresh`], once a tick, reads them only when
//! something changed, into one [`NamespaceProbes`] per namespace.
//!
//! Why syscall tracepoints: their records are a stable ABI, the same on every architecture,
//! and they need no BTF-typed program support (fentry), which some kernels lack (this
//! project's CI kernel among them). The namespace of the caller is read with CO-RE, against
//! the running kernel's BTF.

#![forbid(unsafe_code)]

mod layout;

use std::collections::{BTreeMap, HashMap as StdHashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::TracePoint;
use aya::Ebpf;
use ipcwatch_sampler::probes::{
    CallKind, Failure, NamespaceProbes, ObjectWaits, Refusals, WaitHistogram, WAIT_BUCKETS,
};

use layout::*;

/// The compiled programs, committed beside their source.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/ipcwatch.bpf.o");

/// (program, tracepoint in the `syscalls` category).
pub const PROGRAMS: [(&str, &str); 14] = [
    ("semget_enter", "sys_enter_semget"),
    ("semget_exit", "sys_exit_semget"),
    ("msgget_enter", "sys_enter_msgget"),
    ("msgget_exit", "sys_exit_msgget"),
    ("shmget_enter", "sys_enter_shmget"),
    ("shmget_exit", "sys_exit_shmget"),
    ("mq_open_enter", "sys_enter_mq_open"),
    ("mq_open_exit", "sys_exit_mq_open"),
    ("semop_enter", "sys_enter_semop"),
    ("semop_exit", "sys_exit_semop"),
    ("semtimedop_enter", "sys_enter_semtimedop"),
    ("semtimedop_exit", "sys_exit_semtimedop"),
    ("msgsnd_enter", "sys_enter_msgsnd"),
    ("msgsnd_exit", "sys_exit_msgsnd"),
];

/// Refusals kept for `snapshot --failures` and the namespaces' latest.
pub const RECENT_FAILURES: usize = 100;

/// How long a namespace's counts outlive the namespace: its inode number can be given to a
/// new namespace, which must not inherit them.
const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    NotHere(&'static str),
    #[error("loading the eBPF object: {0}")]
    Load(String),
    #[error("attaching {program} to syscalls:{tracepoint}: {reason}")]
    Attach { program: &'static str, tracepoint: &'static str, reason: String },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("reading the eBPF map {map}: {reason}")]
    Read { map: &'static str, reason: String },
}

/// An error with its causes on one line: aya's own say "failed" and keep the errno below.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The probes' own health: what they could not count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Refusals not sampled for `--failures` (the ring buffer was full); still counted.
    pub samples_lost: u64,
    /// Events not counted because a map was full.
    pub map_full: u64,
    /// Blocking calls not timed because the in-flight map was full.
    pub inflight_lost: u64,
}

pub struct Probes {
    // Holds the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    health: PerCpuArray<MapData, u64>,
    /// The kernel side's change count, one line per possible CPU, mapped (see `changes` in
    /// the BPF source); the map it is read from is kept with it.
    changes: ipcwatch_sampler::SharedWords,
    _changes_map: MapData,
    ns_stats: PerCpuHashMap<MapData, u32, [u64; STATS_LEN]>,
    failures: HashMap<MapData, u64, u64>,
    objects: HashMap<MapData, u64, [u64; OBJECT_LEN]>,
    recent: RingBuf<MapData>,
    /// The kernel's change count at the last read: unchanged, nothing is read again.
    events_seen: Option<u64>,
    namespaces: BTreeMap<u64, Arc<NamespaceProbes>>,
    /// Given to a namespace the probes saw nothing in.
    empty: Arc<NamespaceProbes>,
    recent_failures: VecDeque<Failure>,
    /// Each namespace's latest refusal (namespaces with counts only).
    latest: StdHashMap<u64, Failure>,
    /// Each namespace's counts of the last minute, tick by tick (only ticks that added some).
    windows: StdHashMap<u64, VecDeque<(Instant, [u64; 5])>>,
    /// Namespaces with counts that the caller does not know (yet), since when.
    unknown_since: StdHashMap<u64, Instant>,
    max_objects: usize,
    health_now: Health,
    /// Not before then is a full read made again: a read takes a syscall or two per entry,
    /// and containers that keep every map busy (thousands of namespaces, each waiting in
    /// semop) must not make the sampler thread spend more than 2% of its time reading.
    next_read: Instant,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").field("namespaces", &self.namespaces.len()).finish_non_exhaustive()
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::Missing(name))?;
    T::try_from(map).map_err(|e| ProbeError::Read { map: name, reason: chain(&e) })
}

impl Probes {
    /// Loads the committed object and attaches every program.
    pub fn load(max_objects: usize) -> Result<Probes, ProbeError> {
        Probes::load_object(OBJECT, max_objects)
    }

    /// Loads `object` (a build of `bpf/ipcwatch.bpf.c`) and attaches every program. At most
    /// `max_objects` arrays and queues per namespace are listed by waiting time.
    pub fn load_object(object: &[u8], max_objects: usize) -> Result<Probes, ProbeError> {
        // Before aya parses the kernel's BTF (30 MB for a moment): nothing to parse it for
        // where the kernel will refuse anyway.
        can_load(
            &std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default(),
            &std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default(),
        )?;
        if !["/sys/kernel/tracing/events/syscalls", "/sys/kernel/debug/tracing/events/syscalls"]
            .iter()
            .any(|p| std::path::Path::new(p).is_dir())
        {
            return Err(ProbeError::NotHere(
                "no tracefs at /sys/kernel/tracing (mount it: mount -t tracefs tracefs /sys/kernel/tracing)",
            ));
        }
        // The in-flight calls live in task storage, which only the kernel side uses: aya
        // creates such a map without a typed handle for it.
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| ProbeError::Load(format!("{what}: {e}")))?;
        let mut ebpf = aya::EbpfLoader::new()
            .allow_unsupported_maps()
            .map_max_entries("changes", u32::try_from(cpus).unwrap_or(u32::MAX))
            .load(object)
            .map_err(|e| ProbeError::Load(chain(&e)))?;
        for (program, tracepoint) in PROGRAMS {
            let p: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(ProbeError::Missing(program))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| ProbeError::Load(chain(&e)))?;
            p.load().map_err(|e| ProbeError::Load(format!("{program}: {}", chain(&e))))?;
            p.attach("syscalls", tracepoint).map_err(|e| {
                let mut reason = chain(&e);
                if reason.contains("tracefs not found") {
                    reason.push_str(" (mount it: mount -t tracefs tracefs /sys/kernel/tracing)");
                }
                ProbeError::Attach { program, tracepoint, reason }
            })?;
        }
        let changes_map = match ebpf.take_map("changes").ok_or(ProbeError::Missing("changes"))? {
            aya::maps::Map::Array(data) => data,
            _ => return Err(ProbeError::Read { map: "changes", reason: "not an array".into() }),
        };
        use std::os::fd::AsFd;
        let changes = ipcwatch_sampler::SharedWords::map(changes_map.fd().as_fd(), cpus * CHANGE_LINE_WORDS)
            .map_err(|e| ProbeError::Read { map: "changes", reason: format!("cannot map it: {e}") })?;
        Ok(Probes {
            health: take(&mut ebpf, "health")?,
            changes,
            _changes_map: changes_map,
            ns_stats: take(&mut ebpf, "ns_stats")?,
            failures: take(&mut ebpf, "failures")?,
            objects: take(&mut ebpf, "objects")?,
            recent: take(&mut ebpf, "recent")?,
            _ebpf: ebpf,
            events_seen: None,
            namespaces: BTreeMap::new(),
            empty: Arc::new(NamespaceProbes::default()),
            recent_failures: VecDeque::with_capacity(RECENT_FAILURES),
            latest: StdHashMap::new(),
            windows: StdHashMap::new(),
            unknown_since: StdHashMap::new(),
            max_objects,
            health_now: Health::default(),
            next_read: Instant::now(),
        })
    }

    /// What the probes counted in namespace `inode` (empty when nothing yet).
    pub fn namespace(&self, inode: u64) -> Arc<NamespaceProbes> {
        self.namespaces.get(&inode).unwrap_or(&self.empty).clone()
    }

    /// The latest refusals in every namespace, oldest first.
    pub fn recent(&self) -> &VecDeque<Failure> {
        &self.recent_failures
    }

    pub fn health(&self) -> Health {
        self.health_now
    }

    /// Reads what the kernel counted since the last call, if anything. `known(inode)` says
    /// whether the caller watches that namespace; counts of a namespace it has not known for
    /// a minute are deleted (the namespace is gone, and its inode may be reused).
    pub fn refresh(&mut self, known: &dyn Fn(u64) -> bool) -> Result<(), ProbeError> {
        self.drain_recent();
        // No syscall on a quiet tick: the change count is mapped (every loss moves it too).
        let events = self.changes();
        let started = Instant::now();
        if self.events_seen != Some(events) && started >= self.next_read {
            self.events_seen = Some(events);
            self.health_now = Health {
                samples_lost: self.read_health(HEALTH_SAMPLES_LOST)?,
                map_full: self.read_health(HEALTH_MAP_FULL)?,
                inflight_lost: self.read_health(HEALTH_INFLIGHT_LOST)?,
            };
            self.read_maps(known)?;
            self.next_read = started + started.elapsed() * 50;
        } else {
            // "This tick" figures of a quiet tick are 0.
            for probes in self.namespaces.values_mut() {
                if probes.semaphore_wait_new_ns != 0 || probes.send_wait_new_ns != 0 {
                    let p = Arc::make_mut(probes);
                    p.semaphore_wait_new_ns = 0;
                    p.send_wait_new_ns = 0;
                }
            }
        }
        self.settle_windows(Instant::now());
        Ok(())
    }

    /// Drops what is older than a minute from each namespace's window, and gives each
    /// namespace its last minute's sums.
    fn settle_windows(&mut self, now: Instant) {
        let minute = std::time::Duration::from_secs(60);
        let namespaces = &mut self.namespaces;
        self.windows.retain(|ns, window| {
            while window.front().is_some_and(|(at, _)| now.duration_since(*at) >= minute) {
                window.pop_front();
            }
            let mut sums = [0u64; 5];
            for (_, counts) in window.iter() {
                for (s, c) in sums.iter_mut().zip(counts) {
                    *s += c;
                }
            }
            if let Some(p) = namespaces.get_mut(ns) {
                let refused: [u64; 4] = [sums[0], sums[1], sums[2], sums[3]];
                if p.refused_last_minute != refused || p.send_refused_last_minute != sums[4] {
                    let p = Arc::make_mut(p);
                    p.refused_last_minute = refused;
                    p.send_refused_last_minute = sums[4];
                }
            }
            !window.is_empty()
        });
    }

    /// The kernel side's change count, summed over the CPUs.
    fn changes(&self) -> u64 {
        // Each line's first word, up to the end of the mapping.
        (0..).map_while(|cpu| self.changes.load(cpu * CHANGE_LINE_WORDS)).fold(0u64, u64::wrapping_add)
    }

    fn read_health(&self, index: usize) -> Result<u64, ProbeError> {
        let per_cpu = self
            .health
            .get(&(index as u32), 0)
            .map_err(|e| ProbeError::Read { map: "health", reason: chain(&e) })?;
        Ok(per_cpu.iter().sum())
    }

    fn drain_recent(&mut self) {
        // The clocks are read once a drain, and only when a refusal came: not on quiet ticks.
        let mut clocks = None;
        while let Some(item) = self.recent.next() {
            let (now_unix_ms, boot_now) = *clocks.get_or_insert_with(|| {
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                (unix_ms, ipcwatch_sampler::boot_clock_ns())
            });
            let Some(f) = parse_failure(&item, now_unix_ms, boot_now) else { continue };
            if let Some(p) = self.namespaces.get_mut(&f.ipc_namespace) {
                Arc::make_mut(p).last_failure = Some(f.clone());
            }
            self.latest.insert(f.ipc_namespace, f.clone());
            if self.recent_failures.len() == RECENT_FAILURES {
                self.recent_failures.pop_front();
            }
            self.recent_failures.push_back(f);
        }
    }

    fn read_maps(&mut self, known: &dyn Fn(u64) -> bool) -> Result<(), ProbeError> {
        let mut fresh: BTreeMap<u64, NamespaceProbes> = BTreeMap::new();
        for entry in self.ns_stats.iter() {
            let (ns, per_cpu) = entry.map_err(|e| ProbeError::Read { map: "ns_stats", reason: chain(&e) })?;
            let mut sum = [0u64; STATS_LEN];
            for cpu in per_cpu.iter() {
                for (s, v) in sum.iter_mut().zip(cpu) {
                    *s = s.wrapping_add(*v);
                }
            }
            let p = fresh.entry(u64::from(ns)).or_default();
            p.semaphore_wait = histogram(&sum[SEM_WAIT..SEM_WAIT + WAIT_BUCKETS], sum[SEM_WAIT_NS]);
            p.send_wait = histogram(&sum[MSG_WAIT..MSG_WAIT + WAIT_BUCKETS], sum[MSG_WAIT_NS]);
            p.send_refused = sum[MSG_REFUSED];
        }
        for entry in self.failures.iter() {
            let (key, count) = entry.map_err(|e| ProbeError::Read { map: "failures", reason: chain(&e) })?;
            let (ns, kind, errno) = failure_key(key);
            let Some(kind) = CallKind::from_index(kind) else { continue };
            fresh.entry(ns).or_default().refusals.push(Refusals { kind, errno, count });
        }
        for entry in self.objects.iter() {
            let (key, v) = entry.map_err(|e| ProbeError::Read { map: "objects", reason: chain(&e) })?;
            let (ns, kind, id) = object_key(key);
            fresh.entry(ns).or_default().objects.push(ObjectWaits {
                kind,
                id,
                wait_ns: v[OBJECT_WAIT_NS],
                waits: v[OBJECT_WAITS],
                send_refused: v[OBJECT_REFUSED],
            });
        }
        let now = Instant::now();
        let mut forget = Vec::new();
        for (&ns, p) in fresh.iter_mut() {
            if known(ns) {
                self.unknown_since.remove(&ns);
            } else {
                let since = *self.unknown_since.entry(ns).or_insert(now);
                if now.duration_since(since) >= FORGET_AFTER {
                    forget.push(ns);
                }
            }
            p.refusals.sort_by_key(|r| (r.kind, r.errno));
            p.objects.sort_by(|a, b| {
                (b.wait_ns, b.send_refused, a.kind, a.id).cmp(&(a.wait_ns, a.send_refused, b.kind, b.id))
            });
            p.objects.truncate(self.max_objects);
            let old = self.namespaces.get(&ns);
            let mut added = [0u64; 5];
            for kind in CallKind::ALL {
                added[kind as usize] = p.refused(kind).saturating_sub(old.map_or(0, |o| o.refused(kind)));
            }
            added[4] = p.send_refused.saturating_sub(old.map_or(0, |o| o.send_refused));
            if added != [0; 5] {
                self.windows.entry(ns).or_default().push_back((now, added));
            }
            if let Some(o) = old {
                p.refused_last_minute = o.refused_last_minute;
                p.send_refused_last_minute = o.send_refused_last_minute;
            }
            p.semaphore_wait_new_ns =
                p.semaphore_wait.sum_ns.saturating_sub(old.map_or(0, |o| o.semaphore_wait.sum_ns));
            p.send_wait_new_ns = p.send_wait.sum_ns.saturating_sub(old.map_or(0, |o| o.send_wait.sum_ns));
            p.last_failure = self.latest.get(&ns).cloned();
        }
        for ns in forget {
            fresh.remove(&ns);
            self.unknown_since.remove(&ns);
            self.delete_namespace(ns);
        }
        self.unknown_since.retain(|ns, _| fresh.contains_key(ns));
        self.latest.retain(|ns, _| fresh.contains_key(ns));
        self.windows.retain(|ns, _| fresh.contains_key(ns));
        self.namespaces = fresh
            .into_iter()
            .map(|(ns, p)| match self.namespaces.remove(&ns) {
                Some(old) if *old == p => (ns, old),
                _ => (ns, Arc::new(p)),
            })
            .collect();
        Ok(())
    }

    fn delete_namespace(&mut self, ns: u64) {
        let _ = self.ns_stats.remove(&(ns as u32));
        let keys: Vec<u64> = self.failures.keys().filter_map(Result::ok).filter(|k| k >> 32 == ns).collect();
        for k in keys {
            let _ = self.failures.remove(&k);
        }
        let keys: Vec<u64> = self.objects.keys().filter_map(Result::ok).filter(|k| k >> 32 == ns).collect();
        for k in keys {
            let _ = self.objects.remove(&k);
        }
    }
}

/// Whether this process may load the probes, from its `uid_map` and `status`: the kernel
/// takes CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) only in the host's user namespace.
fn can_load(uid_map: &str, status: &str) -> Result<(), ProbeError> {
    let whole: Vec<&str> = uid_map.split_whitespace().collect();
    if whole != ["0", "0", "4294967295"] {
        return Err(ProbeError::NotHere(
            "the daemon runs in a user namespace, and the kernel loads BPF only with the host's capabilities",
        ));
    }
    let caps = ipcwatch_sampler::namespaces::effective_capabilities(status);
    const SYS_ADMIN: u64 = 1 << 21;
    const PERFMON: u64 = 1 << 38;
    const BPF: u64 = 1 << 39;
    if caps & (BPF | SYS_ADMIN) == 0 || caps & (PERFMON | SYS_ADMIN) == 0 {
        return Err(ProbeError::NotHere("no CAP_BPF and CAP_PERFMON (nor CAP_SYS_ADMIN)"));
    }
    Ok(())
}

fn histogram(buckets: &[u64], sum_ns: u64) -> WaitHistogram {
    WaitHistogram { buckets: buckets.to_vec(), sum_ns }
}

#[cfg(test)]
mod tests {
    use super::can_load;

    #[test]
    fn only_the_hosts_user_namespace_with_the_capabilities_may_load() {
        let host = "         0          0 4294967295\n";
        let all = "CapEff:\t000001ffffffffff\n";
        assert!(can_load(host, all).is_ok());
        assert!(can_load(host, "CapEff:\t0000000000200000\n").is_ok(), "CAP_SYS_ADMIN alone");
        assert!(can_load(host, "CapEff:\t000000c000000000\n").is_ok(), "CAP_BPF and CAP_PERFMON");
        let no_perfmon = can_load(host, "CapEff:\t0000008000000000\n").unwrap_err().to_string();
        assert!(no_perfmon.contains("CAP_PERFMON"), "{no_perfmon}");
        let userns = can_load("         0       1000          1\n", all).unwrap_err().to_string();
        assert!(userns.contains("user namespace"), "{userns}");
    }
}

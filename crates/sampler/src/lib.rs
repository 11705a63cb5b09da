//! Reads what the kernel knows about System V IPC (semaphores, message queues, shared memory)
//! in the caller's IPC namespace and returns it as one [`Snapshot`].
//!
//! The cheap path, used whenever the kernel allows it:
//! * totals from the O(1) `SEM_INFO`, `MSG_INFO` and `SHM_INFO` calls;
//! * limits from the `IPC_INFO` form of the same calls (plus the constants SEMVMX and SHMMIN);
//! * per-object detail from a `*_STAT_ANY` walk over indexes `0..=max_index`.
//!
//! `/proc/sysvipc/*` and `/proc/sys/kernel/*` are read only where a call fails, on kernels older
//! than 4.17 (no `*_STAT_ANY`), when [`Source::Procfs`] is asked for, or for per-segment
//! resident/swapped bytes, which only the text has ([`SamplerConfig::segment_memory`]).
//!
//! A collector that fails leaves its section `None` and says why in [`Snapshot::collectors`];
//! the others are unaffected. Nothing here panics on what the kernel or /proc returns.

#![deny(unsafe_code)]

mod error;
mod names;
pub mod namespaces;
pub mod posix;
pub mod procfs;
pub mod snapshot;
#[allow(unsafe_code)]
mod sys;
mod within;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use error::Error;
pub use names::{lossless, parse_passwd, use_passwd_file, UserNames};
pub use snapshot::*;
pub use sys::user_name;

/// Calls on one object or process, for the slow liveness pass and `prune`: never per second.
pub mod objects {
    use std::io;

    use crate::{sys, Kind, MessageQueue, Segment, SemaphoreArray};

    pub use sys::{clock_ticks, process_exists, release_free_memory, semaphore_pids};

    /// The array whose id is `id` now (`None`: removed, or its slot reused by another).
    pub fn semaphore_array(id: i32) -> io::Result<Option<SemaphoreArray>> {
        sys::stat_by_id(id, sys::sem_stat_any, |o| o.id)
    }

    pub fn message_queue(id: i32) -> io::Result<Option<MessageQueue>> {
        sys::stat_by_id(id, sys::msg_stat_any, |o| o.id)
    }

    pub fn segment(id: i32) -> io::Result<Option<Segment>> {
        sys::stat_by_id(id, sys::shm_stat_any, |o| o.id)
    }

    /// Removes one object (`IPC_RMID`): needs to be its owner or creator, or CAP_SYS_ADMIN.
    pub fn remove(kind: Kind, id: i32) -> io::Result<()> {
        sys::remove(kind, id)
    }
}

/// The most a /proc text file may hold before it is refused: 32,768 objects of the widest
/// kind take under 8 MiB, so anything near this is not the kernel's text.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Where figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Syscalls, falling back to the procfs text where a call fails.
    #[default]
    Auto,
    /// Only the procfs text under [`SamplerConfig::procfs`] (old kernels, fixture trees).
    Procfs,
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Source::Auto),
            "procfs" => Ok(Source::Procfs),
            other => Err(format!("unknown source `{other}` (expected `auto` or `procfs`)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Root of procfs (default `/proc`).
    pub procfs: PathBuf,
    pub source: Source,
    /// Also read per-segment resident/swapped bytes from `/proc/sysvipc/shm` (O(segments) text
    /// parse; the totals come from SHM_INFO regardless). Worth it for a one-shot report, not
    /// for a per-second loop.
    pub segment_memory: bool,
    /// Walk the semaphore arrays for per-array detail. The totals (`SEM_INFO`) are O(1) and
    /// always read; the walk is O(arrays) and only a report or an owner view needs it.
    pub semaphore_detail: bool,
    /// Also read POSIX message queues and the `fs.mqueue.*` limits ([`posix`]).
    pub posix: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            procfs: PathBuf::from("/proc"),
            source: Source::Auto,
            segment_memory: false,
            semaphore_detail: true,
            posix: true,
        }
    }
}

/// Takes snapshots. Holds a reusable text buffer so repeated samples do not reallocate it.
pub struct Sampler {
    config: SamplerConfig,
    page_size: u64,
    text: String,
    /// See [`Sampler::set_target`].
    target: Option<Target>,
    /// Each IPC namespace's POSIX IPC as last read in full (by namespace inode), with its
    /// mqueue superblock device once a private mount has shown it: numbers, not descriptors,
    /// so nothing is pinned.
    posix_kept: HashMap<u64, PosixKept>,
    /// Each process /dev/shm is read through: its mount namespace, and when that was asked.
    shm_kept: HashMap<u32, (Instant, Option<u64>)>,
    /// Each mount namespace's latest /dev/shm read.
    shm_by_mount: HashMap<u64, SharedShm>,
    /// The daemon's own mount namespace, if its /dev/shm is a real folder (read once).
    own_mnt: Option<Option<u64>>,
    /// Other namespaces' SysV limits as last read (see [`LIMITS_EVERY`]).
    limits_kept: HashMap<u64, (Instant, Limits, CollectorReport)>,
    /// What each mount seen in containers is (tmpfs, FUSE, ...), for the walks to their
    /// /dev/shm and /dev/mqueue.
    mount_kinds: posix::MountKinds,
}

/// How often the SysV limits of a namespace other than the daemon's own are read again.
pub const LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often POSIX IPC's slower parts are read again: the limits, each queue, the /dev/shm
/// listing. The host's queue count and every /dev/shm's use are read every sample.
pub const POSIX_DETAIL_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the POSIX message queues and `fs.mqueue.*` limits of a namespace other than the
/// daemon's own are read (see [`Sampler::set_target`]).
pub const POSIX_CONTAINER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a container's `fs.mqueue.*` limits are read: each lookup under /proc/sys/fs
/// compares with every IPC namespace's entry (~130 µs at 1,000 namespaces), and limits
/// change only when someone writes them.
pub const POSIX_CONTAINER_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// A mount namespace's /dev/shm as last read: its use, reused within [`SHARED_READ_FOR`], and
/// its files, listed again after [`POSIX_DETAIL_EVERY`].
struct SharedShm {
    used_at: Instant,
    listed_at: Instant,
    usage: posix::DevShm,
}

/// How long a process's mount namespace, as read from `/proc/PID/ns/mnt`, is trusted: a
/// process seldom changes it (unshare -m, setns), and a thousand namespaces' readlinks every
/// 10 s were 4% of the sampler.
const MOUNT_NAMESPACE_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// How long one /dev/shm read serves the other IPC namespaces of its mount namespace: less
/// than a tick, so every tick reads it afresh.
const SHARED_READ_FOR: std::time::Duration = std::time::Duration::from_millis(500);

struct PosixKept {
    posix: posix::Posix,
    next_read: Instant,
    /// When a container's limits are read again.
    limits_next: Instant,
    device: Option<u64>,
}

/// The namespace the next sample is in, a process of it, and whether it is another than the
/// daemon's own.
#[derive(Clone, Copy)]
struct Target {
    inode: u64,
    pid: u32,
    other: bool,
}

/// A collector's outcome before timing is attached.
struct Outcome<T> {
    value: Option<T>,
    origin: Origin,
    /// Why it failed, or why a fallback was needed.
    error: Option<Error>,
    /// Whether everything the collector is for was read (a fallback that worked counts).
    complete: bool,
}

impl<T> Outcome<T> {
    fn ok(value: T, origin: Origin) -> Self {
        Outcome { value: Some(value), origin, error: None, complete: true }
    }
    fn failed(error: Error) -> Self {
        Outcome { value: None, origin: Origin::None, error: Some(error), complete: false }
    }
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        Sampler {
            config,
            page_size: sys::page_size(),
            text: String::new(),
            target: None,
            posix_kept: HashMap::new(),
            shm_kept: HashMap::new(),
            shm_by_mount: HashMap::new(),
            limits_kept: HashMap::new(),
            own_mnt: None,
            mount_kinds: posix::MountKinds::default(),
        }
    }

    /// One complete sample of the caller's IPC namespace.
    pub fn snapshot(&mut self) -> Snapshot {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        // Room for every collector's report (sem, msg, shm, limits, devshm) at once: a Vec
        // that doubles to 8 would hold three empty slots in each of a thousand snapshots.
        let collectors = Vec::with_capacity(5);
        let mut snap = Snapshot { timestamp, page_size: self.page_size, collectors, ..Default::default() };

        let (sem, report) = timed("sem", || self.semaphores(&mut snap.warnings));
        snap.semaphores = sem;
        snap.collectors.push(report);
        let (msg, report) = timed("msg", || self.message_queues(&mut snap.warnings));
        snap.message_queues = msg;
        snap.collectors.push(report);
        let (shm, report) = timed("shm", || self.shared_memory(&mut snap.warnings));
        snap.shared_memory = shm;
        snap.collectors.push(report);
        // Another namespace's SysV limits (three IPC_INFO calls) are read every
        // LIMITS_EVERY: only a write to its /proc/sys/kernel changes them.
        let other = self.target.filter(|t| t.other).map(|t| t.inode);
        let kept = other.and_then(|i| self.limits_kept.get(&i)).filter(|k| k.0.elapsed() < LIMITS_EVERY);
        if let Some((_, limits, report)) = kept {
            snap.limits = limits.clone();
            snap.collectors.push(report.clone());
        } else {
            let (limits, report) = timed("limits", || self.limits());
            snap.limits = limits.unwrap_or_default();
            if let Some(inode) = other.filter(|_| report.ok) {
                if self.limits_kept.len() >= 4096 {
                    self.limits_kept.clear();
                }
                self.limits_kept.insert(inode, (Instant::now(), snap.limits.clone(), report.clone()));
            }
            snap.collectors.push(report);
        }
        if self.config.posix {
            snap.posix = Some(self.posix());
        }
        note_saturated_sums(&mut snap);
        snap
    }

    /// Adds the `/dev/shm` that process `pid` sees (its mount namespace's) to `snap`, when
    /// POSIX IPC is asked for; a warning says why if it cannot be read. Its size and use are
    /// read every time (one statfs); its files are listed again only every
    /// [`POSIX_DETAIL_EVERY`].
    pub fn add_dev_shm(&mut self, snap: &mut Snapshot, pid: u32) {
        if !self.config.posix {
            return;
        }
        let start = Instant::now();
        let read = self.dev_shm(pid);
        // No /dev/shm, or a plain directory there (a chroot): nothing to report, no failure.
        let absent = |e: &std::io::Error| {
            matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::Unsupported)
        };
        if read.as_ref().is_err_and(absent) {
            return;
        }
        snap.collectors.push(CollectorReport {
            name: "devshm",
            ok: read.is_ok(),
            source: if read.is_ok() { Origin::Syscall } else { Origin::None },
            duration_seconds: start.elapsed().as_secs_f64(),
            error: read.as_ref().err().map(|e| format!("/dev/shm of pid {pid}: {e}")),
        });
        snap.dev_shm = read.ok();
    }

    fn dev_shm(&mut self, pid: u32) -> std::io::Result<posix::DevShm> {
        // IPC namespaces that share a mount namespace share its /dev/shm: within one round
        // of samples its use is read once, and its files listed once every
        // POSIX_DETAIL_EVERY (a thousand PrivateIPC= units, one statfs a tick).
        let mnt = match self.shm_kept.get(&pid).filter(|k| k.0.elapsed() < MOUNT_NAMESPACE_KEPT_FOR) {
            Some(k) => k.1,
            None => {
                let mnt = posix::mount_namespace_of(&self.config.procfs, pid);
                if self.shm_kept.len() >= 4096 {
                    self.shm_kept.clear();
                }
                self.shm_kept.insert(pid, (Instant::now(), mnt));
                mnt
            }
        };
        let shared = mnt.and_then(|m| self.shm_by_mount.get(&m));
        if let Some(s) = shared.filter(|s| s.used_at.elapsed() < SHARED_READ_FOR) {
            return Ok(s.usage.clone());
        }
        let listed = shared.filter(|s| s.listed_at.elapsed() < POSIX_DETAIL_EVERY).map(|s| {
            let u = &s.usage;
            ((u.files, u.semaphore_files, u.semaphore_bytes), s.listed_at)
        });
        // The daemon's own mount namespace between listings: one statfs by path, where a
        // container's /dev/shm takes a walk of three opens from its root.
        // (Not where /dev/shm is a symbolic link: the walk refuses those, and says so.)
        let own_mnt = self.own_mnt.get_or_insert_with(|| {
            let real_dir = std::fs::symlink_metadata("/dev/shm").is_ok_and(|m| m.is_dir());
            real_dir.then(|| posix::mount_namespace_of(Path::new("/proc"), std::process::id())).flatten()
        });
        let own = mnt.is_some() && mnt == *own_mnt;
        let own_usage = listed.filter(|_| own).and_then(|l| Some((l, posix::own_dev_shm_usage()?)));
        if let Some(((files, listed_at), mut usage)) = own_usage {
            usage.mnt_namespace = mnt;
            (usage.files, usage.semaphore_files, usage.semaphore_bytes) = files;
            let read = SharedShm { used_at: Instant::now(), listed_at, usage: usage.clone() };
            self.shm_by_mount.insert(mnt.expect("own"), read);
            return Ok(usage);
        }
        let dir = posix::open_dev_shm(&self.config.procfs, pid, &mut self.mount_kinds)?;
        let mut usage = dir.usage()?;
        let (files, listed_at) = match listed {
            Some(kept) => kept,
            None => (dir.count_files()?, Instant::now()),
        };
        usage.mnt_namespace = mnt;
        (usage.files, usage.semaphore_files, usage.semaphore_bytes) = files;
        if let Some(mnt) = mnt {
            if self.shm_by_mount.len() >= 4096 {
                self.shm_by_mount.clear();
            }
            let read = SharedShm { used_at: Instant::now(), listed_at, usage: usage.clone() };
            self.shm_by_mount.insert(mnt, read);
        }
        Ok(usage)
    }

    /// POSIX message queues of the calling thread's IPC namespace, and their limits.
    ///
    /// The host's namespace, and the one a one-shot or single-namespace sample is in: every
    /// sample counts the queues (one stat of /dev/mqueue); the limits and the queues one by
    /// one are read again every [`POSIX_DETAIL_EVERY`], and at once when the count changes.
    ///
    /// Every other namespace (a container's, named by [`Sampler::set_target`]) is read whole
    /// every [`POSIX_CONTAINER_EVERY`], each at its own moment within that period, so that a
    /// thousand containers do not all read in one tick. Per second they cost nothing here:
    /// their count needs a walk into the container's root or a private mount, and their
    /// limits a /proc/sys lookup whose cost grows with the number of IPC namespaces on the
    /// host.
    fn posix(&mut self) -> posix::Posix {
        let target = self.target.take();
        // The fleet says which namespace this is; a one-shot sample asks the kernel.
        let inode = target.map(|t| t.inode).or_else(|| {
            std::fs::read_link("/proc/thread-self/ns/ipc").ok().as_deref().and_then(namespaces::parse_ns_link)
        });
        let initial = inode == Some(namespaces::INIT_IPC_NAMESPACE);
        let slow = !initial && target.is_some_and(|t| t.other);
        let key = inode.unwrap_or(0);
        let kept = self.posix_kept.get(&key);
        let device = kept.and_then(|k| k.device);
        let first = kept.is_none();
        let due = kept.is_none_or(|k| Instant::now() >= k.next_read);
        let reuse = if slow {
            !due
        } else {
            // The host's /dev/mqueue: its queues counted with one stat.
            let dir = Path::new("/dev/mqueue");
            let count = (initial && posix::is_mqueue_of(dir, posix::any_device(dir)))
                .then(|| posix::count_queues_in(dir).ok())
                .flatten();
            match (kept, count) {
                (Some(k), Some(c)) => !due && k.posix.queues.as_ref().is_some_and(|q| q.queues == c),
                (Some(_), None) => !due,
                (None, _) => false,
            }
        };
        if reuse {
            let k = self.posix_kept.get(&key).expect("just seen");
            return k.posix.clone();
        }
        // A container's own /dev/mqueue, once a private mount has shown the namespace's
        // device: reached without trusting it (no symlink, nothing on FUSE), held open while
        // it is read, and cheaper than another mount.
        let container_mqueue = match (initial, target.map(|t| t.pid).zip(device)) {
            (false, Some((pid, dev))) => {
                let kinds = &mut self.mount_kinds;
                within::Dir::open(&self.config.procfs, pid, &["dev", "mqueue"], within::FsKind::Mqueue, kinds)
                    .ok()
                    .filter(|d| d.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::dev(&m) == dev))
            }
            _ => None,
        };
        // A container's limits are looked up in /proc/sys every POSIX_CONTAINER_LIMITS_EVERY.
        let kept_limits = kept
            .filter(|k| slow && Instant::now() < k.limits_next)
            .map(|k| (k.posix.limits.clone(), k.limits_next));
        let (limits, limits_next) = match kept_limits {
            Some(kept) => kept,
            None => {
                let read = posix::read_limits(&self.config.procfs, &mut self.text);
                (read, Instant::now() + POSIX_CONTAINER_LIMITS_EVERY)
            }
        };
        let read = match &container_mqueue {
            Some(dir) => posix::read_queues_in(Path::new(&dir.proc_path())).map(|q| (q, device)),
            None => posix::read_queues(initial),
        };
        let (queues, error, device) = match read {
            Ok((q, d)) => (Some(q), None, d.or(device)),
            Err(e) => (None, Some(e.into()), device),
        };
        let out = posix::Posix { limits, queues, error };
        if self.posix_kept.len() >= 4096 {
            self.posix_kept.clear();
        }
        let every = if slow { POSIX_CONTAINER_EVERY } else { POSIX_DETAIL_EVERY };
        // A namespace's first read comes when it is found; the next at a moment of its own
        // within the period (the inode spread by a multiplicative hash).
        let wait = match first && slow {
            true => {
                every.mul_f64((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64)
            }
            false => every,
        };
        let kept = PosixKept { posix: out.clone(), next_read: Instant::now() + wait, limits_next, device };
        self.posix_kept.insert(key, kept);
        out
    }

    /// Names the IPC namespace (inode) the next [`Sampler::snapshot`] samples and a process
    /// of it, so that POSIX queues can be read through its `/proc/PID/root/dev/mqueue` when
    /// that is the namespace's own. `other`: a namespace not the daemon's own, whose POSIX IPC
    /// is read on the slow clock ([`POSIX_CONTAINER_EVERY`]).
    pub fn set_target(&mut self, inode: u64, pid: u32, other: bool) {
        self.target = Some(Target { inode, pid, other });
    }

    fn semaphores(&mut self, warnings: &mut Vec<String>) -> Outcome<Semaphores> {
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/sem", procfs::parse_sem, warnings).map(|items| Semaphores {
                arrays: items.len() as u64,
                semaphores: saturating_sum(items.iter().map(|a| a.semaphores)),
                items,
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::seminfo(libc::SEM_INFO) {
            Ok(info) => info,
            Err(e) => return self.fallback("semctl(SEM_INFO)", e, from_text, warnings),
        };
        let arrays = info.value.semusz as u64;
        let totals = |items| Semaphores { arrays, semaphores: info.value.semaem as u64, items };
        if !self.config.semaphore_detail {
            return Outcome::ok(totals(Vec::new()), Origin::Syscall);
        }
        match walk(info.max_index, arrays, sys::sem_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => self.items_from_text("sysvipc/sem", procfs::parse_sem, totals, warnings),
            Err(e) => self.fallback("semctl(SEM_STAT_ANY)", e, from_text, warnings),
        }
    }

    fn message_queues(&mut self, warnings: &mut Vec<String>) -> Outcome<MessageQueues> {
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/msg", procfs::parse_msg, warnings).map(|items| MessageQueues {
                queues: items.len() as u64,
                messages: saturating_sum(items.iter().map(|q| q.messages)),
                bytes: saturating_sum(items.iter().map(|q| q.bytes)),
                full_queues: 0,
                items,
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::msginfo(libc::MSG_INFO) {
            Ok(info) => info,
            Err(e) => return self.fallback("msgctl(MSG_INFO)", e, from_text, warnings),
        };
        let queues = info.value.msgpool as u64;
        let totals = |items: Vec<MessageQueue>| MessageQueues {
            queues,
            messages: info.value.msgmap as u64,
            bytes: info.value.msgtql as u64,
            full_queues: items.iter().filter(|q| q.is_full()).count() as u64,
            items,
        };
        match walk(info.max_index, queues, sys::msg_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => self.items_from_text("sysvipc/msg", procfs::parse_msg, totals, warnings),
            Err(e) => self.fallback("msgctl(MSG_STAT_ANY)", e, from_text, warnings),
        }
    }

    fn shared_memory(&mut self, warnings: &mut Vec<String>) -> Outcome<SharedMemory> {
        let page = self.page_size;
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/shm", procfs::parse_shm, warnings).map(|items| {
                if items.first().is_some_and(|s| s.resident_bytes.is_none()) {
                    warnings.push(
                        "/proc/sysvipc/shm has no rss/swap columns: resident and swapped bytes read as 0"
                            .into(),
                    );
                }
                shm_totals(
                    items.len() as u64,
                    saturating_sum(items.iter().map(|s| s.size_bytes.div_ceil(page))),
                    saturating_sum(items.iter().filter_map(|s| s.resident_bytes)),
                    saturating_sum(items.iter().filter_map(|s| s.swapped_bytes)),
                    items,
                )
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::shm_info() {
            Ok(info) => info,
            Err(e) => return self.fallback("shmctl(SHM_INFO)", e, from_text, warnings),
        };
        let i = info.value;
        let segments = i.used_ids as u64;
        let (pages, rss, swp) = (sys::ulong(i.shm_tot), sys::ulong(i.shm_rss), sys::ulong(i.shm_swp));
        let totals =
            |items| shm_totals(segments, pages, rss.saturating_mul(page), swp.saturating_mul(page), items);
        let mut outcome = match walk(info.max_index, segments, sys::shm_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => return self.items_from_text("sysvipc/shm", procfs::parse_shm, totals, warnings),
            Err(e) => return self.fallback("shmctl(SHM_STAT_ANY)", e, from_text, warnings),
        };
        if self.config.segment_memory {
            if let Some(shm) = outcome.value.as_mut() {
                match self.parse_file("sysvipc/shm", procfs::parse_shm, warnings) {
                    Ok(text_items) => {
                        let memory: HashMap<i32, (Option<u64>, Option<u64>)> =
                            text_items.iter().map(|s| (s.id, (s.resident_bytes, s.swapped_bytes))).collect();
                        for seg in &mut shm.items {
                            if let Some(&(rss, swap)) = memory.get(&seg.id) {
                                (seg.resident_bytes, seg.swapped_bytes) = (rss, swap);
                            }
                        }
                        outcome.origin = Origin::Mixed;
                    }
                    Err(e) => warnings.push(format!("per-segment memory unavailable: {e}")),
                }
            }
        }
        outcome
    }

    fn limits(&mut self) -> Outcome<Limits> {
        let mut limits =
            Limits { semvmx: Some(SEMVMX), semaem: Some(SEMAEM), shmmin: Some(SHMMIN), ..Default::default() };
        let mut errors: Vec<Error> = Vec::new();
        let mut used_text = false;
        let auto = self.config.source == Source::Auto;

        match auto.then(|| sys::seminfo(libc::IPC_INFO)) {
            Some(Ok(i)) => {
                let v = i.value;
                limits.semmsl = Some(v.semmsl as u64);
                limits.semmns = Some(v.semmns as u64);
                limits.semopm = Some(v.semopm as u64);
                limits.semmni = Some(v.semmni as u64);
                limits.semvmx = Some(v.semvmx as u64);
                limits.semaem = Some(v.semaem as u64);
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "semctl(IPC_INFO)", failed);
                match self.read_parsed("sys/kernel/sem", procfs::parse_sem_limits) {
                    Ok([msl, mns, opm, mni]) => {
                        (limits.semmsl, limits.semmns, limits.semopm, limits.semmni) =
                            (Some(msl), Some(mns), Some(opm), Some(mni))
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        match auto.then(|| sys::msginfo(libc::IPC_INFO)) {
            Some(Ok(i)) => {
                limits.msgmni = Some(i.value.msgmni as u64);
                limits.msgmax = Some(i.value.msgmax as u64);
                limits.msgmnb = Some(i.value.msgmnb as u64);
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "msgctl(IPC_INFO)", failed);
                limits.msgmni = self.number("sys/kernel/msgmni", &mut errors);
                limits.msgmax = self.number("sys/kernel/msgmax", &mut errors);
                limits.msgmnb = self.number("sys/kernel/msgmnb", &mut errors);
            }
        }
        match auto.then(sys::shm_limits) {
            Some(Ok(i)) => {
                limits.shmmni = Some(sys::ulong(i.value.shmmni));
                limits.shmmax = Some(sys::ulong(i.value.shmmax));
                limits.shmall = Some(sys::ulong(i.value.shmall));
                limits.shmmin = Some(sys::ulong(i.value.shmmin));
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "shmctl(IPC_INFO)", failed);
                limits.shmmni = self.number("sys/kernel/shmmni", &mut errors);
                limits.shmmax = self.number("sys/kernel/shmmax", &mut errors);
                limits.shmall = self.number("sys/kernel/shmall", &mut errors);
            }
        }
        let origin = match (auto, used_text) {
            (true, false) => Origin::Syscall,
            (true, true) => Origin::Mixed,
            (false, _) => Origin::Procfs,
        };
        // Partial limits are kept: a missing one is `None`, the others stay true values.
        let complete = !limits.any_missing();
        if !complete && errors.is_empty() {
            errors.push(Error::Incomplete("some limits could not be read"));
        }
        let error = match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        };
        Outcome { value: Some(limits), origin, error, complete }
    }

    /// Reads one number from a sysctl file, recording the error if it cannot.
    fn number(&mut self, rel: &str, errors: &mut Vec<Error>) -> Option<u64> {
        self.read_parsed(rel, procfs::parse_number).map_err(|e| errors.push(e)).ok()
    }

    /// Reads `<procfs>/<rel>` into the reusable buffer.
    fn read_file(&mut self, rel: &str) -> Result<&str, Error> {
        let path = self.config.procfs.join(rel);
        read_text(&path, &mut self.text)?;
        Ok(&self.text)
    }

    /// Reads `<procfs>/<rel>` and parses it; errors name the file.
    fn read_parsed<T>(&mut self, rel: &str, parse: fn(&str) -> Result<T, String>) -> Result<T, Error> {
        let parsed = parse(self.read_file(rel)?);
        parsed.map_err(|reason| Error::Parse { path: self.config.procfs.join(rel), reason })
    }

    /// Reads and parses a /proc/sysvipc file; malformed lines become warnings.
    fn parse_file<T>(
        &mut self,
        rel: &str,
        parse: fn(&str) -> Result<procfs::Parsed<T>, String>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<T>, Error> {
        let parsed = self.read_parsed(rel, parse)?;
        let path = self.config.procfs.join(rel);
        warnings.extend(
            parsed.malformed.iter().map(|m| format!("{}:{}: skipped: {}", path.display(), m.line, m.reason)),
        );
        Ok(parsed.items)
    }

    /// The totals came from a syscall but the walk found nothing (a kernel before 4.17 has no
    /// `*_STAT_ANY`): take the items from the text.
    fn items_from_text<T, S>(
        &mut self,
        rel: &str,
        parse: fn(&str) -> Result<procfs::Parsed<T>, String>,
        totals: impl FnOnce(Vec<T>) -> S,
        warnings: &mut Vec<String>,
    ) -> Outcome<S> {
        match self.parse_file(rel, parse, warnings) {
            Ok(items) => Outcome {
                value: Some(totals(items)),
                origin: Origin::Mixed,
                error: Some(Error::NoStatAny),
                complete: true,
            },
            Err(e) => Outcome::failed(e),
        }
    }

    /// A syscall failed: record why and take the whole section from the text.
    fn fallback<S>(
        &mut self,
        call: &'static str,
        err: io::Error,
        from_text: impl FnOnce(&mut Self, &mut Vec<String>) -> Result<S, Error>,
        warnings: &mut Vec<String>,
    ) -> Outcome<S> {
        match from_text(self, warnings) {
            Ok(v) => Outcome {
                value: Some(v),
                origin: Origin::Procfs,
                error: Some(Error::FellBack { call, source: err }),
                complete: true,
            },
            Err(e) => Outcome::failed(Error::Failed { call, source: err, fallback: Box::new(e) }),
        }
    }
}

fn note_call_failure<T>(errors: &mut Vec<Error>, call: &'static str, failed: Option<io::Result<T>>) {
    if let Some(Err(source)) = failed {
        errors.push(Error::Call { call, source });
    }
}

/// Sums that cannot wrap: a namespace may hold segments of 2^62 bytes each, and a wrapped sum
/// would hide them. At u64::MAX the figure stops, which no limit is above.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0u64, u64::saturating_add)
}

/// This process's soft limit on open files (`Max open files` in /proc/self/limits).
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Says which sums stopped at u64::MAX: the figure is a floor, not the truth.
fn note_saturated_sums(snap: &mut Snapshot) {
    let (sem, msg, shm) = (&snap.semaphores, &snap.message_queues, &snap.shared_memory);
    let sums = [
        ("semaphores", sem.as_ref().map(|s| s.semaphores)),
        ("message_queues.messages", msg.as_ref().map(|m| m.messages)),
        ("message_queues.bytes", msg.as_ref().map(|m| m.bytes)),
        ("shared_memory.bytes", shm.as_ref().map(|m| m.bytes)),
        ("shared_memory.orphaned_bytes", shm.as_ref().map(|m| m.orphaned_bytes)),
        ("shared_memory.resident_bytes", shm.as_ref().map(|m| m.resident_bytes)),
        ("shared_memory.swapped_bytes", shm.as_ref().map(|m| m.swapped_bytes)),
    ];
    for (name, _) in sums.into_iter().filter(|(_, v)| *v == Some(u64::MAX)) {
        snap.warnings.push(format!("{name}: the sum reaches 2^64 and is shown saturated at {}", u64::MAX));
    }
}

/// Reads a text file from procfs into `buf`. Only a regular file is read (a FIFO or device put
/// under `--path.procfs` would block or never end), without blocking, and at most
/// [`MAX_TEXT_BYTES`] of it.
pub fn read_text(path: &Path, buf: &mut String) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    buf.clear();
    let read_err = |source| Error::Read { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    read_open_text(file, path, buf)
}

/// [`read_text`] of a file already opened (`path` names it in errors).
pub(crate) fn read_open_text(file: std::fs::File, path: &Path, buf: &mut String) -> Result<(), Error> {
    use std::io::Read;
    buf.clear();
    let read_err = |source| Error::Read { path: path.to_path_buf(), source };
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(Error::NotRegular { path: path.to_path_buf() });
    }
    file.take(MAX_TEXT_BYTES + 1).read_to_string(buf).map_err(read_err)?;
    if buf.len() as u64 > MAX_TEXT_BYTES {
        buf.clear();
        return Err(Error::TooLarge { path: path.to_path_buf(), limit: MAX_TEXT_BYTES });
    }
    Ok(())
}

fn shm_totals(
    segments: u64,
    pages: u64,
    resident_bytes: u64,
    swapped_bytes: u64,
    items: Vec<Segment>,
) -> SharedMemory {
    let orphans = items.iter().filter(|s| s.is_orphaned());
    SharedMemory {
        segments,
        bytes: saturating_sum(items.iter().map(|s| s.size_bytes)),
        pages,
        resident_bytes,
        swapped_bytes,
        orphaned_segments: orphans.clone().count() as u64,
        orphaned_bytes: saturating_sum(orphans.map(|s| s.size_bytes)),
        destroyed_attached_segments: items.iter().filter(|s| s.destroyed && s.attached > 0).count() as u64,
        items,
    }
}

/// Walks `*_STAT_ANY` over `0..=max_index`. `Ok(None)` means the walk found nothing although
/// `in_use` says objects exist: the kernel does not know the command.
fn walk<T>(
    max_index: i32,
    in_use: u64,
    stat: fn(i32) -> io::Result<Option<T>>,
) -> io::Result<Option<Vec<T>>> {
    if in_use == 0 {
        // Nothing to stat: an idle namespace costs no walk at all.
        return Ok(Some(Vec::new()));
    }
    let mut items = Vec::with_capacity(in_use as usize);
    for index in 0..=max_index.max(0) {
        if let Some(item) = stat(index)? {
            items.push(item);
        }
    }
    if items.is_empty() && in_use > 0 {
        return Ok(None);
    }
    Ok(Some(items))
}

fn timed<T>(name: &'static str, f: impl FnOnce() -> Outcome<T>) -> (Option<T>, CollectorReport) {
    let start = Instant::now();
    let outcome = f();
    let report = CollectorReport {
        name,
        ok: outcome.complete,
        source: outcome.origin,
        duration_seconds: start.elapsed().as_secs_f64(),
        error: outcome.error.map(|e| e.to_string()),
    };
    (outcome.value, report)
}

/// Object creation for tests and benchmarks (feature `testkit`).
#[cfg(feature = "testkit")]
pub use sys::testkit;

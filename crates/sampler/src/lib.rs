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

mod collectors;
mod error;
mod names;
pub mod namespaces;
pub mod posix;
pub mod probes;
pub mod procfs;
pub mod snapshot;
#[allow(unsafe_code)]
mod sys;
pub use sys::SharedWords;
mod within;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use collectors::devshm::SharedShm;
pub use collectors::limits::LIMITS_EVERY;
use collectors::posix_queues::PosixKept;
pub use collectors::posix_queues::{POSIX_CONTAINER_EVERY, POSIX_CONTAINER_LIMITS_EVERY};
pub use error::Error;
pub use names::{lossless, parse_passwd, use_passwd_file, UserNames};
pub use snapshot::*;
pub use sys::{boot_clock_ns, raise_open_file_limit, user_name};

/// The System V collectors every snapshot reports on, by name, in report order.
pub const SYSV_COLLECTORS: [&str; 4] =
    [collectors::sem::NAME, collectors::msg::NAME, collectors::shm::NAME, collectors::limits::NAME];

/// Calls on one object or process, for the slow liveness pass and `prune`: never per second.
pub mod objects {
    use std::io;

    use crate::{sys, Kind, MessageQueue, Segment, SemaphoreArray};

    pub use sys::{
        clock_ticks, process_exists, purge_freed_memory_at_once, release_free_memory, semaphore_pids,
    };

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

    /// Calls `each(device, inode)` for every file a process maps, given its /proc/PID/maps:
    /// asked of the kernel one mapping at a time (Linux 6.11+), else read from the text into
    /// `text` (`addr perms offset major:minor inode path`, device numbers in hex). Asking
    /// costs less than half of reading: the kernel then formats no line and resolves no
    /// path. A process with no memory (a kernel thread, a zombie) maps nothing; one that
    /// ended is an error whose source is ESRCH or NotFound.
    pub fn mapped_files(
        maps: &std::path::Path,
        text: &mut String,
        mut each: impl FnMut(u64, u64),
    ) -> Result<(), crate::Error> {
        let file = crate::open_text(maps)?;
        match sys::file_mappings(&file, &mut each) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() != Some(libc::ENOTTY) => {
                return Err(crate::Error::Read { path: maps.to_path_buf(), source: e })
            }
            Err(_) => {}
        }
        crate::read_open_text(file, maps, text)?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(dev), Some(ino)) = (f.nth(3), f.next()) else { continue };
            let (Some((major, minor)), Ok(ino)) = (dev.split_once(':'), ino.parse::<u64>()) else { continue };
            if let (Ok(major), Ok(minor), true) =
                (u32::from_str_radix(major, 16), u32::from_str_radix(minor, 16), ino != 0)
            {
                each(libc::makedev(major, minor), ino);
            }
        }
        Ok(())
    }

    /// The device and inode of the file `name` in the open directory `dir` leads to (an entry
    /// of /proc/PID/fd: the open file's), looked up relative to `dir`.
    pub fn file_at(dir: &std::fs::File, name: &std::ffi::OsStr) -> io::Result<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
        sys::stat_at(dir, &name)
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
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "auto" => Ok(Source::Auto),
            "procfs" => Ok(Source::Procfs),
            other => {
                Err(UnknownName { what: "source", name: other.to_string(), expected: "`auto` or `procfs`" })
            }
        }
    }
}

/// A name that is none of those a setting or argument takes (`--source`, an object kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (expected {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
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
    /// Each IPC namespace's POSIX IPC as last read in full (by namespace inode), with the
    /// private mount of its mqueue filesystem, held until [`Sampler::forget_namespace`].
    posix_kept: NumberMap<u64, PosixKept>,
    /// How many of those mounts may be held (see [`collectors::posix_queues::MAX_HELD_MOUNTS`]),
    /// and how many are.
    mount_budget: usize,
    held_mounts: usize,
    /// Each process /dev/shm is read through: its mount namespace, and when that was asked.
    shm_kept: NumberMap<u32, (Instant, Option<u64>)>,
    /// Each mount namespace's latest /dev/shm read.
    shm_by_mount: NumberMap<u64, SharedShm>,
    /// The daemon's own mount namespace (read once).
    own_mnt: Option<Option<u64>>,
    /// The daemon's own /dev/shm as opened by its last listing.
    own_shm: Option<collectors::devshm::OwnShm>,
    /// Whether the host's /dev/mqueue is an mqueue mount (its device), as last checked.
    dev_mqueue: collectors::posix_queues::DevMqueue,
    /// Other namespaces' SysV limits as last read (see [`LIMITS_EVERY`]).
    limits_kept: NumberMap<u64, (Instant, Limits, CollectorReport)>,
    /// What each mount seen in containers is (tmpfs, FUSE, ...), for the walks to their
    /// /dev/shm.
    mount_kinds: posix::MountKinds,
}

/// How often POSIX IPC's slower parts are read again: the limits, each queue, the /dev/shm
/// listing. The host's queue count and every /dev/shm's use are read every sample.
pub const POSIX_DETAIL_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The namespace the next sample is in, and whether it is another than the daemon's own.
#[derive(Clone, Copy)]
struct Target {
    inode: u64,
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
            posix_kept: NumberMap::default(),
            mount_budget: collectors::posix_queues::mount_budget(open_file_limit()),
            held_mounts: 0,
            shm_kept: NumberMap::default(),
            shm_by_mount: NumberMap::default(),
            limits_kept: NumberMap::default(),
            own_mnt: None,
            own_shm: None,
            dev_mqueue: Default::default(),
            mount_kinds: posix::MountKinds::default(),
        }
    }

    /// One complete sample of the caller's IPC namespace.
    pub fn snapshot(&mut self) -> Snapshot {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        // Room for every collector's report (sem, msg, shm, limits, posix, devshm) at once: a
        // Vec that doubles to 8 would hold empty slots in each of a thousand snapshots.
        let collectors = Vec::with_capacity(6);
        let mut snap = Snapshot { timestamp, page_size: self.page_size, collectors, ..Default::default() };

        let (sem, report) = timed(collectors::sem::NAME, || self.semaphores(&mut snap.warnings));
        snap.semaphores = sem;
        snap.collectors.push(report);
        let (msg, report) = timed(collectors::msg::NAME, || self.message_queues(&mut snap.warnings));
        snap.message_queues = msg;
        snap.collectors.push(report);
        let (shm, report) = timed(collectors::shm::NAME, || self.shared_memory(&mut snap.warnings));
        snap.shared_memory = shm;
        snap.collectors.push(report);
        // A watched namespace's SysV limits (three IPC_INFO calls) are read every
        // LIMITS_EVERY: only a write to its /proc/sys/kernel changes them.
        let watched = self.target.map(|t| t.inode);
        let kept = watched.and_then(|i| self.limits_kept.get(&i)).filter(|k| k.0.elapsed() < LIMITS_EVERY);
        if let Some((_, limits, report)) = kept {
            snap.limits = limits.clone();
            snap.collectors.push(report.clone());
        } else {
            let (limits, report) = timed(collectors::limits::NAME, || self.limits());
            snap.limits = limits.unwrap_or_default();
            if let Some(inode) = watched.filter(|_| report.ok) {
                if self.limits_kept.len() >= 4096 {
                    self.limits_kept.clear();
                }
                self.limits_kept.insert(inode, (Instant::now(), snap.limits.clone(), report.clone()));
            }
            snap.collectors.push(report);
        }
        if self.config.posix {
            let start = Instant::now();
            let posix = self.posix();
            snap.collectors.push(CollectorReport {
                name: collectors::posix_queues::NAME,
                ok: posix.error.is_none(),
                source: if posix.error.is_none() { Origin::Syscall } else { Origin::None },
                duration_seconds: start.elapsed().as_secs_f64(),
                error: posix.error.clone(),
            });
            snap.posix = Some(posix);
        }
        note_saturated_sums(&mut snap);
        snap
    }

    /// What it was made with (whether it reads POSIX IPC, where procfs is).
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Names the IPC namespace (inode) the next [`Sampler::snapshot`] samples, so that it
    /// need not ask the kernel, and what it keeps for the namespace is found. `other`: a
    /// namespace not the daemon's own, whose POSIX IPC is read on the slow clock
    /// ([`POSIX_CONTAINER_EVERY`]).
    pub fn set_target(&mut self, inode: u64, other: bool) {
        self.target = Some(Target { inode, other });
    }

    /// Lets go of what is kept for IPC namespace `inode`, which is gone: above all its mqueue
    /// mount, which would keep its queues, and their owners' charges, alive.
    pub fn forget_namespace(&mut self, inode: u64) {
        if self.posix_kept.remove(&inode).is_some_and(|k| k.mount.is_some()) {
            self.held_mounts -= 1;
        }
        self.limits_kept.remove(&inode);
    }

    /// Reads `<procfs>/<rel>` into the reusable buffer.
    fn read_file(&mut self, rel: &str) -> Result<&str, Error> {
        let path = self.config.procfs.join(rel);
        read_text(&path, &mut self.text)?;
        Ok(&self.text)
    }

    /// Reads `<procfs>/<rel>` and parses it; errors name the file.
    fn read_parsed<T>(
        &mut self,
        rel: &str,
        parse: fn(&str) -> Result<T, procfs::ParseError>,
    ) -> Result<T, Error> {
        let parsed = parse(self.read_file(rel)?);
        parsed.map_err(|reason| Error::Parse { path: self.config.procfs.join(rel), reason })
    }

    /// Reads and parses a /proc/sysvipc file; malformed lines become warnings.
    fn parse_file<T>(
        &mut self,
        rel: &str,
        parse: fn(&str) -> Result<procfs::Parsed<T>, procfs::ParseError>,
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
        parse: fn(&str) -> Result<procfs::Parsed<T>, procfs::ParseError>,
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

/// Sums that cannot wrap: a namespace may hold segments of 2^62 bytes each, and a wrapped sum
/// would hide them. At u64::MAX the figure stops, which no limit is above.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0u64, u64::saturating_add)
}

/// A hash map keyed by kernel-assigned numbers (namespace inodes, pids, mount namespaces),
/// looked up for each of a thousand namespaces every tick: a multiply instead of SipHash.
/// The keys are the kernel's, not a tenant's choice, so there is no collision flood to fear.
pub type NumberMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<NumberHasher>>;
/// [`NumberMap`]'s set.
pub type NumberSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<NumberHasher>>;

/// Fibonacci hashing of one integer: [`NumberMap`]'s hasher.
#[derive(Default, Clone, Copy)]
pub struct NumberHasher(u64);

impl std::hash::Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
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
    buf.clear();
    read_open_text(open_text(path)?, path, buf)
}

/// Opens a /proc or /sys file for [`read_open_text`]: without blocking (a FIFO planted in a
/// fixture tree cannot stall the caller) and never as a controlling terminal.
pub(crate) fn open_text(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| Error::Read { path: path.to_path_buf(), source })
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
        error: outcome.error.map(|e| e.to_string().into()),
    };
    (outcome.value, report)
}

/// Object creation for tests and benchmarks (feature `testkit`).
#[cfg(feature = "testkit")]
pub use sys::testkit;

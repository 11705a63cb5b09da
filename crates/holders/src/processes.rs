//! Whether the process behind a pid is the one that used an object, or a stranger that
//! reused its number.
//!
//! The kernel stores the pids of an object's creator and last users as `struct pid`
//! references and translates them into the caller's pid namespace, so a daemon in the host's
//! pid namespace reads host pids even for a container's objects. A pid whose process has
//! died can be reused: a process that started after the object's last use is not the one
//! that used it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Parsed where the namespace scan parses them too: one reading of /proc/PID/stat.
pub use ipcwatch_sampler::namespaces::{boot_time, start_ticks};
use ipcwatch_sampler::objects;
use serde::Serialize;

/// A process started this many seconds after an object's last use is still accepted as its
/// user: `btime` and the object times are whole seconds.
const START_SLACK: i64 = 2;

/// The initial pid namespace's inode (PROC_PID_INIT_INO).
const INIT_PID_NAMESPACE: u64 = 0xEFFFFFFC;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Alive {
    /// The process runs and could be the object's user.
    Alive,
    /// No process has the pid, or its process started after the object's last use.
    Dead,
    /// Cannot tell (no permission, or the pid is outside our pid namespace's view): counts
    /// as alive wherever a decision depends on it.
    Unknown,
}

impl Alive {
    pub fn as_str(self) -> &'static str {
        match self {
            Alive::Alive => "alive",
            Alive::Dead => "dead",
            Alive::Unknown => "unknown",
        }
    }
}

/// What one lookup of a pid found.
#[derive(Debug, Clone, Copy)]
struct Seen {
    exists: Option<bool>,
    /// Unix seconds the process started, when /proc/PID/stat could be read.
    started: Option<i64>,
}

/// Liveness lookups for one pass: each pid is looked up once ([`Processes::forget`] starts a
/// new pass).
#[derive(Debug)]
pub struct Processes {
    procfs: PathBuf,
    boot_time: Option<i64>,
    ticks: u64,
    /// Outside the initial pid namespace, processes of other namespaces read as pid 0, so 0
    /// cannot mean "nobody".
    zero_is_nobody: bool,
    seen: HashMap<i32, Seen>,
    text: String,
}

impl Processes {
    pub fn new(procfs: &Path) -> Processes {
        let boot_time = std::fs::read_to_string(procfs.join("stat")).ok().and_then(|s| boot_time(&s));
        let pid_ns = std::fs::metadata(procfs.join("self/ns/pid"));
        let zero_is_nobody =
            pid_ns.map(|m| std::os::unix::fs::MetadataExt::ino(&m) == INIT_PID_NAMESPACE).unwrap_or(false);
        Processes {
            procfs: procfs.to_path_buf(),
            boot_time,
            ticks: objects::clock_ticks(),
            zero_is_nobody,
            seen: HashMap::new(),
            text: String::new(),
        }
    }

    /// Starts a new pass: processes may have come and gone since the last one.
    pub fn forget(&mut self) {
        self.seen.clear();
        if self.seen.capacity() > 4096 {
            self.seen.shrink_to(4096);
        }
    }

    /// Whether `pid` runs and is the process that used an object at `used_at` (Unix seconds;
    /// 0 when unknown, which skips the reuse check).
    pub fn alive(&mut self, pid: i32, used_at: i64) -> Alive {
        if pid <= 0 {
            return if self.zero_is_nobody { Alive::Dead } else { Alive::Unknown };
        }
        let seen = match self.seen.get(&pid) {
            Some(s) => *s,
            None => {
                let s = self.look(pid);
                self.seen.insert(pid, s);
                s
            }
        };
        match seen.exists {
            None => Alive::Unknown,
            Some(false) => Alive::Dead,
            Some(true) => match seen.started {
                Some(started) if used_at > 0 && started > used_at + START_SLACK => Alive::Dead,
                _ => Alive::Alive,
            },
        }
    }

    fn look(&mut self, pid: i32) -> Seen {
        let exists = objects::process_exists(pid);
        let started = if exists == Some(true) { self.start_time(pid) } else { None };
        Seen { exists, started }
    }

    fn start_time(&mut self, pid: i32) -> Option<i64> {
        let path = self.procfs.join(pid.to_string()).join("stat");
        ipcwatch_sampler::read_text(&path, &mut self.text).ok()?;
        let ticks = start_ticks(&self.text)?;
        Some(self.boot_time? + (ticks / self.ticks.max(1)) as i64)
    }
}

/// The live processes of one IPC namespace, as the creator rule needs them: for each
/// effective uid, the earliest start. An array or queue records no creator pid, only the
/// creator's uid (`cuid`) and when it was made (`ctime`), so while a process of that uid
/// started before then lives, the creator may live and hold the object.
#[derive(Debug, Clone, Default)]
pub struct Residents {
    /// Whether the namespace's processes were read at all; if not, every object may be held.
    known: bool,
    earliest: HashMap<u32, i64>,
    /// Processes whose uid or start could not be read: they could be anyone, from any time.
    unreadable: usize,
    /// The operator's evidence: objects made before this process (pid, start) started are
    /// not held by the older processes of their creator's uid.
    waived_before: Option<(u32, i64)>,
}

/// Why an object may still be held by its creator, or why that was ruled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creator {
    /// No live process of the creator's uid predates the object.
    Gone,
    /// The operator's evidence (`--created-before-start-of PID`) rules the creator out.
    Waived { pid: u32, started: i64 },
    /// A live process of the creator's uid (pid, start) predates the object: it may hold it.
    MayLive { pid: Option<u32>, reason: String },
}

impl Residents {
    /// No process at all: what tests with fed snapshots mean.
    pub fn none() -> Residents {
        Residents { known: true, ..Default::default() }
    }

    /// Reads `pids` (one IPC namespace's processes) under `procfs`: each one's effective uid
    /// (/proc/PID/status, which hidepid and ProtectProc do not hide from CAP_SYS_PTRACE) and
    /// start time.
    pub fn read(procfs: &Path, pids: &[u32]) -> Residents {
        let mut out = Residents::none();
        let boot = std::fs::read_to_string(procfs.join("stat")).ok().and_then(|s| boot_time(&s));
        let ticks = objects::clock_ticks().max(1);
        let mut text = String::new();
        for pid in pids {
            let dir = procfs.join(pid.to_string());
            let uid = ipcwatch_sampler::read_text(&dir.join("status"), &mut text)
                .ok()
                .and_then(|_| effective_uid(&text));
            let start = ipcwatch_sampler::read_text(&dir.join("stat"), &mut text)
                .ok()
                .and_then(|_| start_ticks(&text))
                .zip(boot)
                .map(|(t, b)| b + (t / ticks) as i64);
            match (uid, start) {
                (Some(uid), Some(start)) => {
                    let e = out.earliest.entry(uid).or_insert(start);
                    *e = (*e).min(start);
                }
                // Gone in between: nothing to hold.
                _ if !dir.exists() => {}
                _ => out.unreadable += 1,
            }
        }
        out
    }

    /// Takes the operator's evidence: objects made before process `pid` (now running)
    /// started are not held by older processes.
    pub fn waive_before(&mut self, pid: u32, started: i64) {
        self.waived_before = Some((pid, started));
    }

    /// Whether the creator (effective uid `uid`) of an object made at `created` may live.
    pub fn creator(&self, uid: u32, created: i64) -> Creator {
        if let Some((pid, started)) = self.waived_before.filter(|(_, started)| created < *started) {
            return Creator::Waived { pid, started };
        }
        if !self.known {
            return Creator::MayLive { pid: None, reason: "the namespace's processes were not read".into() };
        }
        if self.unreadable > 0 {
            return Creator::MayLive {
                pid: None,
                reason: format!("{} of the namespace's processes could not be read", self.unreadable),
            };
        }
        match self.earliest.get(&uid) {
            Some(start) if *start <= created + START_SLACK => Creator::MayLive {
                pid: None,
                reason: format!("a process of uid {uid} started before it was created, and lives"),
            },
            _ => Creator::Gone,
        }
    }
}

/// When process `pid` under `procfs` started (Unix seconds).
pub fn start_of(procfs: &Path, pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(procfs.join(pid.to_string()).join("stat")).ok()?;
    let boot = boot_time(&std::fs::read_to_string(procfs.join("stat")).ok()?)?;
    Some(boot + (start_ticks(&stat)? / objects::clock_ticks().max(1)) as i64)
}

/// The effective uid (second field of `Uid:`) in /proc/PID/status.
pub fn effective_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Every process under `procfs`, by IPC namespace.
#[derive(Debug, Default)]
pub struct ByIpcNamespace {
    pids: HashMap<u64, Vec<u32>>,
    /// Processes whose namespace cannot be read (other users', without CAP_SYS_PTRACE):
    /// they could be in any namespace, so every namespace counts them.
    anywhere: Vec<u32>,
}

impl ByIpcNamespace {
    /// The processes that may be in namespace `inode`.
    pub fn residents(&self, inode: u64) -> Vec<u32> {
        let own = self.pids.get(&inode).map_or(&[][..], Vec::as_slice);
        own.iter().chain(&self.anywhere).copied().collect()
    }
}

/// One walk of `procfs`: each process by IPC namespace.
pub fn by_ipc_namespace(procfs: &Path) -> ByIpcNamespace {
    walk_namespaces(procfs, false).by_ipc
}

/// A walk of /proc: each process by IPC namespace and, when asked, by mount namespace.
#[derive(Debug, Default)]
pub struct Walked {
    pub by_ipc: ByIpcNamespace,
    by_mount: HashMap<u64, Vec<u32>>,
    /// Processes whose IPC namespace could be read but whose mount namespace could not
    /// (those in `by_ipc`'s `anywhere` are not asked): they may be in any.
    mount_unknown: Vec<u32>,
}

/// The processes that may use a mount namespace's /dev/shm files.
#[derive(Debug, Clone, Default)]
pub struct MountUsers {
    /// Seen in the mount namespace.
    pub known: Vec<u32>,
    /// Whose namespaces could not be read (other users', without CAP_SYS_PTRACE): they may
    /// be in it.
    pub unknown: Vec<u32>,
}

impl Walked {
    /// The processes that may share mount namespace `mnt`.
    pub fn mount_users(&self, mnt: u64) -> MountUsers {
        MountUsers {
            known: self.by_mount.get(&mnt).cloned().unwrap_or_default(),
            unknown: self.by_ipc.anywhere.iter().chain(&self.mount_unknown).copied().collect(),
        }
    }
}

/// One walk of `procfs` for a whole census: each process by IPC namespace and, when
/// `mounts`, by mount namespace (whose processes are the users of its /dev/shm files). A
/// census of a thousand namespaces walks /proc once, not once per question.
pub fn walk_namespaces(procfs: &Path, mounts: bool) -> Walked {
    let mut out = Walked::default();
    let Ok(dir) = std::fs::read_dir(procfs) else { return out };
    let mut path = procfs.to_path_buf();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        path.push(&name);
        path.push("ns/ipc");
        match std::fs::read_link(&path) {
            // Ended since the listing: it holds nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Not ours to read (its mount namespace neither: the same ptrace check guards
            // both links, so it is not asked), or not a namespace link: it could be anywhere.
            Err(_) => out.by_ipc.anywhere.push(pid),
            Ok(link) => match ipcwatch_sampler::namespaces::parse_ns_link(&link) {
                None => out.by_ipc.anywhere.push(pid),
                Some(inode) => {
                    out.by_ipc.pids.entry(inode).or_default().push(pid);
                    if mounts {
                        path.set_file_name("mnt");
                        let link = std::fs::read_link(&path);
                        let mnt = link.as_deref().ok().and_then(ipcwatch_sampler::namespaces::parse_mnt_link);
                        match (mnt, link) {
                            (Some(mnt), _) => out.by_mount.entry(mnt).or_default().push(pid),
                            (None, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                            (None, _) => out.mount_unknown.push(pid),
                        }
                    }
                }
            },
        }
        path.pop();
        path.pop();
        path.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_after_the_command_name() {
        let stat = "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_ticks(stat), Some(98765));
        assert_eq!(start_ticks("garbage"), None);
        assert_eq!(start_ticks("1 (x) S 1"), None);
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[test]
    fn this_process_is_alive_and_a_later_use_keeps_it_so() {
        let mut p = Processes::new(Path::new("/proc"));
        let me = std::process::id() as i32;
        assert_eq!(p.alive(me, crate::unix_now()), Alive::Alive);
        assert_eq!(p.alive(me, 0), Alive::Alive);
        // A use long before this process started was some other process with our pid.
        assert_eq!(p.alive(me, 1_000_000), Alive::Dead);
    }

    #[test]
    fn the_creator_may_live_while_a_process_of_its_uid_predates_the_object() {
        let me = std::process::id();
        let residents = Residents::read(Path::new("/proc"), &[me]);
        let uid = effective_uid(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        let now = crate::unix_now();
        assert!(matches!(residents.creator(uid, now), Creator::MayLive { .. }), "we started before now");
        assert_eq!(residents.creator(uid, 1_000_000), Creator::Gone, "made before we started");
        assert_eq!(residents.creator(uid.wrapping_add(1), now), Creator::Gone, "another uid");
        assert!(matches!(Residents::default().creator(uid, 0), Creator::MayLive { .. }), "unread: kept");
        let mut waived = residents.clone();
        waived.waive_before(me, now + 10);
        assert_eq!(waived.creator(uid, now), Creator::Waived { pid: me, started: now + 10 });
        assert!(matches!(waived.creator(uid, now + 20), Creator::MayLive { .. }), "made after: not waived");
    }

    #[test]
    fn a_process_whose_namespace_cannot_be_read_counts_in_every_namespace() {
        let all = ByIpcNamespace { pids: [(1, vec![10, 11]), (2, vec![20])].into(), anywhere: vec![99] };
        assert_eq!(all.residents(1), [10, 11, 99]);
        assert_eq!(all.residents(2), [20, 99]);
        assert_eq!(all.residents(3), [99]);
        // This process's own namespace holds at least this process.
        let me = std::process::id();
        let own =
            std::fs::metadata("/proc/self/ns/ipc").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
        assert!(by_ipc_namespace(Path::new("/proc")).residents(own).contains(&me));
    }

    #[test]
    fn a_reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let mut p = Processes::new(Path::new("/proc"));
        // The pid could be reused in between, but not by a process started before now - 10 s.
        assert_eq!(p.alive(pid, crate::unix_now() - 10), Alive::Dead);
    }
}

//! The daemon's census loop body: one census per watched namespace, each namespace's
//! [`Census`] kept between passes so removals can be noticed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipcwatch_sampler::namespaces::Visitor;
use ipcwatch_sampler::{Sampler, SamplerConfig};

use crate::census::{Census, Gathered, Pass};
use crate::HoldersConfig;

/// One namespace's latest census.
#[derive(Debug)]
pub struct NamespaceHolders {
    pub inode: u64,
    /// The `ipc_namespace` label value (the inode in decimal).
    pub label: Arc<str>,
    pub pass: Pass,
    /// The `/dev/shm` of the namespace's processes: its biggest files and the unused ones.
    /// Shared by every IPC namespace of the mount namespace it was listed in.
    pub dev_shm: Option<Arc<crate::DevShmFiles>>,
}

/// Every namespace's latest census, as the exporter serves it.
#[derive(Debug, Default)]
pub struct HoldersPublished {
    pub namespaces: Vec<Arc<NamespaceHolders>>,
    /// Namespaces that could not be entered in the last round.
    pub visits_failed: u64,
    /// How long the last round took, all namespaces together.
    pub duration_seconds: f64,
    /// Unix seconds the last round ended.
    pub timestamp: i64,
    /// RLIMIT_MSGQUEUE (soft, bytes; `u64::MAX` for unlimited) of each uid that owns POSIX
    /// queues, read from one of its processes; uids with no process are left out.
    pub mqueue_user_limits: Vec<(u32, u64)>,
    /// Walks of procfs the last round made (one for every namespace together, and one more
    /// for the RLIMIT_MSGQUEUE of POSIX queues' owners when there are any).
    pub proc_walks: u64,
    /// /dev/shm listings the last round made: one per mount namespace, however many IPC
    /// namespaces share it.
    pub dev_shm_listings: u64,
}

/// Runs census rounds from the calling thread (which must stay the same: namespace visits
/// move only the thread that makes them).
pub struct Watch {
    config: HoldersConfig,
    procfs: PathBuf,
    sampler: Sampler,
    visitor: Option<Visitor>,
    censuses: HashMap<u64, Census>,
    /// What each mount on the way to a /dev/shm is, kept between rounds: otherwise each
    /// round reads a mountinfo per mount walked through.
    mount_kinds: ipcwatch_sampler::posix::MountKinds,
    /// Each mount namespace's process that could not be read and shared it in the last
    /// round: asked first in the next (one is enough to leave its /dev/shm files unjudged).
    unread_sharers: HashMap<u64, u32>,
}

impl Watch {
    pub fn new(sampler: SamplerConfig, config: HoldersConfig) -> Watch {
        let procfs = sampler.procfs.clone();
        let visitor = Visitor::new(&procfs).ok();
        // The full walk: per-segment memory is not needed, every array is. POSIX queues are
        // the sampler's (their owners come with the targets): read here too, they would cost
        // a private mount and a /proc/sys lookup per namespace and pass.
        let sampler = Sampler::new(SamplerConfig {
            semaphore_detail: true,
            segment_memory: false,
            posix: false,
            ..sampler
        });
        Watch {
            config,
            procfs,
            sampler,
            visitor,
            censuses: HashMap::new(),
            mount_kinds: Default::default(),
            unread_sharers: HashMap::new(),
        }
    }

    pub fn set_config(&mut self, config: HoldersConfig) {
        self.config = config;
        for c in self.censuses.values_mut() {
            c.set_config(config);
        }
    }

    /// The caller's own namespace inode (0 if /proc cannot say).
    pub fn home_inode(&self) -> u64 {
        self.visitor.as_ref().map_or(0, |v| v.home_inode)
    }

    /// One round over `targets` (inode and pids to enter through). Namespaces no longer
    /// listed are forgotten. `queue_owners`: the uids that own POSIX queues anywhere (from
    /// the sampler), whose RLIMIT_MSGQUEUE is looked up.
    pub fn round(&mut self, targets: &[(u64, Vec<u32>)], queue_owners: &[u32]) -> HoldersPublished {
        let started = Instant::now();
        self.censuses.retain(|inode, _| targets.iter().any(|(i, _)| i == inode));
        let mut out = HoldersPublished::default();
        let home = self.home_inode();
        let mut queue_owners = queue_owners.to_vec();
        // At most one walk of /proc: the creator rule's processes by IPC namespace (read only
        // where an object is idle long enough to be stale), and the processes that share each
        // mount namespace (the users of its /dev/shm files). None where nothing needs them.
        let mut walk = Walk { procfs: &self.procfs, walked: None };
        let mut objects = 0;
        let mut dev_shm_by_mount: HashMap<u64, Option<Arc<crate::DevShmFiles>>> = HashMap::new();
        // The thread's own namespace, opened once a round rather than once a visit.
        let home_ns = self.visitor.as_ref().and_then(|v| v.home().ok());
        for (inode, pids) in targets {
            let gathered = match (&self.visitor, &home_ns) {
                (Some(v), Some(ns)) => v.visit_from(ns, *inode, pids, || Gathered::take(&mut self.sampler)),
                (Some(v), None) => v.visit(*inode, pids, || Gathered::take(&mut self.sampler)),
                (None, _) if *inode == home => Ok(Gathered::take(&mut self.sampler)),
                (None, _) => continue,
            };
            let mut gathered = match gathered {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!(namespace = inode, error = %e, "census: cannot enter the namespace");
                    out.visits_failed += 1;
                    continue;
                }
            };
            objects += gathered.snapshot.semaphores.as_ref().map_or(0, |s| s.items.len())
                + gathered.snapshot.message_queues.as_ref().map_or(0, |q| q.items.len())
                + gathered.snapshot.shared_memory.as_ref().map_or(0, |m| m.items.len());
            if gathered.needs_residents(crate::unix_now(), self.config.thresholds) {
                gathered.residents =
                    crate::Residents::read(&self.procfs, &walk.get().by_ipc.residents(*inode));
            }
            let census =
                self.censuses.entry(*inode).or_insert_with(|| Census::new(&self.procfs, self.config));
            let pass = census.pass(&gathered, crate::unix_now(), self.config.thresholds);
            // IPC namespaces that share a mount namespace (PrivateIPC= units, unshare --ipc
            // jobs) share its /dev/shm: it is listed, and its users' maps read, once a round.
            let dev_shm = pids.first().copied().or((*inode == home).then(std::process::id)).and_then(|pid| {
                let mnt = crate::devshm::mount_namespace(&self.procfs, pid)?;
                dev_shm_by_mount
                    .entry(mnt)
                    .or_insert_with(|| {
                        out.dev_shm_listings += 1;
                        let users = || walk.get().mount_users(mnt);
                        let suspect = self.unread_sharers.get(&mnt).copied();
                        let files = crate::dev_shm_files(
                            &self.procfs,
                            pid,
                            mnt,
                            &mut self.mount_kinds,
                            suspect,
                            users,
                        );
                        if let Some(why) = files.as_ref().and_then(|f| f.unproven.as_deref()) {
                            tracing::debug!(mnt_namespace = mnt, "census: /dev/shm files not judged: {why}");
                        }
                        files.map(Arc::new)
                    })
                    .clone()
            });
            out.namespaces.push(Arc::new(NamespaceHolders {
                inode: *inode,
                label: inode.to_string().into(),
                pass,
                dev_shm,
            }));
        }
        out.proc_walks += u64::from(walk.walked.is_some());
        self.unread_sharers = dev_shm_by_mount
            .iter()
            .filter_map(|(mnt, files)| Some((*mnt, files.as_ref()?.unread_sharer?)))
            .collect();
        queue_owners.sort_unstable();
        queue_owners.dedup();
        out.proc_walks += u64::from(!queue_owners.is_empty());
        out.mqueue_user_limits = msgqueue_limits(&self.procfs, &queue_owners);
        // A census of 32,000 objects, or of a thousand namespaces, allocates megabytes for a
        // moment, once a minute: handed back. A small one's pages are kept for the next
        // (handing back and faulting in again cost more than its whole walk).
        if objects > BIG_ROUND_OBJECTS || targets.len() > BIG_ROUND_NAMESPACES {
            ipcwatch_sampler::objects::release_free_memory();
        }
        out.duration_seconds = started.elapsed().as_secs_f64();
        out.timestamp = crate::unix_now();
        out
    }
}

/// Rounds over more objects or namespaces than these hand their freed memory back.
const BIG_ROUND_OBJECTS: usize = 1024;
const BIG_ROUND_NAMESPACES: usize = 16;

/// A round's walk of /proc (see [`crate::walk_namespaces`]), made when first needed.
struct Walk<'a> {
    procfs: &'a std::path::Path,
    walked: Option<crate::Walked>,
}

impl Walk<'_> {
    fn get(&mut self) -> &crate::Walked {
        self.walked.get_or_insert_with(|| crate::walk_namespaces(self.procfs, true))
    }
}

/// Each of `uids`' RLIMIT_MSGQUEUE, from the first of its processes found under `procfs`
/// (the limit is per process; a user's processes normally share it). `u64::MAX` is unlimited.
pub fn msgqueue_limits(procfs: &std::path::Path, uids: &[u32]) -> Vec<(u32, u64)> {
    let mut out: Vec<(u32, u64)> = Vec::new();
    if uids.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir(procfs) else { return out };
    let mut text = String::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let base = procfs.join(pid);
        if ipcwatch_sampler::read_text(&base.join("status"), &mut text).is_err() {
            continue;
        }
        let Some(uid) = real_uid(&text) else { continue };
        if !uids.contains(&uid) || out.iter().any(|(u, _)| *u == uid) {
            continue;
        }
        if ipcwatch_sampler::read_text(&base.join("limits"), &mut text).is_err() {
            continue;
        }
        if let Some(limit) = msgqueue_limit(&text) {
            out.push((uid, limit));
            if out.len() == uids.len() {
                break;
            }
        }
    }
    out.sort_unstable();
    out
}

/// The real uid from /proc/PID/status (`Uid:\treal\teffective\tsaved\tfs`).
pub fn real_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// The soft "Max msgqueue size" from /proc/PID/limits (`unlimited` is `u64::MAX`).
pub fn msgqueue_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max msgqueue size"))?;
    match line.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_uids_parse_from_proc_text() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max msgqueue size         819200               819200               bytes     \n";
        assert_eq!(msgqueue_limit(limits), Some(819_200));
        assert_eq!(
            msgqueue_limit("Max msgqueue size         unlimited   unlimited  bytes\n"),
            Some(u64::MAX)
        );
        assert_eq!(msgqueue_limit("nothing"), None);
        assert_eq!(real_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(real_uid("Uid:"), None);
        // This process's own limit is found.
        let me = real_uid(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        let found = msgqueue_limits(std::path::Path::new("/proc"), &[me]);
        assert_eq!(found.len(), 1);
    }
}

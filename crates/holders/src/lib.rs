//! Who holds System V IPC, and what nobody holds any more.
//!
//! A *census* runs on its own slow clock (default every 60 s), never per second: it walks
//! every object of a namespace, reads the last-operation pid of every semaphore
//! (`semctl GETPID`), and asks whether each pid that created or last used an object still
//! runs. From that it derives:
//! * usage by owner (top N owners, the rest as `other`);
//! * *stale* semaphore arrays and queues: unused for `stale_after` and every pid that last
//!   touched them is gone;
//! * *orphaned* segments: nothing attached for longer than `orphan_after`;
//! * segments removed but still attached, and objects removed while a process that used
//!   them still ran (systemd-logind's `RemoveIPC=yes` case).
//!
//! [`prune`] removes stale objects, re-checking each one at the moment of removal.

#![forbid(unsafe_code)]

mod census;
mod devshm;
pub(crate) mod processes;
mod prune;
mod report;
mod watch;

pub use census::{Census, Gathered, Pass, PidUse, StaleObject};
pub use devshm::{
    dev_shm_files, processes_of_mount_namespace, prune_files, stale_files, DevShmFiles, FilePrune,
    ShmFileUse, StaleFile, LARGEST_FILES,
};
/// A pass's owner figures, defined with the figure table they are charted and exported by.
pub use ipcwatch_charts::owners::{OwnerUsage, Usage};
pub use processes::{
    boot_time, by_ipc_namespace, effective_uid, start_ticks, walk_namespaces, Alive, Creator, MountUsers,
    Processes, Residents, Walked,
};
pub use prune::{prune, Filter, Outcome, PruneReport};
pub use report::{age, stale_objects, text, NamespaceCensus, Scope};
pub use watch::{msgqueue_limit, msgqueue_limits, real_uid, HoldersPublished, NamespaceHolders, Watch};

/// What the census thread keeps: entering namespaces (CAP_SYS_ADMIN, CAP_SYS_PTRACE), and
/// CAP_IPC_OWNER, without which `semctl GETPID` fails on arrays the daemon's user cannot read.
pub const CENSUS_CAPABILITIES: u64 = ipcwatch_sampler::namespaces::VISIT_CAPABILITIES | (1 << 15);

/// How long an object must be unused before it counts as stale or orphaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Seconds a semaphore array or queue must be unused (and its last users gone).
    pub stale_after: i64,
    /// Seconds a segment must have had nothing attached.
    pub orphan_after: i64,
}

impl Thresholds {
    /// One age for both (`--older-than`).
    pub fn both(seconds: i64) -> Thresholds {
        Thresholds { stale_after: seconds, orphan_after: seconds }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::both(3600)
    }
}

/// The census's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldersConfig {
    pub thresholds: Thresholds,
    /// Owners reported by name; the rest are summed as `other`.
    pub max_owners: usize,
}

impl Default for HoldersConfig {
    fn default() -> Self {
        HoldersConfig { thresholds: Thresholds::default(), max_owners: 20 }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

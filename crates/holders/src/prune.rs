//! Removing stale objects safely: only what is stale at the moment of removal, re-checked
//! object by object, and never anything a live process created, attached or last used.

use std::path::Path;

use ipcwatch_sampler::{objects, Kind, MessageQueues, Semaphores, SharedMemory, Snapshot};
use serde::Serialize;

use crate::census::{Census, Gathered, StaleObject};
use crate::{HoldersConfig, Thresholds};

/// Which stale objects to act on. Empty lists and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A user name or a uid.
    pub owner: Option<String>,
    pub kinds: Vec<Kind>,
    pub ids: Vec<i32>,
    /// The operator's evidence for leaks the creator rule keeps: arrays and queues made
    /// before this process (the server running now) started are not held by the older
    /// processes of their creator's uid.
    pub created_before_start_of: Option<u32>,
    /// `prune` also removes left-over /dev/shm files (listed by `snapshot --stale` always).
    pub dev_shm: bool,
}

impl Filter {
    pub fn matches(&self, o: &StaleObject) -> bool {
        let owner_ok = self.owner.as_deref().is_none_or(|w| *o.owner_name == *w || o.owner.to_string() == w);
        owner_ok
            && (self.kinds.is_empty() || self.kinds.contains(&o.kind))
            && (self.ids.is_empty() || self.ids.contains(&o.id))
    }
}

/// What happened to one candidate.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// A dry run: it would be removed.
    WouldRemove,
    Removed,
    /// IPC_RMID was done, but a process attached the segment in the microseconds between the
    /// last check and the removal: it lives on (key gone) until that process detaches.
    RemovedWhileAttached,
    /// Not removed: it is not stale (any more), or a recorded process may still use it.
    Kept(String),
    /// The removal call failed.
    Failed(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    #[serde(flatten)]
    pub object: StaleObject,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Acts on `candidates` (from a census of the caller's namespace): with `yes`, each one is
/// re-read and re-judged immediately before its removal and removed only if it is still the
/// same object and still stale with every recorded process dead. Without `yes`, reports what
/// would be removed. Run it in the objects' namespace.
pub fn prune(
    procfs: &Path,
    candidates: &[StaleObject],
    thresholds: Thresholds,
    yes: bool,
    residents: &crate::Residents,
) -> Vec<PruneReport> {
    candidates
        .iter()
        .map(|o| {
            let outcome = match recheck(procfs, o, thresholds, residents) {
                Err(reason) => Outcome::Kept(reason),
                Ok(_) if !yes => Outcome::WouldRemove,
                Ok(checked) => remove_unchanged(o, checked),
            };
            PruneReport { object: o.clone(), outcome }
        })
        .collect()
}

/// What shows an object's use: its times and, for a segment, its attachments. The same stamp
/// before and after a check means nothing used it in between.
type Stamp = (i64, i64, i64, u64);

fn stamp(kind: Kind, id: i32) -> Option<Stamp> {
    match kind {
        Kind::Semaphores => {
            objects::semaphore_array(id).ok()?.map(|a| (a.last_op_time, a.changed_time, 0, 0))
        }
        Kind::MessageQueue => objects::message_queue(id)
            .ok()?
            .map(|q| (q.last_send_time, q.last_recv_time, q.changed_time, q.messages)),
        Kind::SharedMemory => {
            objects::segment(id).ok()?.map(|s| (s.attach_time, s.detach_time, s.changed_time, s.attached))
        }
    }
}

/// Removes `o` if its stamp is still the one the re-check judged: one syscall before
/// IPC_RMID, so what can still slip in between is a use in those microseconds. A segment
/// attached in that gap is reported as such, never as removed.
fn remove_unchanged(o: &StaleObject, checked: Stamp) -> Outcome {
    if stamp(o.kind, o.id) != Some(checked) {
        return Outcome::Kept("it was used while it was being checked".into());
    }
    if let Err(e) = objects::remove(o.kind, o.id) {
        return Outcome::Failed(e.to_string());
    }
    // IPC_RMID on an attached segment only marks it: it stays (destroyed) until detached.
    let attached = o.kind == Kind::SharedMemory
        && objects::segment(o.id).ok().flatten().is_some_and(|s| s.destroyed && s.attached > 0);
    if attached {
        Outcome::RemovedWhileAttached
    } else {
        Outcome::Removed
    }
}

/// Whether `o` is, right now, the same object and still removable; its stamp then.
/// `residents` were read once for the whole prune: a process that starts later cannot
/// predate an object that exists already, so it cannot be its creator.
fn recheck(
    procfs: &Path,
    o: &StaleObject,
    thresholds: Thresholds,
    residents: &crate::Residents,
) -> Result<Stamp, String> {
    let gone = || "it no longer exists".to_string();
    let read_failed = |e: std::io::Error| format!("cannot read it: {e}");
    let mut snapshot = Snapshot::default();
    // A fresh read of just this object, judged by a fresh census: no cached liveness.
    match o.kind {
        Kind::Semaphores => {
            let a = objects::semaphore_array(o.id).map_err(read_failed)?.ok_or_else(gone)?;
            snapshot.semaphores = Some(Semaphores { arrays: 1, semaphores: a.semaphores, items: vec![a] });
        }
        Kind::MessageQueue => {
            let q = objects::message_queue(o.id).map_err(read_failed)?.ok_or_else(gone)?;
            snapshot.message_queues = Some(MessageQueues {
                queues: 1,
                messages: q.messages,
                bytes: q.bytes,
                full_queues: 0,
                items: vec![q],
            });
        }
        Kind::SharedMemory => {
            let s = objects::segment(o.id).map_err(read_failed)?.ok_or_else(gone)?;
            snapshot.shared_memory =
                Some(SharedMemory { segments: 1, bytes: s.size_bytes, items: vec![s], ..Default::default() });
        }
    }
    let mut gathered = Gathered::with_snapshot(snapshot);
    gathered.residents = residents.clone();
    let mut census = Census::new(procfs, HoldersConfig { thresholds, max_owners: 1 });
    let pass = census.pass(&gathered, crate::unix_now(), thresholds);
    let Some(now) = pass.stale.iter().find(|n| n.id == o.id) else {
        return Err(match pass.pids_unknown {
            0 => format!("it is in use or was used within {}", duration(thresholds, o.kind)),
            _ => "its semaphores' last pids cannot be read (needs read permission or CAP_IPC_OWNER)".into(),
        });
    };
    if now.key != o.key || now.owner != o.owner {
        return Err("its id now belongs to a different object".into());
    }
    if !now.prunable {
        let live: Vec<String> = now
            .pids
            .iter()
            .filter(|p| p.alive != crate::Alive::Dead)
            .map(|p| {
                format!(
                    "{} pid {} is {}",
                    p.role,
                    p.pid,
                    if p.alive == crate::Alive::Alive { "alive" } else { "unknown" }
                )
            })
            .collect();
        return Err(live.join(", "));
    }
    // The stamp is read after the judgment: a use in between makes the removal refuse.
    stamp(o.kind, o.id).ok_or_else(|| "it no longer exists".to_string())
}

fn duration(t: Thresholds, kind: Kind) -> String {
    let s = if kind == Kind::SharedMemory { t.orphan_after } else { t.stale_after };
    format!("{s}s")
}

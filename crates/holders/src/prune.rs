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
) -> Vec<PruneReport> {
    candidates
        .iter()
        .map(|o| {
            let outcome = match recheck(procfs, o, thresholds) {
                Err(reason) => Outcome::Kept(reason),
                Ok(()) if !yes => Outcome::WouldRemove,
                Ok(()) => match objects::remove(o.kind, o.id) {
                    Ok(()) => Outcome::Removed,
                    Err(e) => Outcome::Failed(e.to_string()),
                },
            };
            PruneReport { object: o.clone(), outcome }
        })
        .collect()
}

/// Whether `o` is, right now, the same object and still removable.
fn recheck(procfs: &Path, o: &StaleObject, thresholds: Thresholds) -> Result<(), String> {
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
    let gathered = Gathered::with_snapshot(snapshot);
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
    Ok(())
}

fn duration(t: Thresholds, kind: Kind) -> String {
    let s = if kind == Kind::SharedMemory { t.orphan_after } else { t.stale_after };
    format!("{s}s")
}

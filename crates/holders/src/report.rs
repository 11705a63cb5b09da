//! The `snapshot --stale` and `prune` commands' work: censuses of one or every namespace,
//! and their text form.

use std::fmt::Write as _;
use std::path::Path;

use ipcwatch_sampler::namespaces::{self, Identity, Visitor};
use ipcwatch_sampler::{Sampler, SamplerConfig};
use serde::Serialize;

use crate::census::{Census, Gathered, Pass, StaleObject};
use crate::prune::{prune, Filter, Outcome, PruneReport};
use crate::{HoldersConfig, Thresholds};

/// Which namespaces a command looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The caller's own IPC namespace (no privileges needed).
    Own,
    /// Every namespace on the host (CAP_SYS_ADMIN to enter, CAP_SYS_PTRACE to find).
    All,
    /// One namespace by inode.
    One(u64),
}

/// One namespace's census, or why it could not be taken.
#[derive(Debug, Serialize)]
pub struct NamespaceCensus {
    pub namespace: Identity,
    /// The objects listed (stale and orphaned ones, after the filter).
    pub objects: Vec<StaleObject>,
    /// For `prune`: what happened to each object listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<PruneReport>,
    /// Left-over files of the namespace's /dev/shm (no process of its mount namespace maps
    /// or holds them open, unmodified for orphan_after), after the owner filter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dev_shm_files: Vec<crate::StaleFile>,
    /// For `prune --dev-shm`: what happened to each of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned_files: Vec<crate::FilePrune>,
    /// Why its /dev/shm files were not judged (none is listed): not an error, the evidence
    /// needed is out of reach (another user's process, without root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_shm_not_judged: Option<String>,
    pub error: Option<String>,
}

/// Lists the stale and orphaned objects in `scope` that `filter` picks; with `act`, prunes
/// them too (`yes`: really remove).
pub fn stale_objects(
    config: SamplerConfig,
    pod_logs: &Path,
    scope: Scope,
    thresholds: Thresholds,
    filter: &Filter,
    act: Option<bool>,
) -> std::io::Result<Vec<NamespaceCensus>> {
    let procfs = config.procfs.clone();
    let visitor = Visitor::new(&procfs)?;
    let mut sampler = Sampler::new(SamplerConfig { semaphore_detail: true, ..config });
    let targets: Vec<(Identity, Vec<u32>)> = match scope {
        Scope::Own => vec![(own_identity(visitor.home_inode), Vec::new())],
        Scope::All | Scope::One(_) => {
            let found = namespaces::scan(&procfs, pod_logs)?;
            let mut t: Vec<_> = found
                .namespaces
                .into_iter()
                .filter(|f| match scope {
                    Scope::One(inode) => f.identity.inode == inode,
                    _ => true,
                })
                .map(|f| (f.identity, f.pids))
                .collect();
            if let (Scope::One(inode), true) = (scope, t.is_empty()) {
                if inode != visitor.home_inode {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no process is in IPC namespace {inode} (see `ipcwatch snapshot --all-namespaces`)"),
                    ));
                }
                t.push((own_identity(inode), Vec::new()));
            }
            t.sort_by_key(|(i, _)| (i.inode != visitor.home_inode, i.inode));
            t
        }
    };
    let now = crate::unix_now();
    let holders = HoldersConfig { thresholds, max_owners: usize::MAX };
    // The operator's evidence: the start of the process named by --created-before-start-of.
    let waive = match filter.created_before_start_of {
        Some(pid) => Some((
            pid,
            crate::processes::start_of(&procfs, pid).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("--created-before-start-of: no process {pid} under {}", procfs.display()),
                )
            })?,
        )),
        None => None,
    };
    // One walk of /proc for every namespace's processes (the creator rule).
    let by_ipc = crate::by_ipc_namespace(&procfs);
    let mut out = Vec::with_capacity(targets.len());
    for (identity, pids) in targets {
        let visit = visitor.visit(identity.inode, &pids, || {
            let mut gathered = Gathered::take(&mut sampler);
            gathered.residents = crate::Residents::read(&procfs, &by_ipc.residents(identity.inode));
            if let Some((pid, started)) = waive {
                gathered.residents.waive_before(pid, started);
            }
            let pass: Pass = Census::new(&procfs, holders).pass(&gathered, now, thresholds);
            let mut objects: Vec<StaleObject> =
                pass.stale.into_iter().filter(|o| filter.matches(o)).collect();
            if identity.inode != visitor.home_inode {
                for o in &mut objects {
                    o.ipcrm = format!("nsenter --target {} --ipc {}", identity.pid, o.ipcrm);
                }
            }
            let pruned = match act {
                Some(yes) => prune(&procfs, &objects, thresholds, yes, &gathered.residents),
                None => Vec::new(),
            };
            let error = (!gathered.snapshot.ok()).then(|| {
                let failed: Vec<String> = gathered
                    .snapshot
                    .collectors
                    .iter()
                    .filter_map(|c| c.error.as_deref().map(str::to_string))
                    .collect();
                format!("partly read: {}", failed.join("; "))
            });
            (objects, pruned, error)
        });
        // /dev/shm belongs to the mount namespace, reached through the namespace's process.
        let mut names = ipcwatch_sampler::UserNames::default();
        let judged = if filter.kinds.is_empty() && filter.ids.is_empty() {
            crate::stale_files(&procfs, identity.pid, thresholds.orphan_after, &mut names)
        } else {
            Ok(Vec::new())
        };
        let owned = |f: &crate::StaleFile| {
            filter.owner.as_deref().is_none_or(|w| *f.owner_name == *w || f.file.owner.to_string() == w)
        };
        let (files, files_error) = match judged {
            Ok(files) => (files.into_iter().filter(owned).collect(), None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let pruned_files = match act {
            Some(yes) if filter.dev_shm => crate::prune_files(&procfs, identity.pid, &files, yes),
            _ => Vec::new(),
        };
        out.push(match visit {
            Ok((objects, pruned, error)) => NamespaceCensus {
                namespace: identity,
                objects,
                pruned,
                dev_shm_files: files,
                pruned_files,
                dev_shm_not_judged: files_error,
                error,
            },
            Err(e) => NamespaceCensus {
                namespace: identity,
                objects: Vec::new(),
                pruned: Vec::new(),
                dev_shm_files: files,
                pruned_files,
                dev_shm_not_judged: files_error,
                error: Some(e.to_string()),
            },
        });
    }
    Ok(out)
}

fn own_identity(inode: u64) -> Identity {
    Identity {
        inode,
        host: inode == namespaces::INIT_IPC_NAMESPACE,
        pid: std::process::id(),
        comm: "ipcwatch".into(),
        ..Default::default()
    }
}

/// `1h2m`, `45s`, `3d4h`: an age as people read it.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The text table of `snapshot --stale` and `prune`.
pub fn text(all: &[NamespaceCensus], pruning: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:<4} {:<10} {:>8} {:<10} {:>12} {:<8} {:>7}  {:<28} {}",
        "NAMESPACE",
        "KIND",
        "KEY",
        "ID",
        "OWNER",
        "SIZE",
        "STATE",
        "IDLE",
        "PIDS",
        if pruning { "RESULT" } else { "REMOVE WITH" }
    );
    let mut listed = 0;
    for n in all {
        if let Some(e) = &n.error {
            let _ = writeln!(out, "{:<11} not read: {e}", n.namespace.inode);
        }
        if let Some(why) = &n.dev_shm_not_judged {
            let _ = writeln!(out, "{:<11} /dev/shm files not judged: {why}", n.namespace.inode);
        }
        for (i, o) in n.objects.iter().enumerate() {
            listed += 1;
            let pids = if o.pids.is_empty() {
                "none".to_string()
            } else {
                o.pids
                    .iter()
                    .map(|p| format!("{} {} {}", p.role, p.pid, p.alive.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let last = match n.pruned.get(i).map(|p| &p.outcome) {
                Some(o) => outcome_text(o),
                None => o.ipcrm.clone(),
            };
            let _ = writeln!(
                out,
                "{:<11} {:<4} {:<10} {:>8} {:<10} {:>12} {:<8} {:>7}  {:<28} {}",
                n.namespace.inode,
                o.kind.short(),
                o.key.to_string(),
                o.id,
                o.owner_name,
                o.size,
                o.state,
                age(o.idle_seconds),
                pids,
                last
            );
            let _ = writeln!(out, "{:<11} evidence: {}", "", o.evidence);
        }
        for (i, f) in n.dev_shm_files.iter().enumerate() {
            listed += 1;
            let last = match (pruning, n.pruned_files.get(i).map(|p| &p.outcome)) {
                (_, Some(o)) => outcome_text(o),
                (true, None) => "kept: prune takes files with --dev-shm only".to_string(),
                (false, None) => f.remove.clone(),
            };
            let _ = writeln!(
                out,
                "{:<11} {:<4} {:<10} {:>8} {:<10} {:>12} {:<8} {:>7}  {:<28} {}",
                n.namespace.inode,
                "file",
                "-",
                "-",
                f.owner_name,
                f.file.bytes,
                "unused",
                age(f.idle_seconds),
                format!("/dev/shm/{}", f.file.name),
                last
            );
            let _ = writeln!(out, "{:<11} evidence: {}", "", f.evidence);
        }
    }
    if listed == 0 {
        out.push_str("no stale or orphaned objects\n");
    }
    out
}

/// What prune did, in words.
fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::WouldRemove => "would remove (dry run; --yes removes)".to_string(),
        Outcome::Removed => "removed".to_string(),
        Outcome::RemovedWhileAttached => {
            "removed, but attached in the last microseconds: it lives until detached".to_string()
        }
        Outcome::Kept(why) => format!("kept: {why}"),
        Outcome::Failed(why) => format!("failed: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(3725), "1h2m");
        assert_eq!(age(90_000), "1d1h");
    }
}

//! Which `/dev/shm` files anything still uses: a file no process of its mount namespace maps
//! or holds open is left over (a crashed PostgreSQL's dynamic shared memory, a pod's leaked
//! segments) and fills the tmpfs for nobody. Checked on the census's clock: reading every
//! process's maps costs about 1 µs per mapping.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ipcwatch_sampler::posix::{open_dev_shm, ShmFile};
use serde::Serialize;

/// Files reported by name per namespace (the biggest).
pub const LARGEST_FILES: usize = 5;

/// A namespace's `/dev/shm` files, as the census sees them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DevShmFiles {
    pub mnt_namespace: u64,
    /// The biggest files, with whether anything uses them.
    pub largest: Vec<ShmFileUse>,
    /// Files no process of the mount namespace maps or holds open, and their bytes.
    pub unused_files: u64,
    pub unused_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShmFileUse {
    #[serde(flatten)]
    pub file: ShmFile,
    pub in_use: bool,
}

/// Every process under `procfs`, grouped by mount namespace inode.
pub fn processes_by_mount_namespace(procfs: &Path) -> HashMap<u64, Vec<u32>> {
    crate::walk_namespaces(procfs, true).1
}

pub use ipcwatch_sampler::posix::mount_namespace_of as mount_namespace;

/// The inodes among `files` (of device `dev`) that one of `pids` maps or holds open. Stops
/// once every file is found in use.
fn in_use(procfs: &Path, pids: &[u32], dev: u64, files: &HashSet<u64>, text: &mut String) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    // glibc's dev_t encoding, as /proc/PID/maps prints it (hex major:minor).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let wanted = format!("{major:02x}:{minor:02x}");
    for pid in pids {
        if inodes.len() == files.len() {
            break;
        }
        let base = procfs.join(pid.to_string());
        let Ok(()) = ipcwatch_sampler::read_text(&base.join("maps"), text) else { continue };
        // No mapping at all: a kernel thread or a zombie, which holds no file open either.
        if text.is_empty() {
            continue;
        }
        // `addr perms offset dev inode path`: a /dev/shm mapping has its device.
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(d), Some(ino)) = (f.nth(3), f.next()) else { continue };
            if d == wanted {
                if let Some(ino) = ino.parse::<u64>().ok().filter(|i| files.contains(i)) {
                    inodes.insert(ino);
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            use std::os::unix::fs::MetadataExt;
            for fd in fds.flatten() {
                if let Ok(m) = std::fs::metadata(fd.path()) {
                    if m.dev() == dev && files.contains(&m.ino()) {
                        inodes.insert(m.ino());
                    }
                }
            }
        }
    }
    inodes
}

/// The `/dev/shm` that `pid` sees, with the files `users` (its mount namespace's processes,
/// asked for only when there are files) use. `None` if it cannot be read.
pub fn dev_shm_files(
    procfs: &Path,
    pid: u32,
    mnt_namespace: u64,
    users: impl FnOnce() -> Vec<u32>,
) -> Option<DevShmFiles> {
    let files = open_dev_shm(procfs, pid, &mut Default::default()).and_then(|d| d.list()).ok()?;
    let mut out = DevShmFiles { mnt_namespace, ..Default::default() };
    let Some(dev) = files.first().map(|f| f.dev) else { return Some(out) };
    let mut text = String::new();
    let listed: HashSet<u64> = files.iter().map(|f| f.ino).collect();
    let used = in_use(procfs, &users(), dev, &listed, &mut text);
    let mut all: Vec<ShmFileUse> =
        files.into_iter().map(|f| ShmFileUse { in_use: used.contains(&f.ino), file: f }).collect();
    for f in all.iter().filter(|f| !f.in_use) {
        out.unused_files += 1;
        out.unused_bytes = out.unused_bytes.saturating_add(f.file.bytes);
    }
    all.sort_by(|a, b| b.file.bytes.cmp(&a.file.bytes).then_with(|| a.file.name.cmp(&b.file.name)));
    all.truncate(LARGEST_FILES);
    out.largest = all;
    Some(out)
}

/// A `/dev/shm` file nothing uses, old enough to be called left over.
#[derive(Debug, Clone, Serialize)]
pub struct StaleFile {
    #[serde(flatten)]
    pub file: ShmFile,
    pub owner_name: std::sync::Arc<str>,
    pub idle_seconds: i64,
    pub evidence: String,
    /// The command that removes it, from the host.
    pub remove: String,
}

/// What happened to one left-over file (`prune --dev-shm`).
#[derive(Debug, Clone, Serialize)]
pub struct FilePrune {
    pub name: String,
    #[serde(flatten)]
    pub outcome: crate::Outcome,
}

/// The files of the `/dev/shm` that `pid` sees that no process of its mount namespace maps
/// or holds open, and that nobody modified for `older_than` seconds.
pub fn stale_files(
    procfs: &Path,
    pid: u32,
    older_than: i64,
    names: &mut ipcwatch_sampler::UserNames,
) -> Option<Vec<StaleFile>> {
    let mnt = mount_namespace(procfs, pid)?;
    let users = processes_by_mount_namespace(procfs).remove(&mnt).unwrap_or_default();
    let files = open_dev_shm(procfs, pid, &mut Default::default()).and_then(|d| d.list()).ok()?;
    let Some(dev) = files.first().map(|f| f.dev) else { return Some(Vec::new()) };
    let now = crate::unix_now();
    let old: HashSet<u64> = files.iter().filter(|f| now - f.modified >= older_than).map(|f| f.ino).collect();
    let used = in_use(procfs, &users, dev, &old, &mut String::new());
    Some(
        files
            .into_iter()
            .filter(|f| !used.contains(&f.ino) && now - f.modified >= older_than)
            .map(|f| StaleFile {
                owner_name: names.name(f.owner),
                idle_seconds: (now - f.modified).max(0),
                evidence: format!(
                    "not modified for {}; none of the {} processes of mount namespace {mnt} maps it or holds it open",
                    crate::age(now - f.modified),
                    users.len()
                ),
                remove: format!("nsenter --target {pid} --mount rm -- '/dev/shm/{}'", f.name.replace('\'', "'\\''")),
                file: f,
            })
            .collect(),
    )
}

/// Removes `files` (from [`stale_files`] for the same `pid`), each re-judged just before:
/// still the same file, and still used by no process of the mount namespace.
pub fn prune_files(procfs: &Path, pid: u32, files: &[StaleFile], yes: bool) -> Vec<FilePrune> {
    use crate::Outcome;
    let dir = open_dev_shm(procfs, pid, &mut Default::default());
    files
        .iter()
        .map(|f| {
            let outcome = match &dir {
                Err(e) => Outcome::Failed(format!("/dev/shm: {e}")),
                Ok(_) if !yes => Outcome::WouldRemove,
                Ok(dir) => {
                    // A fresh look at who maps or holds it, right before the removal.
                    let users = mount_namespace(procfs, pid)
                        .and_then(|m| processes_by_mount_namespace(procfs).remove(&m))
                        .unwrap_or_default();
                    let this = HashSet::from([f.file.ino]);
                    if in_use(procfs, &users, f.file.dev, &this, &mut String::new()).contains(&f.file.ino) {
                        Outcome::Kept("a process maps it or holds it open now".into())
                    } else {
                        match dir.remove(&f.file) {
                            Ok(()) => Outcome::Removed,
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                                Outcome::Kept("another file has its name now".into())
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                Outcome::Kept("it no longer exists".into())
                            }
                            Err(e) => Outcome::Failed(e.to_string()),
                        }
                    }
                }
            };
            FilePrune { name: f.file.name.clone(), outcome }
        })
        .collect()
}

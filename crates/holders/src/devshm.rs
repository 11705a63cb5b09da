//! Which `/dev/shm` files anything still uses: a file no process of its mount namespace maps
//! or holds open is left over (a crashed PostgreSQL's dynamic shared memory, a pod's leaked
//! segments) and fills the tmpfs for nobody. Checked on the census's clock: asking the kernel
//! for a process's file mappings costs about 1 µs per mapping, twice that where its maps text
//! must be read (kernels before 6.11).

use std::collections::HashSet;
use std::path::Path;

use ipcwatch_sampler::posix::{open_dev_shm, MountKinds, ShmFile};

use crate::processes::MountUsers;
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
    /// Why files no process was seen to use are not called unused (they are counted in
    /// use): a process that may be in the mount namespace could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unproven: Option<String>,
    /// The process that could not be read and shares the mount namespace, if that is why:
    /// the next census asks it first.
    #[serde(skip)]
    pub unread_sharer: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShmFileUse {
    #[serde(flatten)]
    pub file: ShmFile,
    pub in_use: bool,
}

/// Every process under `procfs` that may share the mount namespace `mnt`.
pub fn processes_of_mount_namespace(procfs: &Path, mnt: u64) -> MountUsers {
    crate::walk_namespaces(procfs, true).mount_users(mnt)
}

pub use ipcwatch_sampler::posix::mount_namespace_of as mount_namespace;

/// What the processes that may share a mount namespace say of its files.
struct Uses {
    /// The inodes one of them maps or holds open.
    used: HashSet<u64>,
    /// Why the other files cannot be called unused, if they cannot: a process that may be in
    /// the mount namespace could not be read.
    unproven: Option<String>,
    /// The process that could not be read and shares the mount namespace, if one does.
    sharer: Option<u32>,
}

impl Uses {
    /// No file judged: `sharer` could not be read and shares the mount namespace (`why`).
    fn unjudged((sharer, why): (u32, String)) -> Uses {
        Uses { used: HashSet::new(), unproven: Some(why), sharer: Some(sharer) }
    }
}

/// Linux's errno for a process that is gone.
const ESRCH: i32 = 3;
/// Linux's errno for a /proc/PID/mountinfo whose process has no namespaces any more.
const EINVAL: i32 = 22;

/// A read that failed because the process ended (it holds nothing any more).
fn ended(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

/// The inodes among `files` (of device `dev`) that one of `users` maps or holds open, and
/// whether the rest are proven unused. `reader`: a process known to be in the mount
/// namespace. Stops once every file is found in use.
fn in_use(
    procfs: &Path,
    users: &MountUsers,
    reader: u32,
    dev: u64,
    files: &HashSet<u64>,
    text: &mut String,
) -> Uses {
    // One process that cannot be read and may be in the mount namespace leaves every file
    // unproven, whatever the others map: looked at first, it spares reading their maps.
    if let Some(sharer) = unread_sharer(procfs, reader, &users.unknown, text) {
        return Uses::unjudged(sharer);
    }
    let mut used = HashSet::new();
    let mut unreadable = 0usize;
    for pid in &users.known {
        if used.len() == files.len() {
            break;
        }
        let base = procfs.join(pid.to_string());
        let mapped = ipcwatch_sampler::objects::mapped_files(&base.join("maps"), text, |d, ino| {
            if d == dev && files.contains(&ino) {
                used.insert(ino);
            }
        });
        match mapped {
            Ok(()) => {}
            // Ended, or no memory (a kernel thread, a zombie), which holds no file open either.
            Err(ipcwatch_sampler::Error::Read { source, .. }) if ended(&source) => continue,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        }
        // The descriptors, each looked up in the open /proc/PID/fd.
        let fds = base.join("fd");
        match std::fs::File::open(&fds).and_then(|dir| Ok((std::fs::read_dir(&fds)?, dir))) {
            Ok((entries, dir)) => {
                for fd in entries.flatten() {
                    if let Ok((d, ino)) = ipcwatch_sampler::objects::file_at(&dir, &fd.file_name()) {
                        if d == dev && files.contains(&ino) {
                            used.insert(ino);
                        }
                    }
                }
            }
            Err(e) if ended(&e) => {}
            Err(_) => unreadable += 1,
        }
    }
    let unproven = (used.len() < files.len() && unreadable > 0)
        .then(|| format!("{unreadable} of its processes could not be read"));
    Uses { used, unproven, sharer: None }
}

/// Whether one of `unknown` (processes whose namespaces could not be read) may share the
/// mount namespace of process `reader`, and which. A mount belongs to one mount namespace,
/// and /proc/PID/mountinfo can be read without ptrace access: a process whose first mount is
/// one of `reader`'s is in its namespace; one whose first mount is not, is not.
fn unread_sharer(procfs: &Path, reader: u32, unknown: &[u32], text: &mut String) -> Option<(u32, String)> {
    if unknown.is_empty() {
        return None;
    }
    let mount_id = |line: &str| line.split(' ').next().and_then(|id| id.parse::<u64>().ok());
    // (Room for a whole mountinfo at once: an empty buffer reads it 32 bytes first, then
    // doubling.)
    text.reserve(8192);
    if ipcwatch_sampler::read_text(&procfs.join(reader.to_string()).join("mountinfo"), text).is_err() {
        return Some((reader, "its mounts could not be read".into()));
    }
    let ours: HashSet<u64> = text.lines().filter_map(mount_id).collect();
    let mut line = [0u8; 32];
    for pid in unknown {
        let first = std::fs::File::open(procfs.join(pid.to_string()).join("mountinfo")).and_then(|mut f| {
            use std::io::Read;
            let n = f.read(&mut line)?;
            Ok(std::str::from_utf8(&line[..n]).ok().and_then(mount_id))
        });
        match first {
            Ok(Some(id)) if !ours.contains(&id) => {}
            Err(e) if ended(&e) => {}
            // No namespaces any more: exiting, or a zombie (its memory and files are gone).
            Err(e) if e.raw_os_error() == Some(EINVAL) => {}
            _ => {
                let comm =
                    std::fs::read_to_string(procfs.join(pid.to_string()).join("comm")).unwrap_or_default();
                let comm: String = comm.trim_end().chars().filter(|c| !c.is_control()).take(16).collect();
                let why =
                    format!("process {pid} ({comm}), which could not be read, is in its mount namespace");
                return Some((*pid, why));
            }
        }
    }
    None
}

/// The `/dev/shm` that `pid` sees, with the files `users` (the processes that may share
/// its mount namespace, asked for only when there are files) use. `None` if it cannot be
/// read. `kinds` remembers the kinds of the mounts walked through. `suspect`: the last
/// census's [`DevShmFiles::unread_sharer`], asked first: where it still cannot be read and
/// shares the mount namespace, no file can be judged, and `users` is not asked (no walk of
/// /proc).
pub fn dev_shm_files(
    procfs: &Path,
    pid: u32,
    mnt_namespace: u64,
    kinds: &mut MountKinds,
    suspect: Option<u32>,
    users: impl FnOnce() -> MountUsers,
) -> Option<DevShmFiles> {
    let files = open_dev_shm(procfs, pid, kinds).and_then(|d| d.list()).ok()?;
    let mut out = DevShmFiles { mnt_namespace, ..Default::default() };
    let Some(dev) = files.first().map(|f| f.dev) else { return Some(out) };
    let mut text = String::new();
    let listed: HashSet<u64> = files.iter().map(|f| f.ino).collect();
    let unreadable =
        |p: u32| std::fs::read_link(procfs.join(p.to_string()).join("ns/ipc")).is_err_and(|e| !ended(&e));
    let suspected = suspect
        .filter(|p| unreadable(*p))
        .and_then(|p| unread_sharer(procfs, pid, &[p], &mut text))
        .map(Uses::unjudged);
    let uses = suspected.unwrap_or_else(|| in_use(procfs, &users(), pid, dev, &listed, &mut text));
    let proven = uses.unproven.is_none();
    let mut all: Vec<ShmFileUse> = files
        .into_iter()
        .map(|f| ShmFileUse { in_use: !proven || uses.used.contains(&f.ino), file: f })
        .collect();
    for f in all.iter().filter(|f| !f.in_use) {
        out.unused_files += 1;
        out.unused_bytes = out.unused_bytes.saturating_add(f.file.bytes);
    }
    out.unproven = uses.unproven;
    out.unread_sharer = uses.sharer;
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
/// or holds open, and that nobody modified for `older_than` seconds. `Err` says why none can
/// be judged: the /dev/shm cannot be read, or a process that may use it cannot.
pub fn stale_files(
    procfs: &Path,
    pid: u32,
    older_than: i64,
    names: &mut ipcwatch_sampler::UserNames,
) -> Result<Vec<StaleFile>, String> {
    let mnt = mount_namespace(procfs, pid).ok_or("/dev/shm: its mount namespace cannot be read")?;
    let files = open_dev_shm(procfs, pid, &mut Default::default())
        .and_then(|d| d.list())
        .map_err(|e| format!("/dev/shm: {e}"))?;
    let Some(dev) = files.first().map(|f| f.dev) else { return Ok(Vec::new()) };
    let now = crate::unix_now();
    let old: HashSet<u64> = files.iter().filter(|f| now - f.modified >= older_than).map(|f| f.ino).collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let users = processes_of_mount_namespace(procfs, mnt);
    let uses = in_use(procfs, &users, pid, dev, &old, &mut String::new());
    if let Some(why) = uses.unproven {
        return Err(format!("{why}, so any file may be in use (reading other users' processes needs root)"));
    }
    Ok(files
        .into_iter()
        .filter(|f| !uses.used.contains(&f.ino) && now - f.modified >= older_than)
        .map(|f| StaleFile {
            owner_name: names.name(f.owner),
            idle_seconds: (now - f.modified).max(0),
            evidence: format!(
                "not modified for {}; none of the {} processes of mount namespace {mnt} maps it or holds it open",
                crate::age(now - f.modified),
                users.known.len()
            ),
            remove: format!("nsenter --target {pid} --mount rm -- '/dev/shm/{}'", f.name.replace('\'', "'\\''")),
            file: f,
        })
        .collect())
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
                    let users = mount_namespace(procfs, pid).map(|m| processes_of_mount_namespace(procfs, m));
                    let this = HashSet::from([f.file.ino]);
                    let uses = users.map(|u| in_use(procfs, &u, pid, f.file.dev, &this, &mut String::new()));
                    if let Some(why) = uses
                        .as_ref()
                        .map_or(Some("its mount namespace cannot be read"), |u| u.unproven.as_deref())
                    {
                        Outcome::Kept(format!("{why}: it may be in use"))
                    } else if uses.is_some_and(|u| u.used.contains(&f.file.ino)) {
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

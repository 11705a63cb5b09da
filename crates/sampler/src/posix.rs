//! POSIX IPC: message queues, which belong to an IPC namespace like System V objects, and
//! `/dev/shm`, a tmpfs that belongs to a mount namespace (POSIX shared memory and glibc's
//! named semaphores are its files).
//!
//! The kernel exports no usage counter for either. Queues are counted in O(1) from the size
//! of the mqueue filesystem's root directory (40 + 20 bytes per linked queue) and read one by
//! one with `mq_getsetattr`, which, unlike reading a queue's file, changes no time stamp.
//! The mqueue filesystem of another IPC namespace is reached through a private detached mount
//! (`fsmount`). Its caller keeps it while the namespace is watched (a mount costs a linear
//! search of every namespace's mqueue superblock, a listing through it one stat when empty)
//! and closes it as soon as the namespace is gone: held past that, it would keep the dead
//! namespace's queues, and their owners' charges, alive.

use std::path::Path;

use serde::{Serialize, Serializer};

use crate::sys;
use crate::within;
pub use crate::within::{mountinfo_kind, FsKind, MountKinds};

/// `f_type` of an mqueue filesystem (MQUEUE_MAGIC).
const MQUEUE_MAGIC: i64 = 0x1980_0202;
/// Most queues read one by one per namespace; the count comes from the directory size anyway.
pub const MAX_QUEUES: usize = 65_536;
/// Most /dev/shm entries looked at per sample: beyond it files are counted by statfs only.
pub const MAX_SHM_FILES: usize = 65_536;

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:o}"))
}

/// The namespace's `fs.mqueue.*` limits (`null`: unreadable). Each IPC namespace has its own,
/// and a new one starts at 256/10/8192/10/8192, not at its parent's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MqueueLimits {
    /// Most queues (`queues_max`); -1 means unlimited.
    pub queues_max: Option<i64>,
    /// Most messages per queue (`msg_max`).
    pub msg_max: Option<u64>,
    /// Largest message (`msgsize_max`).
    pub msgsize_max: Option<u64>,
    pub msg_default: Option<u64>,
    pub msgsize_default: Option<u64>,
}

/// One POSIX message queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosixQueue {
    /// The name, with its leading `/` as `mq_open` takes it.
    pub name: String,
    /// The creator's uid (the file's owner).
    pub owner: u32,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// Messages queued (`mq_curmsgs`); at `max_messages` senders block or get EAGAIN.
    pub messages: u64,
    pub max_messages: u64,
    pub message_size: u64,
    /// What the queue charges against its creator's RLIMIT_MSGQUEUE, from its creation on.
    pub charge_bytes: u64,
}

impl PosixQueue {
    pub fn is_full(&self) -> bool {
        self.max_messages > 0 && self.messages >= self.max_messages
    }
}

/// The kernel's RLIMIT_MSGQUEUE charge for a queue (`mqueue_get_inode`, 64-bit): the message
/// buffers plus a 48-byte header per message and 48 bytes of tree node per message (at most
/// 32,768 of them).
pub fn charge(max_messages: u64, message_size: u64) -> u64 {
    max_messages
        .saturating_mul(message_size)
        .saturating_add(max_messages.saturating_mul(48))
        .saturating_add(max_messages.min(32_768) * 48)
}

/// The namespace's POSIX message queues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PosixQueues {
    /// Queues linked in the namespace (what `queues_max` limits, short of queues unlinked but
    /// still open, which only /proc/PID/fd shows).
    pub queues: u64,
    pub full_queues: u64,
    /// Sum of the queues' RLIMIT_MSGQUEUE charges.
    pub charge_bytes: u64,
    /// Queues read one by one (all of them up to [`MAX_QUEUES`]), as of `read_at`: shared
    /// between samples until the detail is read again.
    pub items: std::sync::Arc<[PosixQueue]>,
}

/// POSIX IPC as seen from the caller's IPC namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Posix {
    pub limits: MqueueLimits,
    /// `null` when the namespace's mqueue filesystem could not be reached; `error` says why.
    pub queues: Option<PosixQueues>,
    /// Shared, so a sample that repeats the last read allocates nothing.
    pub error: Option<std::sync::Arc<str>>,
}

/// A `/dev/shm` tmpfs, as `statfs` counts it (what fills its `size=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DevShm {
    /// The mount namespace's inode (the `mnt_namespace` label), when known.
    pub mnt_namespace: Option<u64>,
    /// `size=` in bytes; 0 means unlimited.
    pub size_bytes: u64,
    /// Bytes in use, files deleted but still mapped included (statfs).
    pub used_bytes: u64,
    /// Inodes in use, and the limit (`nr_inodes=`; 0 means unlimited).
    pub inodes_used: u64,
    pub inodes_limit: u64,
    /// Files in /dev/shm (POSIX segments and named semaphores).
    pub files: u64,
    /// glibc named semaphores (`sem.NAME`) and the bytes they take.
    pub semaphore_files: u64,
    pub semaphore_bytes: u64,
}

/// The five `fs.mqueue.*` limits' names, in [`MqueueLimits`]' order.
const LIMIT_NAMES: [&str; 5] = ["queues_max", "msg_max", "msgsize_max", "msg_default", "msgsize_default"];

/// Reads the five `fs.mqueue.*` limits of the caller's IPC namespace (procfs answers for the
/// reader's namespace). The directory is looked up once: each lookup of a name under
/// /proc/sys/fs costs a comparison per IPC namespace on the host.
pub fn read_limits(procfs: &Path) -> MqueueLimits {
    LimitFiles::open(procfs).read()
}

/// The caller's namespace's `fs.mqueue.*` files, opened once and read again from the start
/// (a /proc/sys file answers for the namespace it was opened in): the daemon's own limits cost
/// five reads, not a lookup of each name among every namespace's.
pub struct LimitFiles {
    files: [Option<std::fs::File>; 5],
}

impl LimitFiles {
    pub fn open(procfs: &Path) -> LimitFiles {
        let dir = sys::open_path(&procfs.join("sys/fs/mqueue")).ok();
        let open = |name: &str| -> Option<std::fs::File> {
            let file = sys::open_file_at(dir.as_ref()?, name).ok()?;
            file.metadata().ok()?.is_file().then_some(file)
        };
        LimitFiles { files: LIMIT_NAMES.map(open) }
    }

    /// Whether any file failed to open (then it is worth opening again later).
    pub fn incomplete(&self) -> bool {
        self.files.iter().any(Option::is_none)
    }

    pub fn read(&self) -> MqueueLimits {
        let [queues_max, msg_max, msgsize_max, msg_default, msgsize_default] =
            self.files.each_ref().map(|f| f.as_ref().and_then(read_number));
        let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        MqueueLimits {
            // An unsigned int in the kernel: -1 (4294967295 when read back) is unlimited.
            queues_max: queues_max.map(|v| if v >= u32::MAX as i64 { -1 } else { v }),
            msg_max: unsigned(msg_max),
            msgsize_max: unsigned(msgsize_max),
            msg_default: unsigned(msg_default),
            msgsize_default: unsigned(msgsize_default),
        }
    }
}

/// A sysctl file's number, read from its start (one `pread`; its text is a few bytes).
fn read_number(file: &std::fs::File) -> Option<i64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Why a namespace's POSIX queues could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PosixError {
    #[error("cannot mount this namespace's mqueue filesystem ({0}; needs CAP_SYS_ADMIN), and /dev/mqueue is not proved to be this namespace's")]
    Unreachable(std::io::Error),
    #[error("cannot open the mqueue root: {0}")]
    OpenRoot(std::io::Error),
    #[error("cannot stat the mqueue root: {0}")]
    StatRoot(std::io::Error),
    #[error("cannot list the queues: {0}")]
    List(std::io::Error),
}

/// Reads the caller's IPC namespace's queues. The host's initial namespace uses its
/// `/dev/mqueue`. Elsewhere, a private detached mount of the namespace's mqueue filesystem:
/// `held`, one made by an earlier call in the same namespace, or a new one. Without the
/// privilege for one (CAP_SYS_ADMIN over the namespace and the caller's mount namespace),
/// `/dev/mqueue` only if it is proved to be this namespace's: one of its queues, opened by
/// name with `mq_open` (which follows the caller's namespace), is the same inode.
///
/// With the queues, the private mount read through, for the caller to keep or close. Only
/// the namespace it was made in may be read through it again.
pub fn read_queues(
    in_initial_namespace: bool,
    held: Option<std::fs::File>,
) -> (Result<PosixQueues, PosixError>, Option<std::fs::File>) {
    // The host's own /dev/mqueue costs one stat where a private mount costs ~50 µs.
    let dev = Path::new("/dev/mqueue");
    let is_mqueue = || is_mqueue(dev);
    if in_initial_namespace && is_mqueue() {
        return (queues_in(dev), None);
    }
    let root = match held {
        Some(root) => root,
        None => match sys::mqueue_mount() {
            Ok(mount) => std::fs::File::from(mount),
            Err(_) if is_mqueue() && dev_mqueue_is_ours(dev) => return (queues_in(dev), None),
            Err(mount_error) => return (Err(PosixError::Unreachable(mount_error)), None),
        },
    };
    use std::os::fd::AsRawFd;
    // The mount's root is the descriptor itself; only the listing needs a path.
    let dir = format!("/proc/thread-self/fd/{}", root.as_raw_fd());
    (queues_at(&root, Path::new(&dir)), Some(root))
}

/// The queues an mqueue root of `size` bytes holds: the kernel counts 20 per queue over a
/// base of 40 (`DIRENT_SIZE`).
pub fn queues_from_root_size(size: u64) -> u64 {
    size.saturating_sub(40) / 20
}

/// Whether `dir` is an mqueue mount.
pub fn is_mqueue(dir: &Path) -> bool {
    sys::statfs(dir).is_ok_and(|f| f.kind == MQUEUE_MAGIC)
}

/// Whether `dir` (an mqueue mount) is the calling thread's namespace's: a queue listed in it,
/// opened by name, is the same inode on the same device.
fn dev_mqueue_is_ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for entry in entries.flatten().take(16) {
        let Ok(listed) = entry.metadata() else { continue };
        let Ok(fd) = sys::mqueue_open(&entry.file_name()) else { continue };
        let Ok(opened) = std::fs::File::from(fd).metadata() else { continue };
        return opened.dev() == listed.dev() && opened.ino() == listed.ino();
    }
    false
}

fn queues_in(dir: &Path) -> Result<PosixQueues, PosixError> {
    let handle = std::fs::File::open(dir).map_err(PosixError::OpenRoot)?;
    queues_at(&handle, dir)
}

/// The queues of the mqueue root `handle` (listed through `dir`, the same directory).
fn queues_at(handle: &std::fs::File, dir: &Path) -> Result<PosixQueues, PosixError> {
    let root = handle.metadata().map_err(PosixError::StatRoot)?;
    use std::os::unix::fs::MetadataExt;
    let mut out = PosixQueues { queues: queues_from_root_size(root.size()), ..Default::default() };
    if out.queues == 0 {
        return Ok(out);
    }
    let mut items = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(PosixError::List)?;
    for entry in entries.flatten().take(MAX_QUEUES) {
        let name = entry.file_name();
        // A plain open: reading the file would change the queue's atime and ctime.
        let Ok((owner, mode, max_messages, message_size, messages)) = sys::mqueue_at(handle, &name) else {
            continue;
        };
        let q = PosixQueue {
            name: format!("/{}", crate::names::lossless(&name)),
            owner,
            mode,
            messages,
            max_messages,
            message_size,
            charge_bytes: charge(max_messages, message_size),
        };
        out.full_queues += q.is_full() as u64;
        out.charge_bytes = out.charge_bytes.saturating_add(q.charge_bytes);
        items.push(q);
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    out.items = items.into();
    Ok(out)
}

/// The `/dev/shm` that process `pid` sees, reached without trusting its container
/// ([`crate::within`]): a symlink or a FUSE mount there is refused with the reason.
/// `kinds` remembers what each mount seen is, so mountinfo is read once per new mount.
pub fn open_dev_shm(procfs: &Path, pid: u32, kinds: &mut MountKinds) -> std::io::Result<DevShmDir> {
    within::Dir::open(procfs, pid, &["dev", "shm"], within::FsKind::Tmpfs, kinds).map(DevShmDir)
}

/// A container's `/dev/shm`, known to be a tmpfs.
#[derive(Debug)]
pub struct DevShmDir(within::Dir);

/// The inode of process `pid`'s mount namespace.
pub fn mount_namespace_of(procfs: &Path, pid: u32) -> Option<u64> {
    let link = std::fs::read_link(procfs.join(pid.to_string()).join("ns/mnt")).ok()?;
    crate::namespaces::parse_mnt_link(&link)
}

fn usage_of(fs: &sys::FsUsage) -> DevShm {
    DevShm {
        size_bytes: fs.size_bytes,
        used_bytes: fs.size_bytes.saturating_sub(fs.free_bytes),
        inodes_limit: fs.inodes,
        inodes_used: fs.inodes.saturating_sub(fs.free_inodes),
        ..Default::default()
    }
}

/// A folder's identity and last change (device, inode, mtime): equal stamps mean the same
/// folder with the same entries (creating, removing or renaming an entry moves its mtime;
/// tmpfs keeps nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
}

impl DirStamp {
    fn of(m: &std::fs::Metadata) -> DirStamp {
        use std::os::unix::fs::MetadataExt;
        DirStamp { dev: m.dev(), ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()) }
    }

    /// The stamp of the folder at `path` (one stat).
    pub fn of_path(path: &Path) -> Option<DirStamp> {
        std::fs::metadata(path).ok().map(|m| DirStamp::of(&m))
    }
}

impl DevShmDir {
    /// Its stamp (see [`DirStamp`]).
    pub fn stamp(&self) -> Option<DirStamp> {
        self.0.metadata().ok().map(|m| DirStamp::of(&m))
    }

    /// Its size and use (one statfs); the file counts are left at 0.
    pub fn usage(&self) -> std::io::Result<DevShm> {
        Ok(usage_of(&self.0.statfs()?))
    }

    /// Files in it, and how many of them (and what bytes) are glibc named semaphores.
    pub fn count_files(&self) -> std::io::Result<(u64, u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let (mut files, mut sems, mut sem_bytes) = (0, 0, 0);
        let (_dir, entries) = self.0.read_dir()?;
        for entry in entries.flatten().take(MAX_SHM_FILES) {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            files += 1;
            if entry.file_name().as_encoded_bytes().starts_with(b"sem.") {
                sems += 1;
                sem_bytes += meta.blocks() * 512;
            }
        }
        Ok((files, sems, sem_bytes))
    }

    /// Removes `file` if the directory still holds that very file (same device and inode, a
    /// regular file): a file put in its place since it was judged is left alone.
    pub fn remove(&self, file: &ShmFile) -> std::io::Result<()> {
        let (dir, _) = self.0.read_dir()?;
        sys::unlink_if_same(&dir, &file.raw_name, file.dev, file.ino)
    }

    /// Every regular file in it, at most [`MAX_SHM_FILES`].
    pub fn list(&self) -> std::io::Result<Vec<ShmFile>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let (_dir, entries) = self.0.read_dir()?;
        for entry in entries.flatten().take(MAX_SHM_FILES) {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(ShmFile {
                name: crate::names::lossless(&entry.file_name()),
                raw_name: entry.file_name(),
                owner: meta.uid(),
                bytes: meta.blocks() * 512,
                size: meta.size(),
                modified: meta.mtime(),
                dev: meta.dev(),
                ino: meta.ino(),
            });
        }
        Ok(out)
    }
}

/// One file in a `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShmFile {
    pub name: String,
    /// The name as the file system has it, to remove the file by.
    #[serde(skip)]
    pub raw_name: std::ffi::OsString,
    pub owner: u32,
    /// Bytes allocated (`st_blocks` × 512): what counts against `size=`. Sparse files take less
    /// than their size.
    pub bytes: u64,
    pub size: u64,
    /// Last modification (Unix seconds).
    pub modified: i64,
    #[serde(skip)]
    pub dev: u64,
    #[serde(skip)]
    pub ino: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charge_matches_the_kernel_formula_measured() {
        // 10 queues of 10 x 8096 fit the default 819,200 B exactly; 10 x 8097 do not.
        assert_eq!(10 * charge(10, 8096), 819_200);
        assert!(10 * charge(10, 8097) > 819_200);
        // 1 x 1: 97 B, so 8,445 queues fit.
        assert_eq!(charge(1, 1), 97);
        assert_eq!(819_200 / charge(1, 1), 8445);
        // The tree-node part stops growing at 32,768 messages.
        assert_eq!(charge(65_536, 1), 65_536 + 65_536 * 48 + 32_768 * 48);
        assert_eq!(charge(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn kept_limit_files_read_what_fresh_opens_read_every_time() {
        let proc = Path::new("/proc");
        let kept = LimitFiles::open(proc);
        assert!(!kept.incomplete());
        let fresh = read_limits(proc);
        assert!(fresh.queues_max.is_some() && fresh.msgsize_default.is_some(), "{fresh:?}");
        // Read again from the start, not from where the last read ended.
        assert_eq!(kept.read(), fresh);
        assert_eq!(kept.read(), fresh);
        let text = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max").unwrap();
        assert_eq!(kept.read().msgsize_max, text.trim().parse().ok());
        assert!(LimitFiles::open(Path::new("/nonexistent")).incomplete());
    }

    #[test]
    fn a_root_size_counts_twenty_bytes_a_queue_over_forty() {
        assert_eq!(queues_from_root_size(40), 0);
        assert_eq!(queues_from_root_size(100), 3);
        assert_eq!(queues_from_root_size(0), 0);
    }
}

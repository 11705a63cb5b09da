//! Directories inside a container (`/dev/shm`, `/dev/mqueue`), reached without trusting it.
//!
//! A container controls its own mounts and links. Through `/proc/PID/root` it could point
//! the daemon at the host's files (an absolute symlink resolves against the daemon's root),
//! or hang it for good (a FUSE mount whose server never answers: every `stat`, `statfs` or
//! lookup on it waits). So the walk from the container's root:
//! - follows no symlink and cannot leave the directory it is in (`openat2` with
//!   `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`), one component at a time;
//! - looks nothing up in a directory on FUSE, and asks no file system what it is: the kind
//!   of each step's mount comes from the process's mountinfo (by the mount's id, read with
//!   `statx(AT_STATX_DONT_SYNC)`), and only `O_PATH` handles are opened, which ask the file
//!   system nothing. A mount's kind never changes, so it is remembered by the never-reused
//!   mount id of Linux 6.8+ and mountinfo is read once per new mount, not every tick;
//! - ends on the kind of file system expected (tmpfs for `/dev/shm`, mqueue for
//!   `/dev/mqueue`), and only then reads it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::sys;

/// What a mount is, as far as the walk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Tmpfs,
    Mqueue,
    Fuse,
    Other,
}

impl FsKind {
    fn of_name(fstype: &str) -> FsKind {
        match fstype {
            "tmpfs" => FsKind::Tmpfs,
            "mqueue" => FsKind::Mqueue,
            t if t.starts_with("fuse") => FsKind::Fuse,
            _ => FsKind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FsKind::Tmpfs => "tmpfs",
            FsKind::Mqueue => "mqueue",
            FsKind::Fuse => "FUSE",
            FsKind::Other => "another file system",
        }
    }
}

/// The kinds of the mounts seen, by their never-reused id (Linux 6.8+).
#[derive(Debug, Default)]
pub struct MountKinds(HashMap<u64, FsKind>);

/// Most mounts remembered; beyond it the memory starts over, so churning containers cannot
/// grow it.
const MAX_MOUNTS: usize = 4096;

/// A directory inside process `pid`'s root, on a file system of the kind asked for.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Walks `components` (`["dev", "shm"]`) from the root of process `pid` under `procfs`.
    pub fn open(
        procfs: &Path,
        pid: u32,
        components: &[&str],
        want: FsKind,
        kinds: &mut MountKinds,
    ) -> io::Result<Dir> {
        let mut fd = sys::open_path(&procfs.join(pid.to_string()).join("root"))?;
        let mut at = String::new();
        for (i, c) in components.iter().enumerate() {
            if kinds.of(&fd, procfs, pid, i == 0)? == FsKind::Fuse {
                return Err(refused(&at, FsKind::Fuse));
            }
            fd = sys::open_child_dir(&fd, c).map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::EXDEV) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{at}/{c} is a symbolic link: not followed (it could lead out of the container)"),
                ),
                _ => e,
            })?;
            at.push('/');
            at.push_str(c);
        }
        match kinds.of(&fd, procfs, pid, components.is_empty())? {
            k if k == want => Ok(Dir { fd }),
            k => Err(refused(&at, k)),
        }
    }

    /// Size and use of the file system (one `fstatfs`).
    pub fn statfs(&self) -> io::Result<sys::FsUsage> {
        sys::fstatfs(&self.fd)
    }

    /// The directory's own metadata (through its descriptor, no path walk).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        std::fs::metadata(format!("/proc/thread-self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Its entries, read through a descriptor of its own (no path walk).
    pub fn read_dir(&self) -> io::Result<(std::fs::File, std::fs::ReadDir)> {
        let dir = sys::reopen_dir(&self.fd)?;
        let entries = std::fs::read_dir(format!("/proc/thread-self/fd/{}", dir.as_raw_fd()))?;
        Ok((dir, entries))
    }
}

/// FUSE is refused as an attack (`InvalidData`); another file system than the one wanted is
/// simply not there to read (`Unsupported`: a chroot's plain /dev/shm directory).
fn refused(at: &str, kind: FsKind) -> io::Error {
    let at = if at.is_empty() { "/" } else { at };
    match kind {
        FsKind::Fuse => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{at} is on FUSE: not read, a FUSE server may never answer"),
        ),
        k => io::Error::new(io::ErrorKind::Unsupported, format!("{at} is on {}: not read", k.name())),
    }
}

impl MountKinds {
    /// The kind of the mount `fd` is on, from process `pid`'s mountinfo (or memory).
    /// `root`: `fd` is the process's root directory.
    fn of(&mut self, fd: &OwnedFd, procfs: &Path, pid: u32, root: bool) -> io::Result<FsKind> {
        let unique = sys::mount_id(fd, true).ok();
        if let Some(k) = unique.and_then(|id| self.0.get(&id)) {
            return Ok(*k);
        }
        // The open descriptor keeps the mount, so its (reusable) id cannot go to another
        // mount while mountinfo is read.
        let id = sys::mount_id(fd, false)?;
        // /proc files say size 0: a read into an empty buffer starts with 32 bytes and
        // doubles (eight reads for a 2 KB mountinfo).
        let mut text = String::with_capacity(8192);
        let proc_dir = procfs.join(pid.to_string());
        crate::read_text(&proc_dir.join("mountinfo"), &mut text)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let kind = match mountinfo_kind(&text, id) {
            Some(k) => k,
            // A chrooted process's mountinfo leaves out the mount its root lies on. In our own
            // mount namespace that mount is the operator's (a chrooted service, a one-shot
            // snapshot in a chroot), not a tenant's: taken as an ordinary one.
            None if root && same_mount_namespace(&proc_dir) => FsKind::Other,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("mount {id} is not in the mountinfo: not read"),
                ))
            }
        };
        if let Some(unique) = unique {
            if self.0.len() >= MAX_MOUNTS {
                self.0.clear();
            }
            self.0.insert(unique, kind);
        }
        Ok(kind)
    }
}

/// Whether the process at `proc_dir` shares the calling thread's mount namespace.
fn same_mount_namespace(proc_dir: &Path) -> bool {
    let ns = |p: &Path| std::fs::read_link(p.join("ns/mnt")).ok();
    ns(proc_dir).is_some_and(|m| Some(m) == ns(Path::new("/proc/thread-self")))
}

/// The kind of mount `id` in mountinfo text (`ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] - TYPE ...`).
pub fn mountinfo_kind(text: &str, id: u64) -> Option<FsKind> {
    let line = text.lines().find(|l| l.split(' ').next().and_then(|f| f.parse::<u64>().ok()) == Some(id))?;
    let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
    Some(FsKind::of_name(fstype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_the_kind_of_a_mount_by_id() {
        let text = "22 1 0:21 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n\
                    25 22 0:23 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw\n\
                    31 22 0:40 / /dev/mqueue rw - mqueue mqueue rw\n\
                    40 25 0:50 / /dev/shm rw - fuse.sshfs host:/ rw,user_id=0\n";
        assert_eq!(mountinfo_kind(text, 25), Some(FsKind::Tmpfs));
        assert_eq!(mountinfo_kind(text, 31), Some(FsKind::Mqueue));
        assert_eq!(mountinfo_kind(text, 40), Some(FsKind::Fuse));
        assert_eq!(mountinfo_kind(text, 22), Some(FsKind::Other));
        assert_eq!(mountinfo_kind(text, 2), None);
    }

    #[test]
    fn the_own_dev_shm_is_a_tmpfs_reached_without_links() {
        let kinds = &mut MountKinds::default();
        let dir = Dir::open(Path::new("/proc"), std::process::id(), &["dev", "shm"], FsKind::Tmpfs, kinds);
        let dir = dir.expect("/dev/shm of this process");
        assert!(dir.statfs().unwrap().size_bytes > 0);
        assert!(!kinds.0.is_empty(), "the mounts' kinds are remembered");
        let wrong = Dir::open(Path::new("/proc"), std::process::id(), &["dev", "shm"], FsKind::Mqueue, kinds);
        assert!(wrong.unwrap_err().to_string().contains("/dev/shm is on tmpfs: not read"));
    }
}

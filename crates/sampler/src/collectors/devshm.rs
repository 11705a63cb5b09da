//! /dev/shm: its use (statfs) and its files, once per mount namespace.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "devshm";

/// A mount namespace's /dev/shm as last read: its use, reused within [`SHARED_READ_FOR`], and
/// its files, listed again after [`POSIX_DETAIL_EVERY`].
pub(crate) struct SharedShm {
    pub(crate) used_at: Instant,
    pub(crate) listed_at: Instant,
    pub(crate) usage: posix::DevShm,
}

/// The daemon's own /dev/shm, kept open between listings.
pub(crate) struct OwnShm {
    dir: posix::DevShmDir,
    /// The folder as its last listing found it.
    stamp: Option<posix::DirStamp>,
}

/// How long a process's mount namespace, as read from `/proc/PID/ns/mnt`, is trusted: a
/// process seldom changes it (unshare -m, setns), and a thousand namespaces' readlinks every
/// 10 s were 4% of the sampler.
pub(crate) const MOUNT_NAMESPACE_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// How long one /dev/shm read serves the other IPC namespaces of its mount namespace: less
/// than a tick, so every tick reads it afresh.
pub(crate) const SHARED_READ_FOR: std::time::Duration = std::time::Duration::from_millis(500);

impl Sampler {
    /// Adds the `/dev/shm` that process `pid` sees (its mount namespace's) to `snap`, when
    /// POSIX IPC is asked for; a warning says why if it cannot be read. Its size and use are
    /// read every time (one statfs); its files are listed again only every
    /// [`POSIX_DETAIL_EVERY`].
    pub fn add_dev_shm(&mut self, snap: &mut Snapshot, pid: u32) {
        if !self.config.posix {
            return;
        }
        let mnt = self.mount_namespace(pid);
        self.add_dev_shm_in(snap, pid, mnt);
    }

    /// [`Sampler::add_dev_shm`] for a caller that has looked up `pid`'s mount namespace
    /// already ([`Sampler::mount_namespace`]).
    pub fn add_dev_shm_in(&mut self, snap: &mut Snapshot, pid: u32, mnt: Option<u64>) {
        if !self.config.posix {
            return;
        }
        let start = Instant::now();
        let read = self.dev_shm(pid, mnt);
        // No /dev/shm, or a plain directory there (a chroot): nothing to report, no failure.
        let absent = |e: &std::io::Error| {
            matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::Unsupported)
        };
        if read.as_ref().is_err_and(absent) {
            return;
        }
        snap.collectors.push(CollectorReport {
            name: NAME,
            ok: read.is_ok(),
            source: if read.is_ok() { Origin::Syscall } else { Origin::None },
            duration_seconds: start.elapsed().as_secs_f64(),
            error: read.as_ref().err().map(|e| format!("/dev/shm of pid {pid}: {e}").into()),
        });
        snap.dev_shm = read.ok();
    }

    /// The inode of process `pid`'s mount namespace (whose /dev/shm it sees), trusted for
    /// [`MOUNT_NAMESPACE_KEPT_FOR`].
    pub fn mount_namespace(&mut self, pid: u32) -> Option<u64> {
        if let Some(k) = self.shm_kept.get(&pid).filter(|k| k.0.elapsed() < MOUNT_NAMESPACE_KEPT_FOR) {
            return k.1;
        }
        let mnt = posix::mount_namespace_of(&self.config.procfs, pid);
        if self.shm_kept.len() >= 4096 {
            self.shm_kept.clear();
        }
        self.shm_kept.insert(pid, (Instant::now(), mnt));
        mnt
    }

    pub(crate) fn dev_shm(&mut self, pid: u32, mnt: Option<u64>) -> std::io::Result<posix::DevShm> {
        // IPC namespaces that share a mount namespace share its /dev/shm: within one round
        // of samples its use is read once, and its files listed once every
        // POSIX_DETAIL_EVERY (a thousand PrivateIPC= units, one statfs a tick).
        let shared = mnt.and_then(|m| self.shm_by_mount.get(&m));
        if let Some(s) = shared.filter(|s| s.used_at.elapsed() < SHARED_READ_FOR) {
            return Ok(s.usage.clone());
        }
        let listed = shared.filter(|s| s.listed_at.elapsed() < POSIX_DETAIL_EVERY).map(|s| {
            let u = &s.usage;
            ((u.files, u.semaphore_files, u.semaphore_bytes), s.listed_at)
        });
        // The daemon's own /dev/shm: its use read with one fstatfs of the descriptor kept
        // from the last listing, where a path costs a lookup through two mounts each tick.
        // Its listing is renewed only when the folder changed: one stat says so (the same
        // folder, unmodified), where a listing takes a dozen calls. Only its own is kept: a
        // container's would keep the container's tmpfs alive after it ends.
        let own_mnt = *self
            .own_mnt
            .get_or_insert_with(|| posix::mount_namespace_of(Path::new("/proc"), std::process::id()));
        let own = mnt.is_some() && mnt == own_mnt;
        let kept_files = shared.map(|s| {
            let u = &s.usage;
            (u.files, u.semaphore_files, u.semaphore_bytes)
        });
        if let (true, Some(kept), Some(files)) = (own, &self.own_shm, kept_files) {
            let listed = match listed {
                Some((_, at)) => Some(at),
                // Mounted over, or an entry made or removed: listed again below.
                None => kept
                    .stamp
                    .filter(|s| posix::DirStamp::of_path(Path::new("/dev/shm")) == Some(*s))
                    .map(|_| Instant::now()),
            };
            if let Some(listed_at) = listed {
                match kept.dir.usage() {
                    Ok(usage) => return Ok(self.keep_read(mnt, usage, files, listed_at)),
                    Err(_) => self.own_shm = None,
                }
            }
        }
        let dir = posix::open_dev_shm(&self.config.procfs, pid, &mut self.mount_kinds)?;
        // Taken before the listing: a change made during it shows at the next look.
        let stamp = (own && listed.is_none()).then(|| dir.stamp()).flatten();
        let usage = dir.usage()?;
        let (files, listed_at) = match listed {
            Some(kept) => kept,
            None => (dir.count_files()?, Instant::now()),
        };
        if own {
            let stamp = stamp.or(self.own_shm.as_ref().and_then(|k| k.stamp));
            self.own_shm = Some(OwnShm { dir, stamp });
        }
        Ok(self.keep_read(mnt, usage, files, listed_at))
    }

    /// `usage` with the file counts of the listing made at `listed_at`, kept as mount
    /// namespace `mnt`'s latest read.
    fn keep_read(
        &mut self,
        mnt: Option<u64>,
        mut usage: posix::DevShm,
        files: (u64, u64, u64),
        listed_at: Instant,
    ) -> posix::DevShm {
        usage.mnt_namespace = mnt;
        (usage.files, usage.semaphore_files, usage.semaphore_bytes) = files;
        if let Some(mnt) = mnt {
            if self.shm_by_mount.len() >= 4096 {
                self.shm_by_mount.clear();
            }
            let read = SharedShm { used_at: Instant::now(), listed_at, usage: usage.clone() };
            self.shm_by_mount.insert(mnt, read);
        }
        usage
    }
}

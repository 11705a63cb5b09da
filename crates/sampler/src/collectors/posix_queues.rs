//! POSIX message queues and their `fs.mqueue` limits.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "posix";

pub(crate) struct PosixKept {
    pub(crate) posix: posix::Posix,
    pub(crate) next_read: Instant,
    /// When a container's limits are read again.
    pub(crate) limits_next: Instant,
    /// A private mount of the namespace's mqueue filesystem, kept for its next read (see
    /// [`Sampler::forget_namespace`]).
    pub(crate) mount: Option<std::fs::File>,
    /// The daemon's own namespace's limit files, kept open (see [`posix::LimitFiles`]).
    pub(crate) limit_files: Option<posix::LimitFiles>,
    /// Until when queues found out of reach are not tried again.
    pub(crate) unreachable_until: Option<Instant>,
}

/// How often queues out of reach (no privilege to mount the namespace's mqueue filesystem)
/// are tried again.
pub const POSIX_UNREACHABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Most private mqueue mounts held at once (one per watched namespace), as many as the fleet
/// keeps anchors by default; beyond it, or when the open-file limit leaves no room, a read
/// mounts and closes again.
pub const MAX_HELD_MOUNTS: usize = 1000;

/// Descriptors left to everything else before any mount is held: the fleet's anchors (1,000
/// by default), the web server's connections (512) and the daemon's own files.
const DESCRIPTORS_KEPT_FREE: usize = 2048;

/// How many private mounts may be held with `open_files` descriptors allowed.
pub(crate) fn mount_budget(open_files: Option<usize>) -> usize {
    open_files.map_or(0, |n| n.saturating_sub(DESCRIPTORS_KEPT_FREE)).min(MAX_HELD_MOUNTS)
}

/// How often the POSIX message queues and `fs.mqueue.*` limits of a namespace other than the
/// daemon's own are read (see [`Sampler::set_target`]).
pub const POSIX_CONTAINER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a container's `fs.mqueue.*` limits are read: each lookup under /proc/sys/fs
/// compares with every IPC namespace's entry (~130 µs at 1,000 namespaces), and limits
/// change only when someone writes them.
pub const POSIX_CONTAINER_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The host's /dev/mqueue, checked to be an mqueue mount every [`POSIX_DETAIL_EVERY`] and
/// whenever its device changes: a tick then counts its queues with one stat, and spends
/// nothing where it is not mounted.
#[derive(Default)]
pub(crate) struct DevMqueue {
    /// The mount's device, if it was mqueue when last checked.
    dev: Option<u64>,
    next_check: Option<Instant>,
}

impl DevMqueue {
    fn count(&mut self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let dir = Path::new("/dev/mqueue");
        let now = Instant::now();
        if self.next_check.is_some_and(|t| now < t) {
            let dev = self.dev?;
            match std::fs::metadata(dir) {
                Ok(m) if m.dev() == dev => return Some(posix::queues_from_root_size(m.size())),
                // Unmounted, or another mount on top: look again now.
                _ => {}
            }
        }
        self.next_check = Some(now + POSIX_DETAIL_EVERY);
        self.dev = None;
        if !posix::is_mqueue(dir) {
            return None;
        }
        let m = std::fs::metadata(dir).ok()?;
        self.dev = Some(m.dev());
        Some(posix::queues_from_root_size(m.size()))
    }
}

impl Sampler {
    /// POSIX message queues of the calling thread's IPC namespace, and their limits.
    ///
    /// The host's namespace, and the one a one-shot or single-namespace sample is in: every
    /// sample counts the queues (one stat of /dev/mqueue); the limits and the queues one by
    /// one are read again every [`POSIX_DETAIL_EVERY`], and at once when the count changes.
    ///
    /// Every other namespace (a container's, named by [`Sampler::set_target`]) is read whole
    /// every [`POSIX_CONTAINER_EVERY`], each at its own moment within that period, so that a
    /// thousand containers do not all read in one tick. Per second they cost nothing here.
    /// Their queues are read through a private mount of their mqueue filesystem, made at the
    /// first read and kept while the namespace is watched (one stat when it holds no queue);
    /// their limits through a /proc/sys lookup whose cost grows with the number of IPC
    /// namespaces on the host, every [`POSIX_CONTAINER_LIMITS_EVERY`].
    pub(crate) fn posix(&mut self) -> posix::Posix {
        let target = self.target.take();
        // The fleet says which namespace this is; a one-shot sample asks the kernel.
        let inode = target.map(|t| t.inode).or_else(|| {
            std::fs::read_link("/proc/thread-self/ns/ipc").ok().as_deref().and_then(namespaces::parse_ns_link)
        });
        let initial = inode == Some(namespaces::INIT_IPC_NAMESPACE);
        let slow = !initial && target.is_some_and(|t| t.other);
        let key = inode.unwrap_or(0);
        let kept = self.posix_kept.get_mut(&key);
        let first = kept.is_none();
        let due = kept.as_ref().is_none_or(|k| Instant::now() >= k.next_read);
        let reuse = if slow {
            !due
        } else {
            // The host's /dev/mqueue: its queues counted with one stat.
            let count = initial.then(|| self.dev_mqueue.count()).flatten();
            match (&kept, count) {
                (Some(k), Some(c)) => !due && k.posix.queues.as_ref().is_some_and(|q| q.queues == c),
                (Some(_), None) => !due,
                (None, _) => false,
            }
        };
        if reuse {
            let k = self.posix_kept.get(&key).expect("just seen");
            return k.posix.clone();
        }
        let (held, mut limit_files) = match kept {
            Some(k) => (k.mount.take(), k.limit_files.take()),
            None => (None, None),
        };
        self.held_mounts -= held.is_some() as usize;
        // A container's limits are looked up in /proc/sys every POSIX_CONTAINER_LIMITS_EVERY.
        let kept = self.posix_kept.get(&key);
        let kept_limits = kept
            .filter(|k| slow && Instant::now() < k.limits_next)
            .map(|k| (k.posix.limits.clone(), k.limits_next));
        let (limits, limits_next) = match kept_limits {
            Some(kept) => kept,
            None if slow => {
                (posix::read_limits(&self.config.procfs), Instant::now() + POSIX_CONTAINER_LIMITS_EVERY)
            }
            None => {
                let files = limit_files
                    .filter(|f| !f.incomplete())
                    .unwrap_or_else(|| posix::LimitFiles::open(&self.config.procfs));
                let read = files.read();
                limit_files = Some(files);
                (read, Instant::now())
            }
        };
        // Queues out of reach (an unprivileged daemon: no mqueue mount of its own) are tried
        // again every POSIX_UNREACHABLE_EVERY, not at every read.
        let unreachable = self.posix_kept.get(&key).and_then(|k| {
            k.unreachable_until.filter(|t| Instant::now() < *t).map(|t| (k.posix.error.clone(), t))
        });
        let (queues, error, mount, unreachable_until) = match unreachable {
            Some((error, until)) => (None, error, held, Some(until)),
            None => {
                let (read, mount) = posix::read_queues(initial, held);
                let refused = |e: &std::io::Error| e.raw_os_error() == Some(libc::EPERM);
                let until = matches!(&read, Err(posix::PosixError::Unreachable(e)) if refused(e))
                    .then(|| Instant::now() + POSIX_UNREACHABLE_EVERY);
                match read {
                    Ok(q) => (Some(q), None, mount, None),
                    Err(e) => (None, Some(e.to_string().into()), mount, until),
                }
            }
        };
        let out = posix::Posix { limits, queues, error };
        if self.posix_kept.len() >= 4096 {
            self.posix_kept.clear();
            self.held_mounts = 0;
        }
        // Kept only while the budget allows. A namespace the kernel did not name (key 0) keeps
        // none: another could be read through it.
        let mount = mount.filter(|_| inode.is_some() && self.held_mounts < self.mount_budget);
        self.held_mounts += mount.is_some() as usize;
        let every = if slow { POSIX_CONTAINER_EVERY } else { POSIX_DETAIL_EVERY };
        // A namespace's first read comes when it is found; the next at a moment of its own
        // within the period (the inode spread by a multiplicative hash).
        let wait = match first && slow {
            true => {
                every.mul_f64((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64)
            }
            false => every,
        };
        // Only the namespace they were opened in reads them (a key the kernel named).
        let limit_files = limit_files.filter(|_| !slow && inode.is_some());
        let kept = PosixKept {
            posix: out.clone(),
            next_read: Instant::now() + wait,
            limits_next,
            mount,
            limit_files,
            unreachable_until,
        };
        self.posix_kept.insert(key, kept);
        out
    }
}

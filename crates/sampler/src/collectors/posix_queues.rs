//! POSIX message queues and their `fs.mqueue` limits.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "posix";

pub(crate) struct PosixKept {
    pub(crate) posix: posix::Posix,
    pub(crate) next_read: Instant,
    /// When a container's limits are read again.
    pub(crate) limits_next: Instant,
    pub(crate) device: Option<u64>,
    /// When the container's own /dev/mqueue last proved not to be its namespace's (it
    /// shares the host's mount namespace, or mounted none): not tried again for
    /// [`POSIX_CONTAINER_LIMITS_EVERY`], since each try walks three opens from its root.
    pub(crate) no_own_mqueue_since: Option<Instant>,
}

/// How often the POSIX message queues and `fs.mqueue.*` limits of a namespace other than the
/// daemon's own are read (see [`Sampler::set_target`]).
pub const POSIX_CONTAINER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a container's `fs.mqueue.*` limits are read: each lookup under /proc/sys/fs
/// compares with every IPC namespace's entry (~130 µs at 1,000 namespaces), and limits
/// change only when someone writes them.
pub const POSIX_CONTAINER_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

impl Sampler {
    /// POSIX message queues of the calling thread's IPC namespace, and their limits.
    ///
    /// The host's namespace, and the one a one-shot or single-namespace sample is in: every
    /// sample counts the queues (one stat of /dev/mqueue); the limits and the queues one by
    /// one are read again every [`POSIX_DETAIL_EVERY`], and at once when the count changes.
    ///
    /// Every other namespace (a container's, named by [`Sampler::set_target`]) is read whole
    /// every [`POSIX_CONTAINER_EVERY`], each at its own moment within that period, so that a
    /// thousand containers do not all read in one tick. Per second they cost nothing here:
    /// their count needs a walk into the container's root or a private mount, and their
    /// limits a /proc/sys lookup whose cost grows with the number of IPC namespaces on the
    /// host.
    pub(crate) fn posix(&mut self) -> posix::Posix {
        let target = self.target.take();
        // The fleet says which namespace this is; a one-shot sample asks the kernel.
        let inode = target.map(|t| t.inode).or_else(|| {
            std::fs::read_link("/proc/thread-self/ns/ipc").ok().as_deref().and_then(namespaces::parse_ns_link)
        });
        let initial = inode == Some(namespaces::INIT_IPC_NAMESPACE);
        let slow = !initial && target.is_some_and(|t| t.other);
        let key = inode.unwrap_or(0);
        let kept = self.posix_kept.get(&key);
        let device = kept.and_then(|k| k.device);
        let no_own_mqueue =
            kept.and_then(|k| k.no_own_mqueue_since).filter(|t| t.elapsed() < POSIX_CONTAINER_LIMITS_EVERY);
        let first = kept.is_none();
        let due = kept.is_none_or(|k| Instant::now() >= k.next_read);
        let reuse = if slow {
            !due
        } else {
            // The host's /dev/mqueue: its queues counted with one stat.
            let dir = Path::new("/dev/mqueue");
            let count = (initial && posix::is_mqueue_of(dir, posix::any_device(dir)))
                .then(|| posix::count_queues_in(dir).ok())
                .flatten();
            match (kept, count) {
                (Some(k), Some(c)) => !due && k.posix.queues.as_ref().is_some_and(|q| q.queues == c),
                (Some(_), None) => !due,
                (None, _) => false,
            }
        };
        if reuse {
            let k = self.posix_kept.get(&key).expect("just seen");
            return k.posix.clone();
        }
        // A container's own /dev/mqueue, once a private mount has shown the namespace's
        // device: reached without trusting it (no symlink, nothing on FUSE), held open while
        // it is read, and cheaper than another mount.
        let own_mqueue_try =
            target.map(|t| t.pid).zip(device).filter(|_| !initial && no_own_mqueue.is_none());
        let container_mqueue = own_mqueue_try.and_then(|(pid, dev)| {
            let kinds = &mut self.mount_kinds;
            within::Dir::open(&self.config.procfs, pid, &["dev", "mqueue"], within::FsKind::Mqueue, kinds)
                .ok()
                .filter(|d| d.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::dev(&m) == dev))
        });
        // A container's limits are looked up in /proc/sys every POSIX_CONTAINER_LIMITS_EVERY.
        let kept_limits = kept
            .filter(|k| slow && Instant::now() < k.limits_next)
            .map(|k| (k.posix.limits.clone(), k.limits_next));
        let (limits, limits_next) = match kept_limits {
            Some(kept) => kept,
            None => {
                let read = posix::read_limits(&self.config.procfs, &mut self.text);
                (read, Instant::now() + POSIX_CONTAINER_LIMITS_EVERY)
            }
        };
        let read = match &container_mqueue {
            Some(dir) => posix::read_queues_in(Path::new(&dir.proc_path())).map(|q| (q, device)),
            None => posix::read_queues(initial),
        };
        let (queues, error, device) = match read {
            Ok((q, d)) => (Some(q), None, d.or(device)),
            Err(e) => (None, Some(e.to_string().into()), device),
        };
        let out = posix::Posix { limits, queues, error };
        if self.posix_kept.len() >= 4096 {
            self.posix_kept.clear();
        }
        let every = if slow { POSIX_CONTAINER_EVERY } else { POSIX_DETAIL_EVERY };
        // A namespace's first read comes when it is found; the next at a moment of its own
        // within the period (the inode spread by a multiplicative hash).
        let wait = match first && slow {
            true => {
                every.mul_f64((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64)
            }
            false => every,
        };
        let no_own_mqueue_since = match (&container_mqueue, own_mqueue_try.is_some()) {
            (None, true) => Some(Instant::now()),
            (None, false) => no_own_mqueue,
            (Some(_), _) => None,
        };
        let kept = PosixKept {
            posix: out.clone(),
            next_read: Instant::now() + wait,
            limits_next,
            device,
            no_own_mqueue_since,
        };
        self.posix_kept.insert(key, kept);
        out
    }
}

//! What the kernel-side probes (the `ipcwatch-probes` crate, eBPF) counted for one IPC
//! namespace: calls the kernel refused, and time spent in the calls that can block. The
//! sampler does not fill this; the probes do, once a tick, and the fleet hands each
//! namespace's figures to its [`Snapshot`](crate::Snapshot). Plain data, so the charts, the
//! outputs and the tests need no BPF.

use serde::Serialize;

/// The call a refusal answered: `semget`, `msgget`, `shmget`, or `mq_open` with `O_CREAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Sem,
    Msg,
    Shm,
    Mq,
}

impl CallKind {
    pub const ALL: [CallKind; 4] = [CallKind::Sem, CallKind::Msg, CallKind::Shm, CallKind::Mq];

    /// The label value (and chart dimension): `sem`, `msg`, `shm`, `mq`.
    pub fn short(self) -> &'static str {
        match self {
            CallKind::Sem => "sem",
            CallKind::Msg => "msg",
            CallKind::Shm => "shm",
            CallKind::Mq => "mq",
        }
    }

    /// The system call that was refused.
    pub fn call(self) -> &'static str {
        match self {
            CallKind::Sem => "semget",
            CallKind::Msg => "msgget",
            CallKind::Shm => "shmget",
            CallKind::Mq => "mq_open",
        }
    }

    pub fn from_index(i: u16) -> Option<CallKind> {
        CallKind::ALL.get(i as usize).copied()
    }
}

/// The symbolic name of an errno the IPC calls return (`ENOSPC`), or `E<number>`.
pub fn errno_name(errno: u16) -> std::borrow::Cow<'static, str> {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        7 => "E2BIG",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        17 => "EEXIST",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        27 => "EFBIG",
        28 => "ENOSPC",
        36 => "ENAMETOOLONG",
        43 => "EIDRM",
        _ => return std::borrow::Cow::Owned(format!("E{errno}")),
    };
    std::borrow::Cow::Borrowed(name)
}

/// Refused calls of one kind with one errno, since the probes were loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusals {
    pub kind: CallKind,
    pub errno: u16,
    pub count: u64,
}

/// Buckets of a wait histogram: bucket `b` counts calls that took [2^b, 2^(b+1)) ns, the
/// last one everything longer.
pub const WAIT_BUCKETS: usize = 36;

/// Time spent in one kind of blocking call, since the probes were loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct WaitHistogram {
    /// Calls per log2 bucket of nanoseconds.
    pub buckets: Vec<u64>,
    /// Nanoseconds spent in all of them.
    pub sum_ns: u64,
}

impl WaitHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Calls that took less than 2^`log2_ns` ns (a Prometheus bucket's cumulative count).
    pub fn below(&self, log2_ns: usize) -> u64 {
        self.buckets.iter().take(log2_ns).sum()
    }
}

/// A semaphore array or queue that made its callers wait (or refused their sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectWaits {
    /// `sem` (semop, semtimedop) or `msg` (msgsnd).
    pub kind: CallKind,
    pub id: i32,
    /// Nanoseconds callers spent waiting in calls that slept (at least 16 µs).
    pub wait_ns: u64,
    pub waits: u64,
    /// `msgsnd` with `IPC_NOWAIT` refused with EAGAIN: a full queue dropping messages.
    pub send_refused: u64,
}

/// One refused allocation: who asked, for what, and what the kernel answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Unix time, in milliseconds.
    pub time_ms: i64,
    pub ipc_namespace: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub kind: CallKind,
    pub errno: u16,
    /// The IPC key asked for (System V calls).
    pub key: crate::Key,
    /// nsems for `semget`, the size for `shmget`; 0 otherwise.
    pub size: u64,
}

impl Failure {
    pub fn errno_name(&self) -> std::borrow::Cow<'static, str> {
        errno_name(self.errno)
    }
}

/// Everything the probes counted for one IPC namespace. Counters only grow (until the
/// namespace goes away); the `*_last_minute` and `*_new_ns` figures are what the charts and
/// the alert rules read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NamespaceProbes {
    pub refusals: Vec<Refusals>,
    /// Refusals in the last 60 seconds, per [`CallKind::ALL`].
    pub refused_last_minute: [u64; 4],
    pub semaphore_wait: WaitHistogram,
    pub send_wait: WaitHistogram,
    /// Nanoseconds spent in semop/semtimedop and msgsnd that the latest tick added.
    pub semaphore_wait_new_ns: u64,
    pub send_wait_new_ns: u64,
    /// `msgsnd` with `IPC_NOWAIT` refused with EAGAIN, in every queue of the namespace.
    pub send_refused: u64,
    pub send_refused_last_minute: u64,
    /// The arrays and queues callers waited on longest, longest first (capped).
    pub objects: Vec<ObjectWaits>,
    /// The namespace's latest refusal.
    pub last_failure: Option<Failure>,
}

impl NamespaceProbes {
    pub fn refused(&self, kind: CallKind) -> u64 {
        self.refusals.iter().filter(|r| r.kind == kind).map(|r| r.count).sum()
    }
}

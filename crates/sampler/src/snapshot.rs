//! The data a sample returns. Its JSON form (serde) is the documented, stable
//! `ipcwatch snapshot --json` format: see docs/snapshot-json.md.

use serde::{Serialize, Serializer};

use crate::sys::{SHM_DEST, SHM_LOCKED};

/// A System V IPC key. The kernel stores a signed int; people read it as `0x%08x` (like ipcs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub i32);

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The three kinds of System V IPC object. JSON and text: `sem`, `msg`, `shm` (as `ipcrm`
/// and `ipcs` abbreviate them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    #[serde(rename = "sem")]
    Semaphores,
    #[serde(rename = "msg")]
    MessageQueue,
    #[serde(rename = "shm")]
    SharedMemory,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Semaphores, Kind::MessageQueue, Kind::SharedMemory];

    pub fn short(self) -> &'static str {
        match self {
            Kind::Semaphores => "sem",
            Kind::MessageQueue => "msg",
            Kind::SharedMemory => "shm",
        }
    }

    /// The `ipcrm` flag that removes one object of this kind by id.
    pub fn ipcrm_flag(self) -> &'static str {
        match self {
            Kind::Semaphores => "-s",
            Kind::MessageQueue => "-q",
            Kind::SharedMemory => "-m",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

impl std::str::FromStr for Kind {
    type Err = crate::UnknownName;
    fn from_str(s: &str) -> Result<Kind, crate::UnknownName> {
        match s {
            "sem" => Ok(Kind::Semaphores),
            "msg" => Ok(Kind::MessageQueue),
            "shm" => Ok(Kind::SharedMemory),
            other => {
                Err(crate::UnknownName { what: "kind", name: other.to_string(), expected: "sem, msg or shm" })
            }
        }
    }
}

/// Permission bits serialize as octal text, the way `ipcs` prints them (`"600"`).
fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:o}"))
}

/// Everything the kernel says about System V IPC in the caller's IPC namespace at one moment.
///
/// A section is `None` (JSON `null`) when its collector failed; `collectors` says why.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// Unix time (seconds) the sample started.
    pub timestamp: f64,
    /// The page size SHMALL and `shared_memory.pages` are counted in.
    pub page_size: u64,
    pub semaphores: Option<Semaphores>,
    pub message_queues: Option<MessageQueues>,
    pub shared_memory: Option<SharedMemory>,
    pub limits: Limits,
    /// POSIX message queues and their limits (`null` when not asked for).
    pub posix: Option<crate::posix::Posix>,
    /// The `/dev/shm` of the namespace's processes (`null` when not read; a warning says why
    /// when it could not be).
    pub dev_shm: Option<crate::posix::DevShm>,
    /// What the eBPF probes counted in this namespace (`null` when they are not loaded).
    pub probes: Option<std::sync::Arc<crate::probes::NamespaceProbes>>,
    /// One entry per collector (`sem`, `msg`, `shm`, `limits`), in that order.
    pub collectors: Vec<CollectorReport>,
    /// Problems that did not fail a collector, such as malformed lines in a /proc text file.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Whether every System V collector ([`crate::SYSV_COLLECTORS`]) succeeded: what
    /// `ipcwatch snapshot`'s exit status, a census pass and `ipcwatch_samples_failed_total` go
    /// by. The posix and devshm collectors report here too, but a namespace whose mqueue
    /// filesystem cannot be reached (no CAP_SYS_ADMIN over its mounts) is still sampled whole.
    pub fn ok(&self) -> bool {
        self.collectors.iter().filter(|c| crate::SYSV_COLLECTORS.contains(&c.name)).all(|c| c.ok)
    }

    pub fn collector(&self, name: &str) -> Option<&CollectorReport> {
        self.collectors.iter().find(|c| c.name == name)
    }
}

/// Where a collector's figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The `*_INFO`/`IPC_INFO` calls and a `*_STAT_ANY` walk.
    Syscall,
    /// `/proc/sysvipc/*` and `/proc/sys/kernel/*` text.
    Procfs,
    /// Some of each (a fallback was needed for part of it).
    Mixed,
    /// Nothing could be read.
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectorReport {
    pub name: &'static str,
    pub ok: bool,
    pub source: Origin,
    pub duration_seconds: f64,
    /// Why it failed, or why a fallback was used. Shared: a failure repeated every tick (a
    /// namespace whose mqueue cannot be mounted, a limit kept from the last read) is the same
    /// text, not a new one.
    pub error: Option<std::sync::Arc<str>>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Semaphores {
    /// Arrays in use (SEMMNI usage; `SEM_INFO.semusz`).
    pub arrays: u64,
    /// Semaphores in all arrays (SEMMNS usage; `SEM_INFO.semaem`).
    pub semaphores: u64,
    pub items: Vec<SemaphoreArray>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SemaphoreArray {
    pub key: Key,
    pub id: i32,
    /// Owner uid.
    pub owner: u32,
    /// Creator's uid (`cuid`, its effective uid then): the census's evidence of who may hold
    /// it, since the kernel records no creator pid for arrays.
    pub creator: u32,
    /// Permission bits (JSON: octal text such as `"600"`).
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// Semaphores in the array (nsems).
    pub semaphores: u64,
    /// Last semop time (Unix seconds, 0 = never).
    pub last_op_time: i64,
    /// Last change time (IPC_SET, SETVAL, SETALL or creation).
    pub changed_time: i64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct MessageQueues {
    /// Queues in use (MSGMNI usage; `MSG_INFO.msgpool`).
    pub queues: u64,
    /// Messages queued in all queues (`MSG_INFO.msgmap`).
    pub messages: u64,
    /// Bytes queued in all queues (`MSG_INFO.msgtql`).
    pub bytes: u64,
    /// Queues that cannot take one more message: writers block (or get EAGAIN).
    pub full_queues: u64,
    pub items: Vec<MessageQueue>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageQueue {
    pub key: Key,
    pub id: i32,
    pub owner: u32,
    /// Creator's uid (`cuid`); the kernel records no creator pid for queues.
    pub creator: u32,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub messages: u64,
    pub bytes: u64,
    /// `msg_qbytes`; only the syscall path knows it (`null` from /proc text).
    pub capacity_bytes: Option<u64>,
    pub last_send_pid: i32,
    pub last_recv_pid: i32,
    pub last_send_time: i64,
    pub last_recv_time: i64,
    /// Creation or last IPC_SET (Unix seconds).
    pub changed_time: i64,
}

impl MessageQueue {
    /// The kernel refuses a message when `bytes + size > qbytes` or `messages + 1 > qbytes`
    /// (the count is capped by qbytes too), so a queue is full when even an empty message
    /// would block.
    pub fn is_full(&self) -> bool {
        match self.capacity_bytes {
            Some(cap) => self.bytes >= cap || self.messages >= cap,
            None => false,
        }
    }

    /// Bytes queued as a fraction of the capacity (0 when the capacity is unknown or zero).
    pub fn fill_ratio(&self) -> f64 {
        match self.capacity_bytes {
            Some(cap) if cap > 0 => self.bytes.max(self.messages) as f64 / cap as f64,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SharedMemory {
    /// Segments in use, SHM_DEST ones still attached included (SHMMNI usage; `SHM_INFO.used_ids`).
    pub segments: u64,
    /// Sum of the segments' sizes in bytes.
    pub bytes: u64,
    /// Pages charged against SHMALL (`SHM_INFO.shm_tot`, each segment rounded up).
    pub pages: u64,
    pub resident_bytes: u64,
    pub swapped_bytes: u64,
    /// Segments nobody has attached that were not removed: memory no process owns.
    pub orphaned_segments: u64,
    pub orphaned_bytes: u64,
    /// Segments removed (SHM_DEST) but still attached; they free on the last detach.
    pub destroyed_attached_segments: u64,
    pub items: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub key: Key,
    pub id: i32,
    pub owner: u32,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    pub size_bytes: u64,
    pub attached: u64,
    pub creator_pid: i32,
    pub last_pid: i32,
    /// Per-segment memory is only in /proc/sysvipc/shm; `null` when it was not read.
    pub resident_bytes: Option<u64>,
    pub swapped_bytes: Option<u64>,
    /// SHM_DEST: removed, freed on the last detach.
    pub destroyed: bool,
    /// SHM_LOCKED: locked in memory.
    pub locked: bool,
    /// Last attach, last detach, and creation or last IPC_SET (Unix seconds, 0 = never).
    pub attach_time: i64,
    pub detach_time: i64,
    pub changed_time: i64,
}

impl Segment {
    #[allow(clippy::too_many_arguments)]
    /// A segment as the kernel reports it: `raw_mode` is `shm_perm.mode`, whose bits above
    /// the permissions carry SHM_DEST (0o1000) and SHM_LOCKED (0o2000). Times start at 0.
    pub fn new(
        key: Key,
        id: i32,
        owner: u32,
        raw_mode: u32,
        size_bytes: u64,
        attached: u64,
        creator_pid: i32,
        last_pid: i32,
    ) -> Segment {
        Segment {
            key,
            id,
            owner,
            mode: raw_mode & 0o777,
            size_bytes,
            attached,
            creator_pid,
            last_pid,
            resident_bytes: None,
            swapped_bytes: None,
            destroyed: raw_mode & SHM_DEST != 0,
            locked: raw_mode & SHM_LOCKED != 0,
            attach_time: 0,
            detach_time: 0,
            changed_time: 0,
        }
    }

    pub fn is_orphaned(&self) -> bool {
        self.attached == 0 && !self.destroyed
    }
}

/// Declares [`Limits`] and what is derived from its field list, so that a new kernel limit
/// is one line here (see CONTRIBUTING.md, "Adding a kernel limit").
macro_rules! limits {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The namespace's limits. `None` (JSON `null`) means it could not be read; never a
        /// made-up zero.
        #[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
        pub struct Limits {
            $($(#[doc = $doc])* pub $name: Option<u64>,)*
        }

        impl Limits {
            /// Every field's name (its JSON key), in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Every limit with its name.
            pub fn named(&self) -> impl Iterator<Item = (&'static str, Option<u64>)> {
                [$((stringify!($name), self.$name)),*].into_iter()
            }

            /// Limits with only `name` set, to `value` (a test that every limit is exported).
            pub fn only(name: &str, value: u64) -> Option<Limits> {
                let mut l = Limits::default();
                match name {
                    $(stringify!($name) => l.$name = Some(value),)*
                    _ => return None,
                }
                Some(l)
            }
        }
    };
}

limits! {
    /// Max semaphore arrays.
    semmni,
    /// Max semaphores in all arrays.
    semmns,
    /// Max semaphores per array.
    semmsl,
    /// Max operations per semop call.
    semopm,
    /// Max semaphore value (constant 32767).
    semvmx,
    /// Max total adjustment a process may hold on one semaphore with SEM_UNDO (constant 32767).
    semaem,
    /// Max message queues.
    msgmni,
    /// Max bytes in one message.
    msgmax,
    /// Default capacity in bytes of a new queue.
    msgmnb,
    /// Max shared memory segments.
    shmmni,
    /// Max segment size in bytes.
    shmmax,
    /// Max pages in all segments.
    shmall,
    /// Min segment size in bytes (constant 1).
    shmmin,
}

impl Limits {
    /// Whether any limit could not be read.
    pub fn any_missing(&self) -> bool {
        self.named().any(|(_, v)| v.is_none())
    }
}

/// SEMVMX: the kernel's constant maximum semaphore value.
pub const SEMVMX: u64 = 32767;
/// SEMAEM: the kernel's constant bound on a semaphore's adjust-on-exit value (SEMVMX).
pub const SEMAEM: u64 = SEMVMX;
/// SHMMIN: the kernel's constant minimum segment size.
pub const SHMMIN: u64 = 1;

/// Whether a shmmax/shmall value is the kernel's "no limit" default (ULONG_MAX - 2^24) or larger
/// than anything meaningful; usage percentages against it are noise.
pub fn is_unlimited(v: u64) -> bool {
    v >= 1 << 63 || v == u64::MAX - (1 << 24)
}

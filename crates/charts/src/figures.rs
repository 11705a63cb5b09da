//! Every figure ipcwatch measures, described once: the kernel's name for it, what it is, how
//! to read it from a [`Snapshot`], its Prometheus metric, and the chart dimension it feeds.
//! The charts, `/metrics`, the `snapshot` table, the landing page and docs/metrics.md all come
//! from these rows (a test holds the docs to them), so a limit is named in one place.

use std::fmt::Write;

use ipcwatch_sampler::posix::PosixQueue;
use ipcwatch_sampler::{is_unlimited, Snapshot};

use crate::queues::ChosenQueue;

/// What a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A kernel limit, such as SEMMNI.
    Limit,
    /// Usage the kernel counts against the limit of that name (the rows with a USE%).
    Usage { against: &'static str },
    /// Anything else worth a series.
    Measure,
}

#[derive(Debug)]
pub struct Figure {
    pub kind: Kind,
    /// The kernel's name for a limit (`SEMMNI`); empty for the other kinds.
    pub kernel: &'static str,
    /// lsipc's wording for a limit; what is counted for the others.
    pub description: &'static str,
    /// `None` when the part of the snapshot it needs failed.
    pub read: fn(&Snapshot) -> Option<u64>,
    pub metric: &'static str,
    pub help: &'static str,
    /// `(chart id, dimension id)` that this figure fills every sample.
    pub chart: Option<(&'static str, &'static str)>,
    /// `(chart id, variable)` by which alert expressions see a limit (Netdata's names first).
    pub variable: Option<(&'static str, &'static str)>,
    /// A figure of the namespace's `/dev/shm`, which belongs to a mount namespace: its series
    /// also carry `mnt_namespace`.
    pub per_mount: bool,
    /// A constant of the kernel (SEMVMX, SHMMIN), the same in every namespace: its series is
    /// the home namespace's only.
    pub constant: bool,
    /// A figure that counts trouble (full queues, orphaned segments) and is normally 0: in a
    /// container namespace its series is written only while it is not 0, as Prometheus's own
    /// `ALERTS` has series only for firing alerts. The home namespace always has it.
    pub sparse: bool,
}

const fn limit(
    kernel: &'static str,
    description: &'static str,
    read: fn(&Snapshot) -> Option<u64>,
    metric: &'static str,
    help: &'static str,
    chart: (&'static str, &'static str),
    variable: Option<(&'static str, &'static str)>,
) -> Figure {
    Figure {
        kind: Kind::Limit,
        kernel,
        description,
        read,
        metric,
        help,
        chart: Some(chart),
        variable,
        per_mount: false,
        constant: false,
        sparse: false,
    }
}

const fn measure(
    kind: Kind,
    description: &'static str,
    read: fn(&Snapshot) -> Option<u64>,
    metric: &'static str,
    help: &'static str,
    chart: (&'static str, &'static str),
) -> Figure {
    Figure {
        kind,
        kernel: "",
        description,
        read,
        metric,
        help,
        chart: Some(chart),
        variable: None,
        per_mount: false,
        constant: false,
        sparse: false,
    }
}

const fn constant(f: Figure) -> Figure {
    Figure { constant: true, ..f }
}

const fn sparse(f: Figure) -> Figure {
    Figure { sparse: true, ..f }
}

/// The same figure, of `/dev/shm` (labelled with its mount namespace).
const fn mount(f: Figure) -> Figure {
    Figure { per_mount: true, ..f }
}

/// A POSIX limit where the kernel's "no limit" (-1, or a `size=0` tmpfs) reads as unlimited.
fn unlimited_if(v: Option<u64>, none: bool) -> Option<u64> {
    v.map(|v| if none { u64::MAX } else { v })
}

fn mq(s: &Snapshot) -> Option<&ipcwatch_sampler::posix::PosixQueues> {
    s.posix.as_ref()?.queues.as_ref()
}

fn mq_limits(s: &Snapshot) -> Option<&ipcwatch_sampler::posix::MqueueLimits> {
    s.posix.as_ref().map(|p| &p.limits)
}

const fn counts(against: &'static str) -> Kind {
    Kind::Usage { against }
}

const MEASURE: Kind = Kind::Measure;

/// The figures, in the order /metrics lists them.
#[rustfmt::skip]
pub const FIGURES: &[Figure] = &[
    measure(counts("SEMMNI"), "Semaphore arrays", |s| s.semaphores.as_ref().map(|x| x.arrays),
        "sysvipc_semaphore_arrays", "Semaphore arrays in use (SEM_INFO semusz).",
        ("system.ipc_semaphore_arrays", "arrays")),
    limit("SEMMNI", "Number of semaphore identifiers", |s| s.limits.semmni,
        "sysvipc_semaphore_arrays_limit", "Maximum number of semaphore arrays (SEMMNI, kernel.sem field 4).",
        ("ipc.limits", "semmni"), Some(("system.ipc_semaphore_arrays", "ipc_semaphores_arrays_max"))),
    measure(counts("SEMMNS"), "Semaphores", |s| s.semaphores.as_ref().map(|x| x.semaphores),
        "sysvipc_semaphores", "Semaphores in all arrays (SEM_INFO semaem).",
        ("system.ipc_semaphores", "semaphores")),
    limit("SEMMNS", "Total number of semaphores", |s| s.limits.semmns,
        "sysvipc_semaphores_limit", "Maximum number of semaphores in all arrays (SEMMNS, kernel.sem field 2).",
        ("ipc.limits", "semmns"), Some(("system.ipc_semaphores", "ipc_semaphores_max"))),
    limit("SEMMSL", "Max semaphores per semaphore set", |s| s.limits.semmsl,
        "sysvipc_semaphores_per_array_limit", "Maximum semaphores per array (SEMMSL, kernel.sem field 1).",
        ("ipc.limits", "semmsl"), None),
    limit("SEMOPM", "Max number of operations per semop(2)", |s| s.limits.semopm,
        "sysvipc_semaphore_ops_per_call_limit", "Maximum operations per semop call (SEMOPM, kernel.sem field 3).",
        ("ipc.limits", "semopm"), None),
    constant(limit("SEMVMX", "Semaphore max value", |s| s.limits.semvmx,
        "sysvipc_semaphore_value_limit", "Maximum semaphore value (SEMVMX).",
        ("ipc.limits", "semvmx"), None)),
    constant(limit("SEMAEM", "Max semaphore adjust-on-exit value", |s| s.limits.semaem,
        "sysvipc_semaphore_adjust_limit", "Largest adjustment a process may hold on one semaphore with SEM_UNDO (SEMAEM); semop fails with ERANGE beyond it.",
        ("ipc.limits", "semaem"), None)),
    measure(counts("MSGMNI"), "Message queues", |s| s.message_queues.as_ref().map(|x| x.queues),
        "sysvipc_message_queues", "Message queues in use (MSG_INFO msgpool).",
        ("ipc.message_queues", "queues")),
    limit("MSGMNI", "Number of message queues", |s| s.limits.msgmni,
        "sysvipc_message_queues_limit", "Maximum number of message queues (kernel.msgmni).",
        ("ipc.limits", "msgmni"), Some(("ipc.message_queues", "ipc_msg_queues_max"))),
    sparse(measure(MEASURE, "Full message queues", |s| s.message_queues.as_ref().map(|x| x.full_queues),
        "sysvipc_message_queues_full", "Queues that cannot take one more message: their writers block.",
        ("ipc.message_queues", "full"))),
    measure(MEASURE, "Messages queued", |s| s.message_queues.as_ref().map(|x| x.messages),
        "sysvipc_messages", "Messages queued in all queues (MSG_INFO msgmap).",
        ("ipc.message_queue_totals", "messages")),
    measure(MEASURE, "Bytes queued", |s| s.message_queues.as_ref().map(|x| x.bytes),
        "sysvipc_message_bytes", "Bytes queued in all queues (MSG_INFO msgtql).",
        ("ipc.message_queue_total_bytes", "bytes")),
    limit("MSGMAX", "Max size of message (bytes)", |s| s.limits.msgmax,
        "sysvipc_message_size_limit_bytes", "Maximum size of one message in bytes (kernel.msgmax).",
        ("ipc.limits", "msgmax"), None),
    limit("MSGMNB", "Default max size of queue (bytes)", |s| s.limits.msgmnb,
        "sysvipc_message_queue_default_capacity_bytes", "Capacity in bytes given to new queues (kernel.msgmnb).",
        ("ipc.limits", "msgmnb"), None),
    measure(counts("SHMMNI"), "Shared memory segments", |s| s.shared_memory.as_ref().map(|x| x.segments),
        "sysvipc_shared_memory_segments",
        "Shared memory segments in use, removed-but-attached ones included (SHM_INFO used_ids).",
        ("system.shared_memory_segments", "segments")),
    limit("SHMMNI", "Shared memory segments", |s| s.limits.shmmni,
        "sysvipc_shared_memory_segments_limit", "Maximum number of shared memory segments (kernel.shmmni).",
        ("ipc.limits", "shmmni"), Some(("system.shared_memory_segments", "ipc_shm_segments_max"))),
    measure(MEASURE, "Shared memory bytes", |s| s.shared_memory.as_ref().map(|x| x.bytes),
        "sysvipc_shared_memory_bytes", "Sum of the sizes of all shared memory segments in bytes.",
        ("system.shared_memory_bytes", "bytes")),
    measure(counts("SHMALL"), "Shared memory pages", |s| s.shared_memory.as_ref().map(|x| x.pages),
        "sysvipc_shared_memory_pages", "Pages charged against SHMALL, each segment rounded up (SHM_INFO shm_tot).",
        ("ipc.shared_memory_pages", "pages")),
    limit("SHMALL", "Shared memory pages", |s| s.limits.shmall,
        "sysvipc_shared_memory_pages_limit", "Maximum pages in all shared memory segments (kernel.shmall).",
        ("ipc.limits", "shmall"), Some(("ipc.shared_memory_pages", "ipc_shm_pages_max"))),
    limit("SHMMAX", "Max size of shared memory segment (bytes)", |s| s.limits.shmmax,
        "sysvipc_shared_memory_segment_size_limit_bytes", "Maximum size of one shared memory segment in bytes (kernel.shmmax).",
        ("ipc.limits", "shmmax"), None),
    constant(limit("SHMMIN", "Min size of shared memory segment (bytes)", |s| s.limits.shmmin,
        "sysvipc_shared_memory_segment_size_minimum_bytes", "Minimum size of one shared memory segment in bytes (SHMMIN).",
        ("ipc.limits", "shmmin"), None)),
    measure(MEASURE, "Shared memory resident", |s| s.shared_memory.as_ref().map(|x| x.resident_bytes),
        "sysvipc_shared_memory_resident_bytes", "Shared memory resident in RAM in bytes (SHM_INFO shm_rss).",
        ("ipc.shared_memory_memory", "resident")),
    measure(MEASURE, "Shared memory swapped", |s| s.shared_memory.as_ref().map(|x| x.swapped_bytes),
        "sysvipc_shared_memory_swapped_bytes", "Shared memory swapped out in bytes (SHM_INFO shm_swp).",
        ("ipc.shared_memory_memory", "swapped")),
    sparse(measure(MEASURE, "Orphaned segments", |s| s.shared_memory.as_ref().map(|x| x.orphaned_segments),
        "sysvipc_shared_memory_orphaned_segments", "Segments nobody has attached that were not removed: memory no process owns.",
        ("ipc.shared_memory_orphaned_segments", "orphaned"))),
    sparse(measure(MEASURE, "Orphaned bytes", |s| s.shared_memory.as_ref().map(|x| x.orphaned_bytes),
        "sysvipc_shared_memory_orphaned_bytes", "Bytes of segments nobody has attached that were not removed.",
        ("ipc.shared_memory_orphaned_bytes", "orphaned"))),
    sparse(measure(MEASURE, "Removed but attached segments", |s| s.shared_memory.as_ref().map(|x| x.destroyed_attached_segments),
        "sysvipc_shared_memory_removed_attached_segments", "Segments removed (SHM_DEST) but still attached; they are freed on the last detach.",
        ("ipc.shared_memory_orphaned_segments", "removed_attached"))),
    // POSIX IPC. Queues belong to the IPC namespace; /dev/shm to the mount namespace.
    measure(counts("MQUMNI"), "POSIX message queues", |s| mq(s).map(|q| q.queues),
        "posix_mqueue_queues", "POSIX message queues in the namespace (linked; counted from the mqueue root's size).",
        ("ipc.posix_mqueue_queues", "queues")),
    limit("MQUMNI", "Number of POSIX message queues",
        |s| mq_limits(s).and_then(|l| l.queues_max).map(|v| if v < 0 { u64::MAX } else { v as u64 }),
        "posix_mqueue_queues_limit", "Maximum POSIX message queues (fs.mqueue.queues_max; -1, unlimited, reads as 2^64-1). mq_open fails with ENOSPC beyond it.",
        ("ipc.limits", "mqumni"), Some(("ipc.posix_mqueue_queues", "posix_mqueue_queues_max"))),
    limit("MQUMAX", "Max size of POSIX message (bytes)", |s| mq_limits(s).and_then(|l| l.msgsize_max),
        "posix_mqueue_message_size_limit_bytes", "Largest message size a POSIX queue may be created with (fs.mqueue.msgsize_max).",
        ("ipc.limits", "mqumax"), None),
    limit("MQUMNB", "Number of messages in POSIX message queue", |s| mq_limits(s).and_then(|l| l.msg_max),
        "posix_mqueue_messages_limit", "Most messages a POSIX queue may be created to hold (fs.mqueue.msg_max).",
        ("ipc.limits", "mqumnb"), None),
    sparse(measure(MEASURE, "Full POSIX message queues", |s| mq(s).map(|q| q.full_queues),
        "posix_mqueue_queues_full", "POSIX queues holding their maximum of messages: senders block or get EAGAIN.",
        ("ipc.posix_mqueue_queues", "full"))),
    measure(MEASURE, "POSIX queue RLIMIT_MSGQUEUE charge", |s| mq(s).map(|q| q.charge_bytes),
        "posix_mqueue_charge_bytes", "What the namespace's POSIX queues charge against their creators' RLIMIT_MSGQUEUE (computed).",
        ("ipc.posix_mqueue_charge", "bytes")),
    mount(limit("DEVSHM", "Size of /dev/shm (bytes)",
        |s| s.dev_shm.as_ref().map(|d| d.size_bytes).and_then(|v| unlimited_if(Some(v), v == 0)),
        "posix_shm_size_bytes", "Size of the namespace's /dev/shm tmpfs (size=; unlimited reads as 2^64-1). Writes fail with ENOSPC, and stores into a mapping with SIGBUS, when it is full.",
        ("ipc.limits", "devshm"), Some(("ipc.posix_shm_bytes", "posix_shm_size")))),
    mount(measure(counts("DEVSHM"), "Bytes used in /dev/shm", |s| s.dev_shm.as_ref().map(|d| d.used_bytes),
        "posix_shm_used_bytes", "Bytes used in /dev/shm as statfs counts them (what fills size=): POSIX shared memory, named semaphores, deleted files still mapped.",
        ("ipc.posix_shm_bytes", "used"))),
    mount(limit("DEVSHMI", "Inodes of /dev/shm",
        |s| s.dev_shm.as_ref().map(|d| d.inodes_limit).and_then(|v| unlimited_if(Some(v), v == 0)),
        "posix_shm_inodes_limit", "Inodes /dev/shm may hold (nr_inodes=; unlimited reads as 2^64-1).",
        ("ipc.limits", "devshmi"), None)),
    mount(measure(counts("DEVSHMI"), "Inodes used in /dev/shm", |s| s.dev_shm.as_ref().map(|d| d.inodes_used),
        "posix_shm_inodes", "Inodes used in /dev/shm (statfs).",
        ("ipc.posix_shm_files", "inodes"))),
    mount(measure(MEASURE, "Files in /dev/shm", |s| s.dev_shm.as_ref().map(|d| d.files),
        "posix_shm_files", "Files in /dev/shm: POSIX shared memory objects and named semaphores.",
        ("ipc.posix_shm_files", "files"))),
    mount(measure(MEASURE, "Named semaphores in /dev/shm", |s| s.dev_shm.as_ref().map(|d| d.semaphore_files),
        "posix_shm_semaphores", "glibc named semaphores (/dev/shm/sem.NAME).",
        ("ipc.posix_shm_files", "semaphores"))),
];

/// A per-queue figure, for the queues chosen to have their own series.
#[derive(Debug)]
pub struct QueueFigure {
    pub read: fn(&ChosenQueue) -> Option<u64>,
    pub metric: &'static str,
    pub help: &'static str,
    /// The per-queue chart (dimension id = msqid) it fills.
    pub chart: Option<&'static str>,
}

pub const QUEUE_FIGURES: &[QueueFigure] = &[
    QueueFigure {
        read: |q| Some(q.messages),
        metric: "sysvipc_message_queue_messages",
        help: "Messages on the queue.",
        chart: Some(crate::QUEUE_MESSAGES_CHART),
    },
    QueueFigure {
        read: |q| Some(q.bytes),
        metric: "sysvipc_message_queue_bytes",
        help: "Bytes queued on the queue.",
        chart: Some(crate::QUEUE_BYTES_CHART),
    },
    QueueFigure {
        read: |q| q.capacity_bytes,
        metric: "sysvipc_message_queue_capacity_bytes",
        help: "The queue's capacity in bytes (msg_qbytes); writers block when it is reached.",
        chart: None,
    },
];

/// The labels of every per-queue series.
pub const QUEUE_LABELS: [&str; 3] = ["key", "id", "owner"];

/// A figure of each POSIX message queue (exported, not charted).
pub struct PosixQueueFigure {
    pub read: fn(&PosixQueue) -> u64,
    pub metric: &'static str,
    pub help: &'static str,
}

/// Most per-queue POSIX series per namespace (the fullest queues first).
pub const POSIX_QUEUE_SERIES: usize = 100;

pub const POSIX_QUEUE_FIGURES: &[PosixQueueFigure] = &[
    PosixQueueFigure {
        read: |q| q.messages,
        metric: "posix_mqueue_queue_messages",
        help: "Messages on the POSIX queue (mq_curmsgs).",
    },
    PosixQueueFigure {
        read: |q| q.max_messages,
        metric: "posix_mqueue_queue_max_messages",
        help: "Most messages the POSIX queue holds (mq_maxmsg); at it, senders block or get EAGAIN.",
    },
    PosixQueueFigure {
        read: |q| q.message_size,
        metric: "posix_mqueue_queue_message_size_bytes",
        help: "Largest message the POSIX queue takes (mq_msgsize).",
    },
];

/// The labels of [`POSIX_QUEUE_FIGURES`] besides `ipc_namespace`.
pub const POSIX_QUEUE_LABELS: [&str; 2] = ["name", "owner"];

pub fn limits() -> impl Iterator<Item = &'static Figure> {
    FIGURES.iter().filter(|f| f.kind == Kind::Limit)
}

/// A counted resource against its limit, read from one snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// The usage figure (its description says what is counted).
    pub figure: &'static Figure,
    /// The limit's figure (its `kernel` is the name, such as SEMMNI).
    pub limit_figure: &'static Figure,
    pub used: Option<u64>,
    pub limit: Option<u64>,
}

impl Usage {
    /// Used as a percentage of the limit; `None` when either is unknown, or the limit is 0 or
    /// the kernel's "no limit" value.
    pub fn percent(&self) -> Option<f64> {
        match (self.used, self.limit) {
            (Some(u), Some(l)) if l > 0 && !is_unlimited(l) => Some(u as f64 * 100.0 / l as f64),
            _ => None,
        }
    }
}

/// Every counted resource of `snap` against its limit, in table order.
pub fn usage(snap: &Snapshot) -> impl Iterator<Item = Usage> + '_ {
    FIGURES.iter().filter_map(move |f| match f.kind {
        Kind::Usage { against } => {
            let limit_figure = limits().find(|l| l.kernel == against).expect("every usage names a limit");
            Some(Usage { figure: f, limit_figure, used: (f.read)(snap), limit: (limit_figure.read)(snap) })
        }
        _ => None,
    })
}

/// A limit as people read it: a number, "unlimited", or "?" when it could not be read.
pub fn show_limit(v: Option<u64>) -> String {
    match v {
        Some(v) if is_unlimited(v) => "unlimited".into(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

/// The `ipcwatch snapshot` limits table: every limit in lsipc's order, with its usage where
/// the kernel counts one.
pub fn limits_table(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{:<8} {:<42} {:>20} {:>10} {:>7}", "RESOURCE", "DESCRIPTION", "LIMIT", "USED", "USE%");
    let rows: Vec<Usage> = usage(s).collect();
    for l in limits() {
        let (used, pct) = match rows.iter().find(|u| u.limit_figure.kernel == l.kernel) {
            // A counted resource whose collector failed: unknown, not zero.
            Some(u) => (
                u.used.map_or("?".to_string(), |v| v.to_string()),
                match (u.percent(), u.used.is_some() && u.limit.is_some()) {
                    (Some(p), _) => format!("{p:.2}%"),
                    (None, true) => "0.00%".into(), // against "unlimited" or 0
                    (None, false) => "-".into(),
                },
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let limit = show_limit((l.read)(s));
        let _ = writeln!(out, "{:<8} {:<42} {:>20} {:>10} {:>7}", l.kernel, l.description, limit, used, pct);
    }
    out
}

/// The `ipcwatch snapshot` report: the limits table, then what each kind of object holds.
pub fn report(s: &Snapshot) -> String {
    let mut out = limits_table(s);
    out.push('\n');
    match &s.semaphores {
        Some(x) => {
            let _ = writeln!(out, "Semaphores:      {} arrays, {} semaphores", x.arrays, x.semaphores);
        }
        None => out.push_str("Semaphores:      unavailable\n"),
    }
    match &s.message_queues {
        Some(x) => {
            let _ = writeln!(
                out,
                "Message queues:  {} queues, {} messages, {} bytes queued, {} full",
                x.queues, x.messages, x.bytes, x.full_queues
            );
        }
        None => out.push_str("Message queues:  unavailable\n"),
    }
    match &s.shared_memory {
        Some(x) => {
            let _ = writeln!(
                out,
                "Shared memory:   {} segments, {} bytes, {} pages, {} bytes resident, {} bytes swapped",
                x.segments, x.bytes, x.pages, x.resident_bytes, x.swapped_bytes
            );
            let _ = writeln!(
                out,
                "                 {} orphaned segments ({} bytes), {} removed but still attached",
                x.orphaned_segments, x.orphaned_bytes, x.destroyed_attached_segments
            );
        }
        None => out.push_str("Shared memory:   unavailable\n"),
    }
    if let Some(p) = &s.posix {
        match (&p.queues, &p.error) {
            (Some(q), _) => {
                let _ = writeln!(
                    out,
                    "POSIX queues:    {} queues, {} full, {} bytes charged against RLIMIT_MSGQUEUE",
                    q.queues, q.full_queues, q.charge_bytes
                );
                for item in q.items.iter() {
                    let _ = writeln!(
                        out,
                        "                 {} owner {} {}/{} messages of {} bytes, charge {} bytes",
                        item.name,
                        item.owner,
                        item.messages,
                        item.max_messages,
                        item.message_size,
                        item.charge_bytes
                    );
                }
            }
            (None, e) => {
                let _ = writeln!(out, "POSIX queues:    unavailable: {}", e.as_deref().unwrap_or("unknown"));
            }
        }
    }
    if let Some(d) = &s.dev_shm {
        let size = if d.size_bytes == 0 { "unlimited".to_string() } else { d.size_bytes.to_string() };
        let _ = writeln!(
            out,
            "/dev/shm:        {} of {} bytes used, {} files ({} named semaphores), mount namespace {}",
            d.used_bytes,
            size,
            d.files,
            d.semaphore_files,
            d.mnt_namespace.map_or("?".into(), |m| m.to_string())
        );
    }
    for c in &s.collectors {
        if let Some(e) = &c.error {
            let _ = writeln!(out, "{}: {}: {}", if c.ok { "note" } else { "error" }, c.name, e);
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// The report for every namespace: a header naming the namespace and its owner, then its
/// report (or why it could not be read).
pub fn report_all(all: &[ipcwatch_sampler::namespaces::NamespaceSnapshot]) -> String {
    let mut out = String::new();
    for n in all {
        let i = &n.namespace;
        let _ = write!(out, "== IPC namespace {}{}", i.inode, if i.host { " (host)" } else { "" });
        for (k, v) in i.owner() {
            let _ = write!(out, " {k}={v}");
        }
        let _ = writeln!(out, " oldest process {} ({})", i.pid, i.comm);
        match (&n.snapshot, &n.error) {
            (Some(s), _) => out.push_str(&report(s)),
            (None, e) => {
                let _ = writeln!(out, "not read: {}", e.as_deref().unwrap_or("unknown"));
            }
        }
        out.push('\n');
    }
    out
}

/// The metrics table of docs/metrics.md, generated from [`FIGURES`], [`QUEUE_FIGURES`] and
/// [`POSIX_QUEUE_FIGURES`].
pub fn markdown_table() -> String {
    let mut out =
        String::from("| metric | labels | kernel | chart dimension | meaning |\n|---|---|---|---|---|\n");
    for f in FIGURES {
        let kernel = match f.kind {
            Kind::Limit => f.kernel.to_string(),
            Kind::Usage { against } => format!("counts against {against}"),
            Kind::Measure => String::new(),
        };
        let chart = f.chart.map_or(String::new(), |(c, d)| format!("`{c}` {d}"));
        let labels = if f.per_mount { "`mnt_namespace`" } else { "" };
        let sparse = if f.sparse { " A container namespace has it only while it is not 0." } else { "" };
        let _ =
            writeln!(out, "| `{}` | {} | {} | {} | {}{} |", f.metric, labels, kernel, chart, f.help, sparse);
    }
    for q in QUEUE_FIGURES {
        let chart = q.chart.map_or(String::new(), |c| format!("`{c}` (msqid)"));
        let labels = QUEUE_LABELS.map(|l| format!("`{l}`")).join(", ");
        let _ = writeln!(out, "| `{}` | {} | | {} | {} |", q.metric, labels, chart, q.help);
    }
    for q in POSIX_QUEUE_FIGURES {
        let labels = POSIX_QUEUE_LABELS.map(|l| format!("`{l}`")).join(", ");
        let _ = writeln!(
            out,
            "| `{}` | {} | | | {} One per queue, the {POSIX_QUEUE_SERIES} fullest of each namespace. |",
            q.metric, labels, q.help
        );
    }
    out
}

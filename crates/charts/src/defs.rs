//! Which charts exist and where each value comes from. Netdata's six charts carry Netdata's
//! ids, titles, units, families, types and priorities (from its `proc.plugin` IPC module);
//! the `ipc.*` charts are ours.

use std::fmt::Write;

use ipcwatch_sampler::{MessageQueue, Snapshot};

use crate::{Chart, ChartType};

pub const QUEUE_MESSAGES_CHART: &str = "system.message_queue_messages";
pub const QUEUE_BYTES_CHART: &str = "system.message_queue_bytes";
/// The id Netdata's integration page uses for the messages chart.
pub const QUEUE_MESSAGES_ALIAS: &str = "system.message_queue_message";

pub struct ChartDef {
    pub id: &'static str,
    pub title: &'static str,
    pub units: &'static str,
    pub family: &'static str,
    pub chart_type: ChartType,
    pub priority: u32,
    /// Fixed dimensions; the per-queue charts have none until queues appear.
    pub dimensions: &'static [&'static str],
}

const fn chart(
    id: &'static str,
    title: &'static str,
    units: &'static str,
    family: &'static str,
    chart_type: ChartType,
    priority: u32,
    dimensions: &'static [&'static str],
) -> ChartDef {
    ChartDef { id, title, units, family, chart_type, priority, dimensions }
}

use ChartType::{Area, Line, Stacked};

pub const CHARTS: &[ChartDef] = &[
    // Netdata's, exactly.
    chart(
        QUEUE_MESSAGES_CHART,
        "IPC Message Queue Number of Messages",
        "messages",
        "ipc message queues",
        Stacked,
        1201,
        &[],
    ),
    chart(
        QUEUE_BYTES_CHART,
        "IPC Message Queue Used Bytes",
        "bytes",
        "ipc message queues",
        Stacked,
        1202,
        &[],
    ),
    chart(
        "system.ipc_semaphores",
        "IPC Semaphores",
        "semaphores",
        "ipc semaphores",
        Area,
        1203,
        &["semaphores"],
    ),
    chart(
        "system.ipc_semaphore_arrays",
        "IPC Semaphore Arrays",
        "arrays",
        "ipc semaphores",
        Area,
        1204,
        &["arrays"],
    ),
    chart(
        "system.shared_memory_segments",
        "IPC Shared Memory Number of Segments",
        "segments",
        "ipc shared memory",
        Stacked,
        1205,
        &["segments"],
    ),
    chart(
        "system.shared_memory_bytes",
        "IPC Shared Memory Used Bytes",
        "bytes",
        "ipc shared memory",
        Stacked,
        1206,
        &["bytes"],
    ),
    // Ours: what Netdata leaves out.
    chart(
        "ipc.message_queues",
        "IPC Message Queues",
        "queues",
        "ipc message queues",
        Line,
        1210,
        &["queues", "full"],
    ),
    chart(
        "ipc.message_queue_totals",
        "IPC Messages Queued in All Queues",
        "messages",
        "ipc message queues",
        Line,
        1211,
        &["messages"],
    ),
    chart(
        "ipc.message_queue_total_bytes",
        "IPC Bytes Queued in All Queues",
        "bytes",
        "ipc message queues",
        Line,
        1212,
        &["bytes"],
    ),
    chart(
        "ipc.message_queue_fill",
        "IPC Fullest Message Queue",
        "percentage",
        "ipc message queues",
        Line,
        1213,
        &["max"],
    ),
    chart(
        "ipc.shared_memory_pages",
        "IPC Shared Memory Pages Charged Against SHMALL",
        "pages",
        "ipc shared memory",
        Line,
        1220,
        &["pages"],
    ),
    chart(
        "ipc.shared_memory_memory",
        "IPC Shared Memory Resident and Swapped",
        "bytes",
        "ipc shared memory",
        Stacked,
        1221,
        &["resident", "swapped"],
    ),
    chart(
        "ipc.shared_memory_orphaned_segments",
        "IPC Orphaned Shared Memory Segments",
        "segments",
        "ipc shared memory",
        Line,
        1222,
        &["orphaned", "removed_attached"],
    ),
    chart(
        "ipc.shared_memory_orphaned_bytes",
        "IPC Shared Memory Held by Orphaned Segments",
        "bytes",
        "ipc shared memory",
        Line,
        1223,
        &["orphaned"],
    ),
    chart(
        "ipc.limits",
        "IPC Limits",
        "value",
        "ipc limits",
        Line,
        1230,
        &[
            "semmni", "semmns", "semmsl", "semopm", "semvmx", "msgmni", "msgmax", "msgmnb", "shmmni",
            "shmmax", "shmall", "shmmin",
        ],
    ),
];

/// The queues that get per-queue dimensions and series: the biggest (bytes, then messages)
/// first, at most `cap`, in msqid order.
pub fn queue_selection(snap: &Snapshot, cap: usize) -> Vec<&MessageQueue> {
    let Some(msg) = &snap.message_queues else { return Vec::new() };
    let mut queues: Vec<&MessageQueue> = msg.items.iter().collect();
    if queues.len() > cap {
        // Partition (O(n)) rather than sort: only which queues make the cut matters.
        if cap > 0 {
            queues.select_nth_unstable_by(cap - 1, |a, b| {
                (b.bytes, b.messages, a.id).cmp(&(a.bytes, a.messages, b.id))
            });
        }
        queues.truncate(cap);
    }
    queues.sort_by_key(|q| q.id);
    queues
}

fn find<'a>(charts: &'a mut [Chart], id: &str) -> &'a mut Chart {
    charts.iter_mut().find(|c| c.id == id).expect("every chart id used here is in CHARTS")
}

/// Writes one row of values into the charts. A failed collector leaves its charts' row empty
/// (NaN): the last good value is not carried forward as if fresh.
pub fn fill(charts: &mut [Chart], snap: &Snapshot, queues: &[&MessageQueue]) {
    let limits = &snap.limits;
    let var = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
    if let Some(sem) = &snap.semaphores {
        let c = find(charts, "system.ipc_semaphores");
        c.set("semaphores", sem.semaphores as f64);
        let c = find(charts, "system.ipc_semaphore_arrays");
        c.set("arrays", sem.arrays as f64);
    }
    find(charts, "system.ipc_semaphores").variables.insert("ipc_semaphores_max", var(limits.semmns));
    find(charts, "system.ipc_semaphore_arrays")
        .variables
        .insert("ipc_semaphores_arrays_max", var(limits.semmni));

    if let Some(msg) = &snap.message_queues {
        let mut id = String::with_capacity(12);
        for q in queues {
            id.clear();
            let _ = write!(id, "{}", q.id);
            find(charts, QUEUE_MESSAGES_CHART).set(&id, q.messages as f64);
            find(charts, QUEUE_BYTES_CHART).set(&id, q.bytes as f64);
        }
        let c = find(charts, "ipc.message_queues");
        c.set("queues", msg.queues as f64);
        c.set("full", msg.full_queues as f64);
        find(charts, "ipc.message_queue_totals").set("messages", msg.messages as f64);
        find(charts, "ipc.message_queue_total_bytes").set("bytes", msg.bytes as f64);
        let fullest = msg.items.iter().map(|q| q.fill_ratio()).fold(0.0, f64::max);
        find(charts, "ipc.message_queue_fill").set("max", fullest * 100.0);
    }
    find(charts, "ipc.message_queues").variables.insert("ipc_msg_queues_max", var(limits.msgmni));

    if let Some(shm) = &snap.shared_memory {
        find(charts, "system.shared_memory_segments").set("segments", shm.segments as f64);
        find(charts, "system.shared_memory_bytes").set("bytes", shm.bytes as f64);
        find(charts, "ipc.shared_memory_pages").set("pages", shm.pages as f64);
        let c = find(charts, "ipc.shared_memory_memory");
        c.set("resident", shm.resident_bytes as f64);
        c.set("swapped", shm.swapped_bytes as f64);
        let c = find(charts, "ipc.shared_memory_orphaned_segments");
        c.set("orphaned", shm.orphaned_segments as f64);
        c.set("removed_attached", shm.destroyed_attached_segments as f64);
        find(charts, "ipc.shared_memory_orphaned_bytes").set("orphaned", shm.orphaned_bytes as f64);
    }
    find(charts, "system.shared_memory_segments")
        .variables
        .insert("ipc_shm_segments_max", var(limits.shmmni));
    find(charts, "ipc.shared_memory_pages").variables.insert("ipc_shm_pages_max", var(limits.shmall));

    let c = find(charts, "ipc.limits");
    for (dim, v) in limits.entries() {
        if let Some(v) = v {
            c.set(dim, v as f64);
        }
    }
}

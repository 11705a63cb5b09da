//! The census's figures per owner (who holds what): the table their Prometheus families and
//! `ipc.*_by_owner` chart dimensions come from, and the data the census hands the charts.
//! The census (the holders crate) fills these; the charts and /metrics read them.

use std::sync::Arc;

use serde::Serialize;

/// What an owner (or everyone) holds. Stale, orphaned and destroyed figures are the subsets
/// the census defines (see the `ipcwatch-holders` crate docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub semaphore_arrays: u64,
    pub semaphores: u64,
    pub message_queues: u64,
    pub messages: u64,
    pub message_bytes: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub stale_semaphore_arrays: u64,
    pub stale_message_queues: u64,
    pub stale_message_bytes: u64,
    pub orphaned_segments: u64,
    pub orphaned_bytes: u64,
    pub destroyed_attached_segments: u64,
    pub destroyed_attached_bytes: u64,
}

impl Usage {
    /// Adds `o`, figure by figure (saturating).
    pub fn add(&mut self, o: &Usage) {
        for f in OWNER_FIGURES {
            *(f.field)(self) = (f.read)(self).saturating_add((f.read)(o));
        }
    }

    /// Arrays, queues and segments together.
    pub fn objects(&self) -> u64 {
        self.semaphore_arrays + self.message_queues + self.segments
    }
}

/// One per-owner figure: its metric and chart dimension come from here, so they agree.
pub struct OwnerFigure {
    /// Prometheus family (labels `ipc_namespace`, `owner`, `uid`).
    pub metric: &'static str,
    pub help: &'static str,
    /// The `ipc.*_by_owner` chart this figure is drawn on (a dimension per owner), if any.
    pub chart: Option<&'static str>,
    pub read: fn(&Usage) -> u64,
    field: fn(&mut Usage) -> &mut u64,
}

macro_rules! figure {
    ($field:ident, $metric:literal, $help:literal, $chart:expr) => {
        OwnerFigure {
            metric: $metric,
            help: $help,
            chart: $chart,
            read: |u| u.$field,
            field: |u| &mut u.$field,
        }
    };
}

/// Every per-owner figure, in exposition order.
pub const OWNER_FIGURES: &[OwnerFigure] = &[
    figure!(
        semaphore_arrays,
        "sysvipc_owner_semaphore_arrays",
        "Semaphore arrays the owner holds (SEMMNI usage).",
        Some("ipc.semaphore_arrays_by_owner")
    ),
    figure!(
        semaphores,
        "sysvipc_owner_semaphores",
        "Semaphores in the owner's arrays (SEMMNS usage).",
        Some("ipc.semaphores_by_owner")
    ),
    figure!(
        message_queues,
        "sysvipc_owner_message_queues",
        "Message queues the owner holds (MSGMNI usage).",
        Some("ipc.message_queues_by_owner")
    ),
    figure!(messages, "sysvipc_owner_messages", "Messages queued in the owner's queues.", None),
    figure!(
        message_bytes,
        "sysvipc_owner_message_bytes",
        "Bytes queued in the owner's queues.",
        Some("ipc.message_bytes_by_owner")
    ),
    figure!(
        segments,
        "sysvipc_owner_shared_memory_segments",
        "Shared memory segments the owner holds (SHMMNI usage).",
        Some("ipc.shared_memory_segments_by_owner")
    ),
    figure!(
        segment_bytes,
        "sysvipc_owner_shared_memory_bytes",
        "Bytes in the owner's segments (SHMALL usage, unrounded).",
        Some("ipc.shared_memory_bytes_by_owner")
    ),
    figure!(
        stale_semaphore_arrays,
        "sysvipc_owner_stale_semaphore_arrays",
        "The owner's semaphore arrays unused for stale_after whose last users are all gone.",
        Some("ipc.stale_semaphore_arrays_by_owner")
    ),
    figure!(
        stale_message_queues,
        "sysvipc_owner_stale_message_queues",
        "The owner's queues unused for stale_after whose last sender and receiver are gone.",
        None
    ),
    figure!(
        stale_message_bytes,
        "sysvipc_owner_stale_message_bytes",
        "Bytes queued in the owner's stale queues.",
        None
    ),
    figure!(
        orphaned_segments,
        "sysvipc_owner_orphaned_segments",
        "The owner's segments with nothing attached for longer than orphan_after.",
        None
    ),
    figure!(
        orphaned_bytes,
        "sysvipc_owner_orphaned_bytes",
        "Bytes in the owner's segments orphaned for longer than orphan_after.",
        Some("ipc.orphaned_shared_memory_bytes_by_owner")
    ),
    figure!(
        destroyed_attached_segments,
        "sysvipc_owner_destroyed_attached_segments",
        "The owner's segments removed (SHM_DEST) but still attached.",
        None
    ),
    figure!(
        destroyed_attached_bytes,
        "sysvipc_owner_destroyed_attached_bytes",
        "Bytes in the owner's removed but still attached segments: freed only on the last detach.",
        Some("ipc.destroyed_attached_bytes_by_owner")
    ),
];

/// The per-owner table of docs/metrics.md, generated from [`OWNER_FIGURES`].
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | chart (a dimension per owner) | meaning |\n|---|---|---|\n");
    for f in OWNER_FIGURES {
        let chart = f.chart.map_or(String::new(), |c| format!("`{c}`"));
        out.push_str(&format!("| `{}` | {} | {} |\n", f.metric, chart, f.help));
    }
    out
}

/// One owner's (or `other`'s) share.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerUsage {
    /// `None` for `other`: every owner beyond the top N.
    pub uid: Option<u32>,
    pub name: Arc<str>,
    #[serde(flatten)]
    pub usage: Usage,
    /// Arrays gained over the last hour: now minus the fewest any census saw in that hour
    /// (the leak-per-reload pattern). 0 for `other`.
    pub semaphore_arrays_growth_1h: u64,
}

/// What a census pass gives the charts: the owners it reports and everyone's totals.
#[derive(Debug, Clone, Copy)]
pub struct OwnerCensus<'a> {
    pub owners: &'a [OwnerUsage],
    pub totals: &'a Usage,
}

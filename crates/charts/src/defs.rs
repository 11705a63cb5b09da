//! Which charts exist and where each value comes from. Netdata's six charts carry Netdata's
//! ids, titles, units, families, types and priorities (from its `proc.plugin` IPC module);
//! the `ipc.*` charts are ours.

use std::fmt::Write;

use crate::owners::{OwnerCensus, OWNER_FIGURES};
use ipcwatch_sampler::Snapshot;

use crate::figures::{FIGURES, QUEUE_FIGURES};
use crate::{Chart, ChartType, QueueChoice, Row};

pub const QUEUE_MESSAGES_CHART: &str = "system.message_queue_messages";
pub const QUEUE_BYTES_CHART: &str = "system.message_queue_bytes";
/// The id Netdata's integration page uses for the messages chart.
pub const QUEUE_MESSAGES_ALIAS: &str = "system.message_queue_message";

#[derive(Debug)]
pub struct ChartDef {
    pub id: &'static str,
    pub title: &'static str,
    pub units: &'static str,
    pub family: &'static str,
    pub chart_type: ChartType,
    pub priority: u32,
    /// Fixed dimensions; the per-queue charts have none until queues appear.
    pub dimensions: &'static [&'static str],
    /// Netdata's context: the chart id, as Netdata's own IPC charts have it.
    pub context: &'static str,
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
    ChartDef { id, title, units, family, chart_type, priority, dimensions, context: id }
}

use ChartType::{Area, Line, Stacked};

/// The chart of every kernel limit: its dimensions are the figures table's limits.
pub const LIMITS_CHART: &str = "ipc.limits";

const fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The dimension of [`LIMITS_CHART`] that figure `i` fills, if it fills one.
const fn limit_dimension(i: usize) -> Option<&'static str> {
    match FIGURES[i].chart {
        Some((chart, dimension)) if same_text(chart, LIMITS_CHART) => Some(dimension),
        _ => None,
    }
}

const LIMIT_DIMENSION_COUNT: usize = {
    let (mut n, mut i) = (0, 0);
    while i < FIGURES.len() {
        if limit_dimension(i).is_some() {
            n += 1;
        }
        i += 1;
    }
    n
};

/// `ipc.limits`'s dimensions, in the figures table's order: a limit added there is charted
/// without a second list to keep in step.
const LIMIT_DIMENSIONS: [&str; LIMIT_DIMENSION_COUNT] = {
    let mut out = [""; LIMIT_DIMENSION_COUNT];
    let (mut n, mut i) = (0, 0);
    while i < FIGURES.len() {
        if let Some(d) = limit_dimension(i) {
            out[n] = d;
            n += 1;
        }
        i += 1;
    }
    out
};

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
    chart(LIMITS_CHART, "IPC Limits", "value", "ipc limits", Line, 1230, &LIMIT_DIMENSIONS),
    chart(
        "ipc.posix_mqueue_queues",
        "IPC POSIX Message Queues",
        "queues",
        "ipc posix",
        Line,
        1260,
        &["queues", "full"],
    ),
    chart(
        "ipc.posix_mqueue_charge",
        "IPC POSIX Message Queues Charged Against RLIMIT_MSGQUEUE",
        "bytes",
        "ipc posix",
        Line,
        1261,
        &["bytes"],
    ),
    chart("ipc.posix_shm_bytes", "IPC /dev/shm Used Bytes", "bytes", "ipc posix", Area, 1262, &["used"]),
    chart(
        "ipc.posix_shm_files",
        "IPC /dev/shm Files",
        "files",
        "ipc posix",
        Line,
        1263,
        &["files", "semaphores", "inodes"],
    ),
    // From the eBPF probes ([ebpf]): what the kernel refused, and how long callers waited.
    // Empty (no values) where the probes do not run.
    chart(
        ALLOCATION_FAILURES_CHART,
        "IPC Allocations Refused in the Last Minute",
        "refusals",
        "ipc refusals",
        Line,
        1270,
        &["sem", "msg", "shm", "mq"],
    ),
    chart(
        SEND_REFUSED_CHART,
        "IPC Messages Refused by Full Queues in the Last Minute",
        "messages",
        "ipc refusals",
        Line,
        1271,
        &["refused"],
    ),
    chart(SEMAPHORE_WAIT_CHART, "IPC Time Spent in semop", "seconds/s", "ipc waits", Line, 1272, &["semop"]),
    chart(SEND_WAIT_CHART, "IPC Time Spent in msgsnd", "seconds/s", "ipc waits", Line, 1273, &["msgsnd"]),
    // From the slow census ([holders]): who holds what, and what nobody holds. A dimension per
    // owner (the top N, then `other`); values change once per census.
    chart(
        "ipc.semaphore_arrays_by_owner",
        "IPC Semaphore Arrays by Owner",
        "arrays",
        "ipc owners",
        Stacked,
        1240,
        &[],
    ),
    chart(
        "ipc.semaphores_by_owner",
        "IPC Semaphores by Owner",
        "semaphores",
        "ipc owners",
        Stacked,
        1241,
        &[],
    ),
    chart(
        "ipc.message_queues_by_owner",
        "IPC Message Queues by Owner",
        "queues",
        "ipc owners",
        Stacked,
        1242,
        &[],
    ),
    chart(
        "ipc.message_bytes_by_owner",
        "IPC Bytes Queued by Owner",
        "bytes",
        "ipc owners",
        Stacked,
        1243,
        &[],
    ),
    chart(
        "ipc.shared_memory_segments_by_owner",
        "IPC Shared Memory Segments by Owner",
        "segments",
        "ipc owners",
        Stacked,
        1244,
        &[],
    ),
    chart(
        "ipc.shared_memory_bytes_by_owner",
        "IPC Shared Memory Bytes by Owner",
        "bytes",
        "ipc owners",
        Stacked,
        1245,
        &[],
    ),
    chart(
        "ipc.stale_semaphore_arrays_by_owner",
        "IPC Stale Semaphore Arrays by Owner",
        "arrays",
        "ipc stale objects",
        Stacked,
        1246,
        &[],
    ),
    chart(
        "ipc.orphaned_shared_memory_bytes_by_owner",
        "IPC Orphaned Shared Memory by Owner",
        "bytes",
        "ipc stale objects",
        Stacked,
        1247,
        &[],
    ),
    chart(
        "ipc.destroyed_attached_bytes_by_owner",
        "IPC Removed but Attached Shared Memory by Owner",
        "bytes",
        "ipc stale objects",
        Stacked,
        1248,
        &[],
    ),
    chart(
        STALE_OBJECTS_CHART,
        "IPC Stale and Orphaned Objects",
        "objects",
        "ipc stale objects",
        Line,
        1250,
        &["semaphore_arrays", "message_queues", "orphaned_segments"],
    ),
    chart(
        STALE_BYTES_CHART,
        "IPC Memory Held by Stale Objects",
        "bytes",
        "ipc stale objects",
        Line,
        1251,
        &["orphaned_shared_memory", "destroyed_attached_shared_memory", "stale_messages"],
    ),
];

pub const ALLOCATION_FAILURES_CHART: &str = "ipc.allocation_failures";
pub const SEND_REFUSED_CHART: &str = "ipc.message_queue_send_refused";
pub const SEMAPHORE_WAIT_CHART: &str = "ipc.semaphore_wait";
pub const SEND_WAIT_CHART: &str = "ipc.message_queue_send_wait";

pub const STALE_OBJECTS_CHART: &str = "ipc.stale_objects";
pub const STALE_BYTES_CHART: &str = "ipc.stale_bytes";

/// The most history rows a census chart keeps, whatever `[charts] history` says: their values
/// change once a census (every minute by default), and the rules look back an hour at most.
pub const CENSUS_HISTORY_ROWS: usize = 3600;

/// Whether a chart is fed by the census (its history is held to [`CENSUS_HISTORY_ROWS`]).
pub fn is_census_chart(id: &str) -> bool {
    id == STALE_OBJECTS_CHART || id == STALE_BYTES_CHART || owner_charts().any(|c| c == id)
}

/// The charts that get a dimension per owner (from [`OWNER_FIGURES`]).
pub fn owner_charts() -> impl Iterator<Item = &'static str> {
    OWNER_FIGURES.iter().filter_map(|f| f.chart)
}

/// Writes one census into its charts' current row: a dimension per owner (owners no longer
/// listed are retired), the namespace's totals, and the alert variables. `None` (no census
/// yet, or it stopped) leaves the row empty.
pub(crate) fn fill_holders(charts: &mut [Chart], at: Row, pass: Option<OwnerCensus<'_>>) {
    let Some(pass) = pass else { return };
    for f in OWNER_FIGURES {
        let Some(id) = f.chart else { continue };
        let chart = find(charts, id);
        let same_owners = chart.dimensions.len() == pass.owners.len()
            && chart.dimensions.iter().zip(pass.owners).all(|(d, o)| d.id == *o.name);
        if !same_owners {
            chart.retain_dimensions(|d| pass.owners.iter().any(|o| &*o.name == d));
        }
        for o in pass.owners {
            chart.set(at, &o.name, (f.read)(&o.usage) as f64);
        }
    }
    let t = pass.totals;
    let stale = find(charts, STALE_OBJECTS_CHART);
    for (dim, v) in [
        ("semaphore_arrays", t.stale_semaphore_arrays),
        ("message_queues", t.stale_message_queues),
        ("orphaned_segments", t.orphaned_segments),
    ] {
        stale.set(at, dim, v as f64);
    }
    // The worst single owner: what the per-owner alerts compare (Netdata's syntax has no
    // per-dimension alerts).
    let named = || pass.owners.iter().filter(|o| o.uid.is_some());
    let top_stale = named().map(|o| o.usage.stale_semaphore_arrays).max().unwrap_or(0);
    let top_growth = named().map(|o| o.semaphore_arrays_growth_1h).max().unwrap_or(0);
    stale.variables.insert("stale_semaphore_arrays_top_owner", top_stale as f64);
    stale.variables.insert("semaphore_arrays_growth_1h_top_owner", top_growth as f64);
    let bytes = find(charts, STALE_BYTES_CHART);
    for (dim, v) in [
        ("orphaned_shared_memory", t.orphaned_bytes),
        ("destroyed_attached_shared_memory", t.destroyed_attached_bytes),
        ("stale_messages", t.stale_message_bytes),
    ] {
        bytes.set(at, dim, v as f64);
    }
}

fn find<'a>(charts: &'a mut [Chart], id: &str) -> &'a mut Chart {
    charts.iter_mut().find(|c| c.id == id).expect("every chart id used here is in CHARTS")
}

/// Where a figure goes: (chart, dimension) positions for its value, the chart position of
/// its variable.
#[derive(Debug, Clone)]
pub struct Slot {
    value: Option<(usize, usize)>,
    variable: Option<usize>,
}

/// Every figure's slot, found once rather than by name every second. Every registry lays its
/// charts out alike, so all share one table ([`shared_slots`]).
pub fn slots(charts: &[Chart]) -> Vec<Slot> {
    let chart =
        |id: &str| charts.iter().position(|c| c.id == id).expect("every chart id used here is in CHARTS");
    FIGURES
        .iter()
        .map(|f| Slot {
            value: f.chart.map(|(c, d)| {
                let ci = chart(c);
                let di = charts[ci].dimensions.iter().position(|x| x.id == d).expect("a fixed dimension");
                (ci, di)
            }),
            variable: f.variable.map(|(c, _)| chart(c)),
        })
        .collect()
}

/// Writes one row of values into the charts, from the figures table. A failed collector
/// leaves its charts' row empty (NaN): the last good value is not carried forward as if fresh.
/// The slots of the chart layout every registry has.
pub fn shared_slots(charts: &[Chart]) -> &'static [Slot] {
    static SLOTS: std::sync::OnceLock<Vec<Slot>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| slots(charts))
}

/// The charts the eBPF probes fill, the last four by priority (see [`crate::RegistryConfig::probes`]).
pub const PROBE_CHARTS: [&str; 4] =
    [ALLOCATION_FAILURES_CHART, SEND_REFUSED_CHART, SEMAPHORE_WAIT_CHART, SEND_WAIT_CHART];

/// Whether a registry's `charts` include the probes' (they come last).
pub(crate) fn has_probe_charts(charts: &[Chart]) -> bool {
    charts.last().is_some_and(|c| PROBE_CHARTS.contains(&c.id))
}

/// The probe charts' positions in a registry that has them, found once (every such registry
/// lays its charts out alike).
fn probe_charts(charts: &[Chart]) -> [usize; 4] {
    static AT: std::sync::OnceLock<[usize; 4]> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        PROBE_CHARTS
            .map(|id| charts.iter().position(|c| c.id == id).expect("a registry with the probes' charts"))
    })
}

/// The probes' figures, where they run. The waits are seconds waited per second of the
/// tick: the average number of callers waiting.
fn fill_probes(charts: &mut [Chart], at: Row, snap: &Snapshot, every: f64) {
    let Some(p) = &snap.probes else { return };
    if !has_probe_charts(charts) {
        return;
    }
    let [refused, send_refused, sem_wait, send_wait] = probe_charts(charts);
    for (i, v) in p.refused_last_minute.iter().enumerate() {
        charts[refused].set_at(at, i, *v as f64);
    }
    charts[send_refused].set_at(at, 0, p.send_refused_last_minute as f64);
    charts[sem_wait].set_at(at, 0, p.semaphore_wait_new_ns as f64 / 1e9 / every);
    charts[send_wait].set_at(at, 0, p.send_wait_new_ns as f64 / 1e9 / every);
}

/// Everything [`fill`] would put in a row, as f64 bits (NaN where it would put nothing), in a
/// fixed order: two rows with the same figures fill the charts alike, so the registry need
/// not touch them (see [`crate::Registry::update`]).
pub(crate) fn figures(snap: &Snapshot, queues: &QueueChoice, every: f64, out: &mut Vec<u64>) {
    let bits = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64).to_bits();
    match &snap.probes {
        Some(p) => {
            out.push(1);
            out.extend(p.refused_last_minute.iter().map(|v| bits(Some(*v))));
            out.push(bits(Some(p.send_refused_last_minute)));
            out.push((p.semaphore_wait_new_ns as f64 / 1e9 / every).to_bits());
            out.push((p.send_wait_new_ns as f64 / 1e9 / every).to_bits());
        }
        None => out.push(0),
    }
    out.extend(FIGURES.iter().map(|f| bits((f.read)(snap))));
    match &snap.message_queues {
        Some(msg) => {
            out.push(queues.queues().len() as u64);
            for queue in queues.queues() {
                out.push(queue.id as u64);
                out.extend(QUEUE_FIGURES.iter().filter(|q| q.chart.is_some()).map(|q| bits((q.read)(queue))));
            }
            out.push(msg.items.iter().map(|q| q.fill_ratio()).fold(0.0, f64::max).to_bits());
        }
        None => out.push(u64::MAX),
    }
}

pub(crate) fn fill(
    charts: &mut [Chart],
    at: Row,
    slots: &[Slot],
    snap: &Snapshot,
    queues: &QueueChoice,
    every: f64,
) {
    fill_probes(charts, at, snap, every);
    for (f, slot) in FIGURES.iter().zip(slots) {
        let value = (f.read)(snap);
        if let (Some((ci, di)), Some(v)) = (slot.value, value) {
            charts[ci].set_at(at, di, v as f64);
        }
        if let (Some(ci), Some((_, var))) = (slot.variable, f.variable) {
            charts[ci].variables.insert(var, value.map_or(f64::NAN, |v| v as f64));
        }
    }
    if let Some(msg) = &snap.message_queues {
        let mut id = String::with_capacity(12);
        for q in QUEUE_FIGURES {
            let Some(chart) = q.chart else { continue };
            let chart = find(charts, chart);
            for queue in queues.queues() {
                if let Some(v) = (q.read)(queue) {
                    id.clear();
                    let _ = write!(id, "{}", queue.id);
                    chart.set(at, &id, v as f64);
                }
            }
        }
        // Derived, not measured: how close the fullest queue is to blocking its writers.
        let fullest = msg.items.iter().map(|q| q.fill_ratio()).fold(0.0, f64::max);
        find(charts, "ipc.message_queue_fill").set(at, "max", fullest * 100.0);
    }
}

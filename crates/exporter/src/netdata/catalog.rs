//! Which charts the API lists and how clients name them: the daemon's own under Netdata's
//! ids, every other watched namespace's as `ipc_ns_<inode>.<name>`.

use std::sync::{Arc, RwLock};

use ipcwatch_alerts::Board;
use ipcwatch_charts::Registry;
use ipcwatch_pipeline::FleetPublished;

/// One chart as the API names it.
pub(super) struct ChartRef {
    /// The id clients use.
    pub(super) id: String,
    pub(super) registry: Arc<RwLock<Registry>>,
    /// The id inside its namespace's registry (Netdata's).
    pub(super) inner: &'static str,
    pub(super) alerts: Arc<Board>,
}

/// Every chart of every watched namespace, the daemon's own first.
pub(super) fn charts(p: &FleetPublished) -> Vec<ChartRef> {
    let mut out = Vec::new();
    for (i, n) in p.namespaces.iter().enumerate() {
        let registry = n.published.charts.read().unwrap_or_else(|e| e.into_inner());
        for c in registry.charts() {
            let id = match i {
                0 => c.id.to_string(),
                _ => ipcwatch_charts::namespace_chart_id(&n.label, c.id),
            };
            out.push(ChartRef {
                id,
                registry: n.published.charts.clone(),
                inner: c.id,
                alerts: n.published.alerts.clone(),
            });
        }
    }
    out
}

pub(super) fn find(p: &FleetPublished, id: &str) -> Option<ChartRef> {
    // Netdata's documented alias of the messages chart.
    let id =
        if id == ipcwatch_charts::QUEUE_MESSAGES_ALIAS { ipcwatch_charts::QUEUE_MESSAGES_CHART } else { id };
    charts(p).into_iter().find(|c| c.id == id)
}

pub(super) fn is_queue_chart(inner: &str) -> bool {
    inner == ipcwatch_charts::QUEUE_MESSAGES_CHART || inner == ipcwatch_charts::QUEUE_BYTES_CHART
}

/// `ipc_ns_N.ipc_semaphores` back to Netdata's `system.ipc_semaphores` (the context).
pub(super) fn unscope(chart: &str) -> String {
    let name = chart.split_once('.').map_or(chart, |(_, n)| n);
    ipcwatch_charts::CHARTS
        .iter()
        .find(|d| d.id.split_once('.').map(|(_, n)| n) == Some(name))
        .map_or_else(|| chart.to_string(), |d| d.id.to_string())
}

pub(super) fn plugin_of(id: &str) -> &'static str {
    if id.starts_with("system.") {
        "proc.plugin"
    } else {
        "ipcwatch"
    }
}

pub(super) fn hostname(p: &FleetPublished) -> String {
    p.namespaces.first().map_or_else(String::new, |n| n.published.alerts.hostname.clone())
}

/// The latest value of each chart variable that is a limit, for Netdata's `red` line.
pub(super) fn red_line(c: &ipcwatch_charts::Chart) -> Option<f64> {
    c.variables
        .iter()
        .find(|(k, _)| k.ends_with("_max") || **k == "posix_shm_size")
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite() && *v < 1e18)
}

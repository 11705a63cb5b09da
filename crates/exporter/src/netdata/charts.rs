//! `/api/v1/info`, `/api/v1/charts` and `/api/v1/chart`.

use ipcwatch_charts::{Chart, ChartView};
use ipcwatch_pipeline::FleetPublished;
use serde_json::{json, Map, Value};

use super::catalog::*;
use super::format::*;
use crate::State;

/// One chart's JSON as /api/v1/chart and /api/v1/charts give it.
pub(super) fn chart_json(r: &ChartRef, c: ChartView<'_>) -> Value {
    let (first, last) = (c.times().next().unwrap_or(0.0), c.times().next_back().unwrap_or(0.0));
    let kind = r.id.split_once('.').map_or(r.id.as_str(), |(t, _)| t);
    let duration = if c.times().len() == 0 { 0 } else { (last - first) as i64 + 1 };
    let dimensions: Map<String, Value> =
        ordered(r, c.chart()).iter().map(|d| (d.id.to_string(), json!({ "name": d.name() }))).collect();
    let variables: Map<String, Value> =
        c.variables.iter().map(|(k, v)| (k.to_string(), number(*v))).collect();
    let alarms: Map<String, Value> = r
        .alerts
        .alerts
        .iter()
        .filter(|a| *a.chart == *r.id && a.status != ipcwatch_alerts::Status::Removed)
        .map(|a| {
            let alarm = json!({
                "id": a.id,
                "status": a.status.name(),
                "units": a.rule.units.as_deref().unwrap_or(""),
                "update_every": a.every as i64,
            });
            (a.rule.name.to_string(), alarm)
        })
        .collect();
    json!({
        "id": r.id,
        "name": r.id,
        "type": kind,
        "family": c.family,
        "context": c.context,
        "title": format!("{} ({})", c.title, r.id),
        "priority": c.priority,
        "plugin": plugin_of(c.id),
        "module": "ipc",
        "units": c.units,
        "data_url": format!("/api/v1/data?chart={}", r.id),
        "chart_type": c.chart_type.as_str(),
        "duration": duration,
        "first_entry": first as i64,
        "last_entry": last as i64,
        "update_every": 1,
        "dimensions": dimensions,
        "chart_variables": variables,
        "green": null,
        "red": red_line(&c).map_or(Value::Null, number),
        "alarms": alarms,
        "chart_labels": { "_collect_plugin": plugin_of(c.id), "_collect_module": "ipc" },
        "functions": {},
    })
}

/// A chart's dimensions in Netdata's order: its per-queue charts list the newest dimension
/// first (Netdata prepends), the others in definition order.
pub(super) fn ordered<'a>(r: &ChartRef, c: &'a Chart) -> Vec<&'a ipcwatch_charts::Dimension> {
    let mut d: Vec<&ipcwatch_charts::Dimension> = c.dimensions.iter().collect();
    if r.inner == ipcwatch_charts::QUEUE_MESSAGES_CHART || r.inner == ipcwatch_charts::QUEUE_BYTES_CHART {
        d.reverse();
    }
    d
}

pub(super) fn info(state: &State, p: &FleetPublished) -> String {
    let (mut normal, mut warning, mut critical) = (0, 0, 0);
    for n in &p.namespaces {
        for a in n.published.alerts.alerts.iter() {
            match a.status {
                ipcwatch_alerts::Status::Warning => warning += 1,
                ipcwatch_alerts::Status::Critical => critical += 1,
                ipcwatch_alerts::Status::Removed => {}
                _ => normal += 1,
            }
        }
    }
    let charts = charts(p).len();
    serde_json::to_string_pretty(&serde_json::json!({
        "version": format!("v{}-ipcwatch", state.build.version),
        "uid": hostname(p),
        "mirrored_hosts": [hostname(p)],
        "mirrored_hosts_status": [{"guid": hostname(p), "hostname": hostname(p), "reachable": true, "hops": 0, "claim_id": null, "node_id": null}],
        "alarms": {"normal": normal, "warning": warning, "critical": critical},
        "os_name": "linux",
        "os_id": "linux",
        "kernel_name": "Linux",
        "architecture": std::env::consts::ARCH,
        "virtualization": "none",
        "container": "none",
        "collectors": [{"plugin": "proc.plugin", "module": "ipc"}, {"plugin": "ipcwatch", "module": "ipc"}],
        "charts-count": charts,
        "metrics-count": charts,
        "memory-mode": "ram",
        "multidb-disk-quota": 0,
        "page-cache-size": 0,
        "stream-enabled": false,
        "web-enabled": true,
        "https-enabled": false,
        "buildinfo": "ipcwatch",
        "release-channel": "stable",
        "host_labels": {"_os_name": "linux", "_is_parent": "false"},
        "cloud-enabled": false,
        "cloud-available": false,
        "agent-claimed": false,
        "aclk-available": false,
        "anonymous-statistics": false,
    }))
    .unwrap_or_default()
}

pub(super) fn charts_json(state: &State, p: &FleetPublished) -> String {
    let refs = charts(p);
    let mut charts = Map::new();
    let mut dims = 0;
    let mut history = 0;
    for r in &refs {
        let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = reg.chart(r.inner) {
            dims += c.dimensions.len();
            history = history.max(c.history_len());
            charts.insert(r.id.clone(), chart_json(r, c));
        }
    }
    let alarms: usize = p.namespaces.iter().map(|n| n.published.alerts.alerts.len()).sum();
    let count = charts.len();
    pretty(&json!({
        "hostname": hostname(p),
        "version": format!("v{}-ipcwatch", state.build.version),
        "release_channel": "stable",
        "os": "linux",
        "timezone": "Etc/UTC",
        "update_every": 1,
        "history": history,
        "memory_mode": "ram",
        "custom_info": "",
        "charts": charts,
        "charts_count": count,
        "dimensions_count": dims,
        "alarms_count": alarms,
        "rrd_memory_bytes": 0,
        "hosts_count": 1,
        "hosts": [{ "hostname": hostname(p) }],
    }))
}

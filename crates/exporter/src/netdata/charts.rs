//! `/api/v1/info`, `/api/v1/charts` and `/api/v1/chart`.

use std::fmt::Write as _;

use ipcwatch_charts::{Chart, ChartView};
use ipcwatch_pipeline::FleetPublished;

use super::catalog::*;
use super::format::*;
use crate::State;

/// One chart's JSON as /api/v1/chart and /api/v1/charts give it.
pub(super) fn chart_json(r: &ChartRef, c: ChartView<'_>, indent: &str) -> String {
    let (first, last) =
        (c.times().next().copied().unwrap_or(0.0), c.times().next_back().copied().unwrap_or(0.0));
    let kind = r.id.split_once('.').map_or(r.id.as_str(), |(t, _)| t);
    let mut o = String::new();
    let i = indent;
    let _ = writeln!(o, "{i}{{");
    let _ = writeln!(o, "{i}\t\"id\": {},", js(&r.id));
    let _ = writeln!(o, "{i}\t\"name\": {},", js(&r.id));
    let _ = writeln!(o, "{i}\t\"type\": {},", js(kind));
    let _ = writeln!(o, "{i}\t\"family\": {},", js(c.family));
    let _ = writeln!(o, "{i}\t\"context\": {},", js(c.context));
    let _ = writeln!(o, "{i}\t\"title\": {},", js(&format!("{} ({})", c.title, r.id)));
    let _ = writeln!(o, "{i}\t\"priority\": {},", c.priority);
    let _ = writeln!(o, "{i}\t\"plugin\": {},", js(plugin_of(c.id)));
    let _ = writeln!(o, "{i}\t\"module\": \"ipc\",");
    let _ = writeln!(o, "{i}\t\"units\": {},", js(c.units));
    let _ = writeln!(o, "{i}\t\"data_url\": {},", js(&format!("/api/v1/data?chart={}", r.id)));
    let _ = writeln!(o, "{i}\t\"chart_type\": {},", js(c.chart_type.as_str()));
    let duration = if c.times().len() == 0 { 0 } else { (last - first) as i64 + 1 };
    let _ = writeln!(o, "{i}\t\"duration\": {duration},");
    let _ = writeln!(o, "{i}\t\"first_entry\": {},", first as i64);
    let _ = writeln!(o, "{i}\t\"last_entry\": {},", last as i64);
    let _ = writeln!(o, "{i}\t\"update_every\": 1,");
    let dims: Vec<String> = ordered(r, c.chart())
        .iter()
        .map(|d| format!("{i}\t\t{}: {{ \"name\": {} }}", js(&d.id), js(d.name())))
        .collect();
    let _ = writeln!(o, "{i}\t\"dimensions\": {{\n{}\n{i}\t}},", dims.join(",\n"));
    let vars: Vec<String> =
        c.variables.iter().map(|(k, v)| format!("{i}\t\t{}: {}", js(k), num(*v))).collect();
    let _ = writeln!(o, "{i}\t\"chart_variables\": {{\n{}\n{i}\t}},", vars.join(",\n"));
    let _ = writeln!(o, "{i}\t\"green\": null,");
    let _ = writeln!(o, "{i}\t\"red\": {},", red_line(&c).map_or("null".into(), num));
    let alarms: Vec<String> = r
        .alerts
        .alerts
        .iter()
        .filter(|a| *a.chart == *r.id && a.status != ipcwatch_alerts::Status::Removed)
        .map(|a| {
            format!(
                "{i}\t\t{}: {{\n{i}\t\t\t\"id\": {},\n{i}\t\t\t\"status\": {},\n{i}\t\t\t\"units\": {},\n{i}\t\t\t\"update_every\": {}\n{i}\t\t}}",
                js(&a.rule.name),
                a.id,
                js(a.status.name()),
                js(a.rule.units.as_deref().unwrap_or("")),
                a.every as i64
            )
        })
        .collect();
    let _ = writeln!(o, "{i}\t\"alarms\": {{\n{}\n{i}\t}},", alarms.join(",\n"));
    let _ = writeln!(
        o,
        "{i}\t\"chart_labels\": {{\n{i}\t\t\"_collect_plugin\":{},\n{i}\t\t\"_collect_module\":\"ipc\"\n{i}\t}},",
        js(plugin_of(c.id))
    );
    let _ = writeln!(o, "{i}\t\"functions\": {{\n{i}\t}}");
    let _ = write!(o, "{i}}}");
    o
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
    let mut bodies = Vec::with_capacity(refs.len());
    let mut dims = 0;
    let mut history = 0;
    for r in &refs {
        let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = reg.chart(r.inner) {
            dims += c.dimensions.len();
            history = history.max(c.history_len());
            bodies.push(format!("\t\t{}: {}", js(&r.id), chart_json(r, c, "\t\t").trim_start()));
        }
    }
    let alarms: usize = p.namespaces.iter().map(|n| n.published.alerts.alerts.len()).sum();
    format!(
        "{{\n\t\"hostname\": {},\n\t\"version\": {},\n\t\"release_channel\": \"stable\",\n\t\"os\": \"linux\",\n\t\"timezone\": \"Etc/UTC\",\n\t\"update_every\": 1,\n\t\"history\": {history},\n\t\"memory_mode\": \"ram\",\n\t\"custom_info\": \"\",\n\t\"charts\": {{\n{}\n\t}},\n\t\"charts_count\": {},\n\t\"dimensions_count\": {dims},\n\t\"alarms_count\": {alarms},\n\t\"rrd_memory_bytes\": 0,\n\t\"hosts_count\": 1,\n\t\"hosts\": [\n\t\t{{\n\t\t\t\"hostname\": {}\n\t\t}}\n\t]\n}}\n",
        js(&hostname(p)),
        js(&format!("v{}-ipcwatch", state.build.version)),
        bodies.join(",\n"),
        bodies.len(),
        js(&hostname(p)),
    )
}

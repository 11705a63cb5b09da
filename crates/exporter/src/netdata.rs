//! Netdata's `/api/v1` for the IPC charts, so Netdata's clients (Home Assistant, netdata-pandas,
//! Grafana's Netdata sources, the dashboard at `/`) work unchanged. Shapes, field names,
//! defaults, status codes and error bodies follow a live Netdata 1.37.1 (docs/netdata-api.md).
//!
//! Every watched IPC namespace's charts are listed: the daemon's own under Netdata's ids, the
//! others as `ipc_ns_<inode>.<name>` (their context stays Netdata's id, so a client can group
//! a chart across namespaces).

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use ipcwatch_alerts::Board;
use ipcwatch_charts::{Chart, ChartView, Registry};
use ipcwatch_pipeline::FleetPublished;

use crate::State;

/// One chart as the API names it.
struct ChartRef {
    /// The id clients use.
    id: String,
    registry: Arc<RwLock<Registry>>,
    /// The id inside its namespace's registry (Netdata's).
    inner: &'static str,
    alerts: Arc<Board>,
}

/// Every chart of every watched namespace, the daemon's own first.
fn charts(p: &FleetPublished) -> Vec<ChartRef> {
    let mut out = Vec::new();
    for (i, n) in p.namespaces.iter().enumerate() {
        let registry = n.published.charts.read().unwrap_or_else(|e| e.into_inner());
        for c in registry.charts() {
            let id = match i {
                0 => c.id.to_string(),
                _ => format!("ipc_ns_{}.{}", n.label, c.id.split_once('.').map_or(c.id, |(_, name)| name)),
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

fn find(p: &FleetPublished, id: &str) -> Option<ChartRef> {
    // Netdata's documented alias of the messages chart.
    let id =
        if id == ipcwatch_charts::QUEUE_MESSAGES_ALIAS { ipcwatch_charts::QUEUE_MESSAGES_CHART } else { id };
    charts(p).into_iter().find(|c| c.id == id)
}

/// `+` and `%XX` decoded (query strings).
fn decode(s: &str) -> String {
    percent_decode(s, true)
}

/// `%XX` decoded, where XX are two hex digits (`%+1` is no escape: `from_str_radix` would
/// take the sign); with `plus`, `+` is a space (query strings, not paths).
fn percent_decode(s: &str, plus: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's path and query as Netdata reads them: it decodes the path before it splits
/// off the query, so `/api/v1/data%3Fchart=x` (yarl's encoding, which Home Assistant's
/// client sends) is the data endpoint with `chart=x`.
pub(crate) fn path_and_query(path: &str, query: Option<&str>) -> (String, String) {
    let query = query.unwrap_or("");
    if !path.contains('%') {
        return (path.to_string(), query.to_string());
    }
    let decoded = percent_decode(path, false);
    match decoded.split_once('?') {
        Some((p, q)) if query.is_empty() => (p.to_string(), q.to_string()),
        Some((p, q)) => (p.to_string(), format!("{q}&{query}")),
        None => (decoded, query.to_string()),
    }
}

/// The query's parameters, decoded; a key without `=` has an empty value.
pub(crate) fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A number as Netdata prints it: integers bare, others with up to 7 decimals.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.7}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The latest value of each chart variable that is a limit, for Netdata's `red` line.
fn red_line(c: &Chart) -> Option<f64> {
    c.variables
        .iter()
        .find(|(k, _)| k.ends_with("_max") || **k == "posix_shm_size")
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite() && *v < 1e18)
}

fn plugin_of(id: &str) -> &'static str {
    if id.starts_with("system.") {
        "proc.plugin"
    } else {
        "ipcwatch"
    }
}

/// One chart's JSON as /api/v1/chart and /api/v1/charts give it.
fn chart_json(r: &ChartRef, c: ChartView<'_>, indent: &str) -> String {
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
fn ordered<'a>(r: &ChartRef, c: &'a Chart) -> Vec<&'a ipcwatch_charts::Dimension> {
    let mut d: Vec<&ipcwatch_charts::Dimension> = c.dimensions.iter().collect();
    if r.inner == ipcwatch_charts::QUEUE_MESSAGES_CHART || r.inner == ipcwatch_charts::QUEUE_BYTES_CHART {
        d.reverse();
    }
    d
}

type Answer = (u16, &'static str, String);

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Answers `/api/v1/<endpoint>`; `None` for endpoints this module does not serve.
pub(crate) fn answer(state: &State, endpoint: &str, query: &str) -> Option<Answer> {
    let params = params(query);
    let Some(p) = state.latest() else {
        return Some((503, TEXT, "Not ready: no recent sample\n".into()));
    };
    Some(match endpoint {
        "info" => (200, JSON, info(state, &p)),
        "charts" => (200, JSON, charts_json(state, &p)),
        "chart" => {
            let id = param(&params, "chart").unwrap_or("");
            match find(&p, id) {
                Some(r) => {
                    let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
                    match reg.chart(r.inner) {
                        Some(c) => (200, JSON, chart_json(&r, c, "\t\t")),
                        None => (404, TEXT, format!("Chart is not found: {id}")),
                    }
                }
                None => (404, TEXT, format!("Chart is not found: {id}")),
            }
        }
        "data" => crate::netdata_data::data(&p, &params),
        "allmetrics" => crate::netdata_data::allmetrics(state, &p, &params),
        "alarm_count" => (200, JSON, alarm_count(&p, &params)),
        "alarm_log" => (200, JSON, alarm_log(&p, &params)),
        "alarm_variables" => {
            let id = param(&params, "chart").unwrap_or("");
            match find(&p, id) {
                Some(r) => (200, JSON, alarm_variables(&r)),
                None => (404, TEXT, format!("Chart is not found: {id}")),
            }
        }
        _ => return None,
    })
}

pub(crate) fn find_chart(
    p: &FleetPublished,
    id: &str,
) -> Option<(String, Arc<RwLock<Registry>>, &'static str)> {
    find(p, id).map(|r| (r.id, r.registry, r.inner))
}

pub(crate) fn all_charts(p: &FleetPublished) -> Vec<(String, Arc<RwLock<Registry>>, &'static str)> {
    charts(p).into_iter().map(|r| (r.id, r.registry, r.inner)).collect()
}

pub(crate) fn is_queue_chart(inner: &str) -> bool {
    inner == ipcwatch_charts::QUEUE_MESSAGES_CHART || inner == ipcwatch_charts::QUEUE_BYTES_CHART
}

fn hostname(p: &FleetPublished) -> String {
    p.namespaces.first().map_or_else(String::new, |n| n.published.alerts.hostname.clone())
}

fn info(state: &State, p: &FleetPublished) -> String {
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

fn charts_json(state: &State, p: &FleetPublished) -> String {
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

/// The alert transitions after unique id `after`, newest first, with Netdata's fields.
fn alarm_log(p: &FleetPublished, params: &[(String, String)]) -> String {
    let after: u64 = param(params, "after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let host = hostname(p);
    let mut entries: Vec<serde_json::Value> = Vec::new();
    for n in &p.namespaces {
        let log = n.published.alarm_log.lock().unwrap_or_else(|e| e.into_inner());
        for e in log.iter().filter(|e| e.unique_id > after) {
            let r = &e.rule;
            let units = r.units.clone().unwrap_or_default();
            let context =
                if e.chart.starts_with("ipc_ns_") { unscope(&e.chart) } else { e.chart.to_string() };
            entries.push(serde_json::json!({
                "hostname": host,
                "utc_offset": 0,
                "timezone": "UTC",
                "unique_id": e.unique_id,
                "alarm_id": e.alarm_id,
                "alarm_event_id": e.unique_id,
                "config_hash_id": "00000000-0000-0000-0000-000000000000",
                "name": e.name(),
                "chart": e.chart,
                "context": context,
                "family": e.family,
                "class": r.class.clone().unwrap_or_default(),
                "component": r.component.clone().unwrap_or_default(),
                "type": r.type_.clone().unwrap_or_default(),
                "processed": true,
                "updated": false,
                "exec_run": 0,
                "exec_failed": false,
                "exec": r.exec.clone().unwrap_or_default(),
                "recipient": r.to.clone().unwrap_or_default(),
                "exec_code": 0,
                "source": format!("{}@{}", r.line, r.file.display()),
                "command": "",
                "units": units,
                "when": e.when,
                "duration": e.duration,
                "non_clear_duration": if e.old_status.is_raised() { e.duration } else { 0 },
                "status": e.status.name(),
                "old_status": e.old_status.name(),
                "delay": e.delay as i64,
                "delay_up_to_timestamp": e.when + e.delay as i64,
                "updated_by_id": 0,
                "updates_id": 0,
                "value_string": ipcwatch_alerts::format_value(e.value, &units),
                "old_value_string": ipcwatch_alerts::format_value(e.old_value, &units),
                "last_repeat": "0",
                "silenced": "false",
                "info": r.info.clone().unwrap_or_default(),
                "value": if e.value.is_finite() { serde_json::json!(e.value) } else { serde_json::Value::Null },
                "old_value": if e.old_value.is_finite() { serde_json::json!(e.old_value) } else { serde_json::Value::Null },
            }));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e["unique_id"].as_u64().unwrap_or(0)));
    serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into())
}

/// `[N]`: raised alerts (or those of `status`) of charts of `context`.
fn alarm_count(p: &FleetPublished, params: &[(String, String)]) -> String {
    let status = param(params, "status").unwrap_or("RAISED").to_ascii_uppercase();
    let context = param(params, "context").filter(|c| !c.is_empty());
    let mut n = 0;
    for (i, ns) in p.namespaces.iter().enumerate() {
        for a in ns.published.alerts.alerts.iter() {
            let ctx_ok = context.is_none_or(|c| {
                let inner = if i == 0 { a.chart.to_string() } else { unscope(&a.chart) };
                c.split([',', '|']).any(|c| c == inner)
            });
            let st_ok = match status.as_str() {
                "RAISED" => a.status.is_raised(),
                s => a.status.name() == s,
            };
            n += (ctx_ok && st_ok) as usize;
        }
    }
    format!("[{n}]\n")
}

/// `ipc_ns_N.ipc_semaphores` back to Netdata's `system.ipc_semaphores` (the context).
fn unscope(chart: &str) -> String {
    let name = chart.split_once('.').map_or(chart, |(_, n)| n);
    ipcwatch_charts::CHARTS
        .iter()
        .find(|d| d.id.split_once('.').map(|(_, n)| n) == Some(name))
        .map_or_else(|| chart.to_string(), |d| d.id.to_string())
}

/// What an alert on the chart can refer to: its dimensions, chart variables and the other
/// charts' variables (host variables).
fn alarm_variables(r: &ChartRef) -> String {
    let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
    let Some(c) = reg.chart(r.inner) else { return "{}".into() };
    let last = c.times().next_back().copied().unwrap_or(f64::NAN);
    let mut chart_vars: Vec<(String, String)> = vec![
        ("last_collected_t".into(), format!("{last:.5}")),
        ("green".into(), "null".into()),
        ("red".into(), red_line(&c).map_or("null".into(), |v| format!("{v:.5}"))),
        ("update_every".into(), "1.00000".into()),
    ];
    for a in r.alerts.alerts.iter().filter(|a| *a.chart == *r.id) {
        chart_vars.push((a.rule.name.to_string(), fmt5(a.value)));
    }
    for d in &c.dimensions {
        let v = c.last(d).unwrap_or(f64::NAN);
        chart_vars.push((d.id.to_string(), fmt5(v)));
        chart_vars.push((format!("{}_raw", d.id), fmt5(v)));
        chart_vars.push((format!("{}_last_collected_t", d.id), format!("{last:.5}")));
    }
    for (k, v) in &c.variables {
        chart_vars.push((k.to_string(), fmt5(*v)));
    }
    let mut host_vars: Vec<(String, String)> = Vec::new();
    for other in reg.charts() {
        for (k, v) in &other.variables {
            host_vars.push((k.to_string(), fmt5(*v)));
        }
    }
    let obj = |vars: &[(String, String)]| -> String {
        vars.iter().map(|(k, v)| format!("\t\t{}: {}", js(k), v)).collect::<Vec<_>>().join(",\n")
    };
    format!(
        "{{\n\t\"chart\": {},\n\t\"chart_name\": {},\n\t\"chart_context\": {},\n\t\"chart_variables\": {{\n{}\n\t}},\n\t\"family\": {},\n\t\"family_variables\": {{\n\t}},\n\t\"host\": {},\n\t\"host_variables\": {{\n{}\n\t}}\n}}\n",
        js(&r.id),
        js(&r.id),
        js(c.context),
        obj(&chart_vars),
        js(c.family),
        js(&r.alerts.hostname),
        obj(&host_vars),
    )
}

fn fmt5(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.5}")
    } else {
        "null".into()
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn escapes_are_two_hex_digits_and_nothing_else() {
        assert_eq!(decode("a%41b"), "aAb");
        assert_eq!(decode("%+1"), "% 1", "a sign is not a hex digit: no byte 1, and + is a space");
        assert_eq!(decode("%-1x"), "%-1x");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("%3F%3f"), "??");
        assert_eq!(decode("%00"), "\0");
        assert_eq!(decode("%4"), "%4", "cut short");
        assert_eq!(decode("%"), "%");
        // Overlong UTF-8 (a `/` as two bytes) is no character: replaced, never a `/`.
        assert_eq!(decode("%C0%AF"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn the_path_is_decoded_before_the_query_is_split_off() {
        let (path, query) = path_and_query("/api/v1/data%3Fchart=system.ipc_semaphores&after=-1", None);
        assert_eq!((path.as_str(), query.as_str()), ("/api/v1/data", "chart=system.ipc_semaphores&after=-1"));
        let (path, query) = path_and_query("/api/v1/data%3Fchart=x", Some("points=1"));
        assert_eq!((path.as_str(), query.as_str()), ("/api/v1/data", "chart=x&points=1"));
        assert_eq!(path_and_query("/metrics", Some("a=1")), ("/metrics".to_string(), "a=1".to_string()));
        assert_eq!(path_and_query("/a%20b", None), ("/a b".to_string(), String::new()));
    }

    #[test]
    fn simple_patterns_follow_netdata() {
        let p = |t: &str| ipcwatch_alerts::Pattern::split_by(t, |c| ",| ".contains(c));
        assert!(p("*").matches("anything") && p("*").matches(""));
        assert!(p("a*").matches("abc") && !p("a*").matches("bac"));
        assert!(p("*c").matches("abc") && p("a*c").matches("abc") && !p("a*c").matches("abd"));
        assert!(p("*b*").matches("abc") && p("a*b*c").matches("aXbYc") && !p("a*b*c").matches("acb"));
        assert!(p("x|y").matches("y") && p("x,y").matches("x") && !p("x|y").matches("z"));
        // The first match decides: a negation before the positive excludes.
        assert!(!p("!abc|a*").matches("abc") && p("!abc|a*").matches("abd"));
        assert!(p("a* !abc").matches("abc"), "the positive came first");
        assert!(!p("").matches("a"), "nothing selects nothing");
        assert!(!p("ab*ba").matches("aba"), "no overlap of the two ends");
    }
}

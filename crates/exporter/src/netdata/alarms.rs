//! `/api/v1/alarm_log`, `/api/v1/alarm_count` and `/api/v1/alarm_variables`.

use ipcwatch_pipeline::FleetPublished;

use super::catalog::*;
use super::format::*;
use serde_json::{json, Map, Value};

/// The alert transitions after unique id `after`, newest first, with Netdata's fields.
pub(super) fn alarm_log(p: &FleetPublished, params: &[(String, String)]) -> String {
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
pub(super) fn alarm_count(p: &FleetPublished, params: &[(String, String)]) -> String {
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

/// What an alert on the chart can refer to: its dimensions, chart variables and the other
/// charts' variables (host variables).
pub(super) fn alarm_variables(r: &ChartRef) -> String {
    let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
    let Some(c) = reg.chart(r.inner) else { return "{}".into() };
    let last = c.times().next_back().unwrap_or(f64::NAN);
    // Every variable a float with 5 decimals, as Netdata prints them (`1.00000`).
    let five = |v: f64| -> Value { ((v * 1e5).round() / 1e5).into() };
    let mut chart_vars = Map::new();
    chart_vars.insert("last_collected_t".into(), five(last));
    chart_vars.insert("green".into(), Value::Null);
    chart_vars.insert("red".into(), red_line(&c).map_or(Value::Null, five));
    chart_vars.insert("update_every".into(), five(1.0));
    for a in r.alerts.alerts.iter().filter(|a| *a.chart == *r.id) {
        chart_vars.insert(a.rule.name.to_string(), five(a.value));
    }
    for d in &c.dimensions {
        let v = c.last(d).unwrap_or(f64::NAN);
        chart_vars.insert(d.id.to_string(), five(v));
        chart_vars.insert(format!("{}_raw", d.id), five(v));
        chart_vars.insert(format!("{}_last_collected_t", d.id), five(last));
    }
    for (k, v) in &c.variables {
        chart_vars.insert(k.to_string(), five(*v));
    }
    let mut host_vars = Map::new();
    for other in reg.charts() {
        for (k, v) in &other.variables {
            host_vars.insert(k.to_string(), five(*v));
        }
    }
    pretty(&json!({
        "chart": r.id,
        "chart_name": r.id,
        "chart_context": c.context,
        "chart_variables": chart_vars,
        "family": c.family,
        "family_variables": {},
        "host": r.alerts.hostname,
        "host_variables": host_vars,
    }))
}

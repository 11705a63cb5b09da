//! `/api/v1/allmetrics`: every chart's latest values, as shell variables, JSON or
//! Prometheus text.

use std::fmt::Write as _;

use ipcwatch_pipeline::FleetPublished;

use super::catalog::{self, ChartRef};
use super::format::*;
use crate::metrics::{Text, Value};
use crate::State;

/// A metric name part: lower-case alphanumerics and `_`.
fn metric_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// One Prometheus family of allmetrics: its samples (chart, family, dimension, value,
/// timestamp) gathered over every chart with its context before it is written.
struct Family {
    name: String,
    help: String,
    samples: Vec<(String, &'static str, String, f64, Option<i64>)>,
}

/// `/api/v1/allmetrics`: every chart's latest values, as Prometheus text (valid: one HELP and
/// TYPE per family, where Netdata repeats TYPE per dimension), shell variables or JSON.
pub(crate) fn allmetrics(state: &State, p: &FleetPublished, params: &[(String, String)]) -> Answer {
    let format = param(params, "format").unwrap_or("shell");
    let yes =
        |k: &str, default: bool| param(params, k).map_or(default, |v| matches!(v, "yes" | "1" | "true" | ""));
    let source = param(params, "source").or_else(|| param(params, "data")).unwrap_or("average");
    let charts = catalog::charts(p);
    let host = catalog::hostname(p);
    match format {
        "prometheus" | "prometheus_all_hosts" => {
            // HELP and TYPE by default, once per family: the output passes `promtool check
            // metrics` (Netdata's repeats TYPE per dimension, and writes no HELP). Written by
            // /metrics' own writer.
            let (help, types, timestamps) = (yes("help", true), yes("types", true), yes("timestamps", true));
            let instance = (format == "prometheus_all_hosts").then_some(host.as_str());
            let mut t = Text::plain();
            if help {
                t.help("netdata_info", "The exporting daemon; always 1.");
            }
            if types {
                t.kind("netdata_info", "gauge");
            }
            let info =
                [("instance", host.as_str()), ("application", "ipcwatch"), ("version", &state.build.version)];
            t.sample_at("netdata_info", &info, Value::Int(1), None);
            // Families first collected, so each gets its HELP and TYPE once.
            let mut families: Vec<Family> = Vec::new();
            for ChartRef { id, registry, inner, .. } in &charts {
                let reg = registry.read().unwrap_or_else(|e| e.into_inner());
                let Some(c) = reg.chart(inner) else { continue };
                let last = c.times().next_back().map_or(0, |t| (t * 1000.0) as i64);
                let name = match source {
                    "as-collected" | "as_collected" => format!("netdata_{}", metric_part(c.context)),
                    other => format!(
                        "netdata_{}_{}_{}",
                        metric_part(c.context),
                        metric_part(c.units),
                        metric_part(other)
                    ),
                };
                let entry = match families.iter_mut().position(|f| f.name == name) {
                    Some(i) => i,
                    None => {
                        let help = format!("{} ({})", c.title, c.units);
                        families.push(Family { name, help, samples: Vec::new() });
                        families.len() - 1
                    }
                };
                let dims: Vec<&ipcwatch_charts::Dimension> = if catalog::is_queue_chart(inner) {
                    c.dimensions.iter().rev().collect()
                } else {
                    c.dimensions.iter().collect()
                };
                for d in dims {
                    let v = match source {
                        "sum" => c.lookup(
                            ipcwatch_charts::Reduce::Sum,
                            last as f64 / 1000.0,
                            -1.0,
                            0.0,
                            Some(std::slice::from_ref(&d.id.to_string())),
                        ),
                        _ => c.last(d).unwrap_or(f64::NAN),
                    };
                    if !v.is_nan() {
                        let sample = (id.clone(), c.family, d.id.to_string(), v, timestamps.then_some(last));
                        families[entry].samples.push(sample);
                    }
                }
            }
            for f in families.iter().filter(|f| !f.samples.is_empty()) {
                if help {
                    t.help(&f.name, &f.help);
                }
                if types {
                    t.kind(&f.name, "gauge");
                }
                for (chart, family, dimension, v, ms) in &f.samples {
                    let mut labels =
                        vec![("chart", chart.as_str()), ("family", *family), ("dimension", dimension)];
                    labels.extend(instance.map(|i| ("instance", i)));
                    t.sample_at(&f.name, &labels, Value::Float(*v), *ms);
                }
            }
            (200, "text/plain; version=0.0.4; charset=utf-8", t.into_string())
        }
        "json" => {
            let mut entries = serde_json::Map::new();
            for ChartRef { id, registry, inner, .. } in &charts {
                let reg = registry.read().unwrap_or_else(|e| e.into_inner());
                let Some(c) = reg.chart(inner) else { continue };
                let last = c.times().next_back().map_or(0, |t| t as i64);
                let dimensions: serde_json::Map<String, serde_json::Value> = c
                    .dimensions
                    .iter()
                    .map(|d| {
                        // Always a float, as Netdata prints it (`9.0000000`).
                        let value =
                            c.last(d).map_or(serde_json::Value::Null, |v| ((v * 1e7).round() / 1e7).into());
                        (d.id.to_string(), serde_json::json!({ "name": d.name(), "value": value }))
                    })
                    .collect();
                let entry = serde_json::json!({
                    "name": id,
                    "family": c.family,
                    "context": c.context,
                    "units": c.units,
                    "last_updated": last,
                    "dimensions": dimensions,
                });
                entries.insert(id.clone(), entry);
            }
            (200, JSON, pretty(&serde_json::Value::Object(entries)))
        }
        // shell (the default)
        _ => {
            let mut out = String::new();
            for ChartRef { id, registry, inner, .. } in &charts {
                let reg = registry.read().unwrap_or_else(|e| e.into_inner());
                let Some(c) = reg.chart(inner) else { continue };
                let _ = writeln!(out, "\n# chart: {id} (name: {id})");
                let prefix = format!("NETDATA_{}", metric_part(id).to_ascii_uppercase());
                let mut total = 0.0;
                let dims: Vec<&ipcwatch_charts::Dimension> = if catalog::is_queue_chart(inner) {
                    c.dimensions.iter().rev().collect()
                } else {
                    c.dimensions.iter().collect()
                };
                for d in dims {
                    let v = c.last(d).unwrap_or(0.0);
                    total += v;
                    let _ = writeln!(
                        out,
                        "{prefix}_{}=\"{}\"      # {}",
                        metric_part(&d.id).to_ascii_uppercase(),
                        v.round() as i64,
                        c.units
                    );
                }
                let _ =
                    writeln!(out, "{prefix}_VISIBLETOTAL=\"{}\"      # {}", total.round() as i64, c.units);
            }
            let _ = write!(out, "\n# NETDATA ALARMS RUNNING\n");
            for ns in &p.namespaces {
                for a in ns.published.alerts.alerts.iter() {
                    let name =
                        format!("NETDATA_ALARM_{}_{}", metric_part(&a.chart), metric_part(&a.rule.name))
                            .to_ascii_uppercase();
                    let _ = writeln!(out, "{name}_VALUE=\"{}\"", num_or_null(Some(a.value)));
                    let _ = writeln!(out, "{name}_STATUS=\"{}\"", a.status.name());
                }
            }
            (200, TEXT, out)
        }
    }
}

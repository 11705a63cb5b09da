//! `/api/v1/data`: a chart's history in Netdata's formats and options.

use std::fmt::Write as _;

use ipcwatch_alerts::delivery::utc as datetime;
use ipcwatch_charts::ChartView;
use ipcwatch_pipeline::FleetPublished;

use super::catalog::{self, ChartRef};
use super::format::*;

/// Netdata's window when a query names none (`after=-600`).
const DEFAULT_WINDOW: i64 = 600;

/// Relative times: Netdata treats |t| up to three years as seconds from now.
const RELATIVE_MAX: i64 = 3 * 365 * 86_400;

/// Most points one query returns (Netdata's history is at most this deep here anyway).
const MAX_POINTS: usize = 100_000;

/// Most values (points × dimensions) one answer holds: a chart of a thousand points and a
/// hundred dimensions. An answer is built whole before it is sent, so this bounds what one
/// request can make the daemon hold; a bigger query is refused with 400.
pub(crate) const MAX_CELLS: usize = 100_000;

#[derive(Clone, Copy, PartialEq)]
enum Group {
    Average,
    Min,
    Max,
    Sum,
    IncrementalSum,
}

#[derive(Default)]
struct Options {
    jsonwrap: bool,
    ms: bool,
    flip: bool,
    nonzero: bool,
    null2zero: bool,
    abs: bool,
    percentage: bool,
    unaligned: bool,
    objectrows: bool,
    min2max: bool,
}

impl Options {
    fn parse(s: &str) -> (Options, Vec<&str>) {
        let mut o = Options::default();
        let mut given = Vec::new();
        for w in s.split([',', '|', ' ']).filter(|w| !w.is_empty()) {
            match w {
                "jsonwrap" => o.jsonwrap = true,
                "ms" | "milliseconds" => o.ms = true,
                "seconds" => o.ms = false,
                "flip" | "reversed" => o.flip = true,
                "nonzero" => o.nonzero = true,
                "null2zero" => o.null2zero = true,
                "abs" | "absolute" | "absolute-sum" => o.abs = true,
                "percentage" => o.percentage = true,
                "unaligned" => o.unaligned = true,
                "objectrows" => o.objectrows = true,
                "min2max" => o.min2max = true,
                "google_json" | "match-ids" | "match-names" | "natural-points" | "virtual-points" => {}
                _ => continue,
            }
            given.push(w);
        }
        (o, given)
    }
}

/// The result of a query: labels, then rows (time, one value per dimension) newest first.
struct Result {
    dims: Vec<(String, String)>,
    rows: Vec<(i64, Vec<Option<f64>>)>,
    before: i64,
    after: i64,
    first_entry: i64,
    last_entry: i64,
    latest: Vec<Option<f64>>,
    group: &'static str,
    points: usize,
    db_points: usize,
}

fn query(
    c: ChartView<'_>,
    queue_chart: bool,
    params: &[(String, String)],
    o: &Options,
) -> std::result::Result<Result, String> {
    let times: Vec<i64> = c.times().map(|t| t.floor() as i64).collect();
    let first_entry = times.first().copied().unwrap_or(0);
    let last_entry = times.last().copied().unwrap_or(0);
    let num = |k: &str| param(params, k).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as i64);
    // The newest complete second is the one before the last entry, as Netdata answers.
    let anchor = last_entry.saturating_sub(1);
    // A window reaches back no further than the history that exists, or Netdata's default
    // window where less exists (Netdata pads that with nulls, and so do we): a client asking
    // for ten years gets what is kept, not ten years of nulls. It also keeps every sum below
    // in range whatever it asks.
    let oldest = first_entry.min(anchor.saturating_sub(DEFAULT_WINDOW - 1));
    let clamp = |t: i64| t.clamp(oldest, anchor);
    // Small values are seconds relative to now (before) and to `before` (after).
    let before = match num("before").unwrap_or(0) {
        b if b.unsigned_abs() <= RELATIVE_MAX as u64 => clamp(anchor.saturating_add(b)),
        b => clamp(b),
    };
    let after = match num("after").unwrap_or(-600) {
        a if a.unsigned_abs() <= RELATIVE_MAX as u64 => clamp(before - a.abs() + 1),
        a => clamp(a),
    };
    let (before, after) = if after > before { (after, before) } else { (before, after) };
    let span = (before - after + 1).max(1) as usize;
    let wanted = num("points").filter(|p| *p > 0).map_or(span, |p| p as usize).min(MAX_POINTS);
    let group_secs = span.div_ceil(wanted.max(1)).max(1) as i64;
    let method = match param(params, "group").unwrap_or("average") {
        "min" => Group::Min,
        "max" => Group::Max,
        "sum" => Group::Sum,
        "incremental-sum" | "incremental_sum" => Group::IncrementalSum,
        _ => Group::Average,
    };
    let group_name = match method {
        Group::Average => "average",
        Group::Min => "min",
        Group::Max => "max",
        Group::Sum => "sum",
        Group::IncrementalSum => "incremental-sum",
    };
    // A simple pattern, as Netdata takes it: `dimensions=*` is every one.
    let selected = param(params, "dimensions")
        .filter(|d| !d.is_empty())
        .map(|d| ipcwatch_alerts::Pattern::split_by(d, |c| c == ',' || c == '|'));
    let mut dims: Vec<&ipcwatch_charts::Dimension> = c
        .dimensions
        .iter()
        .filter(|d| selected.as_ref().is_none_or(|s| s.matches(&d.id) || s.matches(d.name())))
        .collect();
    if queue_chart {
        dims.reverse();
    }
    // Group ends aligned to multiples of the group width, newest first.
    let last_end =
        if o.unaligned || group_secs == 1 { before } else { before - before.rem_euclid(group_secs) };
    let points = if group_secs == 1 { span } else { span / group_secs as usize };
    if points.saturating_mul(dims.len().max(1)) > MAX_CELLS {
        return Err(format!(
            "The answer would hold {points} points of {} dimensions, more than {MAX_CELLS} values: ask for fewer points (points=) or dimensions (dimensions=).",
            dims.len()
        ));
    }
    let mut rows = Vec::with_capacity(points);
    for k in 0..points as i64 {
        let end = last_end - k * group_secs;
        if end < after {
            break;
        }
        let lo = times.partition_point(|t| *t <= end - group_secs);
        let hi = times.partition_point(|t| *t <= end);
        let values = dims
            .iter()
            .map(|d| {
                let vals: Vec<f64> =
                    (lo..hi).map(|i| f64::from(c.value(d, i))).filter(|v| !v.is_nan()).collect();
                if vals.is_empty() {
                    return None;
                }
                Some(match method {
                    Group::Average => vals.iter().sum::<f64>() / vals.len() as f64,
                    Group::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                    Group::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    Group::Sum => vals.iter().sum(),
                    Group::IncrementalSum => vals.last().unwrap_or(&0.0) - vals.first().unwrap_or(&0.0),
                })
            })
            .collect();
        rows.push((end, values));
    }
    let latest = dims.iter().map(|d| c.last(d)).collect();
    Ok(Result {
        dims: dims.iter().map(|d| (d.id.to_string(), d.name().to_string())).collect(),
        rows,
        before,
        after,
        first_entry,
        last_entry,
        latest,
        group: group_name,
        points,
        db_points: times.len(),
    })
}

/// Applies the value options (nonzero, abs, percentage, null2zero, flip).
fn shape(r: &mut Result, o: &Options) {
    if o.nonzero {
        let keep: Vec<bool> =
            (0..r.dims.len()).map(|i| r.rows.iter().any(|(_, v)| v[i].is_some_and(|x| x != 0.0))).collect();
        if keep.iter().any(|k| *k) {
            let filter = |v: &mut Vec<Option<f64>>| {
                let mut i = 0;
                v.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            };
            for (_, v) in &mut r.rows {
                filter(v);
            }
            filter(&mut r.latest);
            let mut i = 0;
            r.dims.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
    }
    for (_, v) in &mut r.rows {
        if o.abs {
            v.iter_mut().for_each(|x| *x = x.map(f64::abs));
        }
        if o.percentage {
            let total: f64 = v.iter().flatten().map(|x| x.abs()).sum();
            v.iter_mut().for_each(|x| *x = x.map(|x| if total > 0.0 { x * 100.0 / total } else { 0.0 }));
        }
        if o.null2zero {
            v.iter_mut().for_each(|x| *x = Some(x.unwrap_or(0.0)));
        }
    }
    if o.flip {
        r.rows.reverse();
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (the daemon's reports are in UTC, as Netdata's are in its TZ).
fn date_text(t: i64) -> String {
    let (y, m, d, h, mi, s) = datetime(t);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

fn time(t: i64, o: &Options) -> i64 {
    if o.ms {
        t * 1000
    } else {
        t
    }
}

/// The single value per row of the array and ssv formats: the sum of the dimensions, or
/// their spread with min2max.
fn row_value(v: &[Option<f64>], o: &Options) -> Option<f64> {
    let vals: Vec<f64> = v.iter().flatten().copied().collect();
    if vals.is_empty() {
        return None;
    }
    Some(if o.min2max {
        vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - vals.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        vals.iter().sum()
    })
}

fn json_result(r: &Result, o: &Options) -> String {
    let mut out = String::new();
    let labels: Vec<String> =
        std::iter::once(js("time")).chain(r.dims.iter().map(|(_, name)| js(name))).collect();
    let _ = write!(out, "{{\n \"labels\": [{}],\n    \"data\":\n [\n", labels.join(","));
    let rows: Vec<String> = r
        .rows
        .iter()
        .map(|(t, v)| {
            if o.objectrows {
                let fields: Vec<String> = std::iter::once(format!("\"time\":{}", time(*t, o)))
                    .chain(
                        r.dims
                            .iter()
                            .zip(v)
                            .map(|((_, name), x)| format!("{}:{}", js(name), num_or_null(*x))),
                    )
                    .collect();
                format!(" {{ {} }}", fields.join(","))
            } else {
                let vals: Vec<String> = v.iter().map(|x| num_or_null(*x)).collect();
                format!(" [ {},{}]", time(*t, o), vals.join(","))
            }
        })
        .collect();
    out.push_str(&rows.join(",\n"));
    out.push_str("\n]\n}");
    out
}

fn datatable(r: &Result) -> String {
    let mut out = String::from("{\n \"cols\":\n [\n");
    out.push_str("        {\"id\":\"\",\"label\":\"time\",\"pattern\":\"\",\"type\":\"datetime\"},\n");
    out.push_str("        {\"id\":\"\",\"label\":\"\",\"pattern\":\"\",\"type\":\"string\",\"p\":{\"role\":\"annotation\"}},\n");
    out.push_str("        {\"id\":\"\",\"label\":\"\",\"pattern\":\"\",\"type\":\"string\",\"p\":{\"role\":\"annotationText\"}}");
    for (_, name) in &r.dims {
        let _ = write!(
            out,
            ",\n     {{\"id\":\"\",\"label\":{},\"pattern\":\"\",\"type\":\"number\"}}",
            js(name)
        );
    }
    out.push_str("\n  ],\n    \"rows\":\n [\n");
    let rows: Vec<String> = r
        .rows
        .iter()
        .map(|(t, v)| {
            let (y, m, d, h, mi, s) = datetime(*t);
            let vals: String = v.iter().map(|x| format!(",{{\"v\":{}}}", num_or_null(*x))).collect();
            format!(
                "        {{\"c\":[{{\"v\":\"Date({y},{},{d},{h},{mi},{s})\"}},{{\"v\":null}},{{\"v\":null}}{vals}]}}",
                m - 1
            )
        })
        .collect();
    out.push_str(&rows.join(",\n"));
    out.push_str("\n  ]\n}");
    out
}

/// `/api/v1/data`.
pub(crate) fn data(p: &FleetPublished, params: &[(String, String)]) -> Answer {
    let id = param(params, "chart").or_else(|| param(params, "context")).unwrap_or("");
    let Some(ChartRef { id, registry, inner, .. }) = catalog::find(p, id) else {
        return (404, TEXT, "No metrics where matched to query.".into());
    };
    let (o, given) = Options::parse(param(params, "options").unwrap_or(""));
    let reg = registry.read().unwrap_or_else(|e| e.into_inner());
    let Some(c) = reg.chart(inner) else {
        return (404, TEXT, "No metrics where matched to query.".into());
    };
    let r = query(c, catalog::is_queue_chart(inner), params, &o);
    drop(reg);
    let Ok(mut r) = r else {
        return (400, TEXT, r.err().unwrap_or_default());
    };
    shape(&mut r, &o);
    let format = param(params, "format").unwrap_or("json");
    let (content, body) = match format {
        "csv" | "tsv" | "tsv-excel" => {
            let sep = if format == "csv" { "," } else { "\t" };
            let mut out = String::from("time");
            for (_, name) in &r.dims {
                let _ = write!(out, "{sep}{name}");
            }
            out.push_str("\r\n");
            for (t, v) in &r.rows {
                let when = if o.ms || given.contains(&"seconds") { time(*t, &o).to_string() } else { date_text(*t) };
                out.push_str(&when);
                for x in v {
                    let _ = write!(out, "{sep}{}", num_or_null(*x));
                }
                out.push_str("\r\n");
            }
            (TEXT, out)
        }
        "ssv" | "ssvcomma" => {
            let sep = if format == "ssv" { " " } else { "," };
            let vals: Vec<String> = r.rows.iter().map(|(_, v)| num_or_null(row_value(v, &o))).collect();
            (TEXT, vals.join(sep))
        }
        "array" => {
            let vals: Vec<String> = r.rows.iter().map(|(_, v)| num_or_null(row_value(v, &o))).collect();
            (JSON, format!("[{}]", vals.join(",")))
        }
        "datatable" => (JSON, datatable(&r)),
        "datasource" => (
            "application/javascript; charset=utf-8",
            format!(
                "google.visualization.Query.setResponse({{version:'0.6',reqId:'0',status:'ok',sig:'{}',table:{}}});",
                r.last_entry,
                datatable(&r)
            ),
        ),
        "html" => {
            let mut out = String::from("<html>\n<center>\n<table border=\"0\" cellpadding=\"5\" cellspacing=\"5\">\n<tr><td>time</td>");
            for (_, name) in &r.dims {
                let _ = write!(out, "<td>{}</td>", html_escape(name));
            }
            out.push_str("</tr>\n");
            for (t, v) in &r.rows {
                let _ = write!(out, "<tr><td>{}</td>", date_text(*t));
                for x in v {
                    let _ = write!(out, "<td>{}</td>", num_or_null(*x));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n</center>\n</html>\n");
            ("text/html; charset=utf-8", out)
        }
        "markdown" => {
            let mut out = String::from("time");
            for (_, name) in &r.dims {
                let _ = write!(out, " | {name}");
            }
            out.push_str("\n:---");
            for _ in &r.dims {
                out.push_str(" | :---");
            }
            out.push('\n');
            for (t, v) in &r.rows {
                out.push_str(&date_text(*t));
                for x in v {
                    let _ = write!(out, " | {}", num_or_null(*x));
                }
                out.push('\n');
            }
            ("text/markdown; charset=utf-8", out)
        }
        "jsonp" => {
            let callback = param(params, "callback").filter(|c| valid_callback(c)).unwrap_or("callback");
            ("application/javascript; charset=utf-8", format!("{callback}({});", wrap(&id, &r, &o, &given, format)))
        }
        // json, and anything unknown (as Netdata does).
        _ => (JSON, wrap(&id, &r, &o, &given, "json")),
    };
    (200, content, body)
}

fn valid_callback(c: &str) -> bool {
    !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The json result, wrapped with the query's facts when `jsonwrap` is asked for.
fn wrap(id: &str, r: &Result, o: &Options, given: &[&str], format: &str) -> String {
    let result = json_result(r, o);
    if !o.jsonwrap {
        return result;
    }
    let mut opts: Vec<&str> = given.to_vec();
    opts.retain(|w| *w != "jsonwrap");
    opts.push("jsonwrap");
    opts.push("natural-points");
    let strings = |v: Vec<String>| v.join(",");
    let names = strings(r.dims.iter().map(|(_, n)| js(n)).collect());
    let ids = strings(r.dims.iter().map(|(i, _)| js(i)).collect());
    let latest = strings(r.latest.iter().map(|v| num_or_null(*v)).collect());
    let view_latest = strings(
        (0..r.dims.len())
            .map(|i| {
                num_or_null(r.rows.iter().find_map(|(_, v)| v[i]).or(r.latest.get(i).copied().flatten()))
            })
            .collect(),
    );
    let all: Vec<f64> = r.rows.iter().flat_map(|(_, v)| v.iter().flatten().copied()).collect();
    let min = all.iter().copied().fold(0.0_f64, f64::min);
    let max = all.iter().copied().fold(0.0_f64, f64::max);
    let q = format!(
        "chart://host:local/instance:{id}/dimensions:*/after:{}/before:{}/points:{}/group:{}/options:{}",
        r.after,
        r.before,
        r.points,
        r.group,
        opts.join(",")
    );
    format!(
        "{{\n   \"api\": 1,\n   \"id\": {},\n   \"name\": {},\n   \"view_update_every\": {},\n   \"update_every\": 1,\n   \"first_entry\": {},\n   \"last_entry\": {},\n   \"before\": {},\n   \"after\": {},\n   \"group\": {},\n   \"options\": {},\n   \"dimension_names\": [{names}],\n   \"dimension_ids\": [{ids}],\n   \"functions\": [],\n   \"latest_values\": [{latest}],\n   \"view_latest_values\": [{view_latest}],\n   \"dimensions\": {},\n   \"points\": {},\n   \"format\": {},\n   \"db_points_per_tier\": [ {}, 0, 0 ],\n   \"result\": {result},\n \"min\": {},\n \"max\": {}\n}}",
        js(&q),
        js(&q),
        ((r.before - r.after + 1) as usize).checked_div(r.points).unwrap_or(1).max(1),
        r.first_entry,
        r.last_entry,
        r.before,
        r.after,
        js(r.group),
        js(&opts.join(",")),
        r.dims.len(),
        r.rows.len(),
        js(format),
        r.db_points,
        num_or_null(Some(min)),
        num_or_null(Some(max)),
    )
}

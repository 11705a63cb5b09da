//! `GET /`: the dashboard. The name, version, links and the current usage against limits are
//! rendered here (so the page says something without JavaScript); `dashboard.js`, served by
//! the binary too, then draws the live charts and alerts from /api/v1.

use std::fmt::Write;

use ipcwatch_charts::figures;
use ipcwatch_sampler::is_unlimited;

use crate::State;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The dashboard's script, embedded at build time: no CDN, works offline.
pub(crate) const SCRIPT: &str = include_str!("../assets/dashboard.js");

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.3em .8em;text-align:right}th:first-child,td:first-child{text-align:left}\
#charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em;margin-top:1em}\
.chart{border:1px solid #ddd;border-radius:4px;padding:.5em}.chart h3{font-size:.95em;margin:.2em 0}\
.chart svg{width:100%;height:160px;background:#fafafa}.legend{font-size:.85em}.legend .dim{margin-right:1em}\
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}.limit-text{color:#b00}.near{font-weight:bold}\
#alerts td{text-align:left;font-size:.9em}tr.critical td:first-child{background:#f66;color:#fff}\
tr.warning td:first-child{background:#fc3}button.on{font-weight:bold}.controls{margin:.5em 0}";

pub(crate) fn page(state: &State) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ipcwatch</title>\
         <style>{STYLE}</style>\
         </head><body><h1>ipcwatch</h1><p>System V IPC usage and limits, for Prometheus. Version {} ({}).</p>\
         <ul><li><a href=\"{}\">Metrics</a></li><li><a href=\"api/v1/alarms\">Alerts</a></li>\
         <li><a href=\"-/healthy\">Health</a></li><li><a href=\"-/ready\">Readiness</a></li></ul>",
        escape(&state.build.version),
        escape(&state.build.revision),
        escape(state.telemetry_path().trim_start_matches('/'))
    );
    match state.latest().filter(|s| !s.namespaces.is_empty()) {
        None => html.push_str("<p>No sample taken yet.</p>"),
        Some(sample) => {
            let own = &sample.namespaces[0];
            let _ = write!(
                html,
                "<p>{} IPC namespace(s) watched; below, the daemon's own ({}).</p>",
                sample.namespaces.len(),
                own.label
            );
            let (snapshot, alerts) = (&own.published.snapshot, &own.published.alerts);
            html.push_str("<table><tr><th>Resource</th><th>Used</th><th>Limit</th><th>Use</th></tr>");
            for u in figures::usage(snapshot) {
                let show = |v: Option<u64>| match v {
                    Some(v) if is_unlimited(v) => "unlimited".to_string(),
                    Some(v) => v.to_string(),
                    None => "unknown".to_string(),
                };
                let pct = u.percent().map_or("-".to_string(), |p| format!("{p:.1}%"));
                let _ = write!(
                    html,
                    "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{pct}</td></tr>",
                    u.figure.description,
                    u.limit_figure.kernel,
                    show(u.used),
                    show(u.limit)
                );
            }
            html.push_str("</table>");
            let raised: Vec<_> = sample
                .namespaces
                .iter()
                .flat_map(|n| n.published.alerts.alerts.iter())
                .filter(|a| a.status.is_raised())
                .collect();
            let _ = alerts;
            if !raised.is_empty() {
                html.push_str("<h2>Raised alerts</h2><ul>");
                for a in raised {
                    let _ = write!(
                        html,
                        "<li>{} on {}: {} ({:.1})</li>",
                        escape(&a.rule.name),
                        escape(&a.chart),
                        a.status.name(),
                        a.value
                    );
                }
                html.push_str("</ul>");
            }
        }
    }
    html.push_str(
        "<h2>Alerts <small id=\"raised\"></small></h2><table><tbody id=\"alerts\"></tbody></table>\
         <h2>Charts</h2><div class=\"controls\"><label>Namespace <select id=\"namespace\"></select></label> \
         Window <button data-window=\"300\" class=\"on\">5 min</button> <button data-window=\"3600\">1 h</button></div>\
         <div id=\"charts\"></div><script src=\"dashboard.js\"></script>",
    );
    html.push_str("</body></html>\n");
    html
}

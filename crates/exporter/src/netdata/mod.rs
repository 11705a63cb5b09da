//! Netdata's `/api/v1` for the IPC charts, so Netdata's clients (Home Assistant, netdata-pandas,
//! Grafana's Netdata sources, the dashboard at `/`) work unchanged. Shapes, field names,
//! defaults, status codes and error bodies follow a live Netdata 1.37.1 (docs/netdata-api.md).
//!
//! Every watched IPC namespace's charts are listed: the daemon's own under Netdata's ids, the
//! others as `ipc_ns_<inode>.<name>` (their context stays Netdata's id, so a client can group
//! a chart across namespaces).
//!
//! This module routes and decodes requests; each endpoint family is a module of its own
//! (`charts`, `data`, `allmetrics`, `alarms`) that uses only `catalog` (which charts exist and
//! what clients call them) and `format` (answers, parameters, Netdata's number printing).

mod alarms;
mod allmetrics;
mod catalog;
mod charts;
mod data;
mod format;

use ipcwatch_pipeline::FleetPublished;

use crate::State;

use alarms::{alarm_count, alarm_log, alarm_variables};
use catalog::find;
use charts::{chart_json, charts_json, info};
use format::*;

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

type Handler = fn(&State, &FleetPublished, &[(String, String)]) -> Answer;

/// Every endpoint under /api/v1 this module serves (besides `/api/v1/alarms`, the landing
/// page's), and what answers it: the one list, which the HTTP layer asks too.
const ROUTES: [(&str, Handler); 8] = [
    ("info", |s, p, _| (200, JSON, info(s, p))),
    ("charts", |s, p, _| (200, JSON, charts_json(s, p))),
    ("chart", |_, p, q| chart(p, q)),
    ("data", |_, p, q| data::data(p, q)),
    ("allmetrics", allmetrics::allmetrics),
    ("alarm_count", |_, p, q| (200, JSON, alarm_count(p, q))),
    ("alarm_variables", |_, p, q| {
        let id = param(q, "chart").unwrap_or("");
        match find(p, id) {
            Some(r) => (200, JSON, alarm_variables(&r)),
            None => (404, TEXT, format!("Chart is not found: {id}")),
        }
    }),
    ("alarm_log", |_, p, q| (200, JSON, alarm_log(p, q))),
];

/// Whether `/api/v1/<endpoint>` is one of Netdata's endpoints served here.
pub(crate) fn serves(endpoint: &str) -> bool {
    ROUTES.iter().any(|(e, _)| *e == endpoint)
}

fn chart(p: &FleetPublished, params: &[(String, String)]) -> Answer {
    let id = param(params, "chart").unwrap_or("");
    let Some(r) = find(p, id) else {
        return (404, TEXT, format!("Chart is not found: {id}"));
    };
    let reg = r.registry.read().unwrap_or_else(|e| e.into_inner());
    match reg.chart(r.inner) {
        Some(c) => (200, JSON, pretty(&chart_json(&r, c))),
        None => (404, TEXT, format!("Chart is not found: {id}")),
    }
}

/// Answers `/api/v1/<endpoint>`; `None` for endpoints this module does not serve.
pub(crate) fn answer(state: &State, endpoint: &str, query: &str) -> Option<Answer> {
    let (_, handler) = ROUTES.iter().find(|(e, _)| *e == endpoint)?;
    let Some(p) = state.latest() else {
        return Some((503, TEXT, "Not ready: no recent sample\n".into()));
    };
    Some(handler(state, &p, &params(query)))
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

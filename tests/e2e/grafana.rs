//! deploy/grafana/ipcwatch.json against a real Prometheus scraping a daemon that watches two
//! namespaces with known objects: every panel's query, with its variables expanded as "All"
//! the way Grafana expands them, returns at least one series, and every metric a panel or
//! variable names is one docs/metrics.md lists.

use std::process::{Command, Stdio};

use crate::alerts::{eventually, repo};
use crate::http::free_port;
use crate::ns::{dies_with_test, KillOnDrop, Namespace};

/// A Prometheus API answer's `data`, through curl (Prometheus answers chunked).
fn api(port: u16, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sfG", "--max-time", "10"]);
    for (k, v) in params {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl");
    assert!(out.status.success(), "GET {path} {params:?} failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// Grafana's multi-value format for Prometheus: `(a|b)`, each value regex-escaped.
fn regex_of(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .flat_map(|c| {
                    let special = "\\^$.|?*+()[]{}".contains(c);
                    special.then_some(['\\', '\\']).into_iter().flatten().chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    format!("({})", escaped.join("|"))
}

fn expand(text: &str, vars: &[(String, String)]) -> String {
    // Longest names first, so `$pod` does not eat part of a longer name.
    let mut sorted: Vec<&(String, String)> = vars.iter().collect();
    sorted.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut out = text.to_string();
    for (name, value) in sorted {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    out
}

#[test]
fn every_dashboard_panel_returns_series_from_a_real_prometheus() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/ipcwatch.json")).unwrap())
            .unwrap();

    // Two namespaces with known objects, POSIX queues in both, and the daemon watching them.
    let mut ns = Namespace::with_mount("grafana");
    ns.cmd("sem 0 2");
    let q = ns.cmd("msg 0");
    ns.cmd(&format!("send {q} 100 3"));
    ns.cmd("shm 0 4096");
    ns.cmd("mq /a 10 100");
    ns.hold(&["sem 0 1", "msg 0", "mq /x 5 64"]);
    let (port, _, _) = ns.daemon("[namespaces]\nrescan = 1\n[holders]\ninterval = 1\n");

    // A real Prometheus scraping it every second.
    let prom_port = free_port();
    let dir = ns.path("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ipcwatch\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let prometheus = dies_with_test("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus is needed (tests/run.sh installs it)");
    let _prometheus = KillOnDrop(prometheus);
    let scraped = eventually(30, || {
        Command::new("curl")
            .args([
                "-sfG",
                "--max-time",
                "2",
                "--data-urlencode",
                "query=count(sysvipc_owner_semaphore_arrays) > 1",
            ])
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"value\""))
    });
    assert!(
        scraped,
        "Prometheus never scraped both namespaces' census:\n{}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );

    // The variables, "All" each, in order (each may use the ones before it).
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut metrics_named: Vec<String> = Vec::new();
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["type"] == "datasource" {
            continue;
        }
        assert_eq!(v["type"], "query", "{v}");
        assert_eq!(v["includeAll"], true, "variable {name} has no All");
        let query = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap();
        metrics_named.push(query.to_string());
        let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect(query);
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let selector = expand(selector.trim(), &vars);
        let series = api(prom_port, "/api/v1/series", &[("match[]", &selector)]);
        let mut values: Vec<String> = series
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[label.trim()].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        values.sort();
        values.dedup();
        let all = match v["allValue"].as_str() {
            Some(a) => a.to_string(),
            None => {
                assert!(!values.is_empty(), "variable {name} ({selector}) has no values");
                regex_of(&values)
            }
        };
        vars.push((name, all));
    }

    // Every panel's query answers with at least one series.
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut checked = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no queries"));
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            metrics_named.push(expr.to_string());
            let query = expand(expr, &vars);
            assert!(!query.contains('$'), "panel {title}: a variable is left in {query}");
            let result = api(prom_port, "/api/v1/query", &[("query", &query)]);
            let series = result["result"].as_array().map_or(0, Vec::len);
            assert!(series > 0, "panel {title}: no series for\n{query}");
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} queries checked");

    // Every metric named is documented.
    let docs = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    for text in &metrics_named {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if ["sysvipc_", "ipcwatch_", "posix_"].iter().any(|p| word.starts_with(p)) {
                assert!(
                    docs.contains(&format!("`{word}`")),
                    "the dashboard names {word}, which docs/metrics.md does not list"
                );
            }
        }
    }
}

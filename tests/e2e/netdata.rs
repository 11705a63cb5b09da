//! Netdata's /api/v1 against the answers of a live Netdata 1.37.1 for the same objects
//! (../shared/spec/netdata-samples: 3 arrays of 5+3+1 semaphores, queues 0/1/2 holding 3/1/0
//! messages and 300/7/0 bytes, segments of 4,096 and 1,000,000 bytes), field by field; values
//! that depend on the clock are compared by shape. And the dashboard, in a real browser.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::alerts::eventually;
use crate::http::{free_port, get, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

fn sample(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/netdata-samples");
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

/// The namespace of the captures, and a daemon watching it (the rules every second).
fn setup(name: &str) -> (Namespace, u16, PathBuf) {
    let mut ns = Namespace::new(name);
    for n in [5, 3, 1] {
        ns.cmd(&format!("sem 0 {n}"));
    }
    for (q, (count, size)) in [(3, 100), (1, 7), (0, 0)].into_iter().enumerate() {
        ns.cmd("msg 0");
        if count > 0 {
            ns.cmd(&format!("send {q} {size} {count}"));
        }
    }
    ns.cmd("shm 0 4096");
    ns.cmd("shm 0 1000000");
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped = std::fs::read_to_string(crate::alerts::repo("alerts/ipc.conf")).unwrap();
    std::fs::write(rules.join("ipc.conf"), shipped.replace("every: 10s", "every: 1s")).unwrap();
    let config = ns.path("api.toml");
    std::fs::write(
        &config,
        format!("[namespaces]\nmode = \"own\"\n[alerts]\nrules = \"{}\"\n", rules.display()),
    )
    .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_, log) = ns.spawn(IPCWATCH, &["--config", config.to_str().unwrap(), "--web.listen-address", &addr]);
    wait_ready(port, &log);
    // A few seconds of history.
    std::thread::sleep(Duration::from_secs(3));
    (ns, port, log)
}

#[test]
fn charts_and_chart_match_netdata_field_by_field() {
    let (_ns, port, _) = setup("api-charts");
    let want = json(&sample("chart-system.ipc_semaphores.json"));
    let r = get(port, "/api/v1/chart?chart=system.ipc_semaphores");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    let got = json(&r.body);
    assert_eq!(keys(&got), keys(&want), "{got}");
    for field in [
        "id",
        "name",
        "type",
        "family",
        "context",
        "title",
        "priority",
        "plugin",
        "module",
        "units",
        "data_url",
        "chart_type",
        "update_every",
        "dimensions",
        "green",
        "red",
        "chart_labels",
        "functions",
    ] {
        assert_eq!(got[field], want[field], "{field}");
    }
    for field in ["duration", "first_entry", "last_entry"] {
        assert!(got[field].is_u64(), "{field}: {got}");
    }
    let alarm = &got["alarms"]["semaphores_used"];
    assert_eq!(keys(alarm), keys(&want["alarms"]["semaphores_used"]));
    assert_eq!(
        (alarm["status"].as_str(), alarm["units"].as_str(), alarm["update_every"].as_u64()),
        (Some("CLEAR"), Some("%"), Some(1))
    );

    // The same chart in the list, with the list's own fields.
    let all = json(&get(port, "/api/v1/charts").body);
    let want_all = json(&sample("charts.json"));
    assert_eq!(keys(&all), keys(&want_all));
    for id in keys(&want_all["charts"]) {
        let (g, w) = (&all["charts"][&id], &want_all["charts"][&id]);
        assert_eq!(keys(g), keys(w), "{id}");
        for field in ["id", "type", "family", "context", "title", "priority", "plugin", "units", "chart_type"]
        {
            assert_eq!(g[field], w[field], "{id}: {field}");
        }
    }
    let queue_dims = keys(&all["charts"]["system.message_queue_bytes"]["dimensions"]);
    assert_eq!(queue_dims, ["0", "1", "2"].map(String::from).into());

    // Errors as Netdata gives them.
    let missing = get(port, "/api/v1/chart?chart=nonexistent");
    assert_eq!((missing.status, missing.body.as_str()), (404, sample("chart-nonexistent.txt").as_str()));
    assert_eq!(missing.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn data_matches_netdata_in_every_format() {
    let (_ns, port, _) = setup("api-data");
    // Default: 600 rows newest first, one per second, null before the first entry.
    let want = json(&sample("data-system.ipc_semaphores-default.json"));
    let got = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores").body);
    assert_eq!(keys(&got), keys(&want));
    assert_eq!(got["labels"], want["labels"]);
    let rows = got["data"].as_array().unwrap();
    assert_eq!(rows.len(), 600);
    let times: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] == w[1] + 1), "newest first, a second apart");
    assert_eq!(rows[0][1], 9, "{}", rows[0]);
    assert!(rows[599][1].is_null());
    // The queues: Netdata's dimension order, and the values of the capture.
    let q = json(&get(port, "/api/v1/data?chart=system.message_queue_bytes&after=-2").body);
    let wq = json(&sample("data-system.message_queue_bytes-after-10_before-5.json"));
    assert_eq!(q["labels"], wq["labels"]);
    assert_eq!(q["data"][0].as_array().unwrap()[1..], wq["data"][0].as_array().unwrap()[1..]);
    // after/before: `after` counts back from `before`, which counts back from the newest row
    // (asked again until no sample came between the two requests).
    let newest = || {
        json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&after=-1").body)["data"][0][0]
            .as_i64()
            .unwrap()
    };
    let (w, latest) = (0..5)
        .find_map(|_| {
            let latest = newest();
            let w = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&after=-10&before=-5").body);
            (newest() == latest).then_some((w, latest))
        })
        .expect("a second without a new sample between two requests");
    assert_eq!(w["data"].as_array().unwrap().len(), 10);
    assert_eq!(w["data"][0][0].as_i64().unwrap(), latest - 5);
    // points and group: aligned groups of 6 s.
    let p = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&points=5&group=max&after=-30").body);
    let pt: Vec<i64> = p["data"].as_array().unwrap().iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(pt.len(), 5, "{p}");
    assert!(pt.iter().all(|t| t % 6 == 0) && pt.windows(2).all(|w| w[0] - w[1] == 6), "{pt:?}");
    // jsonwrap: Netdata's wrapper keys.
    let wrap = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&format=json&options=jsonwrap").body);
    let wwrap = json(&sample("data-system.ipc_semaphores-jsonwrap.json"));
    assert_eq!(keys(&wrap), keys(&wwrap));
    assert_eq!(
        (wrap["options"].as_str(), wrap["group"].as_str()),
        (Some("jsonwrap,natural-points"), Some("average"))
    );
    assert_eq!((wrap["points"].as_u64(), wrap["latest_values"].clone()), (Some(600), serde_json::json!([9])));
    // nonzero drops the empty queue; ms and flip.
    let nz = json(
        &get(port, "/api/v1/data?chart=system.message_queue_bytes&options=jsonwrap%7Cnonzero&after=-2").body,
    );
    assert_eq!(
        nz["dimension_ids"],
        json(&sample("data-system.message_queue_bytes-jsonwrap_nonzero.json"))["dimension_ids"]
    );
    let ms = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&options=ms&after=-2").body);
    assert_eq!(ms["data"][0][0].as_i64().unwrap() % 1000, 0);
    let flip = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&options=flip&after=-3").body);
    assert!(flip["data"][0][0].as_i64() < flip["data"][2][0].as_i64(), "oldest first");
    // Home Assistant's query: one row.
    let ha =
        json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&before=0&after=-1&options=seconds").body);
    assert_eq!(ha["data"].as_array().unwrap().len(), 1);
    assert_eq!(keys(&ha), keys(&json(&sample("data-system.ipc_semaphores-homeassistant.json"))));
    // Text formats: csv's header, CRLF and local time; ssv and array sum the dimensions.
    let csv = get(port, "/api/v1/data?chart=system.message_queue_bytes&format=csv&after=-2");
    assert_eq!(csv.header("content-type"), Some("text/plain; charset=utf-8"));
    let first = sample("data-system.message_queue_bytes-csv.txt");
    assert_eq!(csv.body.split("\r\n").next(), first.split("\r\n").next(), "{}", csv.body);
    let line = csv.body.split("\r\n").nth(1).unwrap();
    assert!(line.len() == 19 + ",0,7,300".len() && line.ends_with(",0,7,300"), "{line}");
    assert!(get(port, "/api/v1/data?chart=system.message_queue_bytes&format=tsv&after=-1")
        .body
        .starts_with("time\t2\t1\t0\r\n"));
    assert_eq!(
        get(port, "/api/v1/data?chart=system.message_queue_bytes&format=ssv&after=-2").body,
        "307 307"
    );
    assert_eq!(
        get(port, "/api/v1/data?chart=system.message_queue_bytes&format=array&after=-2").body,
        "[307,307]"
    );
    let dt = json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&format=datatable&after=-2").body);
    let wdt = json(&sample("data-system.ipc_semaphores-datatable.json"));
    assert_eq!(dt["cols"], wdt["cols"]);
    assert!(dt["rows"][0]["c"][0]["v"].as_str().unwrap().starts_with("Date("));
    let html = get(port, "/api/v1/data?chart=system.ipc_semaphores&format=html&after=-2");
    assert_eq!(html.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(html.body.starts_with(&sample("data-system.ipc_semaphores-html.html")[..89]), "{}", html.body);
    // An unknown format is json; an unknown chart is Netdata's 404.
    assert_eq!(
        json(&get(port, "/api/v1/data?chart=system.ipc_semaphores&format=foo").body)["labels"],
        want["labels"]
    );
    let missing = get(port, "/api/v1/data?chart=nonexistent");
    assert_eq!((missing.status, missing.body.as_str()), (404, sample("data-nonexistent.txt").as_str()));
}

#[test]
fn allmetrics_and_the_alarm_endpoints_match_netdata() {
    let (_ns, port, _) = setup("api-allmetrics");
    // shell: Netdata's lines for the same objects, value for value.
    let shell = get(port, "/api/v1/allmetrics?format=shell").body;
    for line in sample("allmetrics-format_shell.txt").lines().filter(|l| l.starts_with("NETDATA_SYSTEM_")) {
        assert!(shell.lines().any(|l| l == line), "missing `{line}` in\n{shell}");
    }
    // json: each chart's keys and values.
    let got = json(&get(port, "/api/v1/allmetrics?format=json").body);
    let want = json(&sample("allmetrics.json"));
    for id in keys(&want) {
        assert_eq!(keys(&got[&id]), keys(&want[&id]), "{id}");
        for field in ["name", "family", "context", "units"] {
            assert_eq!(got[&id][field], want[&id][field], "{id}: {field}");
        }
        for dim in keys(&want[&id]["dimensions"]) {
            assert_eq!(
                got[&id]["dimensions"][&dim]["value"], want[&id]["dimensions"][&dim]["value"],
                "{id} {dim}"
            );
        }
    }
    // prometheus: Netdata's names and labels, and it passes promtool (Netdata's does not).
    let prom = get(port, "/api/v1/allmetrics?format=prometheus");
    assert!(prom.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(prom.body.contains("netdata_system_ipc_semaphores_semaphores_average{chart=\"system.ipc_semaphores\",family=\"ipc semaphores\",dimension=\"semaphores\"} 9 "), "{}", prom.body);
    crate::daemon::promtool_check(&prom.body);
    let collected = get(port, "/api/v1/allmetrics?format=prometheus&source=as-collected").body;
    assert!(collected.contains("netdata_system_ipc_semaphore_arrays{chart=\"system.ipc_semaphore_arrays\",family=\"ipc semaphores\",dimension=\"arrays\"} 3"), "{collected}");
    let all_hosts = get(port, "/api/v1/allmetrics?format=prometheus_all_hosts").body;
    assert!(all_hosts.contains(",instance="), "{all_hosts}");
    // alarm_count and alarm_variables.
    assert_eq!(
        get(port, "/api/v1/alarm_count?context=system.ipc_semaphores&status=RAISED").body,
        sample("alarm_count-ipc_semaphores-RAISED.json")
    );
    let vars = json(&get(port, "/api/v1/alarm_variables?chart=system.ipc_semaphore_arrays").body);
    let wvars = json(&sample("alarm_variables-ipc_semaphore_arrays.json"));
    assert_eq!(keys(&vars), keys(&wvars));
    for k in ["arrays", "arrays_raw", "red", "update_every", "semaphore_arrays_used"] {
        assert!(vars["chart_variables"].get(k).is_some(), "{k}: {vars}");
    }
    assert_eq!(vars["chart_variables"]["arrays"], 3.0);
    assert_eq!(vars["host_variables"]["ipc_semaphores_arrays_max"], 32000.0);
    // alarm_log: each alert's first evaluation (UNINITIALIZED -> CLEAR), Netdata's fields.
    let log = json(&get(port, "/api/v1/alarm_log").body);
    let wlog = json(&sample("alarm_log.json"));
    let entries = log.as_array().unwrap();
    assert!(entries.len() >= 2, "{log}");
    assert_eq!(keys(&entries[0]), keys(&wlog[0]));
    let ids: Vec<u64> = entries.iter().map(|e| e["unique_id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let first = entries.iter().find(|e| e["name"] == "semaphore_arrays_used").unwrap();
    assert_eq!(
        (first["old_status"].as_str(), first["status"].as_str()),
        (Some("UNINITIALIZED"), Some("CLEAR"))
    );
    assert_eq!(first["chart"], "system.ipc_semaphore_arrays");
    assert_eq!(json(&get(port, &format!("/api/v1/alarm_log?after={}", ids[0])).body), serde_json::json!([]));
    // info: Netdata's alarm counters.
    let info = json(&get(port, "/api/v1/info").body);
    let winfo = json(&sample("info-baseline.json"));
    assert_eq!(keys(&info["alarms"]), keys(&winfo["alarms"]));
    for k in ["version", "os_name", "mirrored_hosts", "memory-mode", "charts-count"] {
        assert!(info.get(k).is_some(), "{k}");
    }
}

/// Runs headless Chromium on `url`; returns the DOM after its scripts ran for a while.
pub(crate) fn chromium(url: &str, extra: &[&str]) -> String {
    let mut cmd = crate::ns::dies_with_test("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--virtual-time-budget=4000", "--window-size=1400,1800"])
        .args(extra)
        .arg(url);
    let out = cmd.output().expect("chromium is needed (Debian package `chromium`; tests/run.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn attr<'a>(dom: &'a str, element: &str, name: &str) -> Option<&'a str> {
    let at = dom.find(element)?;
    let tag_end = dom[at..].find('>')? + at;
    let tag = &dom[at..tag_end];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn the_dashboard_draws_the_known_values_and_a_raised_alert_in_a_real_browser() {
    let (mut ns, port, log) = setup("dashboard");
    let url = format!("http://127.0.0.1:{port}/");
    let dom = chromium(&url, &["--dump-dom"]);
    let chart =
        |dom: &str, id: &str| attr(dom, &format!("data-chart=\"{id}\""), "data-last").map(str::to_string);
    assert_eq!(chart(&dom, "system.ipc_semaphore_arrays").as_deref(), Some("3"), "{dom}");
    assert_eq!(chart(&dom, "system.ipc_semaphores").as_deref(), Some("9"));
    assert_eq!(chart(&dom, "system.message_queue_messages").as_deref(), Some("0,1,3"));
    assert_eq!(chart(&dom, "system.message_queue_bytes").as_deref(), Some("0,7,300"));
    assert_eq!(chart(&dom, "system.shared_memory_segments").as_deref(), Some("2"));
    assert_eq!(chart(&dom, "system.shared_memory_bytes").as_deref(), Some("1004096"));
    // Each limit is drawn with its chart: SEMMNI is the arrays chart's red line.
    assert_eq!(attr(&dom, "data-chart=\"system.ipc_semaphore_arrays\"", "data-limit"), Some("32000"));
    assert_eq!(attr(&dom, "<body", "data-errors"), Some("0"), "no script errors");
    let paint = attr(&dom, "<body", "data-first-paint-ms").expect("a chart was painted");
    println!("first chart painted {paint} ms after navigation started");

    // SEMMNI down to 3 with 3 arrays: semaphore_arrays_used goes CRITICAL, first in the list
    // (limits are read every 10 s, the rule evaluated every 10 s).
    ns.cmd("sysctl sem 250 32000 32 3");
    let raised = eventually(30, || {
        let dom = chromium(&url, &["--dump-dom"]);
        attr(&dom, "<tr class=\"alert", "data-name") == Some("semaphore_arrays_used")
            && attr(&dom, "<tr class=\"alert", "data-status") == Some("CRITICAL")
    });
    assert!(raised, "{}", std::fs::read_to_string(&log).unwrap());
    let dom = chromium(&url, &["--dump-dom"]);
    assert_eq!(
        attr(&dom, "data-chart=\"system.ipc_semaphore_arrays\"", "data-limit"),
        Some("3"),
        "the new limit line"
    );
    assert_eq!(attr(&dom, "<body", "data-errors"), Some("0"));

    // Page and script stay small: everything is served by the daemon.
    let page = get(port, "/").body.len() + get(port, "/dashboard.js").body.len();
    assert!(page < 200 * 1024, "{page} bytes");
    assert!(
        !get(port, "/").body.contains("http://")
            && !crate::http::get(port, "/dashboard.js").body.contains("https://"),
        "no CDN"
    );
}

/// Netdata's real Python clients, unchanged (installed by tests/run.sh in a venv):
/// Home Assistant's integration client and netdata-pandas read the known values.
#[test]
fn home_assistants_client_and_netdata_pandas_read_the_known_values() {
    let python = crate::alerts::repo("target/netdata-clients/bin/python");
    assert!(
        python.exists(),
        "{} is missing: tests/run.sh installs Netdata's Python clients",
        python.display()
    );
    let mut ns = Namespace::new("clients");
    ns.cmd("sem 0 3");
    ns.cmd("sem 0 2");
    let (port, _, _) = ns.daemon("[namespaces]\nmode = \"own\"\n");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = std::process::Command::new(&python)
        .arg(crate::alerts::repo("tests/tools/netdata_clients.py"))
        .args([port.to_string(), "2".into(), "5".into()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.trim_end().ends_with("ok"), "{stdout}{stderr}");
}

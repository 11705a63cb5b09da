//! Who holds IPC: stale and orphaned objects, prune, and the daemon's census, against real
//! objects left by processes that exit (Apache's children after `kill -9`) and by processes
//! that live on.

use std::time::Duration;

use crate::http::{free_port, get, samples, wait_metrics, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

/// `snapshot --stale --json` in the namespace, with `args` added: the objects listed.
fn stale(ns: &mut Namespace, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["snapshot", "--stale", "--json"];
    all.extend_from_slice(args);
    let (code, text) = ns.run(IPCWATCH, &all);
    assert_eq!(code, "0", "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(list.as_array().unwrap().len(), 1, "the caller's namespace only: {text}");
    list[0]["objects"].as_array().unwrap().clone()
}

fn ids(objects: &[serde_json::Value], kind: &str) -> Vec<i64> {
    let mut ids: Vec<i64> =
        objects.iter().filter(|o| o["kind"] == kind).map(|o| o["id"].as_i64().unwrap()).collect();
    ids.sort();
    ids
}

fn id_of(answer: &str) -> i64 {
    answer.trim_start_matches("ok ").parse().unwrap()
}

fn config(ns: &Namespace, name: &str, text: &str) -> String {
    let path = ns.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn sets_left_by_a_dead_process_go_stale_and_those_of_a_live_one_do_not() {
    let mut ns = Namespace::new("apache");
    // The child creates its accept-lock sets, operates on them, and dies.
    let dead = ns.once(&["sem 0x1001 1", "post 0", "sem 0x1002 1", "post 1"]);
    let dead_ids: Vec<i64> = [&dead[0], &dead[2]].iter().map(|a| id_of(a)).collect();
    // A live server's set: in use as long as its process runs, however old.
    let (live_pid, live) = ns.keep(&["sem 0x2001 1", "post 2"]);
    let live_id = id_of(&live[1]);
    let short = config(&ns, "short.toml", "[holders]\nstale_after = 2\norphan_after = 2\n");

    // Used just now: not stale yet under stale_after = 2 s.
    assert!(ids(&stale(&mut ns, &["--config", short.as_str()]), "sem").is_empty());
    std::thread::sleep(Duration::from_millis(3100));
    let objects = stale(&mut ns, &["--config", short.as_str()]);
    assert_eq!(ids(&objects, "sem"), dead_ids, "{objects:?}");
    for o in objects.iter().filter(|o| o["kind"] == "sem") {
        assert_eq!(o["owner_name"], "root");
        assert_eq!(o["state"], "stale");
        assert!(o["idle_seconds"].as_i64().unwrap() >= 2, "{o}");
        assert_eq!(o["prunable"], true);
        let pids = o["pids"].as_array().unwrap();
        assert_eq!(pids.len(), 1, "{o}");
        assert_eq!(pids[0]["role"], "last_op");
        assert_eq!(pids[0]["alive"], "dead");
        assert_eq!(o["ipcrm"], format!("ipcrm -s {}", o["id"]));
    }
    // The default stale_after (1 h) lists nothing this young; --older-than 0s lists the dead
    // child's sets at once, and never the live one's.
    assert!(ids(&stale(&mut ns, &[]), "sem").is_empty());
    let objects = stale(&mut ns, &["--older-than", "0s"]);
    assert_eq!(ids(&objects, "sem"), dead_ids);
    assert!(!ids(&objects, "sem").contains(&live_id), "pid {live_pid} is alive");

    // The text form names the namespace, owner and the removal command.
    let (code, text) = ns.run(IPCWATCH, &["snapshot", "--stale", "--older-than", "0s"]);
    assert_eq!(code, "0", "{text}");
    assert!(text.contains(&format!("ipcrm -s {}", dead_ids[0])), "{text}");
    assert!(text.contains("last_op") && text.contains("dead"), "{text}");
}

#[test]
fn segments_are_orphaned_after_orphan_after_with_nothing_attached() {
    let mut ns = Namespace::new("orphan");
    let seg = id_of(&ns.once(&["shm 0x3001 65536"])[0]);
    // Attached by a live process: never orphaned.
    let (_, held) = ns.keep(&["shm 0x3002 4096", "attach 1 0"]);
    let attached = id_of(&held[1]);
    let short = config(&ns, "short.toml", "[holders]\norphan_after = 2\n");
    assert!(ids(&stale(&mut ns, &["--config", short.as_str()]), "shm").is_empty());
    std::thread::sleep(Duration::from_millis(3100));
    let objects = stale(&mut ns, &["--config", short.as_str()]);
    assert_eq!(ids(&objects, "shm"), vec![seg], "{objects:?}");
    let o = &objects[0];
    assert_eq!(o["state"], "orphaned");
    assert_eq!(o["size"], 65536);
    assert!(o["idle_seconds"].as_i64().unwrap() >= 2, "{o}");
    assert_eq!(o["prunable"], true, "its creator is gone: {o}");
    assert!(!ids(&objects, "shm").contains(&attached));
}

#[test]
fn prune_removes_exactly_the_stale_objects_and_refuses_a_live_one_even_by_id() {
    let mut ns = Namespace::new("prune");
    let dead = ns.once(&["sem 0x4001 2", "post 0", "msg 0x4002", "send 0 100", "shm 0x4003 8192"]);
    let dead_msg = id_of(&dead[2]);
    let (_, live) = ns.keep(&["sem 0x4101 1", "post 1", "msg 0x4102", "send 1 10"]);
    let live_sem = id_of(&live[1]);

    // The live set, asked for by id: refused out loud (exit 1), not removed.
    let (code, text) =
        ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes", "--id", &live_sem.to_string()]);
    assert_eq!(code, "1", "{text}");
    assert!(text.contains(&format!("refused: id {live_sem} is not stale")), "{text}");

    // A dry run by default: it lists, and removes nothing.
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s"]);
    assert_eq!(code, "0", "{text}");
    assert_eq!(text.matches("would remove").count(), 3, "{text}");
    let (_, ipcs) = ns.run("ipcs", &[]);
    for key in ["0x00004001", "0x00004002", "0x00004003", "0x00004101", "0x00004102"] {
        assert!(ipcs.contains(key), "{key} removed by a dry run: {ipcs}");
    }

    // --kind narrows: only the queue goes.
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes", "--kind", "msg", "--json"]);
    assert_eq!(code, "0", "{text}");
    let done: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pruned = done[0]["pruned"].as_array().unwrap();
    assert_eq!(pruned.len(), 1, "{text}");
    assert_eq!(
        (pruned[0]["id"].as_i64(), &pruned[0]["outcome"]),
        (Some(dead_msg), &serde_json::json!("removed"))
    );

    // Then the rest of the stale ones, exactly.
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes"]);
    assert_eq!(code, "0", "{text}");
    assert_eq!(text.matches(" removed").count(), 2, "{text}");
    let (_, ipcs) = ns.run("ipcs", &[]);
    for key in ["0x00004001", "0x00004002", "0x00004003"] {
        assert!(!ipcs.contains(key), "{key} not removed: {ipcs}");
    }
    for key in ["0x00004101", "0x00004102"] {
        assert!(ipcs.contains(key), "{key} (live) removed: {ipcs}");
    }
}

#[test]
fn the_daemon_counts_owners_destroyed_attached_bytes_and_removals_in_use() {
    let mut ns = Namespace::new("census");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let conf = config(&ns, "census.toml", "[holders]\ninterval = 1\nstale_after = 1\norphan_after = 1\n");
    // Left behind: one stale set and one orphaned segment. Held: a segment attached and then
    // destroyed (SHM_DEST), and a set a live process uses.
    ns.once(&["sem 0x5001 3", "post 0", "shm 0x5002 8192"]);
    let (_, held) = ns.keep(&["shm 0x5003 131072", "attach 1 0", "rm shm 1", "sem 0x5004 2", "post 1"]);
    let in_use = id_of(&held[4]);
    let (_, log) =
        ns.spawn(IPCWATCH, &["--config", &conf, "--web.listen-address", &addr, "--log.level", "info"]);
    wait_ready(port, &log);
    let owner = |name: &str| format!("{name}{{owner=\"root\",uid=\"0\"}}");
    let m = wait_metrics(port, |m| m.get(&owner("sysvipc_owner_stale_semaphore_arrays")) == Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_semaphore_arrays")), Some(&2.0), "{m:?}");
    assert_eq!(m.get(&owner("sysvipc_owner_semaphores")), Some(&5.0));
    assert_eq!(m.get(&owner("sysvipc_owner_stale_semaphore_arrays")), Some(&1.0), "{m:?}");
    assert_eq!(m.get(&owner("sysvipc_owner_shared_memory_segments")), Some(&2.0));
    assert_eq!(m.get(&owner("sysvipc_owner_destroyed_attached_segments")), Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_destroyed_attached_bytes")), Some(&131072.0));
    assert_eq!(m.get(&owner("sysvipc_owner_orphaned_bytes")), Some(&8192.0));
    assert_eq!(m.get(&owner("sysvipc_owner_removed_in_use_total")), None, "nothing removed yet: {m:?}");

    // Removed behind the back of the live process that uses it (as logind's RemoveIPC does).
    let (code, out) = ns.run("ipcrm", &["-s", &in_use.to_string()]);
    assert_eq!(code, "0", "{out}");
    let m = wait_metrics(port, |m| m.get(&owner("sysvipc_owner_removed_in_use_total")) == Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_removed_in_use_total")), Some(&1.0), "{m:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("removed while a process that used it still runs"));
    let line = line.unwrap_or_else(|| panic!("no log line: {text}"));
    assert!(
        line.contains("INFO") && line.contains(&format!("id={in_use}")) && line.contains("owner=root"),
        "{line}"
    );
    assert_eq!(text.matches("removed while a process").count(), 1, "one line per object: {text}");
    // The census's own figures are there, and the body passes promtool.
    let body = get(port, "/metrics").body;
    assert!(samples(&body).contains_key("ipcwatch_census_duration_seconds"), "{body}");
    crate::daemon::promtool_check(&body);
}

#[test]
fn the_shipped_netdata_rules_raise_on_stale_arrays_and_charts_show_owners() {
    let mut ns = Namespace::new("census-alert");
    // Twelve arrays left behind by a process that exited: over the warning threshold of 10.
    let script: Vec<String> = (0..12).flat_map(|i| ["sem 0 1".to_string(), format!("post {i}")]).collect();
    ns.once(&script.iter().map(String::as_str).collect::<Vec<_>>());
    // The shipped rules, evaluated every second instead of every minute.
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../alerts/ipc.conf")).unwrap();
    std::fs::write(rules.join("ipc.conf"), shipped.replace("every: 1m", "every: 1s")).unwrap();
    let conf = config(
        &ns,
        "census.toml",
        &format!("[alerts]\nrules = \"{}\"\n[holders]\ninterval = 1\nstale_after = 1\n", rules.display()),
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_, log) = ns.spawn(IPCWATCH, &["--config", &conf, "--web.listen-address", &addr]);
    wait_ready(port, &log);
    let alarm = || -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
        doc["alarms"]["ipc.stale_objects.stale_semaphore_arrays"].clone()
    };
    let raised = crate::alerts::eventually(15, || alarm()["status"] == "WARNING");
    let a = alarm();
    assert!(raised, "{a}\n{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(a["value"], 12.0, "{a}");
    assert!(a["info"].as_str().unwrap().contains("SEMMNI"), "the alert names the limit at stake: {a}");
    // The arrays were all there at the first census: no growth, so that alert stays clear.
    let growing: serde_json::Value = serde_json::from_str(&get(port, "/api/v1/alarms?all").body).unwrap();
    assert_eq!(
        growing["alarms"]["ipc.stale_objects.semaphore_arrays_growing"]["status"], "CLEAR",
        "{growing}"
    );
}

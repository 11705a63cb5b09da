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
fn arrays_and_queues_are_stale_only_when_no_process_of_their_creator_may_hold_them() {
    let mut ns = Namespace::with_users("apache");
    // Dead creator: uid 4242 made and used two arrays, and no process of uid 4242 lives.
    ns.once_as(4242, &["sem 0x1001 1", "post 0", "sem 0x1002 1", "post 1"]);
    let dead_ids = vec![0, 1];
    // Apache-shaped: a long-lived parent (uid 4343) makes an array; a child of the same uid
    // uses it and exits, so every pid the kernel recorded is dead while the parent lives.
    let (parent, _) = ns.keep_as(4343, &["sem 0x2001 1"]);
    ns.once_as(4343, &["post 2"]);
    // Never used: a live creator's queue and array (no pid recorded at all).
    ns.keep_as(4444, &["msg 0x3001", "sem 0x3002 1"]);
    let short = config(&ns, "short.toml", "[holders]\nstale_after = 2\norphan_after = 2\n");

    // Used just now: not stale yet under stale_after = 2 s.
    assert!(ids(&stale(&mut ns, &["--config", short.as_str()]), "sem").is_empty());
    std::thread::sleep(Duration::from_millis(3100));
    for args in [vec!["--config", short.as_str()], vec!["--older-than", "0s"]] {
        let objects = stale(&mut ns, &args);
        assert_eq!(ids(&objects, "sem"), dead_ids, "parent {parent} lives: {objects:?}");
        assert!(ids(&objects, "msg").is_empty(), "{objects:?}");
        for o in &objects {
            assert_eq!(
                (&o["owner_name"], &o["state"], &o["prunable"]),
                (&"4242".into(), &"stale".into(), &true.into())
            );
            assert!(o["idle_seconds"].as_i64().unwrap() >= 2, "{o}");
            let pids = o["pids"].as_array().unwrap();
            assert_eq!((&pids[0]["role"], &pids[0]["alive"]), (&"last_op".into(), &"dead".into()), "{o}");
            assert_eq!(o["ipcrm"], format!("ipcrm -s {}", o["id"]));
            let evidence = o["evidence"].as_str().unwrap();
            assert!(evidence.contains("no live process of its creator's uid 4242"), "{evidence}");
        }
    }
    // The default stale_after (1 h) lists nothing this young.
    assert!(ids(&stale(&mut ns, &[]), "sem").is_empty());

    // prune takes exactly the dead creator's arrays, at any threshold.
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes"]);
    assert_eq!(code, "0", "{text}");
    assert_eq!(text.matches(" removed").count(), 2, "{text}");
    assert!(text.contains("evidence: unused for"), "{text}");
    let (_, ipcs) = ns.run("ipcs", &[]);
    assert!(!ipcs.contains("0x00001001") && !ipcs.contains("0x00001002"), "{ipcs}");
    for key in ["0x00002001", "0x00003001", "0x00003002"] {
        assert!(ipcs.contains(key), "{key} (its creator may live) was removed: {ipcs}");
    }
}

#[test]
fn a_crash_loops_leaks_are_kept_until_the_operator_gives_the_evidence() {
    let mut ns = Namespace::with_users("crashloop");
    // Arrays made by root (whose older processes live on: this driver) and used by children
    // that died: the crash loop's leftovers.
    ns.once(&["sem 0x6001 1", "post 0", "sem 0x6002 1", "post 1"]);
    // Start times are whole seconds after a whole-second boot time: a clear gap.
    std::thread::sleep(Duration::from_millis(3100));
    // The server that runs now, started after them, with an array of its own in use.
    let (server, _) = ns.keep(&["sem 0x6003 1", "post 2"]);
    std::thread::sleep(Duration::from_millis(2100));
    // By default the creator rule keeps them: root's older processes may hold them.
    assert!(ids(&stale(&mut ns, &["--older-than", "0s"]), "sem").is_empty());
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes"]);
    assert_eq!((code.as_str(), text.matches(" removed").count()), ("0", 0), "{text}");
    // The operator's evidence: made before the running server started.
    let server = server.to_string();
    let (code, text) = ns.run(
        IPCWATCH,
        &[
            "prune",
            "--older-than",
            "0s",
            "--owner",
            "root",
            "--created-before-start-of",
            &server,
            "--yes",
            "--json",
        ],
    );
    assert_eq!(code, "0", "{text}");
    let done: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pruned = done[0]["pruned"].as_array().unwrap();
    let removed: Vec<i64> =
        pruned.iter().filter(|p| p["outcome"] == "removed").map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(removed, [0, 1], "{text}");
    for p in pruned {
        assert!(p["evidence"].as_str().unwrap().contains("--created-before-start-of"), "{p}");
    }
    let (_, ipcs) = ns.run("ipcs", &[]);
    assert!(ipcs.contains("0x00006003"), "the server's own array was removed: {ipcs}");
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
    let mut ns = Namespace::with_users("prune");
    let dead = ns.once_as(4242, &["sem 0x4001 2", "post 0", "msg 0x4002", "send 0 100", "shm 0x4003 8192"]);
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
    let mut ns = Namespace::with_users("census");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let conf = config(
        &ns,
        "census.toml",
        "[namespaces]\nmode = \"own\"\n[holders]\ninterval = 1\nstale_after = 1\norphan_after = 1\n",
    );
    // Left behind by uid 4242, which has no process left: one stale set and one orphaned
    // segment. Held by root: a segment attached and then destroyed (SHM_DEST), and a set a
    // live process uses.
    ns.once_as(4242, &["sem 0x5001 3", "post 0", "shm 0x5002 8192"]);
    let (_, held) = ns.keep(&["shm 0x5003 131072", "attach 1 0", "rm shm 1", "sem 0x5004 2", "post 1"]);
    let in_use = id_of(&held[4]);
    let (_, log) =
        ns.spawn(IPCWATCH, &["--config", &conf, "--web.listen-address", &addr, "--log.level", "info"]);
    wait_ready(port, &log);
    let owner = |name: &str| format!("{name}{{owner=\"root\",uid=\"0\"}}");
    let gone = |name: &str| format!("{name}{{owner=\"4242\",uid=\"4242\"}}");
    let m = wait_metrics(port, |m| m.get(&gone("sysvipc_owner_stale_semaphore_arrays")) == Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_semaphore_arrays")), Some(&1.0), "{m:?}");
    assert_eq!(m.get(&gone("sysvipc_owner_semaphores")), Some(&3.0));
    assert_eq!(m.get(&owner("sysvipc_owner_semaphores")), Some(&2.0));
    assert_eq!(m.get(&owner("sysvipc_owner_stale_semaphore_arrays")), Some(&0.0), "{m:?}");
    assert_eq!(m.get(&owner("sysvipc_owner_shared_memory_segments")), Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_destroyed_attached_segments")), Some(&1.0));
    assert_eq!(m.get(&owner("sysvipc_owner_destroyed_attached_bytes")), Some(&131072.0));
    assert_eq!(m.get(&gone("sysvipc_owner_orphaned_bytes")), Some(&8192.0));
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
    let mut ns = Namespace::with_users("census-alert");
    // Twelve arrays left behind by a user with no process left: over the warning threshold.
    let script: Vec<String> = (0..12).flat_map(|i| ["sem 0 1".to_string(), format!("post {i}")]).collect();
    ns.once_as(4242, &script.iter().map(String::as_str).collect::<Vec<_>>());
    // The shipped rules, evaluated every second instead of every minute.
    let rules = ns.path("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../alerts/ipc.conf")).unwrap();
    std::fs::write(rules.join("ipc.conf"), shipped.replace("every: 1m", "every: 1s")).unwrap();
    let conf = config(
        &ns,
        "census.toml",
        &format!(
            "[namespaces]\nmode = \"own\"\n[alerts]\nrules = \"{}\"\n[holders]\ninterval = 1\nstale_after = 1\n",
            rules.display()
        ),
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

#[test]
fn a_dead_servers_dev_shm_files_are_listed_and_pruned_and_used_ones_never() {
    let mut ns = Namespace::with_mount("devshm-prune");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=4m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    // A crashed PostgreSQL's dynamic shared memory: written, then nobody maps or holds it.
    ns.cmd("write /dev/shm/PostgreSQL.1804289383 65536");
    // A live server's: one mapped, one held open.
    ns.cmd("write /dev/shm/PostgreSQL.846930886 65536");
    ns.cmd("write /dev/shm/sem.lock 32");
    ns.keep(&["map /dev/shm/PostgreSQL.846930886", "open /dev/shm/sem.lock"]);
    std::thread::sleep(Duration::from_millis(1100));

    let (code, text) = ns.run(IPCWATCH, &["snapshot", "--stale", "--older-than", "0s", "--json"]);
    assert_eq!(code, "0", "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = list[0]["dev_shm_files"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["PostgreSQL.1804289383"], "{text}");
    assert!(files[0]["evidence"].as_str().unwrap().contains("maps it or holds it open"), "{text}");

    // Without --dev-shm prune leaves files alone; with it, only the left-over one goes.
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--yes"]);
    assert_eq!(code, "0", "{text}");
    assert!(text.contains("kept: prune takes files with --dev-shm only"), "{text}");
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--dev-shm", "--yes"]);
    assert_eq!(code, "0", "{text}");
    assert_eq!(text.matches(" removed").count(), 1, "{text}");
    let (_, left) = ns.run("ls", &["/dev/shm"]);
    assert!(!left.contains("PostgreSQL.1804289383"), "{left}");
    assert!(
        left.contains("PostgreSQL.846930886") && left.contains("sem.lock"),
        "a used file was removed: {left}"
    );
}

#[test]
fn a_dev_shm_file_that_an_unreadable_process_may_map_is_never_called_unused() {
    let mut ns = Namespace::with_mount_without_ptrace("devshm-unread");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=4m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    ns.cmd("write /dev/shm/PostgreSQL.42 65536");
    std::thread::sleep(Duration::from_millis(1100));
    let stale = |ns: &mut Namespace| {
        let (code, text) = ns.run(IPCWATCH, &["snapshot", "--stale", "--older-than", "0s", "--json"]);
        assert_eq!(code, "0", "{text}");
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list[0].clone()
    };
    // Without CAP_SYS_PTRACE the host's processes cannot be read either, but their mounts
    // are not this mount namespace's: nothing here maps the file, and it is listed.
    let listed = stale(&mut ns);
    assert_eq!(listed["dev_shm_files"][0]["name"], "PostgreSQL.42", "{listed}");
    assert!(listed["error"].is_null() && listed["dev_shm_not_judged"].is_null(), "{listed}");

    // A server that cannot be read (another user's, to a process without CAP_SYS_PTRACE)
    // maps it from this mount namespace: its use cannot be ruled out.
    ns.keep(&["undumpable", "map /dev/shm/PostgreSQL.42"]);
    let listed = stale(&mut ns);
    assert!(listed["dev_shm_files"].is_null(), "{listed}");
    let why = listed["dev_shm_not_judged"].as_str().unwrap_or_default();
    assert!(why.contains("could not be read") && why.contains("may be in use"), "{listed}");
    assert!(listed["error"].is_null(), "{listed}");
    let (code, text) = ns.run(IPCWATCH, &["prune", "--older-than", "0s", "--dev-shm", "--yes"]);
    assert_eq!(code, "0", "{text}");
    assert!(text.contains("could not be read") && !text.contains(" removed"), "{text}");
    assert!(ns.run("ls", &["/dev/shm"]).1.contains("PostgreSQL.42"), "a file in use was removed");

    // The daemon's census (without CAP_SYS_PTRACE too) counts it used; from its second
    // round on it asks the process it could not read first, and walks /proc no more.
    let (port, _, log) = ns.daemon("[namespaces]\nmode = \"own\"\n[holders]\ninterval = 1\n");
    let figures = || {
        let m = crate::http::ns_samples(&get(port, "/metrics").body);
        let unused = m.iter().find(|(k, _)| k.starts_with("posix_shm_unused_files{")).map(|(_, v)| *v);
        (unused, m.get("ipcwatch_census_proc_walks").copied())
    };
    let settled = crate::alerts::eventually(15, || figures() == (Some(0.0), Some(0.0)));
    assert!(settled, "{:?}\n{}", figures(), std::fs::read_to_string(&log).unwrap());
}

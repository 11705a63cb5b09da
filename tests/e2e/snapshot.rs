//! `ipcwatch snapshot` against real objects: every figure equals the kernel's.

use crate::ns::{ipcs_usage, Namespace, IPCWATCH};

#[test]
fn zero_objects_and_default_limits() {
    let mut ns = Namespace::new("zero");
    let j = ns.snapshot_json();
    assert_eq!(j["semaphores"]["arrays"], 0);
    assert_eq!(j["semaphores"]["semaphores"], 0);
    assert_eq!(j["message_queues"]["queues"], 0);
    assert_eq!(j["shared_memory"]["segments"], 0);
    assert_eq!(j["shared_memory"]["items"].as_array().unwrap().len(), 0);
    // A new namespace starts from the kernel's compile-time defaults.
    assert_eq!(j["limits"]["semmni"], 32000);
    assert_eq!(j["limits"]["semmns"], 1024000000);
    assert_eq!(j["limits"]["shmmax"], 18446744073692774399u64);
    assert_eq!(j["limits"]["shmall"], 18446744073692774399u64);
    let sysv: Vec<_> = sysv_collectors(&j).collect();
    assert_eq!(sysv.len(), 4, "{}", j["collectors"]);
    assert!(sysv.iter().all(|c| c["ok"] == true && c["source"] != "procfs"), "{}", j["collectors"]);
    // This namespace shares the host's mount namespace, which its root may not mount in: its
    // POSIX queues cannot be read, the posix collector says why, and the exit status (0,
    // checked by snapshot_json) still says that the System V sample is whole.
    let posix = collector(&j, "posix");
    assert_eq!(posix["ok"], false, "{posix}");
    assert!(posix["error"].as_str().unwrap().contains("CAP_SYS_ADMIN"), "{posix}");
    // With a mount namespace of its own it can: the collector succeeds.
    let mut ns = Namespace::with_mount("posix-ok");
    let j = ns.snapshot_json();
    let posix = collector(&j, "posix");
    assert_eq!(
        (&posix["ok"], &posix["source"]),
        (&serde_json::json!(true), &serde_json::json!("syscall")),
        "{posix}"
    );
}

/// The sem, msg, shm and limits collectors' reports.
fn sysv_collectors(j: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    let sysv = ["sem", "msg", "shm", "limits"];
    j["collectors"].as_array().unwrap().iter().filter(move |c| sysv.contains(&c["name"].as_str().unwrap()))
}

fn collector<'a>(j: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let all = j["collectors"].as_array().unwrap();
    all.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} collector in {all:?}"))
}

#[test]
fn limits_changed_at_run_time_are_seen_at_once() {
    let mut ns = Namespace::new("limits");
    ns.cmd("sysctl sem 250 10 32 5");
    ns.cmd("sysctl msgmni 7");
    ns.cmd("sysctl msgmax 500");
    ns.cmd("sysctl msgmnb 1000");
    ns.cmd("sysctl shmmni 9");
    ns.cmd("sysctl shmmax 99999");
    ns.cmd("sysctl shmall 12345");
    let l = ns.snapshot_json()["limits"].clone();
    let got: Vec<u64> =
        ["semmsl", "semmns", "semopm", "semmni", "msgmni", "msgmax", "msgmnb", "shmmni", "shmmax", "shmall"]
            .iter()
            .map(|k| l[k].as_u64().unwrap())
            .collect();
    assert_eq!(got, [250, 10, 32, 5, 7, 500, 1000, 9, 99999, 12345]);
    ns.cmd("sysctl sem 251 11 33 6");
    let l = ns.snapshot_json()["limits"].clone();
    assert_eq!((l["semmsl"].as_u64(), l["semmni"].as_u64()), (Some(251), Some(6)));
    // A new queue takes msgmnb as its capacity.
    let q = ns.num("msg 0");
    let j = ns.snapshot_json();
    assert_eq!(j["message_queues"]["items"][0]["id"], q);
    assert_eq!(j["message_queues"]["items"][0]["capacity_bytes"], 1000);
}

#[test]
fn known_objects_give_exactly_their_counts() {
    let mut ns = Namespace::new("objects");
    // Arrays of 7, 3 and 1: lsipc 2.38 says 21 semaphores here; the kernel says 11.
    ns.cmd("sem 0 7");
    let high = ns.num("sem 0x80000001 3");
    ns.cmd("sem 0xdeadbeef 1");
    // A queue filled exactly to its capacity, and one with three 100-byte messages.
    let full = ns.num("msg 0x1234");
    ns.cmd(&format!("capacity {full} 1000"));
    assert_eq!(ns.num(&format!("fill {full} 250")), 4);
    let busy = ns.num("msg 0");
    assert_eq!(ns.num(&format!("send {busy} 100 3")), 3);
    // An orphaned segment, an attached one, and a removed one that is still attached.
    let orphan = ns.num("shm 0x5678 5000");
    let attached = ns.num("shm 0 40961");
    ns.cmd(&format!("attach {attached} 12288"));
    let doomed = ns.num("shm 0x7fffffff 1048576");
    ns.cmd(&format!("attach {doomed} 1048576"));
    ns.cmd(&format!("rm shm {doomed}"));

    let j = ns.snapshot_json();
    let (_, ipcs) = ns.run("ipcs", &["-u"]);
    let k = ipcs_usage(&ipcs);

    let sem = &j["semaphores"];
    assert_eq!(sem["arrays"], 3);
    assert_eq!(sem["semaphores"], 11);
    assert_eq!(sem["arrays"].as_u64(), k.get("used arrays").copied());
    assert_eq!(sem["semaphores"].as_u64(), k.get("allocated semaphores").copied());
    let item = sem["items"].as_array().unwrap().iter().find(|a| a["id"] == high).unwrap();
    assert_eq!(item["key"], "0x80000001");
    assert_eq!(item["semaphores"], 3);
    assert_eq!(sem["items"][2]["key"], "0xdeadbeef");

    let msg = &j["message_queues"];
    assert_eq!(msg["queues"], 2);
    assert_eq!(msg["messages"], 7);
    assert_eq!(msg["bytes"], 1300);
    assert_eq!(msg["full_queues"], 1);
    assert_eq!(msg["queues"].as_u64(), k.get("allocated queues").copied());
    assert_eq!(msg["messages"].as_u64(), k.get("used headers").copied());
    assert_eq!(msg["bytes"].as_u64(), k.get("used space").copied());
    let q = &msg["items"][0];
    assert_eq!((q["id"].as_i64(), q["key"].as_str()), (Some(full), Some("0x00001234")));
    assert_eq!(
        (q["messages"].as_u64(), q["bytes"].as_u64(), q["capacity_bytes"].as_u64()),
        (Some(4), Some(1000), Some(1000))
    );
    assert_eq!(q["owner"], 0);

    let shm = &j["shared_memory"];
    assert_eq!(shm["segments"], 3);
    assert_eq!(shm["segments"].as_u64(), k.get("segments allocated").copied());
    assert_eq!(shm["pages"], 2 + 11 + 256);
    assert_eq!(shm["pages"].as_u64(), k.get("pages allocated").copied());
    assert_eq!(shm["resident_bytes"].as_u64(), k.get("pages resident").map(|p| p * 4096));
    assert_eq!(shm["resident_bytes"], 12288 + 1048576);
    assert_eq!(shm["bytes"], 5000 + 40961 + 1048576);
    assert_eq!(shm["orphaned_segments"], 1);
    assert_eq!(shm["orphaned_bytes"], 5000);
    assert_eq!(shm["destroyed_attached_segments"], 1);
    let items = shm["items"].as_array().unwrap();
    let by_id = |id: i64| items.iter().find(|s| s["id"] == id).unwrap();
    assert_eq!(by_id(orphan)["attached"], 0);
    assert_eq!(by_id(attached)["resident_bytes"], 12288);
    assert_eq!(by_id(doomed)["destroyed"], true);
    assert_eq!(by_id(doomed)["key"], "0x00000000", "the kernel resets a removed segment's key");

    // The table agrees with the kernel too.
    let (code, table) = ns.run(IPCWATCH, &["snapshot"]);
    assert_eq!(code, "0");
    let semmns = table.lines().find(|l| l.starts_with("SEMMNS")).unwrap();
    assert_eq!(semmns.split_whitespace().rev().nth(1), Some("11"), "{semmns}");
}

#[test]
fn objects_created_and_removed_during_the_walk() {
    let mut ns = Namespace::new("churn");
    for _ in 0..50 {
        ns.cmd("msg 0");
        ns.cmd("sem 0 2");
    }
    ns.cmd("churn on");
    for _ in 0..20 {
        let j = ns.snapshot_json();
        assert!(sysv_collectors(&j).all(|c| c["ok"] == true), "{}", j["collectors"]);
        let queues = j["message_queues"]["queues"].as_u64().unwrap();
        assert!((50..=51).contains(&queues), "{queues}");
        let items = j["message_queues"]["items"].as_array().unwrap().len();
        assert!((49..=52).contains(&items), "{items}");
        let arrays = j["semaphores"]["arrays"].as_u64().unwrap();
        assert!((50..=51).contains(&arrays), "{arrays}");
    }
    ns.cmd("churn off");
}

#[test]
fn help_and_bad_flags() {
    let out = std::process::Command::new(IPCWATCH).args(["snapshot", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for flag in ["--json", "--source", "--path.procfs"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let out = std::process::Command::new(IPCWATCH).args(["snapshot", "--jsn"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.lines().next().unwrap().contains("--jsn"), "{err}");
    let out = std::process::Command::new(IPCWATCH).args(["snapshot", "--source", "magic"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreadable_procfs_in_procfs_mode_is_a_clear_error() {
    // No proc file system there at all: one line, exit 2, as for any bad flag.
    let out = std::process::Command::new(IPCWATCH)
        .args(["snapshot", "--source", "procfs", "--path.procfs", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent is not a proc file system"), "{err}");
    // A proc file system whose sysvipc files cannot be read: each collector says why.
    let dir = std::env::temp_dir().join(format!("ipcwatch-fakeproc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("self")).unwrap();
    let out = std::process::Command::new(IPCWATCH)
        .args(["snapshot", "--source", "procfs", "--path.procfs", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("error: sem: cannot read {}/sysvipc/sem", dir.display())), "{text}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::process::{Command, Stdio};
    for args in [&["snapshot"][..], &["snapshot", "--json"], &["check-alerts", "/nonexistent"]] {
        let mut child =
            Command::new(IPCWATCH).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // The reader goes away before anything is written (`ipcwatch snapshot | true`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn shared_memory_sums_do_not_wrap() {
    let mut ns = Namespace::new("wrap");
    // 4 x 2^62 + 1 GiB: the byte sum passes 2^64. An unprivileged user can do this, and a
    // wrapped sum would hide the orphaned memory.
    for _ in 0..4 {
        ns.cmd("shm-noreserve 0 4611686018427387904");
    }
    ns.cmd("shm-noreserve 0 1073741824");
    let snap = ns.snapshot_json();
    let shm = &snap["shared_memory"];
    assert_eq!(shm["bytes"], u64::MAX, "saturated, not wrapped to 1 GiB: {shm}");
    assert_eq!(shm["orphaned_bytes"], u64::MAX);
    // Pages are the kernel's own shm_tot: exact.
    let pages = 4 * ((1u64 << 62) / 4096) + (1 << 30) / 4096;
    assert_eq!(shm["pages"], pages);
    let warnings = snap["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().starts_with("shared_memory.bytes: the sum reaches 2^64")),
        "{warnings:?}"
    );
    let (_, ipcs) = ns.run("ipcs", &["-m", "-u"]);
    let usage = crate::ns::ipcs_usage(&ipcs);
    assert_eq!(usage.get("pages allocated"), Some(&pages), "{ipcs}");
}

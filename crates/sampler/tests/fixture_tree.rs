//! The sampler's text path on a fixture procfs tree captured from a real kernel, including a
//! tree with an unreadable file: that part fails with a clear error, the rest is intact.

use std::path::{Path, PathBuf};

use ipcwatch_sampler::{Origin, Sampler, SamplerConfig, Source};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernel-6.18")
}

fn sample(root: &Path) -> ipcwatch_sampler::Snapshot {
    Sampler::new(SamplerConfig {
        procfs: root.to_path_buf(),
        source: Source::Procfs,
        segment_memory: true,
        semaphore_detail: true,
        posix: false,
    })
    .snapshot()
}

#[test]
fn text_path_gives_the_kernel_totals() {
    let s = sample(&fixture());
    assert!(s.ok(), "{:?}", s.collectors);
    let sem = s.semaphores.unwrap();
    assert_eq!((sem.arrays, sem.semaphores), (3, 11)); // ipcs -u said 3 arrays, 11 semaphores
    let msg = s.message_queues.unwrap();
    assert_eq!((msg.queues, msg.messages, msg.bytes), (2, 7, 300));
    let shm = s.shared_memory.unwrap();
    // ipcs -u: 3 segments, 268 pages (1 + 11 + 256, each rounded up).
    assert_eq!((shm.segments, shm.pages, shm.bytes), (3, 268, 1_089_538));
    assert_eq!(shm.resident_bytes, 12288 + 1_048_576);
    assert_eq!((shm.orphaned_segments, shm.orphaned_bytes, shm.destroyed_attached_segments), (1, 1, 1));
    let l = s.limits;
    assert_eq!((l.semmsl, l.semmns, l.semopm, l.semmni), (Some(250), Some(20), Some(32), Some(10)));
    assert_eq!((l.msgmni, l.msgmax, l.msgmnb), (Some(32000), Some(8192), Some(16384)));
    assert_eq!(
        (l.shmmni, l.shmmax, l.shmall),
        (Some(4096), Some(18446744073692774399), Some(18446744073692774399))
    );
    assert_eq!((l.semvmx, l.shmmin), (Some(32767), Some(1)));
    assert!(s.collectors.iter().all(|c| c.source == Origin::Procfs));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipcwatch-fixture-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&fixture(), &dir);
    dir
}

#[test]
fn an_unreadable_limit_fails_only_that_limit() {
    let root = scratch("msgmnb");
    std::fs::remove_file(root.join("sys/kernel/msgmnb")).unwrap();
    let s = sample(&root);
    let limits = s.collector("limits").unwrap();
    assert!(!limits.ok);
    let err = limits.error.as_deref().unwrap();
    assert!(err.contains("sys/kernel/msgmnb") && err.contains("No such file"), "{err}");
    assert_eq!(s.limits.msgmnb, None, "never a made-up zero");
    assert_eq!(s.limits.msgmni, Some(32000));
    assert!(s.semaphores.is_some() && s.message_queues.is_some() && s.shared_memory.is_some());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_missing_sysvipc_file_fails_only_its_section() {
    let root = scratch("msg");
    std::fs::remove_file(root.join("sysvipc/msg")).unwrap();
    let s = sample(&root);
    assert!(s.message_queues.is_none());
    let msg = s.collector("msg").unwrap();
    assert!(!msg.ok && msg.error.as_deref().unwrap().contains("sysvipc/msg"));
    assert!(s.collector("sem").unwrap().ok && s.collector("shm").unwrap().ok);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["message_queues"].is_null());
    assert_eq!(json["semaphores"]["arrays"], 3);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn malformed_rows_become_warnings() {
    let root = scratch("malformed");
    let path = root.join("sysvipc/sem");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("   1   2\n");
    std::fs::write(&path, text).unwrap();
    let s = sample(&root);
    assert_eq!(s.semaphores.unwrap().arrays, 3);
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains("sysvipc/sem:5: skipped"), "{}", s.warnings[0]);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn json_has_the_documented_shape() {
    let json = serde_json::to_value(sample(&fixture())).unwrap();
    for path in [
        "/semaphores/arrays",
        "/semaphores/semaphores",
        "/semaphores/items",
        "/message_queues/queues",
        "/message_queues/messages",
        "/message_queues/bytes",
        "/message_queues/items/0/key",
        "/message_queues/items/0/id",
        "/message_queues/items/0/owner",
        "/message_queues/items/0/messages",
        "/message_queues/items/0/bytes",
        "/message_queues/items/0/capacity_bytes",
        "/shared_memory/segments",
        "/shared_memory/bytes",
        "/shared_memory/pages",
        "/shared_memory/resident_bytes",
        "/shared_memory/swapped_bytes",
        "/shared_memory/orphaned_segments",
        "/shared_memory/orphaned_bytes",
        "/shared_memory/items",
        "/limits/semmni",
        "/limits/semmns",
        "/limits/semmsl",
        "/limits/semopm",
        "/limits/semvmx",
        "/limits/msgmni",
        "/limits/msgmax",
        "/limits/msgmnb",
        "/limits/shmmni",
        "/limits/shmmax",
        "/limits/shmall",
        "/limits/shmmin",
    ] {
        assert!(json.pointer(path).is_some(), "{path} missing");
    }
    assert_eq!(json["semaphores"]["items"][1]["key"], "0x80000001");
    assert_eq!(json["semaphores"]["items"][1]["mode"], "600");
    assert_eq!(json["limits"]["shmmax"], 18446744073692774399u64);
    // Every limit is in the JSON, and in its documentation.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/snapshot-json.md"))
            .unwrap();
    let limits_doc = &doc[doc.find("\"limits\": {").expect("a limits object")..];
    let limits_doc = &limits_doc[..limits_doc.find('}').unwrap()];
    for name in ipcwatch_sampler::Limits::NAMES {
        assert!(json["limits"].get(name).is_some(), "{name} missing from the JSON");
        assert!(
            limits_doc.contains(&format!("\"{name}\":")),
            "docs/snapshot-json.md does not show limits.{name}"
        );
    }
}

#[test]
fn special_files_are_refused_without_blocking_or_reading_forever() {
    let root = scratch("special");
    let (sem, msg) = (root.join("sysvipc/sem"), root.join("sysvipc/msg"));
    std::fs::remove_file(&sem).unwrap();
    std::fs::remove_file(&msg).unwrap();
    // A FIFO nobody writes would block a plain open forever; /dev/zero never ends.
    let status = std::process::Command::new("mkfifo").arg(&sem).status().expect("mkfifo (coreutils)");
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", &msg).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let r = root.clone();
    std::thread::spawn(move || {
        let _ = tx.send(sample(&r));
    });
    let s = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the snapshot did not hang");
    for name in ["sem", "msg"] {
        let c = s.collector(name).unwrap();
        assert!(!c.ok, "{name}");
        assert!(c.error.as_deref().unwrap().contains("not a regular file"), "{name}: {:?}", c.error);
    }
    assert!(s.collector("shm").unwrap().ok);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn sums_that_would_wrap_saturate_and_say_so() {
    let root = scratch("wrap");
    let path = root.join("sysvipc/sem");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "         0          7 600    18446744073709551610     0     0     0     0 1760000000 1760000000\n",
    );
    std::fs::write(&path, text).unwrap();
    let s = sample(&root);
    assert_eq!(s.semaphores.as_ref().unwrap().semaphores, u64::MAX, "not 11 + 2^64 - 6 wrapped");
    assert!(s.warnings.iter().any(|w| w.contains("semaphores") && w.contains("2^64")), "{:?}", s.warnings);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_maps_text_gives_the_same_file_mappings_as_asking_the_kernel() {
    // A regular file cannot answer PROCMAP_QUERY (ENOTTY), so a copy of this process's maps
    // text is read as a kernel before 6.11 makes us; /proc/self/maps itself is asked.
    let copy = std::env::temp_dir().join(format!("ipcwatch-maps-{}", std::process::id()));
    std::fs::write(&copy, std::fs::read("/proc/self/maps").unwrap()).unwrap();
    let collect = |path: &Path| {
        let (mut text, mut seen) = (String::new(), std::collections::BTreeSet::new());
        ipcwatch_sampler::objects::mapped_files(path, &mut text, |dev, ino| {
            seen.insert((dev, ino));
        })
        .unwrap();
        (seen, text.is_empty())
    };
    let (from_text, text_empty) = collect(&copy);
    let (asked, asked_text_empty) = collect(Path::new("/proc/self/maps"));
    std::fs::remove_file(&copy).unwrap();
    assert!(!text_empty, "the copy was read as text");
    assert!(asked_text_empty, "the kernel (6.11+) was asked, no text read");
    assert!(!from_text.is_empty());
    assert_eq!(from_text, asked);
}

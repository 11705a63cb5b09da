//! What a hostile container can put in front of ipcwatch: names made to collide or to drive
//! the admin's terminal. Each test reproduces the attack against real namespaces and fails
//! without its fix (issue 20).

use std::os::unix::ffi::OsStrExt;

use crate::alerts::eventually;
use crate::http::{free_port, get, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

#[test]
fn dev_shm_names_that_differ_only_in_invalid_utf8_stay_two_series() {
    let mut ns = Namespace::with_mount("non-utf8");
    let (code, out) = ns.run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"]);
    assert_eq!(code, "0", "{out}");
    // `dup\xff` and `dup\xfe`, the biggest files there, written through the namespace's root.
    let shm = std::path::PathBuf::from(format!("/proc/{}/root/dev/shm", ns.pid()));
    for b in [0xff_u8, 0xfe] {
        let bytes = [b'd', b'u', b'p', b];
        std::fs::write(shm.join(std::ffi::OsStr::from_bytes(&bytes)), vec![1u8; 16384]).unwrap();
    }
    let config = ns.path("ipcwatch.toml");
    std::fs::write(&config, "[holders]\ninterval = 1\n").unwrap();
    let port = free_port();
    let (_, log) = ns.spawn(
        IPCWATCH,
        &["--config", config.to_str().unwrap(), "--web.listen-address", &format!("127.0.0.1:{port}")],
    );
    wait_ready(port, &log);
    let names = || -> Vec<String> {
        let body = get(port, "/metrics").body;
        let mut n: Vec<String> = body
            .lines()
            .filter(|l| l.starts_with("posix_shm_file_bytes{"))
            .filter_map(|l| l.split("name=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect();
        n.sort();
        n
    };
    // The exposition escapes the backslash once more: `dup\\xfe` is the name `dup\xfe`.
    assert!(
        eventually(10, || names() == ["dup\\\\xfe", "dup\\\\xff"]),
        "{:?}\n{}",
        names(),
        get(port, "/metrics").body
    );
}

#[test]
fn names_in_snapshot_tables_cannot_drive_the_terminal() {
    let mut ns = Namespace::with_mount("terminal");
    // A queue whose name clears the screen and turns the text red.
    ns.cmd("mq /\u{1b}[2J\u{1b}[31mevil 10 100");
    let (code, table) = ns.run(IPCWATCH, &["snapshot"]);
    assert_eq!(code, "0", "{table}");
    assert!(!table.contains('\u{1b}'), "an escape sequence reached the terminal:\n{table:?}");
    assert!(table.contains("/\\x1b[2J\\x1b[31mevil"), "{table}");
    // JSON keeps the name exact (escaped by JSON itself).
    let json = ns.snapshot_json();
    let names: Vec<&str> = json["posix"]["queues"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/\u{1b}[2J\u{1b}[31mevil"]);
}

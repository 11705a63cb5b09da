//! The driver's protocol, outside any namespace: it refuses to touch the host's IPC namespace,
//! and answers unknown commands with an error line. (Being an integration test, this also
//! makes `cargo test --workspace` build the driver binary the end-to-end tests run.)

use std::io::Write;
use std::process::{Command, Stdio};

fn run(input: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipcwatch-testkit"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn unknown_commands_are_answered_with_an_error() {
    let (code, out) = run("frobnicate\n");
    assert_eq!(code, Some(0));
    assert_eq!(out, "err unknown command `frobnicate`\n");
}

#[test]
fn it_refuses_the_hosts_namespace() {
    let own = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    if own.to_string_lossy() != "ipc:[4026531839]" {
        // Already inside a throw-away namespace: the check has nothing to refuse.
        let (_, out) = run("check-namespace\n");
        assert!(out.starts_with("ok ipc:["), "{out}");
        return;
    }
    let (code, out) = run("check-namespace\nsem 0 1\n");
    assert_eq!(code, Some(3), "it must exit before creating anything: {out}");
    assert!(out.is_empty(), "{out}");
}

//! The Debian package: built with cargo-deb by deploy/debian/build.sh, clean under lintian,
//! installed with dpkg into a fresh Debian 12 root made by debootstrap (test-only, in a temp
//! folder), where the binary, the unit and the daemon itself are tried as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::alerts::{eventually, repo};
use crate::http::{free_port, get, wait_ready};
use crate::ns::{dies_with_test, KillOnDrop, IPCWATCH};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run.sh installs what the tests need)"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `unshare` arguments that run the installed `ipcwatch ARGS` inside `root` as its unit would,
/// in throw-away user, IPC, PID and mount namespaces with a /proc of their own.
fn in_root(root: &Path, args: &[&str]) -> Vec<String> {
    let script = format!(
        "mount -t proc proc {root}/proc && exec chroot {root} /usr/bin/ipcwatch \"$@\"",
        root = root.display()
    );
    [
        "--user",
        "--map-root-user",
        "--ipc",
        "--pid",
        "--fork",
        "--mount",
        "--kill-child",
        "sh",
        "-c",
        &script,
        "sh",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(args.iter().map(|a| a.to_string()))
    .collect()
}

/// A folder removed when the test ends, also when it panics.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the package from the test's binary (the recipe is what is tested) into `out`.
fn build_package(out: &Path) -> PathBuf {
    ok(Command::new(repo("deploy/debian/build.sh")).env("BINARY", IPCWATCH).arg("--output").arg(out));
    let deb = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("build.sh made no .deb");
    deb
}

#[test]
fn the_package_is_lintian_clean_and_installs_and_starts_on_a_fresh_debian_12() {
    assert!(
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")),
        "debootstrap and dpkg into a root need root (CI runs as root)"
    );
    let dir = TempDir(std::env::temp_dir().join(format!("ipcwatch-deb-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let deb = build_package(&dir.0);

    // lintian: an error fails the test. Two warnings remain: no bug closed by the first upload,
    // and CHANGELOG.md kept under its own name so the README's link to it still works.
    let lint =
        run(Command::new("lintian").args(["--fail-on", "error", "--tag-display-limit", "0"]).arg(&deb));
    let lint_text = String::from_utf8_lossy(&lint.stdout).to_string();
    assert!(
        lint.status.success() && !lint_text.lines().any(|l| l.starts_with("E:")),
        "lintian:\n{lint_text}"
    );

    // What it holds: the man page renders, the completion script loads.
    let files = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/ipcwatch",
        "./usr/lib/systemd/system/ipcwatch.service",
        "./etc/ipcwatch/ipcwatch.toml",
        "./etc/ipcwatch/alerts/ipc.conf",
        "./usr/share/ipcwatch/ipcwatch.rules.yml",
        "./usr/share/doc/ipcwatch/README.md",
        "./usr/share/doc/ipcwatch/copyright",
        "./usr/share/man/man1/ipcwatch.1.gz",
        "./usr/share/man/man1/ipcwatch-snapshot.1.gz",
        "./usr/share/bash-completion/completions/ipcwatch",
    ] {
        assert!(files.lines().any(|l| l.ends_with(path)), "{path} is not in the package:\n{files}");
    }
    let unpacked = dir.0.join("unpacked");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let page = ok(Command::new("man")
        .arg("-l")
        .arg(unpacked.join("usr/share/man/man1/ipcwatch.1.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80"));
    assert!(page.contains("--path.rootfs") && page.contains("/etc/ipcwatch/ipcwatch.toml"), "{page}");
    let completion = unpacked.join("usr/share/bash-completion/completions/ipcwatch");
    let loaded = ok(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p ipcwatch", completion.display())));
    assert!(loaded.contains("ipcwatch"), "{loaded}");

    // A fresh Debian 12 with what a standard install has for it (systemd, procps).
    let root = dir.0.join("root");
    let cache = repo("target/debootstrap-cache");
    std::fs::create_dir_all(&cache).unwrap();
    ok(Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd,procps"])
        .arg(format!("--cache-dir={}", cache.display()))
        .args(["bookworm"])
        .arg(&root)
        .arg("http://deb.debian.org/debian"));
    std::fs::copy(&deb, root.join("tmp/ipcwatch.deb")).unwrap();
    let chroot = |args: &[&str]| {
        let mut cmd = Command::new("chroot");
        cmd.arg(&root).args(args);
        cmd
    };
    let installed = ok(&mut chroot(&["dpkg", "-i", "/tmp/ipcwatch.deb"]));
    assert!(!installed.to_lowercase().contains("warning"), "{installed}");
    let conffiles = ok(&mut chroot(&["dpkg-query", "-W", "-f=${Conffiles}", "ipcwatch"]));
    assert!(conffiles.contains("/etc/ipcwatch/ipcwatch.toml"), "{conffiles}");
    // The postinst enabled the unit (a link, absolute inside the root).
    let wants = root.join("etc/systemd/system/multi-user.target.wants/ipcwatch.service");
    assert!(std::fs::symlink_metadata(&wants).is_ok(), "the unit is not enabled");
    let version = ok(&mut chroot(&["ipcwatch", "--version"]));
    assert!(version.starts_with(&format!("ipcwatch {} (revision ", env!("CARGO_PKG_VERSION"))), "{version}");
    ok(&mut chroot(&["systemd-analyze", "verify", "/usr/lib/systemd/system/ipcwatch.service"]));
    ok(&mut chroot(&["ipcwatch", "check-config", "/etc/ipcwatch/ipcwatch.toml"]));
    // The unit's Documentation= is installed.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/ipcwatch.service")).unwrap();
    let doc = unit.lines().find_map(|l| l.strip_prefix("Documentation=file://")).expect("Documentation=");
    assert!(root.join(doc.trim_start_matches('/')).exists(), "{doc} is not installed");

    // Started as the unit starts it, in throw-away user, IPC, PID and mount namespaces (its
    // own /proc inside the root): the installed config and rules load, /metrics serves, and
    // `snapshot` answers.
    let port = free_port();
    let log = dir.0.join("daemon.log");
    let listen = format!("127.0.0.1:{port}");
    let child = dies_with_test("unshare")
        .args(in_root(&root, &["--config", "/etc/ipcwatch/ipcwatch.toml", "--web.listen-address", &listen]))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _daemon = KillOnDrop(child);
    wait_ready(port, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("loaded alert rules from /etc/ipcwatch/alerts"), "rules not loaded:\n{text}");
    assert!(eventually(5, || get(port, "/metrics").body.contains("sysvipc_semaphore_arrays_limit{")));
    let table = ok(Command::new("unshare").args(in_root(&root, &["snapshot"])));
    assert!(table.contains("SEMMNI"), "{table}");
}

//! The command line as a user meets it: `--version` names the build, and the manual pages
//! and completion scripts generated from the CLI render and load in the real tools.

use std::process::Command;

use crate::ns::IPCWATCH;

fn ipcwatch(args: &[&str]) -> String {
    let out = Command::new(IPCWATCH).args(args).output().unwrap();
    assert!(out.status.success(), "ipcwatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_revision_and_the_build_date() {
    let v = ipcwatch(&["--version"]);
    let rest =
        v.trim().strip_prefix(&format!("ipcwatch {} (revision ", env!("CARGO_PKG_VERSION"))).expect(&v);
    let (revision, date) = rest.strip_suffix(')').and_then(|r| r.split_once(", built ")).expect(&v);
    assert!(
        revision == "unknown" || revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "{v}");
}

#[test]
fn the_manual_pages_render_with_man_and_the_completions_load_in_bash() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (page, expect) in [("", "--path.rootfs"), ("snapshot", "--all-namespaces"), ("prune", "--older-than")]
    {
        let args: Vec<&str> = std::iter::once("man").chain((!page.is_empty()).then_some(page)).collect();
        let file = dir.join("page.1");
        std::fs::write(&file, ipcwatch(&args)).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man (man-db) is needed; tests/run.sh installs it");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(expect), "man -l ipcwatch {page}:\n{text}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unknown = Command::new(IPCWATCH).args(["man", "nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("commands: snapshot"));

    let script = dir.join("ipcwatch.bash");
    std::fs::write(&script, ipcwatch(&["completions", "bash"])).unwrap();
    // Loaded, then asked for what follows `ipcwatch snap`, as bash's completion would.
    let probe = format!(
        "source {} && COMP_WORDS=(ipcwatch snap) COMP_CWORD=1 COMP_LINE='ipcwatch snap' COMP_POINT=13 && _ipcwatch ipcwatch snap ipcwatch && echo \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("snapshot"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Records the git revision and the build date for `--version` and `ipcwatch_build_info`
//! ("unknown" outside a checkout). The date is SOURCE_DATE_EPOCH's when set, so a
//! reproducible build (Debian's) gets the same binary twice.

use std::time::{SystemTime, UNIX_EPOCH};

/// A command's trimmed standard output, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let rev = output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    // `date` formats it: coreutils is on every Linux build host.
    let date =
        output("date", &["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IPCWATCH_REVISION={rev}");
    println!("cargo:rustc-env=IPCWATCH_BUILD_DATE={date}");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

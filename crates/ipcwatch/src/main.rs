//! The `ipcwatch` binary: command-line parsing and the glue between the library crates.

mod snapshot_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ipcwatch_sampler::{Sampler, SamplerConfig, Source};

/// Watches System V IPC (semaphores, message queues, shared memory) against the kernel's limits.
///
/// Without a command, runs the daemon: samples every second and serves /metrics for Prometheus.
#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version, about, long_about = None)]
struct Cli {
    /// Root of the proc filesystem (read only where a syscall cannot answer).
    #[arg(long = "path.procfs", value_name = "PATH", global = true)]
    procfs: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print one sample of the caller's IPC namespace and exit.
    Snapshot {
        /// Print the whole snapshot as JSON (format: docs/snapshot-json.md).
        #[arg(long)]
        json: bool,
        /// Where to read from: `auto` (syscalls, /proc text as fallback) or `procfs` (text only).
        #[arg(long, value_name = "SOURCE", default_value = "auto")]
        source: Source,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipcwatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let procfs = cli.procfs.unwrap_or_else(|| PathBuf::from("/proc"));
    match cli.command {
        Some(Command::Snapshot { json, source }) => {
            let mut sampler = Sampler::new(SamplerConfig { procfs, source, segment_memory: true });
            let snap = sampler.snapshot();
            if json {
                let text = serde_json::to_string_pretty(&snap).context("encoding the snapshot")?;
                println!("{text}");
            } else {
                print!("{}", snapshot_cmd::render_table(&snap));
            }
            Ok(if snap.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        None => anyhow::bail!("the daemon is not built yet; use `ipcwatch snapshot`"),
    }
}

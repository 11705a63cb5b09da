//! The `ipcwatch` binary: command-line parsing and the glue between the library crates.

#![forbid(unsafe_code)]

mod daemon;
mod logging;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ipcwatch_charts::figures;
use ipcwatch_sampler::{namespaces, Sampler, SamplerConfig, Snapshot, Source};

use ipcwatch_config::{Config, ConfigError, Flags, LogLevel};

/// Watches System V IPC (semaphores, message queues, shared memory) against the kernel's limits.
///
/// Without a command, runs the daemon: samples every second and serves /metrics for Prometheus
/// (default port 9917), plus /, /-/healthy, /-/ready and /api/v1/alarms. Flags override the
/// config file. SIGHUP reloads the config file, SIGTERM stops gracefully.
#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version, about, long_about)]
struct Cli {
    /// Configuration file (TOML; see config/ipcwatch.toml). Without it, the built-in defaults.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    /// Address to serve HTTP on: host:port, [v6]:port or :port (all interfaces). Repeatable.
    #[arg(long = "web.listen-address", value_name = "ADDRESS")]
    listen: Vec<String>,

    /// exporter-toolkit web configuration file: TLS, basic auth, response headers.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,

    /// Path under which to serve the metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    telemetry_path: Option<String>,

    /// Root of the proc filesystem (read only where a syscall cannot answer).
    #[arg(long = "path.procfs", value_name = "PATH", global = true)]
    procfs: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL")]
    log_level: Option<LogLevel>,

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
        /// Every IPC namespace on the host, each with its owner (needs CAP_SYS_ADMIN, and
        /// CAP_SYS_PTRACE for other users' processes); JSON: a list.
        #[arg(long)]
        all_namespaces: bool,
    },
    /// Validate a configuration file (the --config one, or FILE) and exit: 0 if valid, 2 if not.
    CheckConfig {
        /// The file to check (default: the --config file).
        file: Option<PathBuf>,
    },
    /// Validate Netdata-syntax alert rules (a file, or every *.conf of a folder) and exit:
    /// 0 if all are valid, 1 with every error listed if not.
    CheckAlerts {
        /// The rule file or folder.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("ipcwatch: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipcwatch: {e:#}");
            // Bad input (config, flags) is exit 2 like a usage error; anything else 1.
            let usage = e.downcast_ref::<ConfigError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// clap's multi-line usage error as one line: the problem, and the valid values if any.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
        + " (see --help)"
}

/// Writes to stdout. A reader that went away (`ipcwatch snapshot | head`) ends the output
/// quietly, as with any Unix tool; other write errors are reported.
fn out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// The command-line flags that override the config file.
fn flags(cli: &Cli) -> Flags {
    Flags {
        listen_addresses: cli.listen.clone(),
        procfs: cli.procfs.clone(),
        log_level: cli.log_level,
        web_config: cli.web_config.clone(),
        telemetry_path: cli.telemetry_path.clone(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Some(Command::Snapshot { json, source, all_namespaces }) => {
            let procfs = cli.procfs.clone().unwrap_or_else(|| PathBuf::from("/proc"));
            let config =
                SamplerConfig { procfs, source: *source, segment_memory: true, semaphore_detail: true };
            let (text, ok) = if *all_namespaces {
                let pods = std::path::Path::new("/var/log/pods");
                let all = namespaces::snapshot_all(config, pods).context("looking for IPC namespaces")?;
                let ok = all.iter().all(|n| n.snapshot.as_ref().is_some_and(Snapshot::ok));
                (
                    if *json {
                        serde_json::to_string_pretty(&all)? + "\n"
                    } else {
                        figures::report_all(&all)
                    },
                    ok,
                )
            } else {
                let snap = Sampler::new(config).snapshot();
                (
                    if *json { serde_json::to_string_pretty(&snap)? + "\n" } else { figures::report(&snap) },
                    snap.ok(),
                )
            };
            out(&text)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Some(Command::CheckConfig { file }) => {
            let path = file.clone().or_else(|| cli.config.clone());
            let path = path.ok_or_else(|| ConfigError("give a file: ipcwatch check-config FILE".into()))?;
            let config = Config::load(&path)?;
            if let Some(web) = config.web_config_path() {
                ipcwatch_exporter::WebConfigFile::open(&web)
                    .map_err(|e| ConfigError(format!("web config: {e}")))?;
            }
            out(&format!("{}: valid\n", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::CheckAlerts { path }) => {
            let (rules, errors) = ipcwatch_alerts::load(path);
            let mut stderr = std::io::stderr().lock();
            for e in &errors {
                let _ = writeln!(stderr, "{e}");
            }
            out(&format!("{}: {} rules valid, {} errors\n", path.display(), rules.len(), errors.len()))?;
            Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        None => {
            let config = Config::with_flags(cli.config.as_deref(), &flags(&cli))?;
            let log = logging::init(config.log.level);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), config = ?cli.config, "starting ipcwatch");
            daemon::run(config, cli.config.clone(), flags(&cli), log)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

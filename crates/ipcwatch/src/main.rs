//! The `ipcwatch` binary: command-line parsing and the glue between the library crates.

#![forbid(unsafe_code)]

mod daemon;
mod failures;
mod logging;
mod mailbox;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use ipcwatch_charts::figures;
use ipcwatch_sampler::{namespaces, Sampler, SamplerConfig, Snapshot, Source};

use ipcwatch_config::{Config, ConfigError, Flags, LogLevel};
use ipcwatch_holders::{Filter, Outcome, Scope, Thresholds};

/// `ipcwatch 0.1.0 (revision 1234abcd5678, built 2026-12-01)`: which commit, and when.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("IPCWATCH_REVISION"),
    ", built ",
    env!("IPCWATCH_BUILD_DATE"),
    ")"
);

/// Watches System V IPC (semaphores, message queues, shared memory) against the kernel's limits.
///
/// Without a command, runs the daemon: samples every second and serves /metrics for Prometheus
/// (default port 9917), a live dashboard at /, Netdata's /api/v1 (charts, data, allmetrics,
/// alarms, ...), /-/healthy and /-/ready. Flags override the config file. SIGHUP reloads the
/// config file, SIGTERM stops gracefully.
#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version = VERSION, about, long_about)]
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

    /// Root of the proc filesystem: where namespaces and processes are found, and whose PID
    /// 1's IPC namespace is the host's (the one `system.*` charts describe). In a container
    /// watching its node: the host's /proc, e.g. /host/proc.
    #[arg(long = "path.procfs", value_name = "PATH", global = true)]
    procfs: Option<PathBuf>,

    /// The host's root filesystem (default /). In a container watching its node: the host's
    /// / mounted read-only, e.g. /host. User names come from its etc/passwd, pod names from
    /// its var/log/pods.
    #[arg(long = "path.rootfs", value_name = "PATH", global = true)]
    rootfs: Option<PathBuf>,

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
        /// List stale semaphore arrays and queues (unused for [holders] stale_after, every
        /// process that last touched them gone) and orphaned segments (nothing attached for
        /// orphan_after), each with its last pids and the ipcrm command that removes it.
        #[arg(long)]
        stale: bool,
        /// The latest IPC calls the kernel refused (semget, msgget, shmget, mq_open), with
        /// time, namespace, its owner, pid and command: asked of the running daemon, whose
        /// eBPF probes count them (the kernel keeps no record of its own).
        #[arg(long, conflicts_with_all = ["stale", "all_namespaces", "source"])]
        failures: bool,
        /// With --failures: the daemon's address (default: its config's first listen address).
        #[arg(long, value_name = "URL", requires = "failures")]
        url: Option<String>,
        /// With --stale: the age that counts, instead of stale_after and orphan_after
        /// (`0s` lists everything unused whose processes are gone).
        #[arg(long, value_name = "DURATION", requires = "stale", value_parser = ipcwatch_alerts::parse_age)]
        older_than: Option<i64>,
    },
    /// Remove stale and orphaned objects (see `snapshot --stale`). A dry run unless --yes;
    /// each object is re-checked just before removal. Never removed: a segment whose creator
    /// or last user lives, or that is attached; an array or queue whose last users live, or
    /// whose creator may live (a process of its creator's uid started before it was made and
    /// runs: docs/holders.md). Each object says the evidence used. Exit 1 if an object asked
    /// for by --id is kept.
    Prune {
        /// Really remove (without it, only lists what would be removed).
        #[arg(long)]
        yes: bool,
        /// Only this owner's objects (user name or uid).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// The age that counts, instead of [holders] stale_after and orphan_after.
        #[arg(long, value_name = "DURATION", value_parser = ipcwatch_alerts::parse_age)]
        older_than: Option<i64>,
        /// Only objects of this kind: sem, msg or shm. Repeatable.
        #[arg(long, value_name = "KIND")]
        kind: Vec<ipcwatch_sampler::Kind>,
        /// Only objects with this id. Repeatable.
        #[arg(long, value_name = "ID")]
        id: Vec<i32>,
        /// The IPC namespace (inode, as in the ipc_namespace label) instead of the caller's
        /// own; entering it needs CAP_SYS_ADMIN.
        #[arg(long, value_name = "INODE")]
        namespace: Option<u64>,
        /// Your evidence for leaks the creator rule keeps: arrays and queues made before
        /// process PID (the server that runs now) started are not held by the older
        /// processes of their creator's uid. Apache crash loops: the pid of today's parent.
        #[arg(long, value_name = "PID")]
        created_before_start_of: Option<u32>,
        /// Also remove left-over /dev/shm files: unmodified for orphan_after (or
        /// --older-than), and mapped or held open by no process of their mount namespace
        /// (a crashed PostgreSQL's; prefer restarting the server, which removes its own).
        #[arg(long)]
        dev_shm: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file (the --config one, or FILE) and exit: 0 if valid, 2 if not.
    CheckConfig {
        /// The file to check (default: the --config file).
        file: Option<PathBuf>,
    },
    /// Print a shell completion script: `ipcwatch completions bash > /etc/bash_completion.d/ipcwatch`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print a manual page (troff) to standard output: `ipcwatch man | man -l -`.
    Man {
        /// The page of this command (ipcwatch-COMMAND(1)) instead of ipcwatch(1).
        command: Option<String>,
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
            let usage = e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// A command line ipcwatch cannot act on (exit 2, as clap's own usage errors).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

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

/// ipcwatch(1), or ipcwatch-COMMAND(1), from the CLI definition, with the files the daemon
/// reads and where the rest is documented.
fn manual_page(command: Option<&str>) -> anyhow::Result<String> {
    // The plain version: the page's footer has no room for the revision.
    let cli = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let cmd = match command {
        None => cli,
        Some(name) => {
            let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_string()).collect();
            let Some(sub) = cli.find_subcommand(name) else {
                let list = names.join(", ");
                return Err(UsageError(format!("no command `{name}` (commands: {list})")).into());
            };
            sub.clone().name(format!("ipcwatch-{name}")).version(env!("CARGO_PKG_VERSION"))
        }
    };
    let man = clap_mangen::Man::new(cmd.clone()).date(env!("IPCWATCH_BUILD_DATE"));
    let mut page = Vec::new();
    man.render(&mut page).context("rendering the manual page")?;
    let mut page = String::from_utf8_lossy(&page).into_owned();
    if command.is_none() {
        page.push_str(concat!(
            ".SH FILES\n",
            ".TP\n/etc/ipcwatch/ipcwatch.toml\nThe configuration; every key is documented in the shipped file. ",
            "\\fBipcwatch check\\-config\\fR validates it.\n",
            ".TP\n/etc/ipcwatch/alerts/\nNetdata\\-syntax alert rules (\\fBipcwatch check\\-alerts\\fR validates them).\n",
            ".TP\n/usr/share/doc/ipcwatch/\nThe README, metrics, alerts, Kubernetes and holders guides, and ",
            "ipcwatch.rules.yml, the same alerts as Prometheus rules.\n",
            ".SH SIGNALS\nSIGHUP reloads the configuration and rules (a bad file is refused and the running ",
            "one kept); SIGTERM and SIGINT stop the daemon.\n",
            ".SH SEE ALSO\n\\fBipcs\\fR(1), \\fBipcrm\\fR(1), \\fBsysvipc\\fR(7), \\fBmq_overview\\fR(7), ",
            "\\fBshm_overview\\fR(7)\n",
        ));
    }
    Ok(page)
}

/// A table for a terminal. Names in it come from containers (queue and file names, command
/// names, units): a control character or a bidirectional override among them could move the
/// cursor, rewrite the screen or reorder what the admin reads, so each is shown escaped
/// (`\x1b`, `\u{202e}`). Line breaks of the table itself stay. (JSON escapes them already.)
fn terminal_safe(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
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
        rootfs: cli.rootfs.clone(),
        log_level: cli.log_level,
        web_config: cli.web_config.clone(),
        telemetry_path: cli.telemetry_path.clone(),
    }
}

/// A one-shot command's config: the --config file (or the defaults) with the flags on top.
/// User names come from where it says (the host's passwd under --path.rootfs).
fn one_shot_config(cli: &Cli) -> anyhow::Result<Config> {
    let config = Config::with_flags(cli.config.as_deref(), &flags(cli))?;
    ipcwatch_sampler::use_passwd_file(config.passwd_file());
    Ok(config)
}

/// A one-shot command's full sampler: every walk, and per-segment memory.
fn sampler_config(config: &Config) -> SamplerConfig {
    SamplerConfig { segment_memory: true, semaphore_detail: true, posix: true, ..config.sampler() }
}

/// `--older-than` if given, else the config file's (or the default) stale_after and orphan_after.
fn thresholds(config: &Config, older_than: Option<i64>) -> Thresholds {
    match older_than {
        Some(s) => Thresholds::both(s),
        None => config.holders().thresholds,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Some(Command::Snapshot { failures: true, url, json, .. }) => {
            let url = match url {
                Some(u) => u.clone(),
                None => {
                    let config = one_shot_config(&cli)?;
                    failures::local_url(config.web.listen_addresses.first().map_or(":9917", String::as_str))
                }
            };
            let body = failures::fetch(&url)?;
            out(&if *json { body } else { terminal_safe(&failures::table(&body)?) })?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Snapshot { json, source, all_namespaces, stale: true, older_than, .. }) => {
            let config = one_shot_config(&cli)?;
            let scope = if *all_namespaces { Scope::All } else { Scope::Own };
            let sampler = SamplerConfig { source: *source, ..sampler_config(&config) };
            let found = ipcwatch_holders::stale_objects(
                sampler,
                &config.pod_logs(),
                scope,
                thresholds(&config, *older_than),
                &Filter::default(),
                None,
            )
            .context("looking for stale objects")?;
            let text = if *json {
                serde_json::to_string_pretty(&found)? + "\n"
            } else {
                terminal_safe(&ipcwatch_holders::text(&found, false))
            };
            out(&text)?;
            Ok(if found.iter().all(|n| n.error.is_none()) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Some(Command::Prune {
            yes,
            owner,
            older_than,
            kind,
            id,
            namespace,
            json,
            created_before_start_of,
            dev_shm,
        }) => {
            let scope = namespace.map_or(Scope::Own, Scope::One);
            let filter = Filter {
                owner: owner.clone(),
                kinds: kind.clone(),
                ids: id.clone(),
                created_before_start_of: *created_before_start_of,
                dev_shm: *dev_shm,
            };
            let config = one_shot_config(&cli)?;
            let t = thresholds(&config, *older_than);
            let done = ipcwatch_holders::stale_objects(
                sampler_config(&config),
                &config.pod_logs(),
                scope,
                t,
                &filter,
                Some(*yes),
            )
            .context("looking for stale objects")?;
            // An id asked for that is not stale at all is refused out loud, not skipped.
            let listed: Vec<i32> = done.iter().flat_map(|n| n.objects.iter().map(|o| o.id)).collect();
            let refused: Vec<i32> = id.iter().copied().filter(|i| !listed.contains(i)).collect();
            let kept = done
                .iter()
                .flat_map(|n| &n.pruned)
                .any(|p| !matches!(p.outcome, Outcome::Removed | Outcome::WouldRemove));
            let mut text = if *json {
                serde_json::to_string_pretty(&done)? + "\n"
            } else {
                terminal_safe(&ipcwatch_holders::text(&done, true))
            };
            for i in &refused {
                text.push_str(&format!(
                    "refused: id {i} is not stale (in use, used recently, or its processes live)\n"
                ));
            }
            out(&text)?;
            Ok(if refused.is_empty() && (id.is_empty() || !kept) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(Command::Snapshot { json, source, all_namespaces, .. }) => {
            let full = one_shot_config(&cli)?;
            let config = SamplerConfig { source: *source, ..sampler_config(&full) };
            let (text, ok) = if *all_namespaces {
                let all = namespaces::snapshot_all(config, &full.pod_logs())
                    .context("looking for IPC namespaces")?;
                let ok = all.iter().all(|n| n.snapshot.as_ref().is_some_and(Snapshot::ok));
                (
                    if *json {
                        serde_json::to_string_pretty(&all)? + "\n"
                    } else {
                        terminal_safe(&figures::report_all(&all))
                    },
                    ok,
                )
            } else {
                let mut sampler = Sampler::new(config);
                let mut snap = sampler.snapshot();
                sampler.add_dev_shm(&mut snap, std::process::id());
                (
                    if *json {
                        serde_json::to_string_pretty(&snap)? + "\n"
                    } else {
                        terminal_safe(&figures::report(&snap))
                    },
                    snap.ok(),
                )
            };
            out(&text)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Some(Command::CheckConfig { file }) => {
            let path = file.clone().or_else(|| cli.config.clone());
            let path = path.ok_or_else(|| UsageError("give a file: ipcwatch check-config FILE".into()))?;
            let config = Config::load(&path)?;
            // The rules it names must load as the daemon would load them.
            config.rules()?;
            if let Some(web) = config.web_config_path() {
                ipcwatch_exporter::WebConfigFile::open(&web).map_err(|e| ConfigError::Web(e.to_string()))?;
            }
            out(&format!("{}: valid\n", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ipcwatch", &mut script);
            out(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man { command }) => {
            out(&manual_page(command.as_deref())?)?;
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

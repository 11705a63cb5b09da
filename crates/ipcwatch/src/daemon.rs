//! The long-running daemon: the pipeline on its own OS thread, the HTTP server on tokio, and
//! the signals and systemd notifications that tie them together.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ipcwatch_alerts::{Delivery, Host, Rule};
use ipcwatch_exporter::{BuildInfo, Limits, State, WebConfigFile};
use ipcwatch_holders::HoldersPublished;
use ipcwatch_pipeline::Fleet;
use ipcwatch_sampler::namespaces;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

use crate::logging::LogHandle;
use ipcwatch_config::{Config, ConfigError, Flags};

/// What the sampling thread is told: a reloaded config with its rules.
type Reload = Box<(Config, Vec<Rule>)>;

fn build_info() -> BuildInfo {
    let revision = env!("IPCWATCH_REVISION").to_string();
    BuildInfo { version: env!("CARGO_PKG_VERSION").to_string(), revision }
}

/// The sampling thread, from the HTTP side: its controls and its end.
struct Sampling {
    control: crate::mailbox::Sender<Reload>,
    first: tokio::sync::oneshot::Receiver<()>,
    delivery: mpsc::SyncSender<Delivery>,
    thread: std::thread::JoinHandle<()>,
    census: Option<(mpsc::Sender<Config>, std::thread::JoinHandle<()>)>,
}

/// The census thread (owners, stale objects) on its own slow clock, never in the way of the
/// per-second tick. Like the sampler thread, it keeps what entering namespaces takes.
fn start_census(
    config: &Config,
    state: Arc<State>,
) -> anyhow::Result<(mpsc::Sender<Config>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Config>();
    let c = config.clone();
    let thread = std::thread::Builder::new()
        .name("ipcwatch-census".into())
        .spawn(move || {
            if let Err(e) = namespaces::keep_thread_capabilities(ipcwatch_holders::CENSUS_CAPABILITIES) {
                tracing::warn!(error = %e, "cannot drop the census thread's other capabilities");
            }
            let mut watch = ipcwatch_holders::Watch::new(c.sampler(), c.holders());
            let mut interval = Duration::from_secs(c.holders.interval);
            // The first census waits for the first sample, which lists the namespaces.
            let mut wait = Duration::from_secs(2);
            loop {
                match rx.recv_timeout(wait) {
                    Ok(new) => {
                        watch.set_config(new.holders());
                        interval = Duration::from_secs(new.holders.interval);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                let latest = state.latest();
                let targets: Vec<(u64, Vec<u32>)> = match &latest {
                    Some(p) => {
                        p.namespaces.iter().map(|n| (n.identity.inode, vec![n.identity.pid])).collect()
                    }
                    None => vec![(watch.home_inode(), Vec::new())],
                };
                let queue_owners: Vec<u32> = latest
                    .iter()
                    .flat_map(|p| &p.namespaces)
                    .filter_map(|n| n.published.snapshot.posix.as_ref()?.queues.as_ref())
                    .flat_map(|q| q.items.iter().map(|q| q.owner))
                    .collect();
                let round = watch.round(&targets, &queue_owners);
                tracing::debug!(
                    seconds = round.duration_seconds,
                    namespaces = round.namespaces.len(),
                    "census done"
                );
                state.publish_holders(Some(Arc::new(round)));
                wait = interval;
            }
        })
        .context("starting the census thread")?;
    Ok((tx, thread))
}

/// The eBPF probes, or why the daemon runs without them (said once, in one line).
fn load_probes(config: &Config) -> Result<ipcwatch_probes::Probes, String> {
    if !config.ebpf.enabled {
        tracing::info!("eBPF probes off: [ebpf] enabled = false");
        return Err("[ebpf] enabled = false".into());
    }
    match ipcwatch_probes::Probes::load(config.ebpf.max_objects) {
        Ok(p) => {
            tracing::info!(
                tracepoints = ipcwatch_probes::PROGRAMS.len(),
                "eBPF probes attached: refused and blocked IPC calls are counted"
            );
            Ok(p)
        }
        Err(e) => {
            tracing::warn!("eBPF probes off, everything else runs: {e}");
            Err(e.to_string())
        }
    }
}

/// Runs until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP, with `flags` on top.
pub fn run(config: Config, config_path: Option<PathBuf>, flags: Flags, log: LogHandle) -> anyhow::Result<()> {
    ipcwatch_sampler::use_passwd_file(config.passwd_file());
    // Before any thread: what the daemon runs (exec notifiers) never regains capabilities.
    namespaces::no_new_privileges().context("setting no_new_privs")?;
    ipcwatch_sampler::objects::purge_freed_memory_at_once();
    // A descriptor per watched namespace (its anchor and its mqueue mount): the soft limit
    // many environments give (1,024) would cap a dense node.
    match ipcwatch_sampler::raise_open_file_limit() {
        Ok(n) => tracing::debug!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit to its hard limit"),
    }
    let rules = config.rules()?;
    let state = State::new(build_info());
    state.set_stale_after(config.stale_after());
    state.set_telemetry_path(&config.web.telemetry_path);
    let (control, control_rx) = crate::mailbox::mailbox();
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let (delivery, delivery_rx) = mpsc::sync_channel(1);
    // Loaded here, before any thread drops its capabilities: CAP_BPF and CAP_PERFMON are
    // needed only for this, and no thread keeps them.
    let probes = load_probes(&config);
    // Loading parsed the kernel's whole BTF (some 20 MB of small allocations, freed now).
    ipcwatch_sampler::objects::release_free_memory();
    let (loop_state, c) = (state.clone(), config.clone());
    // Started before anything else: threads inherit their creator's capabilities, and only
    // this one may keep those that enter other namespaces.
    let thread = std::thread::Builder::new()
        .name("ipcwatch-sampler".into())
        .spawn(move || {
            if let Err(e) = namespaces::keep_thread_capabilities(namespaces::VISIT_CAPABILITIES) {
                tracing::warn!(error = %e, "cannot drop the sampler thread's other capabilities");
            }
            // Made on this thread: namespace visits (setns) move only the thread that makes them.
            let mut fleet = Fleet::new(c.sampler(), c.pipeline(), rules, Host::this_machine(), c.fleet());
            fleet.set_probes(probes);
            if let Ok(delivery) = delivery_rx.recv() {
                sampling_loop(c.holders.interval, fleet, loop_state, delivery, control_rx, first_tx);
            }
        })
        .context("starting the sampling thread")?;
    let census = match config.holders.enabled {
        true => Some(start_census(&config, state.clone())?),
        false => None,
    };
    // The rest of the daemon, and the HTTP workers it starts below, runs without capabilities.
    if let Err(e) = namespaces::keep_thread_capabilities(0) {
        tracing::warn!(error = %e, "cannot drop the capabilities of the HTTP side");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ipcwatch-http")
        .build()
        .context("starting the async runtime")?;
    let sampling = Sampling { control, first, delivery, thread, census };
    runtime.block_on(serve(config, state, sampling, config_path, flags, log))
}

async fn serve(
    config: Config,
    state: Arc<State>,
    sampling: Sampling,
    config_path: Option<PathBuf>,
    flags: Flags,
    log: LogHandle,
) -> anyhow::Result<()> {
    let listeners = ipcwatch_exporter::bind(&config.web.listen_addresses).await?;
    for l in &listeners {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(address = %addr, "listening");
        }
    }
    let web = config.web_config_path().map(|p| WebConfigFile::open(&p).map(Arc::new)).transpose();
    let web = web.map_err(|e| ConfigError::Web(e.to_string()))?;
    let delivery = Delivery::start(config.delivery()?, &tokio::runtime::Handle::current());
    state.set_delivery_stats(delivery.stats());
    let _ = sampling.delivery.send(delivery);
    let Sampling { control: control_tx, first: first_rx, thread: sampler_thread, census, .. } = sampling;

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let limits = Limits {
        max_connections: config.web.max_connections,
        max_connections_per_client: config.web.max_connections_per_client,
    }
    .fitted_to_open_files();
    let mut server =
        tokio::spawn(ipcwatch_exporter::serve(listeners, state.clone(), limits, web, async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
        }));

    // READY once the listeners are bound (above) and the first sample is served.
    let mut first = Some(first_rx);
    let mut current = config;
    loop {
        tokio::select! {
            res = &mut server => {
                res.context("the HTTP server stopped unexpectedly")?;
                break;
            }
            taken = async { first.as_mut().expect("guarded").await }, if first.is_some() => {
                first = None;
                // The sender only goes away without a sample if the sampling thread died.
                taken.map_err(|_| anyhow::anyhow!("the sampling thread stopped before its first sample"))?;
                let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
                tracing::info!("first sample taken: ready");
            }
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[NotifyState::Reloading, monotonic()]);
                let new = Config::with_flags(config_path.as_deref(), &flags).and_then(|c| Ok((c.rules()?, c)));
                match new {
                    Ok((rules, new)) => {
                        if new.web.listen_addresses != current.web.listen_addresses {
                            tracing::warn!("listen addresses changed; they take effect at the next restart");
                        }
                        log.set(new.log.level);
                        ipcwatch_sampler::use_passwd_file(new.passwd_file());
                        state.set_stale_after(new.stale_after());
                        if new.holders.enabled != current.holders.enabled {
                            tracing::warn!("[holders] enabled changed; it takes effect at the next restart");
                        }
                        if let Some((tx, _)) = &census {
                            let _ = tx.send(new.clone());
                        }
                        current = new.clone();
                        control_tx.send(Box::new((new, rules)));
                        tracing::info!("SIGHUP: configuration reloaded");
                    }
                    Err(e) => tracing::error!("SIGHUP: {e:#}; keeping the current configuration and rules"),
                }
                let _ = sd_notify::notify(&[NotifyState::Ready]);
            }
        }
    }
    drop(control_tx); // ends the sampling loop
    let _ = sampler_thread.join();
    if let Some((tx, thread)) = census {
        drop(tx);
        let _ = thread.join();
    }
    tracing::info!("stopped");
    Ok(())
}

fn monotonic() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0))
}

fn sampling_loop(
    interval: u64,
    mut pipeline: Fleet,
    state: Arc<State>,
    delivery: Delivery,
    control: crate::mailbox::Receiver<Reload>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    // The census's latest round, handed to the charts when it changes; one older than
    // three rounds (a stuck census thread) is not charted as if fresh.
    let mut census: Option<Arc<HoldersPublished>> = None;
    let mut tick = |pipeline: &mut Fleet, holders_interval: u64| {
        let fresh = state
            .holders()
            .filter(|h| ipcwatch_holders::unix_now() - h.timestamp <= 3 * holders_interval as i64 + 10);
        if fresh.as_ref().map(Arc::as_ptr) != census.as_ref().map(Arc::as_ptr) {
            pipeline.set_holders(fresh.as_deref());
            census = fresh;
        }
        let tick = pipeline.tick();
        state.publish(tick.published);
        for n in tick.notifications {
            delivery.notify(n);
        }
    };
    // The first sample right away, so /-/ready turns 200 without waiting for a boundary.
    let mut holders_interval = interval;
    tick(&mut pipeline, holders_interval);
    let _ = first.send(());
    // The watchdog is pinged from this thread, so a hung tick stops the pings and systemd
    // restarts us; it is pinged on its own clock, so a long update_every does not.
    let watchdog = sd_notify::watchdog_enabled().map(|w| w / 2);
    let mut last_ping = Instant::now();
    loop {
        let due = Instant::now() + ipcwatch_pipeline::until_next_tick(pipeline.config().update_every);
        loop {
            let now = Instant::now();
            if let Some(interval) = watchdog {
                if now >= last_ping + interval {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    last_ping = now;
                }
            }
            if now >= due {
                break;
            }
            let wake = watchdog.map_or(due, |w| due.min(last_ping + w));
            match control.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(reload) => {
                    let (config, rules) = *reload;
                    match config.delivery() {
                        Ok(d) => delivery.configure(d),
                        Err(e) => tracing::error!("{e}; keeping the current alert delivery"),
                    }
                    pipeline.reconfigure(config.sampler(), config.pipeline(), rules, config.fleet());
                    holders_interval = config.holders.interval;
                }
                Err(crate::mailbox::Empty::Disconnected) => return,
                Err(crate::mailbox::Empty::Timeout) => {}
            }
        }
        tick(&mut pipeline, holders_interval);
    }
}

//! The long-running daemon: the sampling loop on its own OS thread, the HTTP server on tokio,
//! and the signals and systemd notifications that tie them together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ipcwatch_alerts::{Delivery, DeliveryConfig, Engine, Host, Rule, Status};
use ipcwatch_charts::{Registry, RegistryConfig};
use ipcwatch_exporter::{AlertView, BuildInfo, QueueSeries, Sample, State};
use ipcwatch_sampler::{Sampler, SamplerConfig, Snapshot, Source};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::logging::LogHandle;

/// What the sampling thread is told.
enum Control {
    Reload(Box<Config>),
}

pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        revision: option_env!("IPCWATCH_REVISION").unwrap_or("unknown").to_string(),
    }
}

/// Runs until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP; `overrides` re-applies
/// the command-line flags on top of it each time.
pub fn run(
    config: Config,
    config_path: Option<PathBuf>,
    overrides: impl Fn(&mut Config) + Send + 'static,
    log: LogHandle,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ipcwatch-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, config_path, overrides, log))
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    overrides: impl Fn(&mut Config),
    log: LogHandle,
) -> anyhow::Result<()> {
    let listeners = ipcwatch_exporter::bind(&config.web.listen_addresses).await?;
    for l in &listeners {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(address = %addr, "listening");
        }
    }
    let state = State::new(build_info());
    state.set_stale_after(stale_after(&config));
    let delivery = Delivery::start(delivery_config(&config), &tokio::runtime::Handle::current());
    let (control_tx, control_rx) = mpsc::channel();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let loop_state = state.clone();
    let loop_config = config.clone();
    let sampler_thread = std::thread::Builder::new()
        .name("ipcwatch-sampler".into())
        .spawn(move || sampling_loop(loop_config, loop_state, delivery, control_rx, first_tx))
        .context("starting the sampling thread")?;

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let server = tokio::spawn(ipcwatch_exporter::serve(listeners, state.clone(), async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }));

    // READY once the listeners are bound (above) and the first sample is served.
    let mut first = Some(first_rx);
    let mut current = config;
    let mut server = server;
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
                match reload(&config_path, &overrides, &current) {
                    Ok(new) => {
                        log.set(new.log.level);
                        state.set_stale_after(stale_after(&new));
                        current = new.clone();
                        let _ = control_tx.send(Control::Reload(Box::new(new)));
                        tracing::info!("SIGHUP: configuration reloaded");
                    }
                    Err(e) => tracing::error!("SIGHUP: {e:#}; keeping the current configuration"),
                }
                let _ = sd_notify::notify(&[NotifyState::Ready]);
            }
        }
    }
    drop(control_tx); // ends the sampling loop
    let _ = sampler_thread.join();
    tracing::info!("stopped");
    Ok(())
}

/// A sample this old means the sampler is stuck: three intervals, and at least 5 s.
fn stale_after(c: &Config) -> u64 {
    (3 * c.sampling.update_every).max(5)
}

fn monotonic() -> NotifyState<'static> {
    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0))
}

fn reload(
    path: &Option<PathBuf>,
    overrides: &impl Fn(&mut Config),
    current: &Config,
) -> anyhow::Result<Config> {
    let mut new = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    overrides(&mut new);
    if new.web.listen_addresses != current.web.listen_addresses {
        tracing::warn!("listen addresses changed in the configuration; they take effect at the next restart");
    }
    Ok(new)
}

/// Time until the next multiple of `every` on the wall clock (Netdata aligns to seconds).
fn until_next_boundary(every: Duration) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let every_ns = every.as_nanos().max(1);
    let into = now.as_nanos() % every_ns;
    Duration::from_nanos((every_ns - into) as u64)
}

/// The rules shipped in alerts/ipc.conf, used when the config names no rules.
const BUILTIN_RULES: &str = include_str!("../../../alerts/ipc.conf");

/// Loads the configured rules (or the built-in ones); a rule with an error is logged and
/// skipped, the others load.
pub fn load_rules(config: &Config) -> Vec<Rule> {
    let (rules, errors, from) = match &config.alerts.rules {
        Some(p) => {
            let path = config.resolve(p);
            let (r, e) = ipcwatch_alerts::load(&path);
            (r, e, path.display().to_string())
        }
        None => {
            let (r, e) =
                ipcwatch_alerts::rules::parse(BUILTIN_RULES, std::path::Path::new("<built-in ipc.conf>"));
            (r, e, "the built-in rules".to_string())
        }
    };
    for e in &errors {
        tracing::error!("{e} (rule skipped)");
    }
    tracing::info!(rules = rules.len(), errors = errors.len(), "loaded alert rules from {from}");
    rules
}

fn delivery_config(c: &Config) -> DeliveryConfig {
    DeliveryConfig {
        exec: c.alerts.exec.as_ref().map(|p| c.resolve(p)),
        exec_timeout: Duration::from_secs(c.alerts.exec_timeout),
        alertmanagers: c.alerts.alertmanagers.clone(),
        instance: c.alerts.instance.clone().unwrap_or_else(|| Host::this_machine().hostname),
    }
}

struct Loop {
    sampler: Sampler,
    registry: Registry,
    engine: Engine,
    delivery: Delivery,
    config: Config,
    owners: HashMap<u32, String>,
    /// Collectors failing now (logged once when they start failing).
    failing: Vec<&'static str>,
    failed: u64,
    slow: u64,
}

impl Loop {
    fn new(config: Config, delivery: Delivery) -> Loop {
        Loop {
            sampler: Sampler::new(sampler_config(&config)),
            registry: Registry::new(registry_config(&config)),
            engine: Engine::new(
                load_rules(&config),
                Host::this_machine(),
                config.sampling.update_every as f64,
            ),
            delivery,
            config,
            owners: HashMap::new(),
            failing: Vec::new(),
            failed: 0,
            slow: 0,
        }
    }

    fn apply(&mut self, config: Config) {
        self.sampler = Sampler::new(sampler_config(&config));
        self.registry.set_config(registry_config(&config));
        self.engine.set_rules(load_rules(&config));
        self.delivery.configure(delivery_config(&config));
        self.config = config;
    }

    /// Evaluates the alerts on the sample's clock: logs every change, hands notifications to
    /// delivery, and returns what /metrics and /api/v1/alarms show.
    fn alerts(&mut self, now: f64) -> (Vec<AlertView>, Arc<str>, Arc<str>) {
        let outcome = self.engine.evaluate(&self.registry, now);
        for t in &outcome.transitions {
            let (old, new) = (t.old_status.name(), t.status.name());
            let error = t.error.as_deref().unwrap_or("");
            if t.status.is_raised() {
                tracing::warn!(alert = %t.name, chart = %t.chart, old_status = old, status = new, value = t.value, notify_in_s = t.delay, error, "alert status changed");
            } else {
                tracing::info!(alert = %t.name, chart = %t.chart, old_status = old, status = new, value = t.value, notify_in_s = t.delay, error, "alert status changed");
            }
        }
        for n in outcome.notifications {
            tracing::info!(alert = %n.name, chart = %n.chart, status = n.status.name(), value = n.value, "alert notification sent");
            self.delivery.notify(n);
        }
        let views = self
            .engine
            .alerts()
            .iter()
            .filter(|a| a.status != Status::Removed)
            .map(|a| AlertView {
                name: a.rule.name.clone(),
                chart: a.chart.clone(),
                status: a.status.name(),
                value: a.value,
            })
            .collect();
        (views, Arc::from(self.engine.alarms_json(true, now)), Arc::from(self.engine.alarms_json(false, now)))
    }

    fn owner(&mut self, uid: u32) -> String {
        self.owners
            .entry(uid)
            .or_insert_with(|| ipcwatch_sampler::user_name(uid).unwrap_or_else(|| uid.to_string()))
            .clone()
    }

    /// One tick: sample, chart, publish.
    fn tick(&mut self, state: &State) {
        let started = Instant::now();
        let snapshot = self.sampler.snapshot();
        if !snapshot.ok() {
            self.failed += 1;
        }
        // Log when a collector starts or stops failing, not every second it keeps failing.
        for c in &snapshot.collectors {
            let was_failing = self.failing.contains(&c.name);
            match (c.ok, was_failing) {
                (false, false) => {
                    tracing::warn!(
                        collector = c.name,
                        error = c.error.as_deref().unwrap_or(""),
                        "collector failed"
                    );
                    self.failing.push(c.name);
                }
                (true, true) => {
                    tracing::info!(collector = c.name, "collector recovered");
                    self.failing.retain(|n| *n != c.name);
                }
                _ => {}
            }
        }
        for w in &snapshot.warnings {
            tracing::debug!(warning = %w, "sample warning");
        }
        self.registry.update(&snapshot);
        let queues = self.queue_series(&snapshot);
        let (alerts, alarms_json_all, alarms_json_raised) = self.alerts(snapshot.timestamp);
        let elapsed = started.elapsed();
        if elapsed > self.config.update_every() {
            self.slow += 1;
            tracing::warn!(took_ms = elapsed.as_millis() as u64, "sample took longer than update_every");
        }
        state.publish(Sample {
            snapshot,
            queues,
            alerts,
            alarms_json_all,
            alarms_json_raised,
            failed_samples: self.failed,
            slow_samples: self.slow,
        });
    }

    /// The per-queue series: exactly the queues the charts kept (the biggest, capped).
    fn queue_series(&mut self, snapshot: &Snapshot) -> Vec<QueueSeries> {
        let Some(msg) = &snapshot.message_queues else { return Vec::new() };
        let mut out = Vec::with_capacity(self.registry.queue_ids().len());
        for (index, q) in msg.items.iter().enumerate() {
            if self.registry.queue_ids().binary_search(&q.id).is_ok() {
                let owner = self.owner(q.owner);
                out.push(QueueSeries { index, owner });
            }
        }
        out
    }
}

fn sampler_config(c: &Config) -> SamplerConfig {
    SamplerConfig { procfs: c.sampling.procfs.clone(), source: Source::Auto, segment_memory: false }
}

fn registry_config(c: &Config) -> RegistryConfig {
    RegistryConfig { history_rows: c.history_rows(), max_queue_dimensions: c.charts.max_queue_dimensions }
}

fn sampling_loop(
    config: Config,
    state: Arc<State>,
    delivery: Delivery,
    control: mpsc::Receiver<Control>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let watchdog = sd_notify::watchdog_enabled();
    let mut last_ping = Instant::now();
    let mut lp = Loop::new(config, delivery);
    // The first sample right away, so /-/ready turns 200 without waiting for a boundary.
    lp.tick(&state);
    let _ = first.send(());
    loop {
        match control.recv_timeout(until_next_boundary(lp.config.update_every())) {
            Ok(Control::Reload(c)) => {
                lp.apply(*c);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        lp.tick(&state);
        // Pinged from here, so a hung sampler stops the pings and systemd restarts us.
        if let Some(interval) = watchdog {
            if last_ping.elapsed() >= interval / 2 {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                last_ping = Instant::now();
            }
        }
    }
}

//! The HTTP face of ipcwatch. The sampling loop [`State::publish`]es each finished sample;
//! requests only read the latest one, so a scrape never repeats the sampler's work and never
//! waits for the kernel.
//!
//! Routes: `/metrics` (Prometheus text 0.0.4), `/` (landing page), `/-/healthy`, `/-/ready`,
//! `/api/v1/alarms` (Netdata's shape).

mod http;
mod landing;
mod metrics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ipcwatch_sampler::Snapshot;

pub use http::{bind, serve, BindError};
pub use metrics::CONTENT_TYPE;

/// Identity of the running build, for `ipcwatch_build_info` and the landing page.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
}

/// One per-queue series set: which queue and how its owner is labelled.
#[derive(Debug, Clone)]
pub struct QueueSeries {
    /// Index into `snapshot.message_queues.items`.
    pub index: usize,
    /// The owner's user name, or the uid where none resolves.
    pub owner: String,
}

/// Current state of one alert, as `/metrics` and `/api/v1/alarms` show it.
#[derive(Debug, Clone)]
pub struct AlertView {
    pub name: String,
    pub chart: String,
    /// Netdata's status name: CLEAR, WARNING, CRITICAL, UNDEFINED, UNINITIALIZED or REMOVED.
    pub status: &'static str,
    pub value: f64,
}

/// Everything a request may show, computed once per sample by the sampling loop.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub snapshot: Snapshot,
    /// The capped per-queue selection (biggest queues first), the same as the charts'.
    pub queues: Vec<QueueSeries>,
    pub alerts: Vec<AlertView>,
    /// `/api/v1/alarms` body with every alert (`?all`), and with only the raised ones.
    pub alarms_json_all: Arc<str>,
    pub alarms_json_raised: Arc<str>,
    /// Samples that failed or overran their interval since start.
    pub failed_samples: u64,
    pub slow_samples: u64,
}

/// Shared between the sampling loop (writer) and the HTTP server (readers).
pub struct State {
    latest: RwLock<Option<Arc<Sample>>>,
    /// A sample older than this many seconds is stale: a hung sampler must not look healthy.
    stale_after: AtomicU64,
    pub build: BuildInfo,
    registry: prometheus::Registry,
}

impl State {
    pub fn new(build: BuildInfo) -> Arc<State> {
        Arc::new_cyclic(|weak| {
            let registry = prometheus::Registry::new();
            let ipc = metrics::IpcCollector::new(weak.clone());
            registry.register(Box::new(ipc)).expect("ipc metric names are unique");
            #[cfg(target_os = "linux")]
            registry
                .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
                .expect("process metric names are unique");
            State { latest: RwLock::new(None), stale_after: AtomicU64::new(10), build, registry }
        })
    }

    /// Makes `sample` the one every following request sees.
    pub fn publish(&self, sample: Sample) {
        let sample = Arc::new(sample);
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(sample);
    }

    /// Seconds after which the latest sample no longer counts (a few update intervals).
    pub fn set_stale_after(&self, seconds: u64) {
        self.stale_after.store(seconds.max(1), Ordering::Relaxed);
    }

    /// The latest sample, if one has been taken and it is not stale. A sample that is too
    /// old is not served as fresh: its IPC figures leave /metrics and readiness turns 503.
    pub fn latest(&self) -> Option<Arc<Sample>> {
        let sample = self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let limit = self.stale_after.load(Ordering::Relaxed) as f64;
        (now - sample.snapshot.timestamp <= limit).then_some(sample)
    }

    /// Ready once the first sample is published, for as long as samples keep coming.
    pub fn is_ready(&self) -> bool {
        self.latest().is_some()
    }

    /// The `/metrics` body.
    pub fn render_metrics(&self) -> String {
        metrics::render(&self.registry)
    }
}

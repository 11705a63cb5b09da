//! The HTTP face of ipcwatch. The sampling loop [`State::publish`]es each finished sample;
//! requests only read the latest one, so a scrape never repeats the sampler's work and never
//! waits for the kernel.
//!
//! Routes: `/metrics` (Prometheus text 0.0.4), `/` (landing page), `/-/healthy`, `/-/ready`,
//! `/api/v1/alarms` (Netdata's shape).

mod http;
mod landing;
mod metrics;

use std::sync::{Arc, RwLock};

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
            State { latest: RwLock::new(None), build, registry }
        })
    }

    /// Makes `sample` the one every following request sees.
    pub fn publish(&self, sample: Sample) {
        let sample = Arc::new(sample);
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(sample);
    }

    /// The latest sample, if any has been taken.
    pub fn latest(&self) -> Option<Arc<Sample>> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Ready once the first sample is published.
    pub fn is_ready(&self) -> bool {
        self.latest().is_some()
    }

    /// The `/metrics` body.
    pub fn render_metrics(&self) -> String {
        metrics::render(&self.registry)
    }
}

//! The HTTP face of ipcwatch. The daemon [`State::publish`]es what each tick produced;
//! requests only read the latest one, so a scrape never repeats the tick's work and never
//! waits for the kernel. Each body is rendered at most once per sample, the first time a
//! request asks for it, and then shared by every request of that sample.
//!
//! Routes: `/metrics` (Prometheus text 0.0.4, gzip on request), `/` (landing page),
//! `/-/healthy`, `/-/ready`, `/api/v1/alarms` (Netdata's shape).

#![forbid(unsafe_code)]

mod guard;
mod http;
mod landing;
mod metrics;
mod netdata;
mod probes;
pub mod web;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ipcwatch_holders::HoldersPublished;
use ipcwatch_pipeline::FleetPublished;

pub use http::{bind, handle, serve, BindError, Limits};
pub use metrics::CONTENT_TYPE;
pub use web::{WebConfigError, WebConfigFile};

/// Identity of the running build, for `ipcwatch_build_info` and the landing page.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: String,
    pub revision: String,
}

/// One published sample and the bodies rendered from it, each made on first request.
struct Served {
    published: Arc<FleetPublished>,
    metrics: OnceLock<Bytes>,
    metrics_gzip: OnceLock<Bytes>,
}

/// Shared between the sampling thread (writer) and the HTTP server (readers).
pub struct State {
    latest: RwLock<Option<Arc<Served>>>,
    /// A sample older than this (milliseconds, monotonic) is stale: a stuck sampler must not
    /// look healthy.
    stale_after_ms: AtomicU64,
    pub build: BuildInfo,
    process: metrics::ProcessMetrics,
    /// Where /metrics is served (`--web.telemetry-path`).
    telemetry_path: OnceLock<String>,
    /// The latest census of owners and stale objects (every `[holders] interval`).
    holders: RwLock<Option<Arc<HoldersPublished>>>,
    /// Owner names of POSIX queues (NSS is looked up once per uid, not per render).
    user_names: std::sync::Mutex<ipcwatch_sampler::UserNames>,
    /// The server's connections (set when it starts serving), for its own metrics.
    connections: OnceLock<Arc<guard::Conns>>,
    /// Alert notifications dropped by delivery (set when it starts).
    delivery: OnceLock<Arc<ipcwatch_alerts::DeliveryStats>>,
    /// Requests answered 429 without a bcrypt check: their address failed too often, or
    /// too many checks were waiting already.
    pub(crate) auth_throttled: AtomicU64,
}

impl State {
    pub fn new(build: BuildInfo) -> Arc<State> {
        Arc::new(State {
            latest: RwLock::new(None),
            stale_after_ms: AtomicU64::new(10_000),
            build,
            process: metrics::ProcessMetrics::new(),
            telemetry_path: OnceLock::new(),
            holders: RwLock::new(None),
            user_names: std::sync::Mutex::new(ipcwatch_sampler::UserNames::default()),
            connections: OnceLock::new(),
            delivery: OnceLock::new(),
            auth_throttled: AtomicU64::new(0),
        })
    }

    /// Shows what alert delivery dropped in /metrics.
    pub fn set_delivery_stats(&self, stats: Arc<ipcwatch_alerts::DeliveryStats>) {
        let _ = self.delivery.set(stats);
    }

    pub(crate) fn set_connections(&self, conns: Arc<guard::Conns>) {
        let _ = self.connections.set(conns);
    }

    /// Serves the metrics at `path` instead of `/metrics` (set once, before serving).
    pub fn set_telemetry_path(&self, path: &str) {
        let _ = self.telemetry_path.set(path.to_string());
    }

    pub fn telemetry_path(&self) -> &str {
        self.telemetry_path.get().map_or("/metrics", String::as_str)
    }

    /// Makes `published` the sample every following request sees.
    pub fn publish(&self, published: Arc<FleetPublished>) {
        let served = Arc::new(Served { published, metrics: OnceLock::new(), metrics_gzip: OnceLock::new() });
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(served);
    }

    /// Makes `census` the one /metrics shows from the next sample on; `None` stops showing one.
    pub fn publish_holders(&self, census: Option<Arc<HoldersPublished>>) {
        *self.holders.write().unwrap_or_else(|p| p.into_inner()) = census;
    }

    pub fn holders(&self) -> Option<Arc<HoldersPublished>> {
        self.holders.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How old the latest sample may grow before it no longer counts (a few update intervals).
    pub fn set_stale_after(&self, after: Duration) {
        self.stale_after_ms.store((after.as_millis() as u64).max(1), Ordering::Relaxed);
    }

    fn served(&self) -> Option<Arc<Served>> {
        let served = self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        let limit = Duration::from_millis(self.stale_after_ms.load(Ordering::Relaxed));
        (served.published.finished.elapsed() <= limit).then_some(served)
    }

    /// The latest sample, if one has been taken and it is not stale. A sample that is too
    /// old is not served as fresh: its IPC figures leave /metrics and readiness turns 503.
    pub fn latest(&self) -> Option<Arc<FleetPublished>> {
        self.served().map(|s| s.published.clone())
    }

    /// Ready once the first sample is published, for as long as samples keep coming.
    pub fn is_ready(&self) -> bool {
        self.served().is_some()
    }

    /// Healthy while starting up and while samples keep coming; a sampler that stopped
    /// (a dead or hung thread) makes the process unhealthy, so a supervisor restarts it.
    pub fn is_healthy(&self) -> bool {
        let started = self.latest.read().unwrap_or_else(|p| p.into_inner()).is_some();
        !started || self.served().is_some()
    }

    /// The `/metrics` body; `gzip` for the compressed form. Rendered once per sample.
    pub fn metrics_body(&self, gzip: bool) -> Bytes {
        let Some(served) = self.served() else {
            // No fresh sample: only ipcwatch's own series. Rare, so not cached.
            return if gzip {
                metrics::render_gzip(None, self)
            } else {
                Bytes::from(metrics::render(None, self))
            };
        };
        // Each form is rendered when first asked for: Prometheus asks for gzip only, and then
        // the text is never held whole.
        if gzip {
            served.metrics_gzip.get_or_init(|| metrics::render_gzip(Some(&served.published), self)).clone()
        } else {
            served.metrics.get_or_init(|| Bytes::from(metrics::render(Some(&served.published), self))).clone()
        }
    }
}

//! `/metrics`: a custom `prometheus::core::Collector` that builds every family fresh from the
//! latest sample on each scrape, so series of vanished queues disappear with them and nothing
//! registered can go stale.

use std::sync::Weak;

use ipcwatch_sampler::{Limits, MessageQueue, Snapshot};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Encoder;

use crate::{Sample, State};

/// The exact Content-Type of text format 0.0.4; Prometheus 3 rejects a scrape without it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A single-value gauge read from a snapshot; `None` when the part it needs failed.
struct Plain {
    name: &'static str,
    help: &'static str,
    get: fn(&Snapshot) -> Option<f64>,
}

fn lim(f: fn(&Limits) -> Option<u64>) -> impl Fn(&Snapshot) -> Option<f64> {
    move |s| f(&s.limits).map(|v| v as f64)
}

macro_rules! plain {
    ($name:literal, $help:literal, |$s:ident| $e:expr) => {
        Plain { name: $name, help: $help, get: |$s: &Snapshot| $e }
    };
}

const PLAIN: &[Plain] = &[
    plain!("sysvipc_semaphore_arrays", "Semaphore arrays in use (SEM_INFO semusz).", |s| s
        .semaphores
        .as_ref()
        .map(|x| x.arrays as f64)),
    plain!(
        "sysvipc_semaphore_arrays_limit",
        "Maximum number of semaphore arrays (SEMMNI, kernel.sem field 4).",
        |s| lim(|l| l.semmni)(s)
    ),
    plain!("sysvipc_semaphores", "Semaphores in all arrays (SEM_INFO semaem).", |s| s
        .semaphores
        .as_ref()
        .map(|x| x.semaphores as f64)),
    plain!(
        "sysvipc_semaphores_limit",
        "Maximum number of semaphores in all arrays (SEMMNS, kernel.sem field 2).",
        |s| lim(|l| l.semmns)(s)
    ),
    plain!(
        "sysvipc_semaphores_per_array_limit",
        "Maximum semaphores per array (SEMMSL, kernel.sem field 1).",
        |s| lim(|l| l.semmsl)(s)
    ),
    plain!(
        "sysvipc_semaphore_ops_per_call_limit",
        "Maximum operations per semop call (SEMOPM, kernel.sem field 3).",
        |s| lim(|l| l.semopm)(s)
    ),
    plain!("sysvipc_semaphore_value_limit", "Maximum semaphore value (SEMVMX).", |s| lim(|l| l.semvmx)(s)),
    plain!("sysvipc_message_queues", "Message queues in use (MSG_INFO msgpool).", |s| s
        .message_queues
        .as_ref()
        .map(|x| x.queues as f64)),
    plain!("sysvipc_message_queues_limit", "Maximum number of message queues (kernel.msgmni).", |s| lim(
        |l| l.msgmni
    )(s)),
    plain!("sysvipc_messages", "Messages queued in all queues (MSG_INFO msgmap).", |s| s
        .message_queues
        .as_ref()
        .map(|x| x.messages as f64)),
    plain!("sysvipc_message_bytes", "Bytes queued in all queues (MSG_INFO msgtql).", |s| s
        .message_queues
        .as_ref()
        .map(|x| x.bytes as f64)),
    plain!(
        "sysvipc_message_size_limit_bytes",
        "Maximum size of one message in bytes (kernel.msgmax).",
        |s| lim(|l| l.msgmax)(s)
    ),
    plain!(
        "sysvipc_message_queue_default_capacity_bytes",
        "Capacity in bytes given to new queues (kernel.msgmnb).",
        |s| lim(|l| l.msgmnb)(s)
    ),
    plain!(
        "sysvipc_shared_memory_segments",
        "Shared memory segments in use, removed-but-attached ones included (SHM_INFO used_ids).",
        |s| s.shared_memory.as_ref().map(|x| x.segments as f64)
    ),
    plain!(
        "sysvipc_shared_memory_segments_limit",
        "Maximum number of shared memory segments (kernel.shmmni).",
        |s| lim(|l| l.shmmni)(s)
    ),
    plain!("sysvipc_shared_memory_bytes", "Sum of the sizes of all shared memory segments in bytes.", |s| s
        .shared_memory
        .as_ref()
        .map(|x| x.bytes as f64)),
    plain!(
        "sysvipc_shared_memory_pages",
        "Pages charged against SHMALL, each segment rounded up (SHM_INFO shm_tot).",
        |s| s.shared_memory.as_ref().map(|x| x.pages as f64)
    ),
    plain!(
        "sysvipc_shared_memory_pages_limit",
        "Maximum pages in all shared memory segments (kernel.shmall).",
        |s| lim(|l| l.shmall)(s)
    ),
    plain!(
        "sysvipc_shared_memory_segment_size_limit_bytes",
        "Maximum size of one shared memory segment in bytes (kernel.shmmax).",
        |s| lim(|l| l.shmmax)(s)
    ),
    plain!(
        "sysvipc_shared_memory_resident_bytes",
        "Shared memory resident in RAM in bytes (SHM_INFO shm_rss).",
        |s| s.shared_memory.as_ref().map(|x| x.resident_bytes as f64)
    ),
    plain!(
        "sysvipc_shared_memory_swapped_bytes",
        "Shared memory swapped out in bytes (SHM_INFO shm_swp).",
        |s| s.shared_memory.as_ref().map(|x| x.swapped_bytes as f64)
    ),
    plain!(
        "sysvipc_shared_memory_orphaned_segments",
        "Segments nobody has attached that were not removed: memory no process owns.",
        |s| s.shared_memory.as_ref().map(|x| x.orphaned_segments as f64)
    ),
    plain!(
        "sysvipc_shared_memory_orphaned_bytes",
        "Bytes of segments nobody has attached that were not removed.",
        |s| s.shared_memory.as_ref().map(|x| x.orphaned_bytes as f64)
    ),
];

/// Reads one per-queue value; `None` when the source does not know it.
type QueueValue = fn(&MessageQueue) -> Option<u64>;

/// Per-queue gauges, labelled `key`, `id`, `owner`.
const PER_QUEUE: &[(&str, &str, QueueValue)] = &[
    ("sysvipc_message_queue_messages", "Messages on the queue.", |q| Some(q.messages)),
    ("sysvipc_message_queue_bytes", "Bytes queued on the queue.", |q| Some(q.bytes)),
    (
        "sysvipc_message_queue_capacity_bytes",
        "The queue's capacity in bytes (msg_qbytes); writers block when it is reached.",
        |q| q.capacity_bytes,
    ),
];

/// ipcwatch's own families: name, help, labels and type, written once for both the
/// registration descs and the families built on each scrape.
struct SelfMetric {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: MetricType,
}

const fn self_metric(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: MetricType,
) -> SelfMetric {
    SelfMetric { name, help, labels, kind }
}

const BUILD_INFO: SelfMetric = self_metric(
    "ipcwatch_build_info",
    "ipcwatch's version and revision; always 1.",
    &["version", "revision"],
    MetricType::GAUGE,
);
const COLLECTOR_SUCCESS: SelfMetric = self_metric(
    "ipcwatch_collector_success",
    "Whether the collector's last sample succeeded (1) or failed (0).",
    &["collector"],
    MetricType::GAUGE,
);
const COLLECTOR_DURATION: SelfMetric = self_metric(
    "ipcwatch_collector_duration_seconds",
    "How long the collector's last sample took.",
    &["collector"],
    MetricType::GAUGE,
);
const SAMPLES_FAILED: SelfMetric = self_metric(
    "ipcwatch_samples_failed_total",
    "Samples in which at least one collector failed.",
    &[],
    MetricType::COUNTER,
);
const SAMPLES_SLOW: SelfMetric = self_metric(
    "ipcwatch_samples_slow_total",
    "Samples that took longer than the update interval.",
    &[],
    MetricType::COUNTER,
);
const ALERT_STATUS: SelfMetric = self_metric(
    "ipcwatch_alert_status",
    "1 for the alert's current status (Netdata's names), 0 for the others.",
    &["alert", "chart", "status"],
    MetricType::GAUGE,
);
const ALERT_VALUE: SelfMetric = self_metric(
    "ipcwatch_alert_value",
    "The alert's last computed value.",
    &["alert", "chart"],
    MetricType::GAUGE,
);
const SELF_METRICS: [&SelfMetric; 7] = [
    &BUILD_INFO,
    &COLLECTOR_SUCCESS,
    &COLLECTOR_DURATION,
    &SAMPLES_FAILED,
    &SAMPLES_SLOW,
    &ALERT_STATUS,
    &ALERT_VALUE,
];

impl SelfMetric {
    fn family(&self) -> MetricFamily {
        family(self.name, self.help, self.kind)
    }
}

const ALERT_STATUSES: [&str; 5] = ["CLEAR", "WARNING", "CRITICAL", "UNDEFINED", "UNINITIALIZED"];

pub(crate) struct IpcCollector {
    state: Weak<State>,
    descs: Vec<Desc>,
}

impl IpcCollector {
    pub(crate) fn new(state: Weak<State>) -> IpcCollector {
        let mut descs = Vec::new();
        let mut add = |name: &str, help: &str, labels: &[&str]| {
            let labels = labels.iter().map(|l| l.to_string()).collect();
            descs.push(
                Desc::new(name.into(), help.into(), labels, Default::default()).expect("valid metric name"),
            );
        };
        for p in PLAIN {
            add(p.name, p.help, &[]);
        }
        for (name, help, _) in PER_QUEUE {
            add(name, help, &["key", "id", "owner"]);
        }
        for m in SELF_METRICS {
            add(m.name, m.help, m.labels);
        }
        IpcCollector { state, descs }
    }
}

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f
}

fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::default();
    let mut g = Gauge::default();
    g.set_value(value);
    m.set_gauge(g);
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect(),
    );
    m
}

fn families(sample: Option<&Sample>, state: &State) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let mut push = |f: MetricFamily| {
        if !f.get_metric().is_empty() {
            out.push(f);
        }
    };
    let counter = |m: &SelfMetric, v: f64| {
        let mut f = m.family();
        let mut c = prometheus::proto::Counter::default();
        c.set_value(v);
        let mut m = Metric::default();
        m.set_counter(c);
        f.mut_metric().push(m);
        f
    };
    let mut build = BUILD_INFO.family();
    build
        .mut_metric()
        .push(gauge(&[("version", &state.build.version), ("revision", &state.build.revision)], 1.0));
    let Some(sample) = sample else {
        push(build);
        return out;
    };
    let snap = &sample.snapshot;
    for p in PLAIN {
        let mut f = family(p.name, p.help, MetricType::GAUGE);
        if let Some(v) = (p.get)(snap) {
            f.mut_metric().push(gauge(&[], v));
        }
        push(f);
    }
    if let Some(msg) = &snap.message_queues {
        for (name, help, get) in PER_QUEUE {
            let mut f = family(name, help, MetricType::GAUGE);
            for q in &sample.queues {
                let Some(item) = msg.items.get(q.index) else { continue };
                if let Some(v) = get(item) {
                    let (key, id) = (item.key.to_string(), item.id.to_string());
                    f.mut_metric().push(gauge(&[("key", &key), ("id", &id), ("owner", &q.owner)], v as f64));
                }
            }
            push(f);
        }
    }
    push(build);
    let mut success = COLLECTOR_SUCCESS.family();
    let mut duration = COLLECTOR_DURATION.family();
    for c in &snap.collectors {
        success.mut_metric().push(gauge(&[("collector", c.name)], if c.ok { 1.0 } else { 0.0 }));
        duration.mut_metric().push(gauge(&[("collector", c.name)], c.duration_seconds));
    }
    push(success);
    push(duration);
    push(counter(&SAMPLES_FAILED, sample.failed_samples as f64));
    push(counter(&SAMPLES_SLOW, sample.slow_samples as f64));
    let mut status = ALERT_STATUS.family();
    let mut value = ALERT_VALUE.family();
    for a in &sample.alerts {
        for s in ALERT_STATUSES {
            let v = if a.status == s { 1.0 } else { 0.0 };
            status.mut_metric().push(gauge(&[("alert", &a.name), ("chart", &a.chart), ("status", s)], v));
        }
        value.mut_metric().push(gauge(&[("alert", &a.name), ("chart", &a.chart)], a.value));
    }
    push(status);
    push(value);
    out
}

impl Collector for IpcCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self.state.upgrade() {
            Some(state) => families(state.latest().as_deref(), &state),
            None => Vec::new(),
        }
    }
}

pub(crate) fn render(registry: &prometheus::Registry) -> String {
    let mut buf = Vec::with_capacity(16 * 1024);
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding /metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

//! The eBPF probes' series: refused allocations, refused sends and time spent waiting, per
//! namespace. A namespace gets these series only once the probes saw something in it, so a
//! thousand idle containers cost none.

use std::fmt::Write as _;

use ipcwatch_pipeline::{FleetPublished, NamespacePublished};
use ipcwatch_sampler::probes::{CallKind, NamespaceProbes, WaitHistogram};

use crate::metrics::{Text, Value};

const NS: &str = "ipc_namespace";

/// The histograms' bucket bounds, as powers of two of nanoseconds (the kernel side counts
/// in log2 buckets, so only these bounds are exact), with their `le` text in seconds.
const WAIT_BOUNDS: [(usize, &str); 8] = [
    (10, "0.000001024"),
    (14, "0.000016384"),
    (17, "0.000131072"),
    (20, "0.001048576"),
    (24, "0.016777216"),
    (27, "0.134217728"),
    (30, "1.073741824"),
    (34, "17.179869184"),
];

pub(crate) const METRICS: [(&str, &str, &str); 10] = [
    ("ipcwatch_ebpf_enabled", "gauge", "1 if the eBPF probes (refused and blocked IPC calls) run, 0 if not: disabled in the config, or the kernel refused them (the log says why)."),
    ("ipcwatch_ebpf_lost_total", "counter", "Events the eBPF probes could not keep, by what: samples (a refusal not listed by snapshot --failures; it is still counted), map_full (an event not counted: a map was full), inflight (a blocking call not timed)."),
    ("sysvipc_allocation_failures_total", "counter", "semget, msgget, shmget and mq_open(O_CREAT) calls the kernel refused, by kind and errno (ENOSPC: a limit such as SEMMNI or SEMMNS is reached). Counted in the kernel since the daemon started; a namespace has the series once it has had a refusal."),
    ("sysvipc_allocation_failure_last_timestamp_seconds", "gauge", "Unix time of the namespace's latest refused allocation, labelled with its kind, the call, the errno, and the process (comm, pid) that asked."),
    ("sysvipc_message_queue_send_refused_total", "counter", "msgsnd calls with IPC_NOWAIT refused with EAGAIN (a full queue dropping messages), per queue id for the most refused (id=\"other\": the rest)."),
    ("sysvipc_semaphore_wait_seconds", "histogram", "Time spent in semop and semtimedop calls, blocking included (a call that does not wait takes under a microsecond)."),
    ("sysvipc_message_queue_send_wait_seconds", "histogram", "Time spent in msgsnd calls, waiting on a full queue included."),
    ("sysvipc_semaphore_array_wait_seconds_total", "counter", "Time callers spent waiting in semop and semtimedop on the array (calls that slept 16 µs or more), for the arrays waited on longest."),
    ("sysvipc_message_queue_send_wait_seconds_total", "counter", "Time callers spent waiting in msgsnd on the full queue (calls that slept 16 µs or more), for the queues waited on longest."),
    ("ipcwatch_ebpf_recent_failures", "gauge", "Refusals the daemon keeps for snapshot --failures (the latest 100)."),
];

fn meta(name: &str) -> (&'static str, &'static str, &'static str) {
    *METRICS.iter().find(|m| m.0 == name).expect("every probe metric is listed in METRICS")
}

fn family(t: &mut Text, name: &str) {
    let (name, kind, help) = meta(name);
    t.family(name, help, kind);
}

pub(crate) fn render(t: &mut Text, p: &FleetPublished) {
    family(t, "ipcwatch_ebpf_enabled");
    t.sample("ipcwatch_ebpf_enabled", &[], Value::Int(p.probes.enabled as u64));
    if !p.probes.enabled {
        return;
    }
    let h = p.probes.health;
    family(t, "ipcwatch_ebpf_lost_total");
    for (what, v) in [("samples", h.samples_lost), ("map_full", h.map_full), ("inflight", h.inflight_lost)] {
        t.sample("ipcwatch_ebpf_lost_total", &[("what", what)], Value::Int(v));
    }
    family(t, "ipcwatch_ebpf_recent_failures");
    t.sample("ipcwatch_ebpf_recent_failures", &[], Value::Int(p.probes.recent.len() as u64));

    let counted: Vec<(&NamespacePublished, &NamespaceProbes)> = p
        .namespaces
        .iter()
        .filter_map(|n| n.published.snapshot.probes.as_deref().map(|probes| (n, probes)))
        .collect();
    let mut errno = String::new();
    if counted.iter().any(|(_, c)| !c.refusals.is_empty()) {
        family(t, "sysvipc_allocation_failures_total");
        for (n, c) in &counted {
            for r in &c.refusals {
                errno.clear();
                errno.push_str(&ipcwatch_sampler::probes::errno_name(r.errno));
                let labels = [(NS, &*n.label), ("kind", r.kind.short()), ("errno", errno.as_str())];
                t.sample("sysvipc_allocation_failures_total", &labels, Value::Int(r.count));
            }
        }
        family(t, "sysvipc_allocation_failure_last_timestamp_seconds");
        for (n, c) in &counted {
            let Some(f) = &c.last_failure else { continue };
            let (errno, pid) = (f.errno_name(), f.pid.to_string());
            let labels = [
                (NS, &*n.label),
                ("kind", f.kind.short()),
                ("call", f.kind.call()),
                ("errno", &errno),
                ("comm", &f.comm),
                ("pid", &pid),
            ];
            t.sample(
                "sysvipc_allocation_failure_last_timestamp_seconds",
                &labels,
                Value::Float(f.time_ms as f64 / 1000.0),
            );
        }
    }
    let mut id = String::new();
    if counted.iter().any(|(_, c)| c.send_refused > 0) {
        family(t, "sysvipc_message_queue_send_refused_total");
        for (n, c) in counted.iter().filter(|(_, c)| c.send_refused > 0) {
            let mut listed = 0;
            for o in c.objects.iter().filter(|o| o.kind == CallKind::Msg && o.send_refused > 0) {
                id.clear();
                let _ = write!(id, "{}", o.id);
                t.sample(
                    "sysvipc_message_queue_send_refused_total",
                    &[(NS, &n.label), ("id", &id)],
                    Value::Int(o.send_refused),
                );
                listed += o.send_refused;
            }
            if c.send_refused > listed {
                t.sample(
                    "sysvipc_message_queue_send_refused_total",
                    &[(NS, &n.label), ("id", "other")],
                    Value::Int(c.send_refused - listed),
                );
            }
        }
    }
    type Pick = fn(&NamespaceProbes) -> &WaitHistogram;
    let histograms: [(&str, [&str; 3], Pick); 2] = [
        (
            "sysvipc_semaphore_wait_seconds",
            [
                "sysvipc_semaphore_wait_seconds_bucket",
                "sysvipc_semaphore_wait_seconds_sum",
                "sysvipc_semaphore_wait_seconds_count",
            ],
            |c| &c.semaphore_wait,
        ),
        (
            "sysvipc_message_queue_send_wait_seconds",
            [
                "sysvipc_message_queue_send_wait_seconds_bucket",
                "sysvipc_message_queue_send_wait_seconds_sum",
                "sysvipc_message_queue_send_wait_seconds_count",
            ],
            |c| &c.send_wait,
        ),
    ];
    for (name, series, pick) in histograms {
        if !counted.iter().any(|(_, c)| pick(c).count() > 0) {
            continue;
        }
        family(t, name);
        for (n, c) in counted.iter().filter(|(_, c)| pick(c).count() > 0) {
            histogram(t, series, &n.label, pick(c));
        }
    }
    let per_object: [(&str, CallKind); 2] = [
        ("sysvipc_semaphore_array_wait_seconds_total", CallKind::Sem),
        ("sysvipc_message_queue_send_wait_seconds_total", CallKind::Msg),
    ];
    for (name, kind) in per_object {
        let waited = |c: &&NamespaceProbes| c.objects.iter().any(|o| o.kind == kind && o.waits > 0);
        if !counted.iter().any(|(_, c)| waited(c)) {
            continue;
        }
        family(t, name);
        for (n, c) in &counted {
            for o in c.objects.iter().filter(|o| o.kind == kind && o.waits > 0) {
                id.clear();
                let _ = write!(id, "{}", o.id);
                t.sample(name, &[(NS, &n.label), ("id", &id)], Value::Float(o.wait_ns as f64 / 1e9));
            }
        }
    }
}

fn histogram(t: &mut Text, [bucket, sum, count_name]: [&str; 3], ns: &str, h: &WaitHistogram) {
    for (log2, le) in WAIT_BOUNDS {
        t.sample(bucket, &[(NS, ns), ("le", le)], Value::Int(h.below(log2)));
    }
    let count = h.count();
    t.sample(bucket, &[(NS, ns), ("le", "+Inf")], Value::Int(count));
    t.sample(sum, &[(NS, ns)], Value::Float(h.sum_ns as f64 / 1e9));
    t.sample(count_name, &[(NS, ns)], Value::Int(count));
}

/// `/failures`: the latest refusals the probes saw, newest first, each with its namespace's
/// owner (what `ipcwatch snapshot --failures` prints). JSON; documented in docs/ebpf.md.
pub(crate) fn failures_json(p: &FleetPublished) -> String {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        enabled: bool,
        reason: Option<&'a str>,
        failures: Vec<Entry<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        time_ms: i64,
        ipc_namespace: u64,
        /// container_id, pod, pod_namespace, unit: whatever is known of the namespace's owner.
        owner: std::collections::BTreeMap<&'static str, &'a str>,
        pid: u32,
        uid: u32,
        comm: &'a str,
        call: &'static str,
        kind: &'static str,
        errno: u16,
        errno_name: String,
        key: String,
        size: u64,
    }
    let failures = p
        .probes
        .recent
        .iter()
        .rev()
        .map(|f| {
            let identity = p.namespaces.iter().find(|n| n.identity.inode == f.ipc_namespace);
            let mut owner: std::collections::BTreeMap<&'static str, &str> =
                identity.map(|n| n.identity.owner().collect()).unwrap_or_default();
            if identity.is_some_and(|n| n.identity.host) {
                owner.insert("host", "true");
            }
            Entry {
                time_ms: f.time_ms,
                ipc_namespace: f.ipc_namespace,
                owner,
                pid: f.pid,
                uid: f.uid,
                comm: &f.comm,
                call: f.kind.call(),
                kind: f.kind.short(),
                errno: f.errno,
                errno_name: f.errno_name().into_owned(),
                key: f.key.to_string(),
                size: f.size,
            }
        })
        .collect();
    let answer = Answer { enabled: p.probes.enabled, reason: p.probes.reason.as_deref(), failures };
    serde_json::to_string_pretty(&answer).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::METRICS;

    #[test]
    fn each_le_is_its_power_of_two_of_nanoseconds_in_seconds() {
        for (log2, le) in super::WAIT_BOUNDS {
            assert_eq!(le.parse::<f64>().unwrap(), (1u64 << log2) as f64 / 1e9, "{le}");
        }
    }

    #[test]
    fn every_probe_metric_is_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for doc in ["docs/metrics.md", "docs/ebpf.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for (name, ..) in METRICS {
                assert!(text.contains(&format!("`{name}`")), "{doc} does not list {name}");
            }
        }
    }
}

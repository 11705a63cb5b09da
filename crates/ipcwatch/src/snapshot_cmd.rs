//! `ipcwatch snapshot`: one sample printed as a limits table (like `lsipc -g`, but with the
//! kernel's own usage counters) or as the documented JSON.

use std::fmt::Write;

use ipcwatch_sampler::{is_unlimited, Snapshot};

/// The limits table: every limit, in lsipc's order, with its usage where the kernel counts one.
const ROWS: [(&str, &str); 12] = [
    ("SEMMNI", "Number of semaphore identifiers"),
    ("SEMMNS", "Total number of semaphores"),
    ("SEMMSL", "Max semaphores per semaphore set"),
    ("SEMOPM", "Max number of operations per semop(2)"),
    ("SEMVMX", "Semaphore max value"),
    ("MSGMNI", "Number of message queues"),
    ("MSGMAX", "Max size of message (bytes)"),
    ("MSGMNB", "Default max size of queue (bytes)"),
    ("SHMMNI", "Shared memory segments"),
    ("SHMALL", "Shared memory pages"),
    ("SHMMAX", "Max size of shared memory segment (bytes)"),
    ("SHMMIN", "Min size of shared memory segment (bytes)"),
];

fn show(v: Option<u64>) -> String {
    match v {
        Some(v) if is_unlimited(v) => "unlimited".into(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

/// The human-readable report.
pub fn render_table(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{:<8} {:<42} {:>20} {:>10} {:>7}", "RESOURCE", "DESCRIPTION", "LIMIT", "USED", "USE%");
    let usage = s.usage();
    let limits = s.limits.entries();
    for (resource, description) in ROWS {
        let limit = limits.iter().find(|(name, _)| name.eq_ignore_ascii_case(resource)).and_then(|(_, v)| *v);
        let (used, pct) = match usage.iter().find(|u| u.resource == resource) {
            // A counted resource whose collector failed: unknown, not zero.
            Some(u) => (
                u.used.map_or("?".to_string(), |v| v.to_string()),
                match (u.percent(), u.used.is_some() && u.limit.is_some()) {
                    (Some(p), _) => format!("{p:.2}%"),
                    (None, true) => "0.00%".into(), // against "unlimited" or 0
                    (None, false) => "-".into(),
                },
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let _ =
            writeln!(out, "{:<8} {:<42} {:>20} {:>10} {:>7}", resource, description, show(limit), used, pct);
    }
    out.push('\n');
    match &s.semaphores {
        Some(x) => {
            let _ = writeln!(out, "Semaphores:      {} arrays, {} semaphores", x.arrays, x.semaphores);
        }
        None => out.push_str("Semaphores:      unavailable\n"),
    }
    match &s.message_queues {
        Some(x) => {
            let _ = writeln!(
                out,
                "Message queues:  {} queues, {} messages, {} bytes queued, {} full",
                x.queues, x.messages, x.bytes, x.full_queues
            );
        }
        None => out.push_str("Message queues:  unavailable\n"),
    }
    match &s.shared_memory {
        Some(x) => {
            let _ = writeln!(
                out,
                "Shared memory:   {} segments, {} bytes, {} pages, {} bytes resident, {} bytes swapped",
                x.segments, x.bytes, x.pages, x.resident_bytes, x.swapped_bytes
            );
            let _ = writeln!(
                out,
                "                 {} orphaned segments ({} bytes), {} removed but still attached",
                x.orphaned_segments, x.orphaned_bytes, x.destroyed_attached_segments
            );
        }
        None => out.push_str("Shared memory:   unavailable\n"),
    }
    for c in &s.collectors {
        if let Some(e) = &c.error {
            let _ = writeln!(out, "{}: {}: {}", if c.ok { "note" } else { "error" }, c.name, e);
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

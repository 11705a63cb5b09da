//! `ipcwatch snapshot`: one sample printed as a limits table (like `lsipc -g`, but with the
//! kernel's own usage counters) or as the documented JSON.

use std::fmt::Write;

use ipcwatch_sampler::{is_unlimited, Limits, Snapshot};

/// One row of the limits table.
struct Row {
    resource: &'static str,
    description: &'static str,
    limit: Option<u64>,
    used: Option<u64>,
}

fn rows(s: &Snapshot) -> Vec<Row> {
    let l: &Limits = &s.limits;
    let sem = s.semaphores.as_ref();
    let msg = s.message_queues.as_ref();
    let shm = s.shared_memory.as_ref();
    let row = |resource, description, limit, used| Row { resource, description, limit, used };
    vec![
        row("SEMMNI", "Number of semaphore identifiers", l.semmni, sem.map(|x| x.arrays)),
        row("SEMMNS", "Total number of semaphores", l.semmns, sem.map(|x| x.semaphores)),
        row("SEMMSL", "Max semaphores per semaphore set", l.semmsl, None),
        row("SEMOPM", "Max number of operations per semop(2)", l.semopm, None),
        row("SEMVMX", "Semaphore max value", l.semvmx, None),
        row("MSGMNI", "Number of message queues", l.msgmni, msg.map(|x| x.queues)),
        row("MSGMAX", "Max size of message (bytes)", l.msgmax, None),
        row("MSGMNB", "Default max size of queue (bytes)", l.msgmnb, None),
        row("SHMMNI", "Shared memory segments", l.shmmni, shm.map(|x| x.segments)),
        row("SHMALL", "Shared memory pages", l.shmall, shm.map(|x| x.pages)),
        row("SHMMAX", "Max size of shared memory segment (bytes)", l.shmmax, None),
        row("SHMMIN", "Min size of shared memory segment (bytes)", l.shmmin, None),
    ]
}

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
    for r in rows(s) {
        let used = r.used.map_or("-".to_string(), |u| u.to_string());
        let pct = match (r.used, r.limit) {
            (Some(u), Some(l)) if l > 0 && !is_unlimited(l) => format!("{:.2}%", u as f64 * 100.0 / l as f64),
            (Some(_), Some(_)) => "0.00%".into(),
            _ => "-".into(),
        };
        let used = if r.used.is_none() && r.resource_has_usage() { "?".into() } else { used };
        let _ = writeln!(
            out,
            "{:<8} {:<42} {:>20} {:>10} {:>7}",
            r.resource,
            r.description,
            show(r.limit),
            used,
            pct
        );
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

impl Row {
    fn resource_has_usage(&self) -> bool {
        matches!(self.resource, "SEMMNI" | "SEMMNS" | "MSGMNI" | "SHMMNI" | "SHMALL")
    }
}

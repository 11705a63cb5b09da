//! `ipcwatch snapshot`: one sample printed as a limits table (like `lsipc -g`, but with the
//! kernel's own usage counters) or as the documented JSON.

use std::fmt::Write;

use ipcwatch_charts::figures;
use ipcwatch_sampler::Snapshot;

/// The human-readable report: the limits table, then what each kind of object holds.
pub fn render_table(s: &Snapshot) -> String {
    let mut out = figures::limits_table(s);
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

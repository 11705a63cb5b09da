//! Collector failures are logged when they start and when they end, not every second they
//! last.

use ipcwatch_sampler::Snapshot;

#[derive(Debug, Default)]
pub(crate) struct CollectorLog {
    /// Collectors failing now.
    failing: Vec<&'static str>,
}

impl CollectorLog {
    /// Logs what changed in `snap`'s collector reports; returns whether any collector failed.
    pub(crate) fn observe(&mut self, snap: &Snapshot) -> bool {
        for c in &snap.collectors {
            let was_failing = self.failing.contains(&c.name);
            match (c.ok, was_failing) {
                (false, false) => {
                    let error = c.error.as_deref().unwrap_or("");
                    tracing::warn!(collector = c.name, error, "collector failed");
                    self.failing.push(c.name);
                }
                (true, true) => {
                    tracing::info!(collector = c.name, "collector recovered");
                    self.failing.retain(|n| *n != c.name);
                }
                _ => {}
            }
        }
        for w in &snap.warnings {
            tracing::debug!(warning = %w, "sample warning");
        }
        !snap.ok()
    }
}

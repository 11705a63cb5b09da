//! The daemon's census loop body: one census per watched namespace, each namespace's
//! [`Census`] kept between passes so removals can be noticed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipcwatch_sampler::namespaces::Visitor;
use ipcwatch_sampler::{Sampler, SamplerConfig};

use crate::census::{Census, Gathered, Pass};
use crate::HoldersConfig;

/// One namespace's latest census.
#[derive(Debug)]
pub struct NamespaceHolders {
    pub inode: u64,
    /// The `ipc_namespace` label value (the inode in decimal).
    pub label: Arc<str>,
    pub pass: Pass,
}

/// Every namespace's latest census, as the exporter serves it.
#[derive(Debug, Default)]
pub struct HoldersPublished {
    pub namespaces: Vec<Arc<NamespaceHolders>>,
    /// Namespaces that could not be entered in the last round.
    pub visits_failed: u64,
    /// How long the last round took, all namespaces together.
    pub duration_seconds: f64,
    /// Unix seconds the last round ended.
    pub timestamp: i64,
}

/// Runs census rounds from the calling thread (which must stay the same: namespace visits
/// move only the thread that makes them).
pub struct Watch {
    config: HoldersConfig,
    procfs: PathBuf,
    sampler: Sampler,
    visitor: Option<Visitor>,
    censuses: HashMap<u64, Census>,
}

impl Watch {
    pub fn new(sampler: SamplerConfig, config: HoldersConfig) -> Watch {
        let procfs = sampler.procfs.clone();
        let visitor = Visitor::new(&procfs).ok();
        // The full walk: per-segment memory is not needed, every array is.
        let sampler =
            Sampler::new(SamplerConfig { semaphore_detail: true, segment_memory: false, ..sampler });
        Watch { config, procfs, sampler, visitor, censuses: HashMap::new() }
    }

    pub fn set_config(&mut self, config: HoldersConfig) {
        self.config = config;
        for c in self.censuses.values_mut() {
            c.set_config(config);
        }
    }

    /// The caller's own namespace inode (0 if /proc cannot say).
    pub fn home_inode(&self) -> u64 {
        self.visitor.as_ref().map_or(0, |v| v.home_inode)
    }

    /// One round over `targets` (inode and pids to enter through). Namespaces no longer
    /// listed are forgotten.
    pub fn round(&mut self, targets: &[(u64, Vec<u32>)]) -> HoldersPublished {
        let started = Instant::now();
        self.censuses.retain(|inode, _| targets.iter().any(|(i, _)| i == inode));
        let mut out = HoldersPublished::default();
        let home = self.home_inode();
        for (inode, pids) in targets {
            let gathered = match &self.visitor {
                Some(v) => v.visit(*inode, pids, || Gathered::take(&mut self.sampler)),
                None if *inode == home => Ok(Gathered::take(&mut self.sampler)),
                None => continue,
            };
            let gathered = match gathered {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!(namespace = inode, error = %e, "census: cannot enter the namespace");
                    out.visits_failed += 1;
                    continue;
                }
            };
            let census =
                self.censuses.entry(*inode).or_insert_with(|| Census::new(&self.procfs, self.config));
            let pass = census.pass(&gathered, crate::unix_now(), self.config.thresholds);
            out.namespaces.push(Arc::new(NamespaceHolders {
                inode: *inode,
                label: inode.to_string().into(),
                pass,
            }));
        }
        // A census of 32,000 objects allocates megabytes for a moment, once a minute.
        ipcwatch_sampler::objects::release_free_memory();
        out.duration_seconds = started.elapsed().as_secs_f64();
        out.timestamp = crate::unix_now();
        out
    }
}

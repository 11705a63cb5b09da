//! The chart registry: what ipcwatch measures, named and shaped exactly as Netdata's
//! `proc.plugin` IPC module names it (`system.ipc_semaphores`, ...), plus charts of our own
//! for what Netdata leaves out, in the same model.
//!
//! Each sample becomes one row of every chart. A short history per dimension (default one
//! hour at the update interval) serves the alert engine's `lookup`s. Per-queue dimensions are
//! capped (biggest queues first) and retired as soon as their queue is gone.

#![forbid(unsafe_code)]

mod defs;
pub mod figures;
mod queues;

use std::collections::{BTreeMap, VecDeque};

use ipcwatch_sampler::Snapshot;

pub use defs::{CHARTS, QUEUE_BYTES_CHART, QUEUE_MESSAGES_ALIAS, QUEUE_MESSAGES_CHART};
pub use queues::{ChosenQueue, QueueChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartType {
    Line,
    Area,
    Stacked,
}

impl ChartType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChartType::Line => "line",
            ChartType::Area => "area",
            ChartType::Stacked => "stacked",
        }
    }
}

/// One time series of a chart.
#[derive(Debug, Clone)]
pub struct Dimension {
    pub id: String,
    pub name: String,
    /// One value per history row of the chart (NaN where it was not collected). Stored as
    /// f32, 4 bytes a point like Netdata's storage numbers: exact for counts up to 2^24 and
    /// within 1e-7 of byte figures, which is all a lookup window or a chart needs.
    values: VecDeque<f32>,
}

impl Dimension {
    /// One value per history row of its chart, oldest first (NaN: not collected).
    pub fn values(&self) -> &VecDeque<f32> {
        &self.values
    }

    /// The value of the latest row, or `None` if it was not collected then.
    pub fn last(&self) -> Option<f64> {
        self.values.back().copied().filter(|v| !v.is_nan()).map(f64::from)
    }
}

/// A chart with Netdata's metadata and its recent history.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub units: &'static str,
    pub family: &'static str,
    pub context: &'static str,
    pub chart_type: ChartType,
    pub priority: u32,
    pub dimensions: Vec<Dimension>,
    /// Chart variables (Netdata's `ipc_semaphores_max` and ours), as alert expressions see them.
    pub variables: BTreeMap<&'static str, f64>,
    /// Unix times of the history rows, oldest first.
    times: VecDeque<f64>,
    /// Unix time of the last row in which the chart was collected.
    pub last_collected: Option<f64>,
    /// Where the next dimension lookup by id starts.
    cursor: usize,
}

/// How `lookup` reduces a window of history to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Average,
    Min,
    Max,
    Sum,
}

impl Chart {
    fn new(def: &defs::ChartDef) -> Chart {
        Chart {
            id: def.id,
            title: def.title,
            units: def.units,
            family: def.family,
            context: def.id,
            chart_type: def.chart_type,
            priority: def.priority,
            dimensions: def
                .dimensions
                .iter()
                .map(|d| Dimension { id: d.to_string(), name: d.to_string(), values: VecDeque::new() })
                .collect(),
            variables: BTreeMap::new(),
            times: VecDeque::new(),
            last_collected: None,
            cursor: 0,
        }
    }

    pub fn dimension(&self, id_or_name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id == id_or_name || d.name == id_or_name)
    }

    /// Unix times of the history rows, oldest first.
    pub fn times(&self) -> &VecDeque<f64> {
        &self.times
    }

    /// Number of history rows kept.
    pub fn history_len(&self) -> usize {
        self.times.len()
    }

    /// Reduces each selected dimension over rows with `now + after < t <= now + before`
    /// (`after`/`before` are negative offsets in seconds, as in Netdata's `lookup`), then
    /// combines the dimensions by summing them. NaN when there is no data in the window.
    pub fn lookup(&self, reduce: Reduce, now: f64, after: f64, before: f64, of: Option<&[String]>) -> f64 {
        let (from, to) = (now + after, now + before);
        let rows: Vec<usize> =
            self.times.iter().enumerate().filter(|(_, t)| **t > from && **t <= to).map(|(i, _)| i).collect();
        let mut total = f64::NAN;
        for dim in self
            .dimensions
            .iter()
            .filter(|d| of.is_none_or(|of| of.iter().any(|o| *o == d.id || *o == d.name)))
        {
            let values = rows.iter().map(|&i| f64::from(dim.values[i])).filter(|v| !v.is_nan());
            let (mut n, mut acc) = (0usize, f64::NAN);
            for v in values {
                acc = match (n, reduce) {
                    (0, _) => v,
                    (_, Reduce::Average | Reduce::Sum) => acc + v,
                    (_, Reduce::Min) => acc.min(v),
                    (_, Reduce::Max) => acc.max(v),
                };
                n += 1;
            }
            if n == 0 {
                continue;
            }
            if reduce == Reduce::Average {
                acc /= n as f64;
            }
            total = if total.is_nan() { acc } else { total + acc };
        }
        total
    }

    /// Starts a new history row; dimensions not given a value in it stay NaN.
    fn push_row(&mut self, t: f64, keep: usize) {
        self.times.push_back(t);
        for d in &mut self.dimensions {
            d.values.push_back(f32::NAN);
        }
        while self.times.len() > keep {
            self.times.pop_front();
            for d in &mut self.dimensions {
                d.values.pop_front();
            }
        }
    }

    /// Sets a dimension's value in the current row, adding the dimension if it is new.
    fn set(&mut self, id: &str, value: f64) {
        let rows = self.times.len();
        // Values usually arrive in dimension order (queues by msqid), so the search starts
        // where the previous one ended: O(1) per value instead of O(dimensions).
        let n = self.dimensions.len();
        let found = (0..n).map(|k| (self.cursor + k) % n).find(|&i| self.dimensions[i].id == id);
        self.cursor = found.map_or(0, |i| i + 1);
        let dim = match found {
            Some(i) => &mut self.dimensions[i],
            None => {
                let values = std::iter::repeat_n(f32::NAN, rows).collect();
                self.dimensions.push(Dimension { id: id.to_string(), name: id.to_string(), values });
                self.dimensions.last_mut().expect("just pushed")
            }
        };
        if let Some(v) = dim.values.back_mut() {
            *v = value as f32;
        }
        self.last_collected = self.times.back().copied();
    }

    /// Sets the value of dimension `index` in the current row.
    fn set_at(&mut self, index: usize, value: f64) {
        if let Some(v) = self.dimensions[index].values.back_mut() {
            *v = value as f32;
        }
        self.last_collected = self.times.back().copied();
    }

    /// Drops dimensions whose ids `keep` rejects (a queue that is gone: no stale values).
    fn retain_dimensions(&mut self, keep: impl Fn(&str) -> bool) {
        self.dimensions.retain(|d| keep(&d.id));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    /// History rows kept per chart (history seconds / update interval).
    pub history_rows: usize,
    /// Most per-queue dimensions on the message-queue charts (biggest queues first).
    pub max_queue_dimensions: usize,
    /// Most per-owner dimensions on each `ipc.*_by_owner` chart ([holders] max_owners, plus
    /// `other`).
    pub max_owner_dimensions: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { history_rows: 3600, max_queue_dimensions: 100, max_owner_dimensions: 21 }
    }
}

impl RegistryConfig {
    /// The most bytes the charts' history can hold with these settings: 4 bytes per row for
    /// every dimension (the fixed ones, plus a messages and a bytes dimension per charted
    /// queue) and 8 for every chart's row times, with a ring buffer's power-of-two capacity;
    /// the census charts (a dimension per owner) keep at most an hour.
    pub fn history_bytes(&self) -> u64 {
        let (census, other): (Vec<_>, Vec<_>) =
            defs::CHARTS.iter().partition(|c| defs::is_census_chart(c.id));
        let fixed: usize = other.iter().map(|c| c.dimensions.len()).sum();
        let dims = (fixed + 2 * self.max_queue_dimensions) as u64;
        let rows = self.history_rows.max(1).next_power_of_two() as u64;
        let census_fixed: usize = census.iter().map(|c| c.dimensions.len()).sum();
        let census_dims = (census_fixed + defs::owner_charts().count() * self.max_owner_dimensions) as u64;
        let census_rows = self.history_rows.clamp(1, defs::CENSUS_HISTORY_ROWS).next_power_of_two() as u64;
        rows * (dims * 4 + other.len() as u64 * 8) + census_rows * (census_dims * 4 + census.len() as u64 * 8)
    }
}

/// All charts, in Netdata's priority order.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    charts: Vec<Chart>,
    /// Where each figure of the table goes, by position, found once.
    slots: Vec<defs::Slot>,
    /// Msqids of the queues that have dimensions now, ascending.
    queue_ids: Vec<i32>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(RegistryConfig::default())
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Registry {
        let mut charts: Vec<Chart> = defs::CHARTS.iter().map(Chart::new).collect();
        charts.sort_by_key(|c| c.priority);
        let slots = defs::slots(&charts);
        Registry { config, charts, slots, queue_ids: Vec::new() }
    }

    /// Changes the caps (on reload); history shrinks at the next update.
    pub fn set_config(&mut self, config: RegistryConfig) {
        self.config = config;
    }

    pub fn charts(&self) -> &[Chart] {
        &self.charts
    }

    /// A chart by id, answering Netdata's documented alias `system.message_queue_message` too.
    pub fn chart(&self, id: &str) -> Option<&Chart> {
        let id = if id == QUEUE_MESSAGES_ALIAS { QUEUE_MESSAGES_CHART } else { id };
        self.charts.iter().find(|c| c.id == id)
    }

    /// Msqids of the queues that have dimensions now (the capped selection), ascending.
    pub fn queue_ids(&self) -> &[i32] {
        &self.queue_ids
    }

    /// Adds one row to every chart from a snapshot taken at `snap.timestamp`; `queues` are the
    /// queues that have dimensions of their own (the others' dimensions are retired).
    pub fn update(&mut self, snap: &Snapshot, queues: &QueueChoice) {
        let keep = self.config.history_rows.max(1);
        for chart in &mut self.charts {
            let census = defs::is_census_chart(chart.id);
            chart.push_row(snap.timestamp, if census { keep.min(defs::CENSUS_HISTORY_ROWS) } else { keep });
        }
        let unchanged = self.queue_ids.len() == queues.queues().len()
            && self.queue_ids.iter().zip(queues.queues()).all(|(a, q)| *a == q.id);
        if !unchanged {
            self.queue_ids.clear();
            self.queue_ids.extend(queues.queues().iter().map(|q| q.id));
            for chart in &mut self.charts {
                if chart.id == QUEUE_MESSAGES_CHART || chart.id == QUEUE_BYTES_CHART {
                    chart.retain_dimensions(|d| d.parse().is_ok_and(|id| queues.contains(id)));
                }
            }
        }
        defs::fill(&mut self.charts, &self.slots, snap, queues);
    }

    /// Fills the census's charts in the row [`Registry::update`] just started, from the
    /// namespace's latest census (`None`: no values this row).
    pub fn update_holders(&mut self, pass: Option<&ipcwatch_holders::Pass>) {
        defs::fill_holders(&mut self.charts, pass);
    }

    /// The most per-queue dimensions (the cap the pipeline chooses queues with).
    pub fn max_queue_dimensions(&self) -> usize {
        self.config.max_queue_dimensions
    }
}

#[cfg(test)]
mod tests;

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
    history: History,
}

/// A dimension's values, f32 (4 bytes, like Netdata's storage numbers: exact for counts up to
/// 2^24 and within 1e-7 of byte figures, which is all a lookup window or a chart needs).
#[derive(Debug, Clone)]
enum History {
    /// Runs of equal values: (the absolute row a run starts at, the value), oldest first, the
    /// last lasting to the newest row. An idle container's figures never change, so an hour of
    /// history is one run, not 3,600 values.
    Runs(VecDeque<(u32, f32)>),
    /// One value per row from absolute row `first`: what a figure that changes most rows
    /// takes (runs would cost twice as much), so no history costs more than 4 bytes a row.
    Flat { first: u32, values: VecDeque<f32> },
}

/// Whether two stored values are the same (every NaN is the same: not collected).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl Dimension {
    fn new(id: &str, first_row: u32) -> Dimension {
        let mut runs = VecDeque::with_capacity(1);
        runs.push_back((first_row, f32::NAN));
        Dimension { id: id.to_string(), name: id.to_string(), history: History::Runs(runs) }
    }

    /// The value of the latest row, or `None` if it was not collected then.
    pub fn last(&self) -> Option<f64> {
        let v = match &self.history {
            History::Runs(runs) => runs.back().map(|r| r.1),
            History::Flat { values, .. } => values.back().copied(),
        };
        v.filter(|v| !v.is_nan()).map(f64::from)
    }

    /// The value at absolute row `row` (NaN where there is none).
    fn at(&self, row: u32) -> f32 {
        match &self.history {
            History::Runs(runs) => match runs.partition_point(|r| r.0 <= row) {
                0 => f32::NAN,
                i => runs[i - 1].1,
            },
            History::Flat { first, values } => {
                row.checked_sub(*first).and_then(|i| values.get(i as usize)).copied().unwrap_or(f32::NAN)
            }
        }
    }

    /// Gives absolute row `row`, the newest or a new one, the value `v`.
    fn put(&mut self, row: u32, v: f32) {
        match &mut self.history {
            History::Runs(runs) => {
                let n = runs.len();
                match runs.back_mut() {
                    Some((start, last)) if *start == row => {
                        *last = v;
                        if n >= 2 && same(runs[n - 2].1, v) {
                            runs.pop_back();
                        }
                    }
                    Some((_, last)) if same(*last, v) => {}
                    _ => runs.push_back((row, v)),
                }
            }
            History::Flat { first, values } => {
                let next = first.wrapping_add(values.len() as u32);
                if row == next {
                    values.push_back(v);
                } else if let Some(back) = values.back_mut().filter(|_| row.wrapping_add(1) == next) {
                    *back = v;
                }
            }
        }
    }

    /// Forgets rows before absolute row `first`; turns runs into one value per row when that
    /// is smaller (more than half the rows start a run).
    fn forget_before(&mut self, first: u32, newest: u32) {
        match &mut self.history {
            History::Runs(runs) => {
                while runs.len() >= 2 && runs[1].0 <= first {
                    runs.pop_front();
                }
                let rows = newest.wrapping_sub(first) as usize + 1;
                if runs.len() > 8 && runs.len() * 2 > rows {
                    let values = (first..=newest).map(|r| self.at(r)).collect();
                    self.history = History::Flat { first, values };
                }
            }
            History::Flat { first: at, values } => {
                while *at < first && !values.is_empty() {
                    values.pop_front();
                    *at = at.wrapping_add(1);
                }
            }
        }
    }

    /// Bytes its history holds.
    pub fn history_bytes(&self) -> usize {
        match &self.history {
            History::Runs(runs) => runs.len() * 8,
            History::Flat { values, .. } => values.len() * 4,
        }
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
    /// The most history rows it keeps (its rows are the registry's newest).
    cap: usize,
    /// Fed by the census ([`defs::CENSUS_HISTORY_ROWS`]).
    census: bool,
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
            dimensions: def.dimensions.iter().map(|d| Dimension::new(d, 0)).collect(),
            variables: BTreeMap::new(),
            cap: 1,
            census: defs::is_census_chart(def.id),
            last_collected: None,
            cursor: 0,
        }
    }

    pub fn dimension(&self, id_or_name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id == id_or_name || d.name == id_or_name)
    }

    /// Starts row `row` (absolute), keeping rows from `first` on; dimensions not given a value
    /// in it stay NaN.
    fn push_row(&mut self, row: u32, first: u32) {
        for d in &mut self.dimensions {
            d.put(row, f32::NAN);
            d.forget_before(first, row);
        }
    }

    /// Sets a dimension's value in the newest row, adding the dimension if it is new.
    fn set(&mut self, at: Row, id: &str, value: f64) {
        // Values usually arrive in dimension order (queues by msqid), so the search starts
        // where the previous one ended: O(1) per value instead of O(dimensions).
        let n = self.dimensions.len();
        let found = (0..n).map(|k| (self.cursor + k) % n).find(|&i| self.dimensions[i].id == id);
        self.cursor = found.map_or(0, |i| i + 1);
        let dim = match found {
            Some(i) => &mut self.dimensions[i],
            None => {
                self.dimensions.push(Dimension::new(id, at.index));
                self.dimensions.last_mut().expect("just pushed")
            }
        };
        dim.put(at.index, value as f32);
        self.last_collected = Some(at.time);
    }

    /// Sets the value of dimension `index` in the newest row.
    fn set_at(&mut self, at: Row, index: usize, value: f64) {
        self.dimensions[index].put(at.index, value as f32);
        self.last_collected = Some(at.time);
    }

    /// Drops dimensions whose ids `keep` rejects (a queue that is gone: no stale values).
    fn retain_dimensions(&mut self, keep: impl Fn(&str) -> bool) {
        self.dimensions.retain(|d| keep(&d.id));
    }
}

/// The row being filled: its absolute number and its Unix time.
#[derive(Debug, Clone, Copy)]
struct Row {
    index: u32,
    time: f64,
}

/// A chart with its history rows' times: what [`Registry::chart`] and [`Registry::charts`]
/// give. The rows' times are the registry's, shared by its charts (each keeps the newest
/// [`ChartView::history_len`] of them).
#[derive(Debug, Clone, Copy)]
pub struct ChartView<'a> {
    chart: &'a Chart,
    times: &'a VecDeque<f64>,
    /// The absolute row of the registry's newest row plus one.
    next_row: u32,
}

impl std::ops::Deref for ChartView<'_> {
    type Target = Chart;
    fn deref(&self) -> &Chart {
        self.chart
    }
}

impl<'a> ChartView<'a> {
    /// The chart itself.
    pub fn chart(&self) -> &'a Chart {
        self.chart
    }

    /// Number of history rows kept.
    pub fn history_len(&self) -> usize {
        self.times.len().min(self.chart.cap)
    }

    /// Unix times of the history rows, oldest first.
    pub fn times(&self) -> std::collections::vec_deque::Iter<'a, f64> {
        self.times.range(self.times.len() - self.history_len()..)
    }

    /// Dimension `d`'s value in history row `i` (0 = the oldest kept), NaN where it was not
    /// collected.
    pub fn value(&self, d: &Dimension, i: usize) -> f32 {
        let first = self.next_row.wrapping_sub(self.history_len() as u32);
        d.at(first.wrapping_add(i as u32))
    }

    /// Reduces each selected dimension over rows with `now + after < t <= now + before`
    /// (`after`/`before` are negative offsets in seconds, as in Netdata's `lookup`), then
    /// combines the dimensions by summing them. NaN when there is no data in the window.
    pub fn lookup(&self, reduce: Reduce, now: f64, after: f64, before: f64, of: Option<&[String]>) -> f64 {
        let (from, to) = (now + after, now + before);
        let rows: Vec<usize> =
            self.times().enumerate().filter(|(_, t)| **t > from && **t <= to).map(|(i, _)| i).collect();
        let mut total = f64::NAN;
        for dim in self
            .dimensions
            .iter()
            .filter(|d| of.is_none_or(|of| of.iter().any(|o| *o == d.id || *o == d.name)))
        {
            let values = rows.iter().map(|&i| f64::from(self.value(dim, i))).filter(|v| !v.is_nan());
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
    /// queue: what a value that changes every row costs; one that does not costs one 8-byte
    /// run), with a ring buffer's power-of-two capacity, and each row's time 8 bytes once for
    /// all charts; the census charts (a dimension per owner) keep at most an hour.
    pub fn history_bytes(&self) -> u64 {
        let (census, other): (Vec<_>, Vec<_>) =
            defs::CHARTS.iter().partition(|c| defs::is_census_chart(c.id));
        let fixed: usize = other.iter().map(|c| c.dimensions.len()).sum();
        let dims = (fixed + 2 * self.max_queue_dimensions) as u64;
        let rows = self.history_rows.max(1).next_power_of_two() as u64;
        let census_fixed: usize = census.iter().map(|c| c.dimensions.len()).sum();
        let census_dims = (census_fixed + defs::owner_charts().count() * self.max_owner_dimensions) as u64;
        let census_rows = self.history_rows.clamp(1, defs::CENSUS_HISTORY_ROWS).next_power_of_two() as u64;
        rows * (dims * 4 + 8) + census_rows * census_dims * 4
    }
}

/// All charts, in Netdata's priority order.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    charts: Vec<Chart>,
    /// Unix times of the history rows, oldest first, shared by every chart.
    times: VecDeque<f64>,
    /// The absolute number of the next row, and the row last started.
    next_row: u32,
    last_row: Row,
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
        Registry {
            config,
            charts,
            times: VecDeque::new(),
            next_row: 0,
            last_row: Row { index: 0, time: 0.0 },
            slots,
            queue_ids: Vec::new(),
        }
    }

    /// Changes the caps (on reload); history shrinks at the next update.
    pub fn set_config(&mut self, config: RegistryConfig) {
        self.config = config;
    }

    /// Every chart, in Netdata's priority order.
    pub fn charts(&self) -> impl ExactSizeIterator<Item = ChartView<'_>> + Clone {
        self.charts.iter().map(|chart| self.view(chart))
    }

    fn view<'a>(&'a self, chart: &'a Chart) -> ChartView<'a> {
        ChartView { chart, times: &self.times, next_row: self.next_row }
    }

    /// A chart by id, answering Netdata's documented alias `system.message_queue_message` too.
    pub fn chart(&self, id: &str) -> Option<ChartView<'_>> {
        let id = if id == QUEUE_MESSAGES_ALIAS { QUEUE_MESSAGES_CHART } else { id };
        self.charts.iter().find(|c| c.id == id).map(|c| self.view(c))
    }

    /// Bytes the history holds: every dimension's values, and the rows' times.
    pub fn history_size(&self) -> usize {
        let values: usize =
            self.charts.iter().flat_map(|c| &c.dimensions).map(Dimension::history_bytes).sum();
        values + self.times.len() * 8
    }

    /// Msqids of the queues that have dimensions now (the capped selection), ascending.
    pub fn queue_ids(&self) -> &[i32] {
        &self.queue_ids
    }

    /// Adds one row to every chart from a snapshot taken at `snap.timestamp`; `queues` are the
    /// queues that have dimensions of their own (the others' dimensions are retired).
    pub fn update(&mut self, snap: &Snapshot, queues: &QueueChoice) {
        let keep = self.config.history_rows.max(1);
        let at = Row { index: self.next_row, time: snap.timestamp };
        self.next_row = self.next_row.wrapping_add(1);
        self.times.push_back(snap.timestamp);
        while self.times.len() > keep {
            self.times.pop_front();
        }
        for chart in &mut self.charts {
            chart.cap = if chart.census { keep.min(defs::CENSUS_HISTORY_ROWS) } else { keep };
            let kept = self.times.len().min(chart.cap) as u32;
            chart.push_row(at.index, self.next_row.wrapping_sub(kept));
        }
        self.last_row = at;
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
        defs::fill(&mut self.charts, at, &self.slots, snap, queues);
    }

    /// Fills the census's charts in the row [`Registry::update`] just started, from the
    /// namespace's latest census (`None`: no values this row).
    pub fn update_holders(&mut self, pass: Option<&ipcwatch_holders::Pass>) {
        defs::fill_holders(&mut self.charts, self.last_row, pass);
    }

    /// The most per-queue dimensions (the cap the pipeline chooses queues with).
    pub fn max_queue_dimensions(&self) -> usize {
        self.config.max_queue_dimensions
    }
}

#[cfg(test)]
mod tests;

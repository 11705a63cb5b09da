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
pub mod owners;
mod queues;
mod times;

use std::borrow::Cow;
use std::collections::VecDeque;

use ipcwatch_sampler::Snapshot;

pub use defs::{CHARTS, QUEUE_BYTES_CHART, QUEUE_MESSAGES_ALIAS, QUEUE_MESSAGES_CHART};
pub use queues::{ChosenQueue, QueueChoice};
pub use times::Iter as TimesIter;

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
    /// A fixed dimension's id is the table's (no allocation); a queue's or an owner's is its
    /// own. Its name is the same text.
    pub id: Cow<'static, str>,
    history: History,
}

/// A dimension's values, f32 (4 bytes, like Netdata's storage numbers: exact for counts up to
/// 2^24 and within 1e-7 of byte figures, which is all a lookup window or a chart needs). Rows
/// after the last one given a value (up to the newest) read as NaN: a row costs a dimension
/// nothing until a value is put in it.
#[derive(Debug, Clone)]
enum History {
    /// Runs of equal values, each from the absolute row it starts at, oldest first: `older`,
    /// then `last`, which lasts to row `set`. An idle container's figures never change, so an
    /// hour of history is one run held in the dimension itself, with nothing on the heap.
    Runs { older: Older, last: (u32, f32), set: u32 },
    /// One value per row from absolute row `first`: what a figure that changes most rows
    /// takes (runs would cost twice as much), so no history costs more than 4 bytes a row.
    // Boxed: the enum is as small as its runs form, which nearly every dimension has.
    #[allow(clippy::box_collection)]
    Flat { first: u32, values: Box<VecDeque<f32>> },
}

/// The runs before the last: nothing at all (no heap, one word in the dimension) while a
/// figure has not changed within the history, which is what most of a thousand namespaces'
/// figures do.
#[derive(Debug, Clone, Default)]
#[allow(clippy::box_collection)] // one word, where a VecDeque is four
struct Older(Option<Box<VecDeque<(u32, f32)>>>);

impl Older {
    fn push_back(&mut self, run: (u32, f32)) {
        self.0.get_or_insert_with(Default::default).push_back(run);
    }

    fn pop_back(&mut self) -> Option<(u32, f32)> {
        let run = self.0.as_mut()?.pop_back();
        self.free_if_empty();
        run
    }

    fn pop_front(&mut self) -> Option<(u32, f32)> {
        let run = self.0.as_mut()?.pop_front();
        self.free_if_empty();
        run
    }

    fn free_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|v| v.is_empty()) {
            self.0 = None;
        }
    }

    fn get(&self, i: usize) -> Option<&(u32, f32)> {
        self.0.as_ref()?.get(i)
    }

    fn front(&self) -> Option<&(u32, f32)> {
        self.get(0)
    }

    fn back(&self) -> Option<&(u32, f32)> {
        self.0.as_ref()?.back()
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn partition_point(&self, pred: impl FnMut(&(u32, f32)) -> bool) -> usize {
        self.0.as_ref().map_or(0, |v| v.partition_point(pred))
    }
}

/// Whether two stored values are the same (every NaN is the same: not collected).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl Dimension {
    fn new(id: Cow<'static, str>, row: u32) -> Dimension {
        // Nothing yet: row `row - 1` is NaN, and so is every row up to the first value.
        let before = row.wrapping_sub(1);
        let history = History::Runs { older: Older::default(), last: (before, f32::NAN), set: before };
        Dimension { id, history }
    }

    /// Netdata's dimension name: the id, for every dimension ipcwatch makes.
    pub fn name(&self) -> &str {
        &self.id
    }

    /// The value at absolute row `row` (NaN where there is none).
    fn at(&self, row: u32) -> f32 {
        match &self.history {
            History::Runs { older, last, set } => {
                if row > *set {
                    f32::NAN
                } else if row >= last.0 {
                    last.1
                } else {
                    match older.partition_point(|r| r.0 <= row) {
                        0 => f32::NAN,
                        i => older.get(i - 1).map_or(f32::NAN, |r| r.1),
                    }
                }
            }
            History::Flat { first, values } => {
                row.checked_sub(*first).and_then(|i| values.get(i as usize)).copied().unwrap_or(f32::NAN)
            }
        }
    }

    /// Gives row `row` (the newest) the value `v`, keeping rows from `first` on.
    fn put(&mut self, first: u32, row: u32, v: f32) {
        match &mut self.history {
            History::Runs { older, last, set } => {
                if row > set.wrapping_add(1) && !last.1.is_nan() {
                    // Rows without a value since the last one: a NaN run.
                    older.push_back(*last);
                    *last = (set.wrapping_add(1), f32::NAN);
                }
                if row == last.0 {
                    last.1 = v;
                    if older.back().is_some_and(|b| same(b.1, v)) {
                        *last = older.pop_back().expect("just seen");
                    }
                } else if !same(last.1, v) {
                    // The NaN before a dimension's first value need not be kept: rows before
                    // the oldest run read as NaN anyway, and so a figure that never changes
                    // allocates nothing.
                    if !(older.is_empty() && last.1.is_nan()) {
                        older.push_back(*last);
                    }
                    *last = (row, v);
                }
                *set = row;
                while older.front().is_some_and(|_| older.get(1).map_or(last.0, |r| r.0) <= first) {
                    older.pop_front();
                }
                let rows = row.wrapping_sub(first) as usize + 1;
                if older.len() > 8 && older.len() * 2 > rows {
                    let values = Box::new((first..=row).map(|r| self.at(r)).collect());
                    self.history = History::Flat { first, values };
                }
            }
            History::Flat { first: at, values } => {
                let mut next = at.wrapping_add(values.len() as u32);
                if row.wrapping_add(1) == next {
                    if let Some(back) = values.back_mut() {
                        *back = v;
                    }
                } else {
                    while next < row {
                        values.push_back(f32::NAN);
                        next = next.wrapping_add(1);
                    }
                    values.push_back(v);
                }
                while *at < first && !values.is_empty() {
                    values.pop_front();
                    *at = at.wrapping_add(1);
                }
            }
        }
    }

    /// The newest row given a value (or NaN) explicitly.
    fn last_row(&self) -> u32 {
        match &self.history {
            History::Runs { set, .. } => *set,
            History::Flat { first, values } => first.wrapping_add(values.len() as u32).wrapping_sub(1),
        }
    }

    /// The value at absolute row `row`, where the rows from `carry.from` on repeat the row
    /// before them for every dimension given a value there (see [`Carry`]).
    fn at_carried(&self, row: u32, carry: Option<Carry>) -> f32 {
        match carry {
            Some(c) if row >= c.from && self.last_row().wrapping_add(1) == c.from => self.at(c.from - 1),
            _ => self.at(row),
        }
    }

    /// Makes the carried rows through `through` explicit (its value repeated), keeping rows
    /// from `first` on: what putting that value in each would give.
    fn settle(&mut self, carry: Carry, first: u32, through: u32) {
        let last = self.last_row();
        if last.wrapping_add(1) != carry.from || through < carry.from {
            return;
        }
        let v = self.at(last);
        match &mut self.history {
            History::Runs { older, last, set } => {
                *set = through;
                while older.front().is_some_and(|_| older.get(1).map_or(last.0, |r| r.0) <= first) {
                    older.pop_front();
                }
            }
            // Every row kept is carried: one run.
            History::Flat { .. } if first > last => {
                self.history = History::Runs { older: Older::default(), last: (first, v), set: through };
            }
            History::Flat { .. } => {
                for row in carry.from..=through {
                    self.put(first, row, v);
                }
            }
        }
    }

    /// Bytes its history holds on the heap.
    pub fn history_bytes(&self) -> usize {
        match &self.history {
            History::Runs { older, .. } => older.len() * 8,
            History::Flat { values, .. } => values.len() * 4,
        }
    }
}

/// A chart's variables by name, in name order: a few per chart, so a sorted vector (24 bytes
/// an entry) rather than a map's node (some 300 bytes) in each of a thousand namespaces.
#[derive(Debug, Clone, Default)]
pub struct Variables(Vec<(&'static str, f64)>);

impl Variables {
    pub fn get(&self, name: &str) -> Option<&f64> {
        self.0.binary_search_by(|(k, _)| (*k).cmp(name)).ok().map(|i| &self.0[i].1)
    }

    pub fn insert(&mut self, name: &'static str, value: f64) {
        match self.0.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&&'static str, &f64)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for Variables {
    type Output = f64;
    fn index(&self, name: &str) -> &f64 {
        self.get(name).unwrap_or_else(|| panic!("no variable {name}"))
    }
}

impl<'a> IntoIterator for &'a Variables {
    type Item = (&'a &'static str, &'a f64);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (&'static str, f64)>,
        fn(&'a (&'static str, f64)) -> (&'a &'static str, &'a f64),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// A chart with Netdata's metadata (its definition's: `chart.title` reads through) and its
/// recent history.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The table's row: a thousand namespaces' charts share their texts.
    def: &'static defs::ChartDef,
    pub dimensions: Vec<Dimension>,
    /// Chart variables (Netdata's `ipc_semaphores_max` and ours), as alert expressions see them.
    pub variables: Variables,
    /// Fed by the census ([`defs::CENSUS_HISTORY_ROWS`]).
    census: bool,
    /// Unix time of the last row in which the chart was collected (before any carried rows:
    /// [`ChartView::last_collected`]).
    last_collected: Option<f64>,
    /// Where the next dimension lookup by id starts.
    cursor: u32,
}

impl std::ops::Deref for Chart {
    type Target = defs::ChartDef;
    fn deref(&self) -> &defs::ChartDef {
        self.def
    }
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
    fn new(def: &'static defs::ChartDef) -> Chart {
        Chart {
            def,
            dimensions: def.dimensions.iter().map(|d| Dimension::new(Cow::Borrowed(d), 0)).collect(),
            variables: Variables::default(),
            census: defs::is_census_chart(def.id),
            last_collected: None,
            cursor: 0,
        }
    }

    pub fn dimension(&self, id_or_name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id == id_or_name)
    }

    /// Sets a dimension's value in the newest row, adding the dimension if it is new.
    fn set(&mut self, at: Row, id: &str, value: f64) {
        // Values usually arrive in dimension order (queues by msqid), so the search starts
        // where the previous one ended: O(1) per value instead of O(dimensions).
        let n = self.dimensions.len();
        let cursor = self.cursor as usize;
        let found = (0..n).map(|k| (cursor + k) % n).find(|&i| self.dimensions[i].id == id);
        self.cursor = found.map_or(0, |i| i as u32 + 1);
        let dim = match found {
            Some(i) => &mut self.dimensions[i],
            None => {
                // Exactly one more: most such charts have one owner or a few queues, and
                // doubling would leave room for 3 more in each of a thousand namespaces.
                self.dimensions.reserve_exact(1);
                self.dimensions.push(Dimension::new(Cow::Owned(id.to_string()), at.index));
                self.dimensions.last_mut().expect("just pushed")
            }
        };
        dim.put(at.first, at.index, value as f32);
        self.last_collected = Some(at.time);
    }

    /// Sets the value of dimension `index` in the newest row.
    fn set_at(&mut self, at: Row, index: usize, value: f64) {
        self.dimensions[index].put(at.first, at.index, value as f32);
        self.last_collected = Some(at.time);
    }

    /// Drops dimensions whose ids `keep` rejects (a queue that is gone: no stale values).
    fn retain_dimensions(&mut self, keep: impl Fn(&str) -> bool) {
        self.dimensions.retain(|d| keep(&d.id));
    }
}

/// The id a chart of IPC namespace `inode` has when it is not the home namespace's:
/// `ipc_ns_<inode>.<name>` for Netdata's `system.<name>` or `ipc.<name>` (the home namespace's
/// charts keep Netdata's ids).
pub fn namespace_chart_id(inode: &str, id: &str) -> String {
    format!("ipc_ns_{inode}.{}", id.split_once('.').map_or(id, |(_, name)| name))
}

/// Rows that repeat the one before them: from row `from` on, every dimension of a chart fed
/// by the sampler that was given a value in row `from - 1` has that value again (`time_before`
/// is that row's time). A namespace whose figures do not change costs its charts nothing per
/// row; the first row that differs makes the carried rows explicit ([`Registry::settle`]).
#[derive(Debug, Clone, Copy)]
struct Carry {
    from: u32,
    time_before: f64,
}

/// The row being filled: its absolute number, the oldest row kept, and its Unix time.
#[derive(Debug, Clone, Copy)]
struct Row {
    index: u32,
    first: u32,
    time: f64,
}

/// A chart with its history rows' times: what [`Registry::chart`] and [`Registry::charts`]
/// give. The rows' times are the registry's, shared by its charts (each keeps the newest
/// [`ChartView::history_len`] of them).
#[derive(Debug, Clone, Copy)]
pub struct ChartView<'a> {
    chart: &'a Chart,
    times: &'a times::Times,
    /// The newest row's exact Unix time.
    newest_time: f64,
    /// The absolute number of the registry's newest row.
    newest: u32,
    /// The registry's carried rows, for a chart fed by the sampler.
    carry: Option<Carry>,
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

    /// Dimension `d`'s value in the newest row, or `None` if it was not collected then.
    pub fn last(&self, d: &Dimension) -> Option<f64> {
        Some(d.at_carried(self.newest, self.carry)).filter(|v| !v.is_nan()).map(f64::from)
    }

    /// Unix time of the last row in which the chart was collected.
    pub fn last_collected(&self) -> Option<f64> {
        match self.carry {
            Some(c) if self.chart.last_collected == Some(c.time_before) => Some(self.newest_time),
            _ => self.chart.last_collected,
        }
    }

    /// The newest value of the dimension with this id or name.
    pub fn last_of(&self, id_or_name: &str) -> Option<f64> {
        self.dimension(id_or_name).and_then(|d| self.last(d))
    }

    /// Number of history rows kept: the registry's, at most an hour's for a census chart.
    pub fn history_len(&self) -> usize {
        match self.chart.census {
            true => self.times.len().min(defs::CENSUS_HISTORY_ROWS),
            false => self.times.len(),
        }
    }

    /// Unix times of the history rows (whole seconds, as Netdata keeps them), oldest first.
    pub fn times(&self) -> times::Iter<'a> {
        self.times.iter_from(self.times.len() - self.history_len())
    }

    /// Dimension `d`'s value in history row `i` (0 = the oldest kept), NaN where it was not
    /// collected.
    pub fn value(&self, d: &Dimension, i: usize) -> f32 {
        let first = self.newest.wrapping_add(1).wrapping_sub(self.history_len() as u32);
        d.at_carried(first.wrapping_add(i as u32), self.carry)
    }

    /// Reduces each selected dimension over rows with `now + after < t <= now + before`
    /// (`after`/`before` are negative offsets in seconds, as in Netdata's `lookup`), then
    /// combines the dimensions by summing them. NaN when there is no data in the window.
    pub fn lookup(&self, reduce: Reduce, now: f64, after: f64, before: f64, of: Option<&[String]>) -> f64 {
        let (from, to) = (now + after, now + before);
        let rows: Vec<usize> =
            self.times().enumerate().filter(|(_, t)| *t > from && *t <= to).map(|(i, _)| i).collect();
        let mut total = f64::NAN;
        for dim in self.dimensions.iter().filter(|d| of.is_none_or(|of| of.iter().any(|o| *o == d.id))) {
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
    /// Most per-owner dimensions on each `ipc.*_by_owner` chart (`[holders] max_owners`, plus
    /// `other`).
    pub max_owner_dimensions: usize,
    /// Whether the eBPF probes run: their charts ([`defs::PROBE_CHARTS`]) exist only then,
    /// so that where they cannot load a namespace carries no empty charts and no alert that
    /// can never fire.
    pub probes: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            history_rows: 3600,
            max_queue_dimensions: 100,
            max_owner_dimensions: 21,
            probes: false,
        }
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
    times: times::Times,
    /// The newest row's exact Unix time (the rows' are whole seconds).
    newest_time: f64,
    /// The absolute number of the next row, and the row last started as the census charts
    /// keep it.
    next_row: u32,
    census_row: Row,
    /// Whether the census charts were filled in the last row.
    holders_filled: bool,
    /// Where each figure of the table goes, by position (shared by every registry).
    slots: &'static [defs::Slot],
    /// Msqids of the queues that have dimensions now, ascending.
    queue_ids: Vec<i32>,
    /// What the last row filled was given ([`defs::figures`]), to see whether the next differs.
    figures: Vec<u64>,
    /// The rows repeated since, if the figures have not changed.
    carry: Option<Carry>,
    /// The same for the census charts, while the census has not changed.
    census_carry: Option<Carry>,
    /// The time of the row before the newest.
    time_before: f64,
    /// The time of the last row in which the census charts changed (filled anew, or emptied).
    census_changed: f64,
}

/// Every chart of the table, empty, in Netdata's priority order.
fn charts_in_order() -> Vec<Chart> {
    let mut charts: Vec<Chart> = defs::CHARTS.iter().map(Chart::new).collect();
    charts.sort_by_key(|c| c.priority);
    charts
}

thread_local! {
    /// A row's figures while they are compared with the last: one buffer per thread, not
    /// one per namespace.
    static FIGURES: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(RegistryConfig::default())
    }
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Registry {
        let mut charts = charts_in_order();
        // The probes' charts come last (the highest priorities): without them every other
        // chart keeps its position, which the shared slot tables rely on.
        if !config.probes {
            charts.truncate(charts.len() - defs::PROBE_CHARTS.len());
        }
        let slots = defs::shared_slots(&charts);
        Registry {
            config,
            charts,
            times: times::Times::default(),
            newest_time: f64::NAN,
            next_row: 0,
            census_row: Row { index: 0, first: 0, time: 0.0 },
            holders_filled: false,
            slots,
            queue_ids: Vec::new(),
            figures: Vec::new(),
            carry: None,
            census_carry: None,
            time_before: f64::NAN,
            census_changed: f64::NEG_INFINITY,
        }
    }

    /// Makes the carried rows explicit in every dimension of the sampler's charts (each
    /// repeats its value), through the newest row, so that the next row can differ.
    fn settle(&mut self) {
        let Some(carry) = self.carry.take() else { return };
        let first = self.next_row.wrapping_sub(self.times.len() as u32);
        self.settle_charts(false, carry, first, self.next_row.wrapping_sub(1), self.newest_time);
    }

    /// [`Registry::settle`] for the census charts, through row `through` (the newest, or the
    /// one before it).
    fn settle_census(&mut self, through: u32) {
        let Some(carry) = self.census_carry.take() else { return };
        let time = if through == self.census_row.index { self.census_row.time } else { self.time_before };
        self.settle_charts(true, carry, self.census_row.first, through, time);
    }

    /// Settles the census charts or the others: rows `carry.from..=through`, the last at
    /// Unix time `through_time`, keeping rows from `first` on.
    fn settle_charts(&mut self, census: bool, carry: Carry, first: u32, through: u32, through_time: f64) {
        for chart in self.charts.iter_mut().filter(|c| c.census == census) {
            for d in &mut chart.dimensions {
                d.settle(carry, first, through);
            }
            if chart.last_collected == Some(carry.time_before) {
                chart.last_collected = Some(through_time).filter(|t| !t.is_nan());
            }
        }
    }

    /// Changes the caps (on reload); history shrinks at the next update. The probes' charts
    /// are added or dropped.
    pub fn set_config(&mut self, config: RegistryConfig) {
        let has_probes = defs::has_probe_charts(&self.charts);
        if config.probes && !has_probes {
            self.settle();
            let mut all = charts_in_order();
            self.charts.extend(all.split_off(all.len() - defs::PROBE_CHARTS.len()));
        } else if !config.probes && has_probes {
            self.charts.truncate(self.charts.len() - defs::PROBE_CHARTS.len());
        }
        self.config = config;
    }

    /// Every chart, in Netdata's priority order.
    pub fn charts(&self) -> impl ExactSizeIterator<Item = ChartView<'_>> + Clone {
        self.charts.iter().map(|chart| self.view(chart))
    }

    fn view<'a>(&'a self, chart: &'a Chart) -> ChartView<'a> {
        let carry = if chart.census { self.census_carry } else { self.carry };
        ChartView {
            chart,
            times: &self.times,
            newest_time: self.newest_time,
            newest: self.next_row.wrapping_sub(1),
            carry,
        }
    }

    /// A chart by id, answering Netdata's documented alias `system.message_queue_message` too.
    pub fn chart(&self, id: &str) -> Option<ChartView<'_>> {
        let id = if id == QUEUE_MESSAGES_ALIAS { QUEUE_MESSAGES_CHART } else { id };
        self.charts.iter().find(|c| c.id == id).map(|c| self.view(c))
    }

    /// Msqids of the queues that have dimensions now (the capped selection), ascending.
    pub fn queue_ids(&self) -> &[i32] {
        &self.queue_ids
    }

    /// Adds one row to every chart from a snapshot taken at `snap.timestamp`; `queues` are the
    /// queues that have dimensions of their own (the others' dimensions are retired).
    pub fn update(&mut self, snap: &Snapshot, queues: &QueueChoice) {
        let keep = self.config.history_rows.max(1);
        // What the tick covers: the rates (seconds waited per second) divide by it.
        let time_before = Some(self.newest_time).filter(|t| !t.is_nan());
        let every = time_before.map_or(1.0, |t| snap.timestamp - t);
        let every = if every.is_finite() && every > 0.0 { every } else { 1.0 };
        // The same figures as the last row: this row repeats it, at no cost per dimension.
        let repeated = FIGURES.with_borrow_mut(|figures| {
            figures.clear();
            defs::figures(snap, queues, every, figures);
            let same = time_before.is_some() && *figures == self.figures;
            if !same {
                // Copied, not swapped: each registry keeps a buffer its own size.
                self.figures.clear();
                self.figures.extend_from_slice(figures);
            }
            same
        });
        if !repeated {
            self.settle();
        }
        self.time_before = time_before.unwrap_or(f64::NAN);
        self.times.push_back(snap.timestamp);
        self.newest_time = snap.timestamp;
        while self.times.len() > keep {
            self.times.pop_front();
        }
        let index = self.next_row;
        self.next_row = self.next_row.wrapping_add(1);
        // Every chart keeps the registry's rows but the census ones, which keep at most an
        // hour: their dimensions forget from the later first row.
        let first = self.next_row.wrapping_sub(self.times.len() as u32);
        let census_first = self.next_row.wrapping_sub(self.times.len().min(defs::CENSUS_HISTORY_ROWS) as u32);
        let at = Row { index, first, time: snap.timestamp };
        self.census_row = Row { first: census_first, ..at };
        if repeated {
            let time_before = time_before.expect("a row before");
            self.carry.get_or_insert(Carry { from: index, time_before });
            return;
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
        defs::fill(&mut self.charts, at, self.slots, snap, queues, every);
    }

    /// Fills the census's charts in the row [`Registry::update`] just started, from the
    /// namespace's latest census (`None`: no values this row). `changed`: whether this census
    /// is another than the last row's; if not, each census dimension carries its value into
    /// the row (what filling it again would give, without a lookup by name).
    pub fn update_holders(&mut self, pass: Option<owners::OwnerCensus<'_>>, changed: bool) {
        if pass.is_some() && !changed && self.holders_filled {
            let time_before = self.time_before;
            self.census_carry.get_or_insert(Carry { from: self.census_row.index, time_before });
            return;
        }
        // Through the row before this one, which the census fills now (or leaves empty).
        self.settle_census(self.census_row.index.wrapping_sub(1));
        if pass.is_some() || self.holders_filled {
            self.census_changed = self.census_row.time;
        }
        self.holders_filled = pass.is_some();
        defs::fill_holders(&mut self.charts, self.census_row, pass);
    }

    /// The time of the oldest row that every later row repeats, in every chart and variable,
    /// if the newest does; `None` if the newest row differs from the one before. A lookup
    /// whose window lay within the repeated rows finds the same as it did (see the alert
    /// engine).
    pub fn unchanged_since(&self) -> Option<f64> {
        let carried = self.carry?.time_before;
        // The census charts: unchanged since their last change, which the carry may predate.
        Some(carried.max(self.census_changed)).filter(|t| *t < self.census_row.time)
    }

    /// The most per-queue dimensions (the cap the pipeline chooses queues with).
    pub fn max_queue_dimensions(&self) -> usize {
        self.config.max_queue_dimensions
    }
}

#[cfg(test)]
mod tests;

//! The state machine. Each rule runs on every chart it matches (an *alert*). Every `every`
//! seconds, the alert computes `lookup`, `calc`, then `crit` and `warn`, and moves between
//! Netdata's statuses. A status change is logged at once. Its notification waits out the
//! rule's `delay`, and is dropped if the alert returns to the last notified status meanwhile.

use std::sync::Arc;

use ipcwatch_charts::{ChartView, Registry};
use serde_json::{json, Map, Value};

use crate::rules::{Expression, Rule, RuleKind};

/// An alert's chart id as shown: Netdata's, or its namespace's (`ipc_ns_N.ipc_semaphores`).
fn shown_chart(namespace: Option<&str>, id: &'static str) -> Arc<str> {
    match namespace {
        Some(inode) => ipcwatch_charts::namespace_chart_id(inode, id).into(),
        None => id.into(),
    }
}

/// Netdata's statuses, with Netdata's numbers (`$status >= $WARNING` depends on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Removed = -2,
    Undefined = -1,
    Uninitialized = 0,
    Clear = 1,
    Raised = 2,
    Warning = 3,
    Critical = 4,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Removed => "REMOVED",
            Status::Undefined => "UNDEFINED",
            Status::Uninitialized => "UNINITIALIZED",
            Status::Clear => "CLEAR",
            Status::Raised => "RAISED",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
        }
    }

    pub fn value(self) -> f64 {
        self as i32 as f64
    }

    fn from_constant(name: &str) -> Option<Status> {
        Some(match name {
            "REMOVED" => Status::Removed,
            "UNDEFINED" => Status::Undefined,
            "UNINITIALIZED" => Status::Uninitialized,
            "CLEAR" => Status::Clear,
            "RAISED" => Status::Raised,
            "WARNING" => Status::Warning,
            "CRITICAL" => Status::Critical,
            _ => return None,
        })
    }

    pub fn is_raised(self) -> bool {
        self >= Status::Raised
    }
}

/// The host the rules run on: `os`, `hosts` and `host labels` lines match against it.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostname: String,
    pub os: String,
    pub labels: Vec<(String, String)>,
}

impl Host {
    pub fn this_machine() -> Host {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Host {
            labels: vec![("_os".into(), "linux".into()), ("_hostname".into(), hostname.clone())],
            hostname,
            os: "linux".into(),
        }
    }

    fn admits(&self, rule: &Rule) -> bool {
        rule.os.as_ref().is_none_or(|p| p.matches(&self.os))
            && rule.hosts.as_ref().is_none_or(|p| p.matches(&self.hostname))
            && rule
                .host_labels
                .as_ref()
                .is_none_or(|p| self.labels.iter().any(|(k, v)| p.matches(&format!("{k}={v}"))))
    }
}

/// A notification to deliver (exec, Alertmanager): Netdata's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub host: String,
    pub unique_id: u64,
    pub alarm_id: u64,
    pub when: f64,
    pub name: String,
    pub chart: String,
    pub family: String,
    pub status: Status,
    pub old_status: Status,
    pub value: f64,
    pub old_value: f64,
    pub value_string: String,
    pub source: String,
    pub duration: f64,
    pub non_clear_duration: f64,
    pub units: String,
    pub summary: String,
    pub info: String,
    pub to: String,
    pub exec: Option<String>,
    pub class: String,
    pub type_: String,
    pub component: String,
    /// A re-send of an unchanged raised status (`repeat:`).
    pub repeat: bool,
    /// What the alert is about beyond its chart: the IPC namespace and what owns it
    /// (`ipc_namespace`, `container_id`, `pod`, …), for Alertmanager labels and exec.
    pub labels: Vec<(&'static str, String)>,
}

/// A status change, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub name: String,
    pub chart: String,
    pub old_status: Status,
    pub status: Status,
    pub value: f64,
    pub error: Option<String>,
    /// Seconds until its notification goes out (if one will).
    pub delay: f64,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub transitions: Vec<Transition>,
    pub notifications: Vec<Notification>,
}

/// One rule on one chart.
#[derive(Debug, Clone)]
pub struct Alert {
    pub rule: Arc<Rule>,
    /// The chart's id as shown: the table's (no allocation), or with the namespace's prefix
    /// (`ipc_ns_N.ipc_semaphores`, see [`Engine::set_namespace`]).
    pub chart: Arc<str>,
    /// The id of the chart in the registry that the alert is evaluated on.
    source: &'static str,
    pub family: &'static str,
    pub id: u64,
    pub status: Status,
    pub value: f64,
    pub old_value: f64,
    pub last_status_change: f64,
    pub last_updated: f64,
    pub next_update: f64,
    pub every: f64,
    /// Why the last evaluation gave no value.
    pub error: Option<String>,
    last_raised_since: f64,
    delay_up_current: f64,
    delay_down_current: f64,
    delay_up_to: f64,
    delay_last: f64,
    /// The notification waiting out its delay, and when it is due. Behind a pointer: a
    /// notification is large and rarely pending, every alert of every namespace carries the
    /// slot, and the alerts are copied when a board shares them.
    pending: Option<Arc<(f64, Notification)>>,
    last_notified: Option<Status>,
    last_notified_at: f64,
    last_repeat: f64,
    /// u32, not u64: it then packs with the statuses, and an alert (shared on its own) fits
    /// mimalloc's 224-byte class rather than the 256-byte one.
    times_repeat: u32,
}

pub struct Engine {
    host: Host,
    rules: Vec<Arc<Rule>>,
    /// Shared with the last [`Board`] until an evaluation changes them (copy on write): a
    /// namespace's alerts are held once, not once in the engine and once more in its view.
    /// Each alert is shared on its own, so a change copies the changed alerts and a list of
    /// pointers, not every alert: when a thousand namespaces' alerts change in one tick (the
    /// first census, a reload), the old boards live until the tick is published, and copying
    /// whole lists held 3 MB more for that moment.
    alerts: Arc<Vec<Arc<Alert>>>,
    /// The IPC namespace (inode) whose chart ids the alerts show; `None`: Netdata's own.
    namespace: Option<String>,
    update_every: f64,
    next_unique_id: u64,
    /// Bumped whenever anything an alert shows changes, so views are rebuilt only then.
    generation: u64,
    /// The chart count alerts were last matched against; `None` after the rules change.
    synced_charts: Option<usize>,
    /// When each alert (by index) is next due. Kept apart from the shared alerts so that an
    /// evaluation that changes nothing (a rule `every: 1s` over a quiet chart, in each of a
    /// thousand namespaces) copies nothing and rebuilds no view; the alerts' own
    /// `last_updated` and `next_update` then move only with a change.
    due_at: Vec<f64>,
    /// The earliest time at which an evaluation can do anything (an alert due, a notification
    /// to release): before it, [`Engine::evaluate`] returns at once. A thousand namespaces'
    /// rules that run every 10 s then cost nothing in nine ticks of ten.
    wake: f64,
    /// Per alert, while its last evaluation changed nothing and its rule is
    /// [`Rule::steady`]: where that evaluation's window began. While the registry's rows have
    /// repeated since before then ([`Registry::unchanged_since`]), evaluating again would
    /// find the same, so it is not done. NaN otherwise.
    quiet_from: Vec<f64>,
    /// [`Rule::steady`] per alert, found once.
    steady: Vec<bool>,
    /// Rules evaluated (computed), and whether quiet ones may be left alone: for tests.
    computed: u64,
    skip_quiet: bool,
}

/// The alerts as they stood after one evaluation: what /api/v1/alarms and /metrics show,
/// kept so that a request can render them without touching the engine.
#[derive(Debug, Clone, Default)]
pub struct Board {
    pub hostname: String,
    pub latest_unique_id: u64,
    /// Every alert, REMOVED ones included (views leave those out).
    pub alerts: Arc<Vec<Arc<Alert>>>,
    /// The namespace and owner labels of these alerts (empty for a single namespace).
    pub labels: Vec<(&'static str, String)>,
}

struct Scope<'a> {
    alert: &'a Alert,
    chart: ChartView<'a>,
    registry: &'a Registry,
    this: f64,
    now: f64,
    update_every: f64,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<f64> {
        let rule = &self.alert.rule;
        let lookup = rule.lookup.as_ref();
        match name {
            "this" => return Some(self.this),
            "status" => return Some(self.alert.status.value()),
            "now" => return Some(self.now),
            "after" => return Some(lookup.map_or(self.now, |l| self.now + l.after)),
            "before" => return Some(lookup.map_or(self.now, |l| self.now + l.before)),
            "last_collected_t" => return Some(self.chart.last_collected().unwrap_or(f64::NAN)),
            "update_every" => return Some(self.update_every),
            "green" => return Some(rule.green.unwrap_or(f64::NAN)),
            "red" => return Some(rule.red.unwrap_or(f64::NAN)),
            _ => {}
        }
        if let Some(s) = Status::from_constant(name) {
            return Some(s.value());
        }
        if let Some(d) = self.chart.dimension(name) {
            return Some(self.chart.last(d).unwrap_or(f64::NAN));
        }
        if let Some(v) = self.chart.variables.get(name) {
            return Some(*v);
        }
        // Other charts' variables act as host variables.
        self.registry.charts().find_map(|c| c.variables.get(name).copied())
    }
}

pub fn format_value(v: f64, units: &str) -> String {
    if v.is_nan() {
        return "-".into();
    }
    let s = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.7}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    format!("{s}{units}")
}

impl Engine {
    /// `update_every` is the charts' collection interval: the default `every`.
    /// Rules may be shared (`Arc<Rule>`) by many engines, one per IPC namespace.
    pub fn new<R: Into<Arc<Rule>>>(
        rules: impl IntoIterator<Item = R>,
        host: Host,
        update_every: f64,
    ) -> Engine {
        let mut e = Engine {
            host,
            rules: Vec::new(),
            alerts: Arc::default(),
            due_at: Vec::new(),
            wake: f64::NEG_INFINITY,
            quiet_from: Vec::new(),
            steady: Vec::new(),
            computed: 0,
            skip_quiet: true,
            namespace: None,
            update_every,
            next_unique_id: 1,
            generation: 0,
            synced_charts: None,
        };
        e.set_rules(rules);
        e
    }

    /// Changes whenever an alert's shown state changes (status, value, times, repeats).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A copy of the alerts for rendering.
    pub fn board(&self) -> Board {
        Board {
            hostname: self.host.hostname.clone(),
            latest_unique_id: self.next_unique_id - 1,
            alerts: self.alerts.clone(),
            labels: Vec::new(),
        }
    }

    /// Shows the alerts' charts as namespace `inode`'s (`ipc_ns_N.ipc_semaphores` for
    /// `system.ipc_semaphores`), or Netdata's for `None`: in views, transitions and
    /// notifications alike.
    pub fn set_namespace(&mut self, inode: Option<String>) {
        for a in Arc::make_mut(&mut self.alerts) {
            let a = Arc::make_mut(a);
            a.chart = shown_chart(inode.as_deref(), a.source);
        }
        self.namespace = inode;
        self.generation += 1;
    }

    /// Replaces the rules (a reload). Alerts whose rule name and chart survive keep their state.
    pub fn set_rules<R: Into<Arc<Rule>>>(&mut self, rules: impl IntoIterator<Item = R>) {
        self.rules = rules.into_iter().map(Into::into).filter(|r| self.host.admits(r)).collect();
        let rules = &self.rules;
        let alerts = Arc::make_mut(&mut self.alerts);
        alerts.retain(|a| rules.iter().any(|r| r.name == a.rule.name));
        for a in alerts.iter_mut() {
            if let Some(r) = rules.iter().find(|r| r.name == a.rule.name) {
                Arc::make_mut(a).rule = r.clone();
            }
        }
        self.reschedule();
        self.synced_charts = None;
        self.generation += 1;
    }

    /// Each alert's next evaluation from its published `next_update`, after the alerts
    /// changed (a reload, new charts): none is known to be quiet.
    fn reschedule(&mut self) {
        self.due_at = self.alerts.iter().map(|a| a.next_update).collect();
        self.quiet_from = vec![f64::NAN; self.alerts.len()];
        self.steady = self.alerts.iter().map(|a| a.rule.steady()).collect();
        self.wake = f64::NEG_INFINITY;
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn alerts(&self) -> &[Arc<Alert>] {
        &self.alerts
    }

    /// The charts a rule applies to.
    fn charts_for<'r>(rule: &Rule, registry: &'r Registry) -> Vec<ChartView<'r>> {
        // Our charts carry no labels: a `chart labels` pattern must accept the empty label set.
        if rule.chart_labels.as_ref().is_some_and(|p| !p.matches("")) {
            return Vec::new();
        }
        match rule.kind {
            RuleKind::Alarm => registry.chart(&rule.on).into_iter().collect(),
            RuleKind::Template => registry.charts().filter(|c| c.context == rule.on).collect(),
        }
    }

    /// Creates alerts for new rule × chart pairs; marks alerts whose chart is gone REMOVED.
    /// Charts come and go only with the registry's chart list, so this runs only when that
    /// list or the rules changed.
    fn sync(&mut self, registry: &Registry, now: f64, out: &mut Outcome) {
        if self.synced_charts == Some(registry.charts().len()) {
            return;
        }
        self.synced_charts = Some(registry.charts().len());
        self.generation += 1;
        let alerts = Arc::make_mut(&mut self.alerts);
        for rule in &self.rules {
            for chart in Self::charts_for(rule, registry) {
                if !alerts.iter().any(|a| a.rule.name == rule.name && a.source == chart.id) {
                    let id = self.next_unique_id;
                    self.next_unique_id += 1;
                    let every = rule
                        .every
                        .or(rule.lookup.as_ref().and_then(|l| l.every))
                        .unwrap_or(self.update_every);
                    alerts.push(Arc::new(Alert {
                        rule: rule.clone(),
                        chart: shown_chart(self.namespace.as_deref(), chart.id),
                        source: chart.id,
                        family: chart.family,
                        id,
                        status: Status::Uninitialized,
                        value: f64::NAN,
                        old_value: f64::NAN,
                        last_status_change: now,
                        last_updated: 0.0,
                        next_update: now,
                        every,
                        error: None,
                        last_raised_since: 0.0,
                        delay_up_current: rule.delay.up,
                        delay_down_current: rule.delay.down,
                        delay_up_to: 0.0,
                        delay_last: 0.0,
                        pending: None,
                        last_notified: None,
                        last_notified_at: 0.0,
                        last_repeat: 0.0,
                        times_repeat: 0,
                    }));
                }
            }
        }
        // A namespace's alerts are made once: no room for more in each of a thousand.
        alerts.shrink_to_fit();
        self.reschedule();
        let alerts = Arc::make_mut(&mut self.alerts);
        let host = &self.host.hostname;
        for a in alerts {
            if a.status != Status::Removed && registry.chart(a.source).is_none() {
                change_status(
                    Arc::make_mut(a),
                    Status::Removed,
                    f64::NAN,
                    None,
                    now,
                    host,
                    &mut self.next_unique_id,
                    out,
                );
            }
        }
    }

    /// Evaluates every alert that is due at `now` (Unix seconds) and releases the
    /// notifications whose delay has passed.
    pub fn evaluate(&mut self, registry: &Registry, now: f64) -> Outcome {
        let mut out = Outcome::default();
        self.sync(registry, now, &mut out);
        if now + 1e-6 < self.wake {
            return out;
        }
        let host = &self.host.hostname;
        let ids_before = self.next_unique_id;
        // Copied (from the board that shares them) only when an evaluation changes something
        // or a notification is waiting: most ticks of a container's engine change nothing.
        let due_at = &mut self.due_at;
        let unchanged_since = registry.unchanged_since();
        // The due alerts whose status, value or error changed: allocated only when one did
        // (kept in the engine, it would hold its largest size in each of a thousand).
        let mut changed: Vec<(usize, Status, f64, Option<String>)> = Vec::new();
        for (i, a) in self.alerts.iter().enumerate() {
            if now + 1e-6 < due_at[i] || a.status == Status::Removed {
                continue;
            }
            due_at[i] = now + a.every;
            if self.skip_quiet && unchanged_since.is_some_and(|since| self.quiet_from[i] >= since) {
                continue;
            }
            let Some(chart) = registry.chart(a.source) else { continue };
            let (status, value, error) = compute(a, chart, registry, now, self.update_every);
            self.computed += 1;
            let same_value = value.to_bits() == a.value.to_bits() || (value.is_nan() && a.value.is_nan());
            if status != a.status || !same_value || error != a.error {
                changed.push((i, status, value, error));
                self.quiet_from[i] = f64::NAN;
            } else if self.steady[i] {
                self.quiet_from[i] = now + a.rule.lookup.as_ref().map_or(0.0, |l| l.after);
            }
        }
        if changed.is_empty() && !self.alerts.iter().any(|a| release_due(a, now)) {
            self.wake = next_wake(&self.alerts, &self.due_at);
            return out;
        }
        let evaluated = !changed.is_empty();
        let alerts = Arc::make_mut(&mut self.alerts);
        for (i, status, value, error) in changed {
            let a = Arc::make_mut(&mut alerts[i]);
            a.last_updated = now;
            a.next_update = now + a.every;
            a.error = error.clone();
            if status != a.status {
                change_status(a, status, value, error, now, host, &mut self.next_unique_id, &mut out);
            } else {
                a.value = value;
            }
        }
        let mut released = false;
        for a in alerts.iter_mut().filter(|a| release_due(a, now)) {
            released |= release(Arc::make_mut(a), now, host, &mut self.next_unique_id, &mut out);
        }
        if evaluated || released || self.next_unique_id != ids_before {
            self.generation += 1;
        }
        self.wake = next_wake(&self.alerts, &self.due_at);
        out
    }

    /// `/api/v1/alarms` in Netdata's shape; `all` includes alerts that are not raised.
    pub fn alarms_json(&self, all: bool, now: f64) -> String {
        self.board().alarms_json(all, now)
    }

    /// What is watched is gone (its IPC namespace ended): every alert becomes REMOVED, and a
    /// raised one's resolution goes out at once, since no later evaluation will release it.
    pub fn end(&mut self, now: f64) -> Outcome {
        let mut out = Outcome::default();
        let host = &self.host.hostname;
        for a in Arc::make_mut(&mut self.alerts) {
            if a.status == Status::Removed {
                continue;
            }
            let a = Arc::make_mut(a);
            let was_notified_raised = a.last_notified.is_some_and(Status::is_raised);
            let old = a.status;
            a.old_value = a.value;
            a.status = Status::Removed;
            a.value = f64::NAN;
            a.last_status_change = now;
            a.pending = None;
            let id = self.next_unique_id;
            self.next_unique_id += 1;
            out.transitions.push(Transition {
                name: a.rule.name.clone(),
                chart: a.chart.to_string(),
                old_status: old,
                status: Status::Removed,
                value: f64::NAN,
                error: None,
                delay: 0.0,
            });
            if was_notified_raised && a.rule.to.as_deref() != Some("silent") {
                a.last_notified = Some(Status::Removed);
                out.notifications.push(notification(a, old, now, host, id, false));
            }
        }
        self.generation += 1;
        out
    }
}

impl Board {
    /// `/api/v1/alarms` in Netdata's shape; `all` includes alerts that are not raised.
    pub fn alarms_json(&self, all: bool, now: f64) -> String {
        alarms_json(&[self], all, now)
    }

    fn entries(&self, all: bool, alarms: &mut Map<String, Value>) {
        for a in self.alerts.iter().filter(|a| all || a.status.is_raised()) {
            let r = &a.rule;
            let expr = |e: &Option<Expression>| e.as_ref().map(|e| e.text.clone());
            let parsed = |e: &Option<Expression>| e.as_ref().map(|e| e.expr.to_string());
            let units = r.units.clone().unwrap_or_default();
            alarms.insert(
                format!("{}.{}", a.chart, r.name),
                json!({
                    "id": a.id,
                    "name": r.name,
                    "chart": a.chart,
                    "family": a.family,
                    "class": r.class.clone().unwrap_or_else(|| "Unknown".into()),
                    "component": r.component.clone().unwrap_or_else(|| "Unknown".into()),
                    "type": r.type_.clone().unwrap_or_else(|| "Unknown".into()),
                    "active": true,
                    "disabled": false,
                    "silenced": r.to.as_deref() == Some("silent"),
                    "exec": r.exec,
                    "recipient": r.to.clone().unwrap_or_else(|| "root".into()),
                    "source": r.source(),
                    "units": units,
                    "summary": r.summary.clone().unwrap_or_else(|| r.name.clone()),
                    "info": r.info.clone().unwrap_or_default(),
                    "status": a.status.name(),
                    "last_status_change": a.last_status_change as i64,
                    "last_updated": a.last_updated as i64,
                    "next_update": a.next_update as i64,
                    "update_every": a.every as i64,
                    "delay_up_duration": r.delay.up as i64,
                    "delay_down_duration": r.delay.down as i64,
                    "delay_max_duration": r.delay.max as i64,
                    "delay_multiplier": r.delay.multiplier,
                    "delay": a.delay_last as i64,
                    "delay_up_to_timestamp": a.delay_up_to as i64,
                    "warn_repeat_every": (r.repeat.warning as i64).to_string(),
                    "crit_repeat_every": (r.repeat.critical as i64).to_string(),
                    "value_string": format_value(a.value, &units),
                    "last_repeat": (a.last_repeat as i64).to_string(),
                    "times_repeat": a.times_repeat,
                    "calc": expr(&r.calc),
                    "calc_parsed": parsed(&r.calc),
                    "warn": expr(&r.warn),
                    "warn_parsed": parsed(&r.warn),
                    "crit": expr(&r.crit),
                    "crit_parsed": parsed(&r.crit),
                    "green": r.green,
                    "red": r.red,
                    "value": if a.value.is_finite() { json!(a.value) } else { Value::Null },
                }),
            );
            if let Some(Value::Object(entry)) = alarms.get_mut(&format!("{}.{}", a.chart, r.name)) {
                for (k, v) in &self.labels {
                    entry.insert(k.to_string(), json!(v));
                }
            }
        }
    }
}

/// `/api/v1/alarms` for several boards (one per IPC namespace) in one Netdata-shaped document.
pub fn alarms_json(boards: &[&Board], all: bool, now: f64) -> String {
    let mut alarms = Map::new();
    for b in boards {
        b.entries(all, &mut alarms);
    }
    let doc = json!({
        "hostname": boards.first().map_or("", |b| b.hostname.as_str()),
        "latest_alarm_log_unique_id": boards.iter().map(|b| b.latest_unique_id).sum::<u64>(),
        "status": true,
        "now": now as i64,
        "alarms": alarms,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

/// Runs lookup, calc, crit and warn for one alert.
fn compute(
    a: &Alert,
    chart: ChartView<'_>,
    registry: &Registry,
    now: f64,
    update_every: f64,
) -> (Status, f64, Option<String>) {
    let rule = &a.rule;
    let mut this = f64::NAN;
    if let Some(l) = &rule.lookup {
        this = chart.lookup(l.method, now, l.after, l.before, l.of.as_deref());
        if l.percentage {
            let total = chart.lookup(l.method, now, l.after, l.before, None);
            this = this * 100.0 / total;
        }
        if l.absolute {
            this = this.abs();
        }
    }
    let mut scope = Scope { alert: a, chart, registry, this, now, update_every };
    if let Some(calc) = &rule.calc {
        match calc.expr.evaluate(&|n: &str| scope.get(n)) {
            Ok(v) => scope.this = v,
            Err(e) => return (Status::Undefined, f64::NAN, Some(format!("calc: {e}"))),
        }
    } else if !scope.this.is_finite() {
        let why = if rule.lookup.is_some() { "lookup found no data" } else { "no lookup or calc" };
        return (Status::Undefined, f64::NAN, Some(why.into()));
    }
    let value = scope.this;
    let test = |e: &Option<Expression>| -> Option<Result<bool, String>> {
        e.as_ref().map(|e| {
            e.expr.evaluate(&|n: &str| scope.get(n)).map(|v| v != 0.0).map_err(|err| err.to_string())
        })
    };
    let (crit, warn) = (test(&rule.crit), test(&rule.warn));
    let status = match (&crit, &warn) {
        (Some(Ok(true)), _) => Status::Critical,
        (_, Some(Ok(true))) => Status::Warning,
        (Some(Ok(false)), _) | (_, Some(Ok(false))) | (None, None) => Status::Clear,
        _ => Status::Undefined,
    };
    let error = [("crit", crit), ("warn", warn)].into_iter().find_map(|(k, r)| match r {
        Some(Err(e)) => Some(format!("{k}: {e}")),
        _ => None,
    });
    (status, value, error)
}

fn notification(
    a: &Alert,
    old_status: Status,
    now: f64,
    host: &str,
    unique_id: u64,
    repeat: bool,
) -> Notification {
    let r = &a.rule;
    let units = r.units.clone().unwrap_or_default();
    Notification {
        host: host.to_string(),
        unique_id,
        alarm_id: a.id,
        when: now,
        name: r.name.clone(),
        chart: a.chart.to_string(),
        family: a.family.to_string(),
        status: a.status,
        old_status,
        value: a.value,
        old_value: a.old_value,
        value_string: format_value(a.value, &units),
        source: r.source(),
        duration: now - a.last_status_change,
        non_clear_duration: if a.status.is_raised() { now - a.last_raised_since } else { 0.0 },
        units,
        summary: r.summary.clone().unwrap_or_else(|| r.name.clone()),
        info: r.info.clone().unwrap_or_default(),
        to: r.to.clone().unwrap_or_else(|| "root".into()),
        exec: r.exec.clone(),
        class: r.class.clone().unwrap_or_else(|| "Unknown".into()),
        type_: r.type_.clone().unwrap_or_else(|| "Unknown".into()),
        component: r.component.clone().unwrap_or_else(|| "Unknown".into()),
        repeat,
        labels: Vec::new(),
    }
}

/// Records a status change and schedules its notification after Netdata's delay.
#[allow(clippy::too_many_arguments)]
fn change_status(
    a: &mut Alert,
    status: Status,
    value: f64,
    error: Option<String>,
    now: f64,
    host: &str,
    ids: &mut u64,
    out: &mut Outcome,
) {
    let old = a.status;
    let d = a.rule.delay;
    // A change after the previous delay ran out starts from the configured delays; one that
    // comes while a delay is still running multiplies them (bounded by max).
    if now > a.delay_up_to {
        a.delay_up_current = d.up;
        a.delay_down_current = d.down;
    } else {
        a.delay_up_current = (a.delay_up_current * d.multiplier).min(d.max);
        a.delay_down_current = (a.delay_down_current * d.multiplier).min(d.max);
    }
    let delay = if status > old { a.delay_up_current } else { a.delay_down_current };
    a.delay_last = delay;
    a.delay_up_to = now + delay;
    if status.is_raised() && !old.is_raised() {
        a.last_raised_since = now;
    }
    a.old_value = a.value;
    a.value = value;
    a.status = status;
    a.last_status_change = now;
    let id = *ids;
    *ids += 1;
    // A notification that [`release`] would drop is not built: an UNDEFINED one, or a CLEAR
    // or REMOVED one after nothing raised was sent. Most changes are these (every alert
    // leaving UNINITIALIZED), and a built one (half a kilobyte and a dozen strings) would
    // wait out its delay, minutes to an hour, in each of a thousand namespaces. The change
    // still replaces a notification waiting from an earlier one, as a new one would.
    let last_raised = a.last_notified.is_some_and(Status::is_raised);
    let may_send = match status {
        Status::Undefined | Status::Uninitialized => false,
        Status::Clear | Status::Removed => last_raised,
        Status::Raised | Status::Warning | Status::Critical => true,
    };
    a.pending = may_send.then(|| Arc::new((now + delay, notification(a, old, now, host, id, false))));
    out.transitions.push(Transition {
        name: a.rule.name.clone(),
        chart: a.chart.to_string(),
        old_status: old,
        status,
        value,
        error,
        delay,
    });
}

/// The repeat interval of a raised alert's notification (0: none).
fn repeat_every(a: &Alert) -> f64 {
    match a.last_notified {
        Some(Status::Warning) if a.status == Status::Warning => a.rule.repeat.warning,
        Some(Status::Critical) if a.status == Status::Critical => a.rule.repeat.critical,
        _ => 0.0,
    }
}

/// The earliest time at which an alert is due or [`release`] has something to do: the
/// times [`Engine::evaluate`] and [`release_due`] compare `now` with.
fn next_wake(alerts: &[Arc<Alert>], due_at: &[f64]) -> f64 {
    let mut wake = f64::INFINITY;
    for (a, due) in alerts.iter().zip(due_at) {
        if a.status != Status::Removed {
            wake = wake.min(*due);
        }
        wake = wake.min(match a.pending.as_deref() {
            Some((due, _)) => *due,
            None => match repeat_every(a) {
                every if every > 0.0 => a.last_notified_at + every,
                _ => f64::INFINITY,
            },
        });
    }
    wake
}

/// Whether [`release`] has anything to do at `now`.
fn release_due(a: &Alert, now: f64) -> bool {
    match a.pending.as_deref() {
        Some((due, _)) => now + 1e-6 >= *due,
        None => {
            let every = repeat_every(a);
            every > 0.0 && now + 1e-6 >= a.last_notified_at + every
        }
    }
}

/// Sends the pending notification once its delay has passed, if it still says something new;
/// re-sends raised ones per `repeat:`. Returns whether the alert changed.
fn release(a: &mut Alert, now: f64, host: &str, ids: &mut u64, out: &mut Outcome) -> bool {
    if let Some((due, _)) = a.pending.as_deref() {
        if now + 1e-6 < *due {
            return false;
        }
        let (_, n) = Arc::unwrap_or_clone(a.pending.take().expect("checked above"));
        let last = a.last_notified.unwrap_or(Status::Clear);
        let news = match n.status {
            // Netdata sends nothing for its internal statuses. We send REMOVED only to end a
            // raised notification (Alertmanager needs the resolution).
            Status::Removed => last.is_raised(),
            Status::Undefined | Status::Uninitialized => false,
            Status::Clear => last.is_raised() && !a.rule.no_clear_notification,
            s => s != last,
        };
        if news {
            a.last_notified = Some(n.status);
            a.last_notified_at = now;
            if a.rule.to.as_deref() != Some("silent") {
                out.notifications.push(Notification { when: now, ..n });
            }
        } else if n.status == Status::Clear && last.is_raised() {
            // no-clear-notification: the alert is over as far as delivery is concerned.
            a.last_notified = Some(Status::Clear);
        }
        return true;
    }
    let every = repeat_every(a);
    if every > 0.0 && now + 1e-6 >= a.last_notified_at + every {
        a.last_notified_at = now;
        a.last_repeat = now;
        a.times_repeat = a.times_repeat.saturating_add(1);
        let id = *ids;
        *ids += 1;
        if a.rule.to.as_deref() != Some("silent") {
            let old = a.status;
            out.notifications.push(notification(a, old, now, host, id, true));
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests;

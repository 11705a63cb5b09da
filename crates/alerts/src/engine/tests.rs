//! The state machine on a controllable clock: every evaluation is given its time.

use std::path::Path;

use ipcwatch_charts::{Registry, RegistryConfig};
use ipcwatch_sampler::{Limits, Semaphores, Snapshot};

use super::*;
use crate::rules;

fn host() -> Host {
    Host { hostname: "test".into(), os: "linux".into(), labels: vec![("_os".into(), "linux".into())] }
}

fn shipped() -> Vec<Rule> {
    let (rules, errors) = rules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../alerts/ipc.conf"));
    assert!(errors.is_empty());
    rules
}

fn only(name: &str) -> Vec<Rule> {
    shipped().into_iter().filter(|r| r.name == name).collect()
}

fn custom(text: &str) -> Vec<Rule> {
    let (rules, errors) = rules::parse(text, Path::new("t.conf"));
    assert!(errors.is_empty(), "{errors:?}");
    rules
}

/// A host with SEMMNI = 10 and SEMMNS = 20.
struct World {
    registry: Registry,
    engine: Engine,
}

impl World {
    fn new(rules: Vec<Rule>) -> World {
        World { registry: Registry::new(RegistryConfig::default()), engine: Engine::new(rules, host(), 1.0) }
    }

    /// Collects `arrays` arrays at time `t` and evaluates.
    fn at(&mut self, t: f64, arrays: u64) -> Outcome {
        self.sample(t, Some(arrays), Some(10))
    }

    fn sample(&mut self, t: f64, arrays: Option<u64>, semmni: Option<u64>) -> Outcome {
        let snap = Snapshot {
            timestamp: t,
            semaphores: arrays.map(|a| Semaphores { arrays: a, semaphores: a * 2, items: vec![] }),
            limits: Limits { semmni, semmns: Some(20), ..Default::default() },
            ..Default::default()
        };
        self.registry.update(&snap, &Default::default());
        self.engine.evaluate(&self.registry, t)
    }

    fn status(&self, name: &str) -> Status {
        self.engine.alerts().iter().find(|a| a.rule.name == name).unwrap().status
    }
}

fn sent(o: &Outcome) -> Vec<&'static str> {
    o.notifications.iter().map(|n| n.status.name()).collect()
}

const T0: f64 = 1_800_000_000.0;

#[test]
fn semaphore_arrays_used_raises_and_clears_like_netdata() {
    let mut w = World::new(only("semaphore_arrays_used"));
    assert!(w.engine.alerts().is_empty());
    let o = w.at(T0, 9);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Warning, "90% > 80%");
    assert_eq!(o.transitions[0].old_status, Status::Uninitialized);
    assert_eq!(o.transitions[0].value, 90.0);
    assert_eq!(sent(&o), ["WARNING"], "no delay up: notified at once");
    // Not evaluated again before `every: 10s`.
    let o = w.at(T0 + 5.0, 10);
    assert!(o.transitions.is_empty());
    assert_eq!(w.status("semaphore_arrays_used"), Status::Warning);
    let o = w.at(T0 + 10.0, 10);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Critical);
    assert_eq!(sent(&o), ["CRITICAL"]);
    // Hysteresis: CRITICAL holds down to 70%.
    w.at(T0 + 20.0, 8);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Critical);
    // Everything removed: CLEAR at the next evaluation, the notification 5 minutes later.
    let o = w.at(T0 + 30.0, 0);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Clear);
    assert_eq!(o.transitions[0].delay, 300.0);
    assert!(o.notifications.is_empty());
    for t in (40..330).step_by(10) {
        let o = w.at(T0 + t as f64, 0);
        assert!(o.notifications.is_empty(), "at +{t}");
    }
    let o = w.at(T0 + 330.0, 0);
    assert_eq!(sent(&o), ["CLEAR"]);
    assert_eq!(o.notifications[0].old_status, Status::Critical);
}

#[test]
fn hysteresis_between_70_and_80() {
    let rules = custom(
        "alarm: a\non: system.ipc_semaphore_arrays\ncalc: $arrays * 100 / $ipc_semaphores_arrays_max\n\
         warn: $this > (($status >= $WARNING) ? (70) : (80))\n",
    );
    let mut w = World::new(rules);
    let steps = [
        (7, Status::Clear),
        (8, Status::Clear),
        (9, Status::Warning),
        (8, Status::Warning),
        (7, Status::Clear),
        (8, Status::Clear),
        (9, Status::Warning),
    ];
    for (i, (arrays, want)) in steps.into_iter().enumerate() {
        w.at(T0 + i as f64, arrays);
        assert_eq!(w.status("a"), want, "step {i}: {arrays} arrays");
    }
}

#[test]
fn nan_and_infinite_values_are_undefined() {
    let mut w = World::new(only("semaphore_arrays_used"));
    // SEMMNI unknown (the limits collector failed): NaN limit.
    let o = w.sample(T0, Some(3), None);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Undefined);
    assert!(o.transitions[0].error.as_deref().unwrap().contains("not a number"), "{:?}", o.transitions);
    assert!(o.notifications.is_empty(), "UNDEFINED is not notified");
    // A limit of 0: infinity.
    w.sample(T0 + 10.0, Some(3), Some(0));
    assert_eq!(w.status("semaphore_arrays_used"), Status::Undefined);
    // A failed sem collector is not served as fresh: UNDEFINED, not the old value.
    w.sample(T0 + 20.0, Some(3), Some(10));
    assert_eq!(w.status("semaphore_arrays_used"), Status::Clear);
    w.sample(T0 + 30.0, None, Some(10));
    assert_eq!(w.status("semaphore_arrays_used"), Status::Undefined);
}

#[test]
fn delay_multiplies_while_flapping_and_sends_only_news() {
    let rules = custom(
        "alarm: a\non: system.ipc_semaphore_arrays\ncalc: $arrays\nwarn: $this > 5\n\
         delay: up 10s down 10s multiplier 2 max 30s\n",
    );
    let mut w = World::new(rules);
    let mut all = Vec::new();
    for (t, arrays) in [(0, 9), (5, 1), (10, 9)] {
        let o = w.at(T0 + t as f64, arrays);
        all.extend(sent(&o));
        let delays: Vec<f64> = o.transitions.iter().map(|x| x.delay).collect();
        match t {
            0 => assert_eq!(delays, [10.0]),
            5 => assert_eq!(delays, [20.0], "a change within the delay multiplies it"),
            _ => assert_eq!(delays, [30.0], "bounded by max"),
        }
    }
    for t in 11..40 {
        all.extend(sent(&w.at(T0 + t as f64, 9)));
    }
    assert!(all.is_empty(), "{all:?}");
    assert_eq!(sent(&w.at(T0 + 40.0, 9)), ["WARNING"]);
    // Back to CLEAR and straight back up within the delay: the CLEAR is never sent, and
    // the WARNING is not news.
    let mut all = Vec::new();
    for (t, arrays) in [(200, 1), (201, 9)] {
        all.extend(sent(&w.at(T0 + t as f64, arrays)));
    }
    for t in 202..300 {
        all.extend(sent(&w.at(T0 + t as f64, 9)));
    }
    assert!(all.is_empty(), "{all:?}");
}

#[test]
fn repeat_renotifies_while_raised_and_silent_sends_nothing() {
    let rules = custom(
        "alarm: a\non: system.ipc_semaphore_arrays\ncalc: $arrays\nwarn: $this > 5\nrepeat: warning 30s\n\n\
         alarm: quiet\non: system.ipc_semaphore_arrays\ncalc: $arrays\nwarn: $this > 5\nto: silent\n",
    );
    let mut w = World::new(rules);
    let mut times = Vec::new();
    for t in 0..=65 {
        for n in w.at(T0 + t as f64, 9).notifications {
            assert_eq!(n.name, "a");
            times.push((t, n.repeat));
        }
    }
    assert_eq!(times, [(0, false), (30, true), (60, true)]);
    assert_eq!(w.status("quiet"), Status::Warning);
}

#[test]
fn templates_lookups_and_host_filters() {
    let rules = custom(
        "template: avg\non: system.ipc_semaphore_arrays\nlookup: average -3s of arrays\nwarn: $this > 5\n\n\
         alarm: elsewhere\non: system.ipc_semaphore_arrays\nos: freebsd\ncalc: 1\n\n\
         alarm: ghost\non: system.no_such_chart\ncalc: 1\n",
    );
    let mut w = World::new(rules);
    assert_eq!(w.engine.rules().len(), 2, "os: freebsd does not load on linux");
    for (t, arrays) in [(0, 0), (1, 0), (2, 9)] {
        w.at(T0 + t as f64, arrays);
    }
    let a = &w.engine.alerts()[0];
    assert_eq!((a.rule.name.as_str(), &*a.chart), ("avg", "system.ipc_semaphore_arrays"));
    assert_eq!(a.value, 3.0, "average of 0, 0 and 9");
    assert_eq!(w.engine.alerts().len(), 1, "no chart, no alert");
}

#[test]
fn alarms_json_has_netdatas_shape() {
    let mut w = World::new(only("semaphore_arrays_used"));
    w.at(T0, 3);
    let all: serde_json::Value = serde_json::from_str(&w.engine.alarms_json(true, T0)).unwrap();
    let a = &all["alarms"]["system.ipc_semaphore_arrays.semaphore_arrays_used"];
    assert_eq!(a["status"], "CLEAR");
    assert_eq!(a["value"], 30.0);
    assert_eq!(a["value_string"], "30%");
    assert_eq!(a["update_every"], 10);
    assert_eq!(a["delay_down_duration"], 300);
    assert_eq!(a["delay_multiplier"], 1.5);
    // The highest count of the last 10 s, so a fill between evaluations is judged too.
    assert_eq!(a["calc_parsed"], "((${this} * 100) / ${ipc_semaphores_arrays_max})");
    assert_eq!(a["warn_parsed"], "(${this} > ((${status} >= ${WARNING}) ? 70 : 80))");
    assert_eq!(a["family"], "ipc semaphores");
    assert_eq!(all["hostname"], "test");
    let raised: serde_json::Value = serde_json::from_str(&w.engine.alarms_json(false, T0)).unwrap();
    assert!(raised["alarms"].as_object().unwrap().is_empty(), "without ?all only raised alerts");
}

#[test]
fn reload_keeps_state_of_surviving_alerts() {
    let mut w = World::new(only("semaphore_arrays_used"));
    w.at(T0, 9);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Warning);
    w.engine.set_rules(shipped());
    assert_eq!(w.status("semaphore_arrays_used"), Status::Warning);
    w.engine.set_rules(Vec::<Rule>::new());
    assert!(w.engine.alerts().is_empty());
}

#[test]
fn ending_resolves_raised_alerts_at_once() {
    let mut w =
        World::new(only("semaphore_arrays_used").into_iter().chain(only("message_queues_used")).collect());
    w.at(T0, 9);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Warning);
    let out = w.engine.end(T0 + 1.0);
    assert_eq!(w.status("semaphore_arrays_used"), Status::Removed);
    let n: Vec<_> = out.notifications.iter().map(|n| (n.name.as_str(), n.status, n.old_status)).collect();
    assert_eq!(
        n,
        [("semaphore_arrays_used", Status::Removed, Status::Warning)],
        "only the raised one is resolved"
    );
    assert!(w.engine.end(T0 + 2.0).notifications.is_empty(), "once");
}

/// Rules left alone while their charts' rows repeat (and their last evaluation changed
/// nothing) end exactly as rules evaluated every time: statuses, values, errors, times and
/// notifications, through changes, gaps and long repeats.
#[test]
fn quiet_rules_are_left_alone_and_nothing_shows_it() {
    let mut rules = shipped();
    rules.extend(custom(
        "alarm: hysteresis\non: system.ipc_semaphore_arrays\nlookup: average -10s unaligned of arrays\n\
         every: 1s\nwarn: $this > (($status >= $WARNING) ? (4) : (6))\ndelay: down 3s\n\n\
         alarm: clock\non: system.ipc_semaphore_arrays\ncalc: $now - $last_collected_t + $arrays\nevery: 1s\nwarn: $this > 5\n\n\
         alarm: summed\non: system.ipc_semaphore_arrays\nlookup: sum -5s unaligned of arrays\nevery: 2s\nwarn: $this > 20\n",
    ));
    let (mut skipping, mut every_time) = (World::new(rules.clone()), World::new(rules));
    every_time.engine.skip_quiet = false;
    // A step down right after a step up: `max -10s` keeps the higher value for 10 s while the
    // rows already repeat, which only the window's start tells apart.
    let arrays = |s: u64| match s {
        0..=29 => Some(2),
        30..=34 => Some(7),
        35..=99 => Some(3),
        100..=104 => None,
        _ => Some(1),
    };
    let seen = |w: &World| -> Vec<String> {
        w.engine
            .alerts()
            .iter()
            .map(|a| {
                format!(
                    "{} {:?} {:?} {:?} {} {}",
                    a.rule.name, a.status, a.value, a.error, a.last_updated, a.next_update
                )
            })
            .collect()
    };
    for s in 0..130u64 {
        let t = T0 + s as f64;
        let a = skipping.sample(t, arrays(s), Some(10));
        let b = every_time.sample(t, arrays(s), Some(10));
        assert_eq!(seen(&skipping), seen(&every_time), "second {s}");
        let said =
            |o: &Outcome| o.notifications.iter().map(|n| (n.name.clone(), n.status)).collect::<Vec<_>>();
        assert_eq!(said(&a), said(&b), "second {s}");
    }
    // The clock and sum rules are evaluated every time; the steady ones mostly not.
    assert!(
        skipping.engine.computed + 120 < every_time.engine.computed,
        "{} of {} evaluations made",
        skipping.engine.computed,
        every_time.engine.computed
    );
}

#[test]
fn a_change_copies_only_the_changed_alert_and_builds_no_notification_it_would_drop() {
    let rules = custom(
        "alarm: a\non: system.ipc_semaphore_arrays\ncalc: $arrays\nwarn: $this > 5\ndelay: down 1h\n\n\
         alarm: b\non: system.ipc_semaphores\ncalc: 1\nwarn: $this > 100\ndelay: down 1h\n",
    );
    let mut w = World::new(rules);
    w.at(T0, 1);
    // Leaving UNINITIALIZED for CLEAR sends nothing, so nothing waits out the hour.
    assert!(w.engine.alerts().iter().all(|a| a.status == Status::Clear && a.pending.is_none()));
    let before = w.engine.board();
    assert_eq!(sent(&w.at(T0 + 1.0, 9)), ["WARNING"], "a: 9 > 5; b stays 1");
    let after = w.engine.board();
    let same = |name: &str| {
        let find = |b: &Board| b.alerts.iter().find(|a| a.rule.name == name).unwrap().clone();
        Arc::ptr_eq(&find(&before), &find(&after))
    };
    assert!(!same("a"), "the changed alert is a copy: the old board still shows CLEAR");
    assert!(same("b"), "the unchanged alert is shared by both boards");
    assert_eq!(before.alerts.iter().find(|a| a.rule.name == "a").unwrap().status, Status::Clear);
    // The CLEAR after a sent WARNING still waits out its delay, and is sent.
    assert!(sent(&w.at(T0 + 2.0, 1)).is_empty());
    assert!(w.engine.alerts().iter().find(|a| a.rule.name == "a").unwrap().pending.is_some());
    assert_eq!(sent(&w.at(T0 + 3602.0, 1)), ["CLEAR"]);
}

#[test]
fn an_alert_with_its_reference_counts_fits_224_bytes() {
    // Each alert has its own allocation (shared with the boards on its own): 16 bytes of
    // counts and the alert. mimalloc's size classes step from 224 to 256 bytes here, and a
    // thousand namespaces hold 14 alerts each.
    assert!(std::mem::size_of::<Alert>() + 16 <= 224, "{}", std::mem::size_of::<Alert>());
}

//! The tick on fed snapshots: no kernel, no thread, no HTTP.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ipcwatch_alerts::Status;
use ipcwatch_sampler::{
    CollectorReport, Key, Limits, MessageQueue, MessageQueues, Origin, Semaphores, SharedMemory, Snapshot,
};

use super::*;

const T0: f64 = 1_700_000_000.0;

fn queue(id: i32, bytes: u64) -> MessageQueue {
    MessageQueue {
        key: Key(id * 10),
        id,
        owner: 0,
        creator: 0,
        mode: 0o600,
        messages: bytes / 10,
        bytes,
        capacity_bytes: Some(16384),
        last_send_pid: 0,
        last_recv_pid: 0,
        last_send_time: 0,
        last_recv_time: 0,
        changed_time: 0,
    }
}

fn snap(t: f64, arrays: u64, queues: Vec<MessageQueue>) -> Snapshot {
    let report = |name| CollectorReport {
        name,
        ok: true,
        source: Origin::Syscall,
        duration_seconds: 0.0,
        error: None,
    };
    Snapshot {
        timestamp: t,
        page_size: 4096,
        semaphores: Some(Semaphores { arrays, semaphores: arrays, items: vec![] }),
        message_queues: Some(MessageQueues {
            queues: queues.len() as u64,
            items: queues,
            ..Default::default()
        }),
        shared_memory: Some(SharedMemory::default()),
        limits: Limits {
            semmni: Some(10),
            semmns: Some(100),
            msgmni: Some(100),
            shmmni: Some(100),
            shmall: Some(1 << 20),
            ..Default::default()
        },
        collectors: vec![report("sem"), report("msg"), report("shm"), report("limits")],
        ..Default::default()
    }
}

/// A pipeline fed from a queue of snapshots the test can push to.
fn fed(config: PipelineConfig) -> (Pipeline, Arc<Mutex<VecDeque<Snapshot>>>) {
    let feed = Arc::new(Mutex::new(VecDeque::new()));
    let source = feed.clone();
    let next = move || source.lock().unwrap().pop_front().expect("a snapshot was fed");
    let (rules, errors) = rules::builtin();
    assert!(errors.is_empty(), "{errors:?}");
    let host = Host { hostname: "test".into(), os: "linux".into(), labels: vec![] };
    (Pipeline::new(Box::new(next), config, rules, host), feed)
}

fn alert<'a>(p: &'a Published, name: &str) -> &'a ipcwatch_alerts::Alert {
    p.alerts.alerts.iter().find(|a| a.rule.name == name).unwrap()
}

#[test]
fn rules_run_only_when_their_every_is_due() {
    let (mut p, feed) = fed(PipelineConfig { probes: true, ..Default::default() });
    let mut evaluated_at = Vec::new();
    let mut boards = Vec::new();
    for s in 0..25 {
        let t = T0 + s as f64;
        // One more array every 10 s: each evaluation finds a new value (an alert's
        // last_updated moves with a change only).
        feed.lock().unwrap().push_back(snap(t, 1 + s / 10, vec![]));
        let tick = p.tick();
        let a = alert(&tick.published, "semaphore_arrays_used");
        if a.last_updated == t {
            evaluated_at.push(s);
        }
        boards.push(tick.published.alerts.clone());
    }
    // The shipped rules say `every: 10s`.
    assert_eq!(evaluated_at, [0, 10, 20]);
    // Between evaluations the alert view is not rebuilt: the same Arc is handed on, though
    // ipc_allocation_refused (`every: 1s`) is evaluated every tick: finding nothing new, it
    // copies nothing.
    let every = boards[9].alerts.iter().find(|a| a.rule.name == "ipc_allocation_refused").map(|a| a.every);
    assert_eq!(every, Some(1.0));
    assert!(Arc::ptr_eq(&boards[1], &boards[9]));
    assert!(!Arc::ptr_eq(&boards[9], &boards[10]));
}

#[test]
fn a_raised_alert_is_published_and_notified() {
    let (mut p, feed) = fed(PipelineConfig::default());
    feed.lock().unwrap().push_back(snap(T0, 9, vec![]));
    let tick = p.tick();
    let a = alert(&tick.published, "semaphore_arrays_used");
    assert_eq!((a.status, a.value), (Status::Warning, 90.0), "warn above 80, crit above 90");
    let n: Vec<_> = tick.notifications.iter().map(|n| (n.name.as_str(), n.status)).collect();
    assert_eq!(n, [("semaphore_arrays_used", Status::Warning)], "no up delay in the shipped rule");
    assert_eq!(tick.published.alerts.alarms_json(false, T0).matches("\"status\": \"WARNING\"").count(), 1);
}

#[test]
fn the_queue_choice_is_the_same_for_charts_and_outputs() {
    let config = PipelineConfig { max_queue_dimensions: 2, ..Default::default() };
    let (mut p, feed) = fed(config);
    feed.lock().unwrap().push_back(snap(
        T0,
        0,
        vec![queue(1, 10), queue(2, 500), queue(3, 300), queue(4, 0)],
    ));
    let tick = p.tick();
    let chosen: Vec<i32> = tick.published.queues.queues().iter().map(|q| q.id).collect();
    assert_eq!(chosen, [2, 3], "the biggest two, in msqid order");
    assert_eq!(&*tick.published.queues.queues()[0].owner, "root");
    {
        let registry = p.registry();
        let chart = registry.chart(ipcwatch_charts::QUEUE_BYTES_CHART).unwrap();
        let dims: Vec<&str> = chart.dimensions.iter().map(|d| &*d.id).collect();
        assert_eq!(dims, ["2", "3"]);
    }

    // Queue 2 goes; queue 1 takes its place in both.
    feed.lock().unwrap().push_back(snap(T0 + 1.0, 0, vec![queue(1, 10), queue(3, 300), queue(4, 0)]));
    let tick = p.tick();
    let chosen: Vec<i32> = tick.published.queues.queues().iter().map(|q| q.id).collect();
    assert_eq!(chosen, [1, 3]);
    let registry = p.registry();
    let chart = registry.chart(ipcwatch_charts::QUEUE_BYTES_CHART).unwrap();
    let mut dims: Vec<&str> = chart.dimensions.iter().map(|d| &*d.id).collect();
    dims.sort();
    assert_eq!(dims, ["1", "3"]);
}

#[test]
fn a_failed_collector_is_counted_once_per_tick() {
    let (mut p, feed) = fed(PipelineConfig::default());
    let mut bad = snap(T0, 1, vec![]);
    bad.semaphores = None;
    bad.collectors[0].ok = false;
    bad.collectors[0].error = Some("semctl(SEM_INFO) failed".into());
    feed.lock().unwrap().extend([bad.clone(), bad, snap(T0 + 2.0, 1, vec![])]);
    assert_eq!(p.tick().published.failed_samples, 1);
    assert_eq!(p.tick().published.failed_samples, 2);
    let last = p.tick();
    assert_eq!(last.published.failed_samples, 2);
    assert_eq!(last.published.slow_samples, 0);
}

#[test]
fn a_reload_keeps_surviving_alerts_and_applies_the_new_cap() {
    let (mut p, feed) = fed(PipelineConfig::default());
    feed.lock().unwrap().push_back(snap(T0, 9, vec![queue(1, 1), queue(2, 2)]));
    p.tick();
    let feed2 = feed.clone();
    let next = move || feed2.lock().unwrap().pop_front().unwrap();
    let (rules, _) = rules::builtin();
    p.reconfigure(Box::new(next), PipelineConfig { max_queue_dimensions: 1, ..Default::default() }, rules);
    feed.lock().unwrap().push_back(snap(T0 + 1.0, 9, vec![queue(1, 1), queue(2, 2)]));
    let tick = p.tick();
    assert_eq!(tick.published.queues.queues().len(), 1);
    assert_eq!(alert(&tick.published, "semaphore_arrays_used").status, Status::Warning);
}

#[test]
fn a_missing_rules_path_is_an_error_not_silence() {
    let e = rules::load(Some(std::path::Path::new("/nonexistent/rules"))).unwrap_err();
    assert_eq!(e.to_string(), "rules: /nonexistent/rules: no such file or folder");
}

#[test]
fn a_small_alarm_log_holds_no_more_room_than_its_entries() {
    let (mut p, feed) = fed(PipelineConfig::default());
    feed.lock().unwrap().push_back(snap(T0, 9, vec![]));
    let first = p.tick().published;
    let (len, capacity) = {
        let log = first.alarm_log.lock().unwrap();
        (log.len(), log.capacity())
    };
    // Every alert leaves UNINITIALIZED in the first tick: a dozen entries, no spare room.
    assert!(len >= 10, "{len}");
    assert_eq!(capacity, len);
    // A later transition adds its own room only.
    feed.lock().unwrap().push_back(snap(T0 + 10.0, 1, vec![]));
    let later = p.tick().published;
    let log = later.alarm_log.lock().unwrap();
    assert!(log.len() > len, "semaphore_arrays_used went back to CLEAR: {}", log.len());
    assert_eq!(log.capacity(), log.len());
}

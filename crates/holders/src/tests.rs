//! The census on fed objects: owner ranking and its bound, and the stale rules.

use std::path::Path;

use ipcwatch_sampler::{
    Key, MessageQueue, MessageQueues, Segment, SemaphoreArray, Semaphores, SharedMemory, Snapshot,
};

use crate::{Census, Gathered, HoldersConfig, Thresholds};

const NOW: i64 = 1_800_000_000;

fn array(id: i32, owner: u32, nsems: u64, last_op: i64) -> SemaphoreArray {
    SemaphoreArray {
        key: Key(id),
        id,
        owner,
        creator: owner,
        mode: 0o600,
        semaphores: nsems,
        last_op_time: last_op,
        changed_time: last_op,
    }
}

fn queue(id: i32, owner: u32, bytes: u64, pid: i32, at: i64) -> MessageQueue {
    MessageQueue {
        key: Key(id),
        id,
        owner,
        creator: owner,
        mode: 0o600,
        messages: 1,
        bytes,
        capacity_bytes: Some(16384),
        last_send_pid: pid,
        last_recv_pid: 0,
        last_send_time: at,
        last_recv_time: 0,
        changed_time: at,
    }
}

fn snapshot(arrays: Vec<SemaphoreArray>, queues: Vec<MessageQueue>, segments: Vec<Segment>) -> Snapshot {
    Snapshot {
        semaphores: Some(Semaphores { arrays: arrays.len() as u64, semaphores: 0, items: arrays }),
        message_queues: Some(MessageQueues { items: queues, ..Default::default() }),
        shared_memory: Some(SharedMemory { items: segments, ..Default::default() }),
        ..Default::default()
    }
}

/// A pid no process has: a child that was reaped.
fn dead_pid() -> i32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id() as i32
}

fn census(max_owners: usize) -> Census {
    Census::new(Path::new("/proc"), HoldersConfig { thresholds: Thresholds::both(3600), max_owners })
}

#[test]
fn a_hundred_owners_are_reported_as_the_top_twenty_and_other() {
    // Owner u holds u + 1 arrays of 2 semaphores: owners 99 down to 80 are the top 20.
    let mut arrays = Vec::new();
    for owner in 0..100u32 {
        for _ in 0..=owner {
            arrays.push(array(arrays.len() as i32, 1_000_000 + owner, 2, NOW));
        }
    }
    let total = arrays.len() as u64;
    let pids = vec![None; arrays.len()];
    let pass = census(20).pass(
        &Gathered::from_parts(snapshot(arrays, vec![], vec![]), pids),
        NOW,
        Thresholds::both(3600),
    );
    assert_eq!(pass.owners.len(), 21);
    let top: Vec<u32> = pass.owners[..20].iter().map(|o| o.uid.unwrap()).collect();
    assert_eq!(top, (80..100).rev().map(|o| 1_000_000 + o).collect::<Vec<_>>());
    let other = &pass.owners[20];
    assert_eq!((other.uid, &*other.name), (None, "other"));
    // Nothing is lost in the folding: owners 0..80 hold 1 + 2 + ... + 80 arrays.
    assert_eq!(other.usage.semaphore_arrays, (1..=80).sum::<u64>());
    assert_eq!(pass.owners.iter().map(|o| o.usage.semaphore_arrays).sum::<u64>(), total);
    assert_eq!(pass.totals.semaphores, total * 2);
    assert_eq!(pass.pids_unknown, total, "no pids given: none can be judged stale");
    assert!(pass.stale.is_empty());
}

#[test]
fn stale_needs_both_age_and_every_last_user_gone() {
    let (dead, me) = (dead_pid(), std::process::id() as i32);
    let old = NOW - 7200;
    let arrays = vec![
        array(1, 0, 2, old),      // old, both users dead: stale
        array(2, 0, 2, old),      // old, one user alive: in use
        array(3, 0, 1, NOW - 60), // users dead, but used a minute ago: not yet
        array(4, 0, 1, old),      // pids unreadable: never stale
    ];
    let pids = vec![Some(vec![dead, 0]), Some(vec![dead, me]), Some(vec![dead]), None];
    let queues = vec![queue(10, 0, 500, dead, old), queue(11, 0, 500, me, old)];
    let mut orphan = Segment::new(Key(20), 20, 0, 0o600, 4096, 0, dead, dead);
    orphan.changed_time = old;
    let mut kept_by_creator = Segment::new(Key(21), 21, 0, 0o600, 8192, 0, me, dead);
    kept_by_creator.changed_time = old;
    let mut young = Segment::new(Key(22), 22, 0, 0o600, 8192, 0, dead, dead);
    young.changed_time = NOW - 10;
    let mut attached = Segment::new(Key(23), 23, 0, 0o600 | 0o1000, 1 << 20, 1, me, me);
    attached.changed_time = old;
    let snap = snapshot(arrays, queues, vec![orphan, kept_by_creator, young, attached]);
    let pass = census(20).pass(&Gathered::from_parts(snap, pids), NOW, Thresholds::both(3600));

    let listed: Vec<(String, i32, bool)> =
        pass.stale.iter().map(|o| (o.kind.to_string(), o.id, o.prunable)).collect();
    assert_eq!(
        listed,
        vec![
            ("sem".into(), 1, true),
            ("msg".into(), 10, true),
            ("shm".into(), 20, true),
            // Orphaned (nothing attached for an hour), but its creator runs: never pruned.
            ("shm".into(), 21, false),
        ]
    );
    assert!(pass.stale.iter().all(|o| o.idle_seconds == 7200));
    let u = &pass.owners[0].usage;
    assert_eq!((u.stale_semaphore_arrays, u.stale_message_queues, u.stale_message_bytes), (1, 1, 500));
    assert_eq!((u.orphaned_segments, u.orphaned_bytes), (2, 4096 + 8192));
    assert_eq!((u.destroyed_attached_segments, u.destroyed_attached_bytes), (1, 1 << 20));
    assert_eq!(pass.pids_unknown, 1);
    // Pid 0 (never used) is not listed as a user.
    assert_eq!(pass.stale[0].pids.len(), 1);
}

#[test]
fn a_removed_object_counts_only_if_a_process_that_used_it_still_runs() {
    let (dead, me) = (dead_pid(), std::process::id() as i32);
    let mut c = census(20);
    let t = Thresholds::both(3600);
    let snap = snapshot(vec![array(1, 7, 1, NOW), array(2, 7, 1, NOW)], vec![], vec![]);
    c.pass(&Gathered::from_parts(snap, vec![Some(vec![me]), Some(vec![dead])]), NOW, t);
    // Both gone: only the one whose user still runs is a removal in use.
    let pass = c.pass(&Gathered::from_parts(snapshot(vec![], vec![], vec![]), vec![]), NOW + 60, t);
    assert_eq!(pass.removed_in_use.len(), 1);
    assert_eq!((pass.removed_in_use[0].uid, pass.removed_in_use[0].total), (Some(7), 1));
    // A census whose semaphore walk failed compares nothing.
    let snap = snapshot(vec![array(3, 7, 1, NOW)], vec![], vec![]);
    c.pass(&Gathered::from_parts(snap, vec![Some(vec![me])]), NOW + 120, t);
    let failed = Snapshot { semaphores: None, ..snapshot(vec![], vec![], vec![]) };
    let pass = c.pass(&Gathered::from_parts(failed, vec![]), NOW + 180, t);
    assert_eq!(pass.removed_in_use[0].total, 1);
}

#[test]
fn growth_is_the_arrays_gained_over_the_last_hour() {
    let mut c = census(20);
    let t = Thresholds::both(3600);
    let arrays = |n: i32| (0..n).map(|i| array(i, 5, 1, NOW)).collect::<Vec<_>>();
    let pass_with = |c: &mut Census, n: i32, at: i64| {
        let g = Gathered::from_parts(snapshot(arrays(n), vec![], vec![]), vec![None; n as usize]);
        c.pass(&g, at, t).owners[0].semaphore_arrays_growth_1h
    };
    assert_eq!(pass_with(&mut c, 10, NOW), 0);
    assert_eq!(pass_with(&mut c, 12, NOW + 600), 2);
    assert_eq!(pass_with(&mut c, 17, NOW + 1200), 7);
    // An hour after the low point, it no longer counts: growth since NOW + 600.
    assert_eq!(pass_with(&mut c, 17, NOW + 3700), 5);
    assert_eq!(pass_with(&mut c, 3, NOW + 3800), 0, "shrinking is not growth");
}

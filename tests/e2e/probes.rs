//! The eBPF probes against the real kernel: refusals and waits made in throw-away namespaces
//! are counted for that namespace only. Loading BPF needs root (CAP_BPF and CAP_PERFMON):
//! tests/run.sh sets IPCWATCH_TEST_BPF=require when it runs as root, and then a probe that
//! cannot load fails the test; otherwise these tests say they are skipped, and why.

use std::time::{Duration, Instant};

use ipcwatch_probes::Probes;
use ipcwatch_sampler::probes::CallKind;

use crate::ns::Namespace;

/// The probes, or `None` (with the reason printed) where BPF is not permitted and not required.
pub fn probes_or_skip(test: &str) -> Option<Probes> {
    match Probes::load(10) {
        Ok(p) => Some(p),
        Err(e) if std::env::var("IPCWATCH_TEST_BPF").as_deref() != Ok("require") => {
            eprintln!("SKIPPED {test}: eBPF probes cannot load here ({e}); tests/run.sh runs it as root");
            None
        }
        Err(e) => panic!("IPCWATCH_TEST_BPF=require, and the probes cannot load: {e}"),
    }
}

fn inode(ns: &mut Namespace) -> u64 {
    ns.cmd("check-namespace").trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap()
}

/// Refreshes until `done` holds (the kernel counts at once; the ring buffer is read per refresh).
fn refreshed_until(probes: &mut Probes, done: impl Fn(&Probes) -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        probes.refresh(&|_| true).expect("the maps read");
        if done(probes) || Instant::now() > until {
            return done(probes);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refused_allocations_are_counted_per_namespace_with_who_asked() {
    let Some(mut probes) = probes_or_skip("refused_allocations_are_counted_per_namespace_with_who_asked")
    else {
        return;
    };
    let mut ns = Namespace::new("probe-refusals");
    let mut other = Namespace::new("probe-quiet");
    let (me, quiet) = (inode(&mut ns), inode(&mut other));
    ns.cmd("sysctl sem 250 1000 32 4");
    ns.cmd("sysctl msgmni 2");
    ns.cmd("sysctl shmmni 3");
    ns.cmd("mq-sysctl queues_max 1");
    assert_eq!(ns.cmd("try sem 10"), "4 6");
    assert_eq!(ns.cmd("try msg 5"), "2 3");
    assert_eq!(ns.cmd("try shm 5 4096"), "3 2");
    assert_eq!(ns.cmd("try-mq 3"), "1 2");
    let counted = |p: &Probes| {
        let n = p.namespace(me);
        [
            n.refused(CallKind::Sem),
            n.refused(CallKind::Msg),
            n.refused(CallKind::Shm),
            n.refused(CallKind::Mq),
        ]
    };
    assert!(refreshed_until(&mut probes, |p| counted(p) == [6, 3, 2, 2]), "counted {:?}", counted(&probes));
    let n = probes.namespace(me);
    assert!(n.refusals.iter().all(|r| r.errno == 28), "all ENOSPC: {:?}", n.refusals);
    assert_eq!(probes.namespace(quiet).refusals, vec![], "the quiet namespace has none");
    let mine: Vec<_> = probes.recent().iter().filter(|f| f.ipc_namespace == me).collect();
    assert_eq!(mine.len(), 13, "{mine:?}");
    let first = mine[0];
    assert_eq!((first.kind, first.errno, first.comm.as_str()), (CallKind::Sem, 28, "ipcwatch-testki"));
    assert_eq!(first.pid, ns.pid(), "the driver made the calls");
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - first.time_ms).abs() < 10_000, "a time near now: {} vs {now_ms}", first.time_ms);
    assert_eq!(n.last_failure.as_ref().map(|f| f.kind), Some(CallKind::Mq), "the latest is the mq_open");
}

#[test]
fn a_blocked_semop_and_a_blocked_msgsnd_add_their_wait_to_their_namespace() {
    let Some(mut probes) =
        probes_or_skip("a_blocked_semop_and_a_blocked_msgsnd_add_their_wait_to_their_namespace")
    else {
        return;
    };
    let mut ns = Namespace::new("probe-waits");
    let me = inode(&mut ns);
    let sem = ns.num("sem 0 1");
    let queue = ns.num("msg 0");
    ns.cmd(&format!("capacity {queue} 100"));
    assert_eq!(ns.cmd(&format!("fill {queue} 50")), "2");
    assert_eq!(ns.cmd(&format!("try-send {queue} 50 3")), "3");
    let started = Instant::now();
    assert_eq!(ns.cmd(&format!("sem-wait {sem} 2000")), "timeout");
    ns.cmd(&format!("send-wait {queue} 50 1500"));
    let took = started.elapsed().as_secs_f64();
    assert!(refreshed_until(&mut probes, |p| p.namespace(me).send_wait.sum_ns > 1_000_000_000));
    let n = probes.namespace(me);
    let sem_wait = n.semaphore_wait.sum_ns as f64 / 1e9;
    let send_wait = n.send_wait.sum_ns as f64 / 1e9;
    assert!((1.95..2.3).contains(&sem_wait), "semop waited {sem_wait} s");
    assert!((1.45..1.8).contains(&send_wait), "msgsnd waited {send_wait} s (of {took} s in all)");
    assert_eq!(n.semaphore_wait.count(), 1);
    // The fill's 2 sends and the refused one that found the queue full, the 3 refused, the
    // one that waited.
    assert_eq!(n.send_wait.count(), 7);
    assert_eq!(n.send_refused, 4);
    let on_queue =
        n.objects.iter().find(|o| o.kind == CallKind::Msg && i64::from(o.id) == queue).expect("the queue");
    assert_eq!((on_queue.send_refused, on_queue.waits), (4, 1), "{on_queue:?}");
    let on_sem =
        n.objects.iter().find(|o| o.kind == CallKind::Sem && i64::from(o.id) == sem).expect("the array");
    assert_eq!(on_sem.waits, 1);
}

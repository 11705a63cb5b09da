//! One census of a namespace: every object, who owns it, and whether anyone still uses it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ipcwatch_charts::owners::{OwnerUsage, Usage};
use ipcwatch_sampler::{objects, Key, Kind, Sampler, Snapshot, UserNames};
use serde::Serialize;

use crate::processes::{Alive, Processes};
use crate::{HoldersConfig, Thresholds};

/// Most semaphore pids read in one census (one `semctl` each): beyond it, the rest of the
/// arrays' users are unknown and those arrays are never called stale. 32,000 arrays of 32
/// semaphores fit.
pub const MAX_SEMAPHORE_PIDS: usize = 1 << 20;

/// A namespace's objects and the last pid of every semaphore, read inside the namespace.
#[derive(Debug, Default)]
pub struct Gathered {
    pub snapshot: Snapshot,
    /// The namespace's live processes, for the creator rule (unread: every array and queue
    /// may be held by its creator, and none is stale).
    pub residents: crate::Residents,
    sem_pids: Vec<i32>,
    /// Per array of `snapshot.semaphores.items`: where its pids are in `sem_pids`, or `None`
    /// when they could not be read (no read permission and no CAP_IPC_OWNER, or the cap).
    sem_spans: Vec<Option<(u32, u32)>>,
}

impl Gathered {
    /// A full sample (the sampler must walk semaphore arrays) and the semaphores' last pids.
    /// Call it inside the namespace to be counted.
    pub fn take(sampler: &mut Sampler) -> Gathered {
        Gathered::with_snapshot(sampler.snapshot())
    }

    /// Reads the semaphores' last pids for a snapshot just taken in this namespace.
    pub fn with_snapshot(snapshot: Snapshot) -> Gathered {
        let mut g = Gathered { snapshot, ..Default::default() };
        if let Some(sem) = &g.snapshot.semaphores {
            g.sem_spans.reserve_exact(sem.items.len());
            for a in &sem.items {
                let start = g.sem_pids.len();
                let fits = start as u64 + a.semaphores <= MAX_SEMAPHORE_PIDS as u64;
                let read = fits && objects::semaphore_pids(a.id, a.semaphores, &mut g.sem_pids).is_ok();
                if read {
                    g.sem_spans.push(Some((start as u32, (g.sem_pids.len() - start) as u32)));
                } else {
                    g.sem_pids.truncate(start);
                    g.sem_spans.push(None);
                }
            }
        }
        g
    }

    /// A snapshot with each array's semaphore pids given (`None`: unreadable), for tests and
    /// benchmarks that feed made-up objects.
    /// No process lives in such a namespace.
    pub fn from_parts(snapshot: Snapshot, pids: Vec<Option<Vec<i32>>>) -> Gathered {
        let mut g = Gathered { snapshot, residents: crate::Residents::none(), ..Default::default() };
        for p in pids {
            g.sem_spans.push(p.map(|p| {
                let start = g.sem_pids.len() as u32;
                g.sem_pids.extend_from_slice(&p);
                (start, p.len() as u32)
            }));
        }
        g
    }

    /// Whether any array or queue is idle long enough to be stale, so the creator rule needs
    /// the namespace's processes ([`crate::Residents::read`]); most censuses need none.
    pub fn needs_residents(&self, now: i64, thresholds: crate::Thresholds) -> bool {
        let idle = |used: i64| now - used >= thresholds.stale_after;
        let sems = self.snapshot.semaphores.as_ref().map_or(&[][..], |s| &s.items[..]);
        let queues = self.snapshot.message_queues.as_ref().map_or(&[][..], |q| &q.items[..]);
        sems.iter().any(|a| idle(a.last_op_time.max(a.changed_time)))
            || queues.iter().any(|q| idle(q.last_send_time.max(q.last_recv_time).max(q.changed_time)))
    }

    fn semaphore_pids(&self, index: usize) -> Option<&[i32]> {
        let (start, len) = (*self.sem_spans.get(index)?)?;
        self.sem_pids.get(start as usize..(start + len) as usize)
    }
}

/// One pid an object records, and whether its process still runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PidUse {
    /// `creator`, `last` (attach/detach), `last_op` (a semaphore), `last_send`, `last_recv`.
    pub role: &'static str,
    pub pid: i32,
    pub alive: Alive,
}

/// A stale semaphore array or queue, or an orphaned segment.
#[derive(Debug, Clone, Serialize)]
pub struct StaleObject {
    pub kind: Kind,
    pub key: Key,
    pub id: i32,
    pub owner: u32,
    pub owner_name: Arc<str>,
    /// Segment size, or bytes queued; for an array, its semaphores.
    pub size: u64,
    /// `stale` (arrays and queues) or `orphaned` (segments).
    pub state: &'static str,
    /// Unix seconds of the last use the kernel recorded (operation, send/receive, attach or
    /// detach, or creation/IPC_SET).
    pub last_used: i64,
    pub idle_seconds: i64,
    pub pids: Vec<PidUse>,
    /// Whether `prune` may remove it: every recorded pid is dead. Stale arrays and queues
    /// always are; an orphaned segment whose creator still runs is not.
    pub prunable: bool,
    /// What the kernel's evidence says, in words: why nothing that runs can hold it.
    pub evidence: String,
    /// The command that removes it (in its own namespace).
    pub ipcrm: String,
}

/// A removal counted because a process that used the object still ran.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedInUse {
    /// `None` for `other`.
    pub uid: Option<u32>,
    pub name: Arc<str>,
    /// Since the daemon started (a counter).
    pub total: u64,
}

/// The result of one census.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pass {
    /// Unix seconds the census judged ages against.
    pub timestamp: i64,
    pub duration_seconds: f64,
    /// The top owners by objects held, then `other` if any owner was left out.
    pub owners: Vec<OwnerUsage>,
    pub totals: Usage,
    /// Stale arrays and queues, and orphaned segments, oldest first.
    pub stale: Vec<StaleObject>,
    pub removed_in_use: Vec<RemovedInUse>,
    /// Arrays whose semaphores' pids could not be read: never called stale.
    pub pids_unknown: u64,
    /// Whether every collector succeeded (a partial census compares no removals).
    pub complete: bool,
}

/// An object a live process used, remembered so its removal can be noticed: 24 bytes, as
/// 64,000 of them may be kept between censuses.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    kind: Kind,
    id: i32,
    key: Key,
    owner: u32,
    pid: i32,
    /// Unix seconds (u32 lasts until 2106).
    used_at: u32,
}

impl Tracked {
    fn new(kind: Kind, id: i32, key: Key, owner: u32, pid: i32, used_at: i64) -> Tracked {
        Tracked { kind, id, key, owner, pid, used_at: used_at.clamp(0, u32::MAX as i64) as u32 }
    }
}

/// Runs censuses of one namespace and remembers what the last one saw.
pub struct Census {
    config: HoldersConfig,
    processes: Processes,
    names: UserNames,
    /// Sorted by kind and id.
    tracked: Vec<Tracked>,
    /// Kinds whose last census read every object (removals are compared only then).
    tracked_complete: [bool; 3],
    removed: Vec<RemovedInUse>,
    per_owner: HashMap<u32, Usage>,
    /// Each named owner's array counts over the last hour, oldest first.
    arrays_seen: HashMap<u32, VecDeque<(i64, u64)>>,
}

/// The window of [`OwnerUsage::semaphore_arrays_growth_1h`].
const GROWTH_WINDOW: i64 = 3600;

impl Census {
    pub fn new(procfs: &Path, config: HoldersConfig) -> Census {
        Census {
            config,
            processes: Processes::new(procfs),
            names: UserNames::default(),
            tracked: Vec::new(),
            tracked_complete: [false; 3],
            removed: Vec::new(),
            per_owner: HashMap::new(),
            arrays_seen: HashMap::new(),
        }
    }

    pub fn set_config(&mut self, config: HoldersConfig) {
        self.config = config;
    }

    /// Judges a namespace's objects at `now` (Unix seconds) with `thresholds`.
    pub fn pass(&mut self, g: &Gathered, now: i64, thresholds: Thresholds) -> Pass {
        let started = Instant::now();
        self.processes.forget();
        self.per_owner.clear();
        let mut next = Vec::with_capacity(self.tracked.len());
        let mut pass = Pass { timestamp: now, complete: g.snapshot.ok(), ..Default::default() };
        let snap = &g.snapshot;

        if let Some(sem) = &snap.semaphores {
            for (i, a) in sem.items.iter().enumerate() {
                let used_at = a.last_op_time.max(a.changed_time);
                let u = self.per_owner.entry(a.owner).or_default();
                u.semaphore_arrays += 1;
                u.semaphores += a.semaphores;
                let Some(pids) = g.semaphore_pids(i) else {
                    pass.pids_unknown += 1;
                    continue;
                };
                let uses = || pids.iter().map(|&p| ("last_op", p, used_at));
                let judged = self.judge(uses());
                if let Some(pid) = judged.live_pid {
                    next.push(Tracked::new(Kind::Semaphores, a.id, a.key, a.owner, pid, used_at));
                }
                let creator = g.residents.creator(a.creator, a.changed_time);
                if judged.all_dead && now - used_at >= thresholds.stale_after && creator_gone(&creator) {
                    self.per_owner.entry(a.owner).or_default().stale_semaphore_arrays += 1;
                    let pids = self.pid_uses(uses());
                    let evidence = evidence(now - used_at, &pids, a.creator, &creator);
                    pass.stale.push(self.stale(
                        &Seen {
                            kind: Kind::Semaphores,
                            key: a.key,
                            id: a.id,
                            owner: a.owner,
                            size: a.semaphores,
                            used_at,
                        },
                        "stale",
                        now,
                        pids,
                        true,
                        evidence,
                    ));
                }
            }
        }
        if let Some(msg) = &snap.message_queues {
            for q in &msg.items {
                let used_at = q.last_send_time.max(q.last_recv_time).max(q.changed_time);
                let u = self.per_owner.entry(q.owner).or_default();
                u.message_queues += 1;
                u.messages += q.messages;
                u.message_bytes += q.bytes;
                let uses = [
                    ("last_send", q.last_send_pid, q.last_send_time),
                    ("last_recv", q.last_recv_pid, q.last_recv_time),
                ];
                let judged = self.judge(uses.into_iter());
                if let Some(pid) = judged.live_pid {
                    next.push(Tracked::new(Kind::MessageQueue, q.id, q.key, q.owner, pid, used_at));
                }
                let creator = g.residents.creator(q.creator, q.changed_time);
                if judged.all_dead && now - used_at >= thresholds.stale_after && creator_gone(&creator) {
                    let u = self.per_owner.entry(q.owner).or_default();
                    u.stale_message_queues += 1;
                    u.stale_message_bytes += q.bytes;
                    let pids = self.pid_uses(uses.into_iter());
                    let evidence = evidence(now - used_at, &pids, q.creator, &creator);
                    pass.stale.push(self.stale(
                        &Seen {
                            kind: Kind::MessageQueue,
                            key: q.key,
                            id: q.id,
                            owner: q.owner,
                            size: q.bytes,
                            used_at,
                        },
                        "stale",
                        now,
                        pids,
                        true,
                        evidence,
                    ));
                }
            }
        }
        if let Some(shm) = &snap.shared_memory {
            for s in &shm.items {
                let used_at = s.attach_time.max(s.detach_time).max(s.changed_time);
                let u = self.per_owner.entry(s.owner).or_default();
                u.segments += 1;
                u.segment_bytes += s.size_bytes;
                if s.destroyed && s.attached > 0 {
                    u.destroyed_attached_segments += 1;
                    u.destroyed_attached_bytes += s.size_bytes;
                }
                let uses = [
                    ("creator", s.creator_pid, s.changed_time),
                    ("last", s.last_pid, s.attach_time.max(s.detach_time)),
                ];
                let judged = self.judge(uses.into_iter());
                if let Some(pid) = judged.live_pid {
                    next.push(Tracked::new(Kind::SharedMemory, s.id, s.key, s.owner, pid, used_at));
                }
                if s.attached == 0 && !s.destroyed && now - used_at >= thresholds.orphan_after {
                    let u = self.per_owner.entry(s.owner).or_default();
                    u.orphaned_segments += 1;
                    u.orphaned_bytes += s.size_bytes;
                    let pids = self.pid_uses(uses.into_iter());
                    let evidence =
                        format!("nothing attached for {}; {}", crate::age(now - used_at), pid_words(&pids));
                    pass.stale.push(self.stale(
                        &Seen {
                            kind: Kind::SharedMemory,
                            key: s.key,
                            id: s.id,
                            owner: s.owner,
                            size: s.size_bytes,
                            used_at,
                        },
                        "orphaned",
                        now,
                        pids,
                        judged.all_dead,
                        evidence,
                    ));
                }
            }
        }

        self.note_removals(snap);
        next.sort_unstable_by_key(|t| (t.kind, t.id));
        next.shrink_to_fit();
        self.tracked = next;
        self.tracked_complete =
            [snap.semaphores.is_some(), snap.message_queues.is_some(), snap.shared_memory.is_some()];
        self.rank_owners(&mut pass);
        pass.stale.sort_by_key(|o| (std::cmp::Reverse(o.idle_seconds), o.kind, o.id));
        pass.removed_in_use = self.removed.clone();
        pass.duration_seconds = started.elapsed().as_secs_f64();
        pass
    }

    /// The stale-list entry of `o`.
    fn stale(
        &mut self,
        o: &Seen,
        state: &'static str,
        now: i64,
        pids: Vec<PidUse>,
        prunable: bool,
        evidence: String,
    ) -> StaleObject {
        StaleObject {
            kind: o.kind,
            key: o.key,
            id: o.id,
            owner: o.owner,
            owner_name: self.names.name(o.owner),
            size: o.size,
            state,
            last_used: o.used_at,
            idle_seconds: (now - o.used_at).max(0),
            pids,
            prunable,
            evidence,
            ipcrm: format!("ipcrm {} {}", o.kind.ipcrm_flag(), o.id),
        }
    }

    /// Whether every recorded pid is dead, and the first live one. Allocates nothing: it
    /// runs for every object.
    fn judge(&mut self, uses: impl Iterator<Item = (&'static str, i32, i64)>) -> Judged {
        let mut judged = Judged { all_dead: true, live_pid: None };
        for (_, pid, used_at) in uses {
            let alive = self.processes.alive(pid, used_at);
            if alive != Alive::Dead {
                judged.all_dead = false;
            }
            if alive == Alive::Alive && judged.live_pid.is_none() {
                judged.live_pid = Some(pid);
            }
        }
        judged
    }

    /// The recorded pids with their liveness, for the objects listed as stale.
    fn pid_uses(&mut self, uses: impl Iterator<Item = (&'static str, i32, i64)>) -> Vec<PidUse> {
        let mut out: Vec<PidUse> = Vec::new();
        for (role, pid, used_at) in uses {
            // Pid 0 means nobody (never used); listing it says nothing.
            if pid > 0 && !out.iter().any(|p| p.pid == pid && p.role == role) {
                out.push(PidUse { role, pid, alive: self.processes.alive(pid, used_at) });
            }
        }
        out
    }

    /// Counts objects that vanished since the last census while a process that used them
    /// still runs: one info line each.
    fn note_removals(&mut self, snap: &Snapshot) {
        let complete =
            [snap.semaphores.is_some(), snap.message_queues.is_some(), snap.shared_memory.is_some()];
        // What exists now, sorted: 8 bytes an object, for this call only.
        let mut present: Vec<(Kind, i32)> = Vec::new();
        if let Some(x) = &snap.semaphores {
            present.extend(x.items.iter().map(|o| (Kind::Semaphores, o.id)));
        }
        if let Some(x) = &snap.message_queues {
            present.extend(x.items.iter().map(|o| (Kind::MessageQueue, o.id)));
        }
        if let Some(x) = &snap.shared_memory {
            present.extend(x.items.iter().map(|o| (Kind::SharedMemory, o.id)));
        }
        present.sort_unstable();
        let tracked = std::mem::take(&mut self.tracked);
        for t in &tracked {
            let k = t.kind as usize;
            if !(complete[k] && self.tracked_complete[k]) || present.binary_search(&(t.kind, t.id)).is_ok() {
                continue;
            }
            if self.processes.alive(t.pid, i64::from(t.used_at)) != Alive::Alive {
                continue;
            }
            let name = self.names.name(t.owner);
            tracing::info!(
                kind = t.kind.short(),
                key = %t.key,
                id = t.id,
                owner = %name,
                pid = t.pid,
                "IPC object removed while a process that used it still runs"
            );
            self.count_removal(t.owner, name);
        }
        self.tracked = tracked;
    }

    fn count_removal(&mut self, uid: u32, name: Arc<str>) {
        if let Some(r) = self.removed.iter_mut().find(|r| r.uid == Some(uid)) {
            r.total += 1;
            return;
        }
        let named = self.removed.iter().filter(|r| r.uid.is_some()).count();
        if named < self.config.max_owners {
            self.removed.push(RemovedInUse { uid: Some(uid), name, total: 1 });
        } else if let Some(other) = self.removed.iter_mut().find(|r| r.uid.is_none()) {
            other.total += 1;
        } else {
            self.removed.push(RemovedInUse { uid: None, name: "other".into(), total: 1 });
        }
    }

    /// The top `max_owners` by objects held (then bytes, then uid), the rest as `other`.
    fn rank_owners(&mut self, pass: &mut Pass) {
        let mut ranked: Vec<(u32, Usage)> = self.per_owner.drain().collect();
        ranked.sort_by_key(|(uid, u)| {
            (std::cmp::Reverse(u.objects()), std::cmp::Reverse(u.segment_bytes + u.message_bytes), *uid)
        });
        let mut other = Usage::default();
        let now = pass.timestamp;
        // Owners gone (or out of the top) for an hour are forgotten; the rest keep an hour.
        self.arrays_seen.retain(|_, seen| {
            while seen.front().is_some_and(|(t, _)| *t < now - GROWTH_WINDOW) {
                seen.pop_front();
            }
            !seen.is_empty()
        });
        for (i, (uid, u)) in ranked.iter().enumerate() {
            pass.totals.add(u);
            if i < self.config.max_owners {
                let seen = self.arrays_seen.entry(*uid).or_default();
                seen.push_back((now, u.semaphore_arrays));
                // A census every second would keep 3,600 points; one in 60 s is plenty.
                while seen.len() > 4096 {
                    seen.pop_front();
                }
                let fewest = seen.iter().map(|(_, n)| *n).min().unwrap_or(0);
                pass.owners.push(OwnerUsage {
                    uid: Some(*uid),
                    name: self.names.name(*uid),
                    usage: *u,
                    semaphore_arrays_growth_1h: u.semaphore_arrays - fewest,
                });
            } else {
                other.add(u);
            }
        }
        if ranked.len() > self.config.max_owners {
            pass.owners.push(OwnerUsage {
                uid: None,
                name: "other".into(),
                usage: other,
                semaphore_arrays_growth_1h: 0,
            });
        }
    }
}

struct Judged {
    all_dead: bool,
    /// The first pid whose process is alive: watched for the object's removal.
    live_pid: Option<i32>,
}

/// An object as the census judges it: what a stale entry is made of.
struct Seen {
    kind: Kind,
    key: Key,
    id: i32,
    owner: u32,
    /// Segment size, bytes queued, or an array's semaphores.
    size: u64,
    used_at: i64,
}

/// Whether the creator rule lets an array or queue be stale.
fn creator_gone(c: &crate::Creator) -> bool {
    matches!(c, crate::Creator::Gone | crate::Creator::Waived { .. })
}

/// The recorded pids in words: `last_op pid 12 dead, last_send none`.
fn pid_words(pids: &[PidUse]) -> String {
    if pids.is_empty() {
        return "no pid recorded (never used)".into();
    }
    let words: Vec<String> =
        pids.iter().map(|p| format!("{} pid {} {}", p.role, p.pid, p.alive.as_str())).collect();
    words.join(", ")
}

/// Why a stale array or queue cannot be held by anything that runs.
fn evidence(idle: i64, pids: &[PidUse], cuid: u32, creator: &crate::Creator) -> String {
    let creator = match creator {
        crate::Creator::Waived { pid, started } => format!(
            "creator (uid {cuid}) ruled out by the operator: made before pid {pid} started at {started} (--created-before-start-of)"
        ),
        _ => format!("no live process of its creator's uid {cuid} started before it was made"),
    };
    format!("unused for {}; {}; {creator}", crate::age(idle), pid_words(pids))
}

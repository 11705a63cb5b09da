//! Which message queues get series of their own: chosen once per sample, then handed to the
//! charts and to /metrics alike, so both show exactly the same queues.

use std::sync::Arc;

use ipcwatch_sampler::{Key, MessageQueue, Snapshot};

/// One queue with its own series: its identity and the figures the per-queue series show.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenQueue {
    pub id: i32,
    pub key: Key,
    /// The owner's user name, or the uid where no name resolves.
    pub owner: Arc<str>,
    /// The owner's uid.
    pub uid: u32,
    pub messages: u64,
    pub bytes: u64,
    pub capacity_bytes: Option<u64>,
}

/// The queues with their own series: the biggest (bytes, then messages) first, at most the
/// cap, listed in msqid order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueChoice {
    /// Shared: a namespace whose queues did not change hands the same list on.
    pub(crate) queues: Arc<[ChosenQueue]>,
}

impl QueueChoice {
    /// Chooses at most `cap` queues of `snap`; `owner` names a uid.
    pub fn choose(snap: &Snapshot, cap: usize, mut owner: impl FnMut(u32) -> Arc<str>) -> QueueChoice {
        let Some(msg) = &snap.message_queues else { return QueueChoice::default() };
        let chosen = |q: &MessageQueue, owner: &mut dyn FnMut(u32) -> Arc<str>| ChosenQueue {
            id: q.id,
            key: q.key,
            owner: owner(q.owner),
            uid: q.owner,
            messages: q.messages,
            bytes: q.bytes,
            capacity_bytes: q.capacity_bytes,
        };
        // Every queue makes the cut (nearly always): one allocation, not two, per namespace
        // and tick.
        if msg.items.len() <= cap {
            let mut queues: Vec<ChosenQueue> = msg.items.iter().map(|q| chosen(q, &mut owner)).collect();
            queues.sort_unstable_by_key(|q| q.id);
            return QueueChoice { queues: queues.into() };
        }
        let mut picked: Vec<&MessageQueue> = msg.items.iter().collect();
        if picked.len() > cap {
            // Partition (O(n)) rather than sort: only which queues make the cut matters.
            if cap > 0 {
                picked.select_nth_unstable_by(cap - 1, |a, b| {
                    (b.bytes, b.messages, a.id).cmp(&(a.bytes, a.messages, b.id))
                });
            }
            picked.truncate(cap);
        }
        picked.sort_unstable_by_key(|q| q.id);
        let queues: Vec<ChosenQueue> = picked.into_iter().map(|q| chosen(q, &mut owner)).collect();
        QueueChoice { queues: queues.into() }
    }

    /// [`QueueChoice::choose`], handing `last` on (no allocation, no name lookup) when every
    /// queue makes the cut and each is as it was in `last`: an idle namespace's every tick.
    pub fn choose_again(
        snap: &Snapshot,
        cap: usize,
        owner: impl FnMut(u32) -> Arc<str>,
        last: &QueueChoice,
    ) -> QueueChoice {
        let Some(msg) = &snap.message_queues else { return QueueChoice::default() };
        let unchanged = msg.items.len() <= cap
            && msg.items.len() == last.queues.len()
            && msg.items.iter().all(|q| {
                last.queues.binary_search_by_key(&q.id, |c| c.id).is_ok_and(|i| {
                    let c = &last.queues[i];
                    (c.key, c.uid, c.messages, c.bytes, c.capacity_bytes)
                        == (q.key, q.owner, q.messages, q.bytes, q.capacity_bytes)
                })
            });
        if unchanged {
            return last.clone();
        }
        QueueChoice::choose(snap, cap, owner)
    }

    /// The chosen queues, in msqid order.
    pub fn queues(&self) -> &[ChosenQueue] {
        &self.queues
    }

    pub fn contains(&self, id: i32) -> bool {
        self.queues.binary_search_by_key(&id, |q| q.id).is_ok()
    }
}

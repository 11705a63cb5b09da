//! What the sampling thread is told between ticks (a reloaded config), waited for with
//! `park_timeout`. The idle daemon's every wake-up went through std's channel, whose waiting
//! (a thread-local context, a waker registered and removed) was 7% of the idle thread's CPU;
//! here a wait is one uncontended lock and the futex the thread sleeps on anyway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The thread that receives, known from its first wait.
    receiver: OnceLock<Thread>,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The sender is gone: once the queue is empty, the receiver ends.
    closed: bool,
}

/// The sending side; dropping it ends the receiver's loop.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving side, used from one thread.
pub struct Receiver<T>(Arc<Shared<T>>);

/// Why [`Receiver::recv_timeout`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    /// Nothing came in time (or the thread was woken for another reason).
    Timeout,
    /// The sender is gone and everything sent was received.
    Disconnected,
}

pub fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { queue: VecDeque::new(), closed: false }),
        receiver: OnceLock::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Shared<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves a queue that is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        if let Some(t) = self.receiver.get() {
            t.unpark();
        }
    }
}

impl<T> Sender<T> {
    pub fn send(&self, value: T) {
        self.0.state().queue.push_back(value);
        self.0.wake();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.state().closed = true;
        self.0.wake();
    }
}

impl<T> Receiver<T> {
    /// The next value sent, waiting at most `timeout` for one. A wake-up for any other
    /// reason returns [`Empty::Timeout`] early: callers wait in a loop to their deadline.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.0.receiver.get_or_init(std::thread::current);
        if let Some(v) = self.try_recv()? {
            return Ok(v);
        }
        // A send between the look above and this wait leaves the park token set, so the
        // wait returns at once.
        std::thread::park_timeout(timeout);
        self.try_recv()?.ok_or(Empty::Timeout)
    }

    fn try_recv(&self) -> Result<Option<T>, Empty> {
        let mut state = self.0.state();
        match state.queue.pop_front() {
            Some(v) => Ok(Some(v)),
            None if state.closed => Err(Empty::Disconnected),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_value_sent_while_the_receiver_waits_wakes_it() {
        let (tx, rx) = mailbox();
        let receiver = std::thread::spawn(move || {
            let started = Instant::now();
            let deadline = started + Duration::from_secs(30);
            let got = loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Err(Empty::Timeout) if Instant::now() < deadline => continue,
                    other => break other,
                }
            };
            (got, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        tx.send(7);
        let (got, waited) = receiver.join().unwrap();
        // Without the wake-up it would sleep its 30 s and time out.
        assert_eq!(got, Ok(7), "after {waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[test]
    fn values_come_in_order_and_a_dropped_sender_ends_the_receiver_after_them() {
        let (tx, rx) = mailbox();
        tx.send(1);
        tx.send(2);
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2));
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Err(Empty::Disconnected));
    }

    #[test]
    fn nothing_sent_times_out() {
        let (tx, rx) = mailbox::<u8>();
        assert_eq!(rx.recv_timeout(Duration::from_millis(10)), Err(Empty::Timeout));
        drop(tx);
    }
}

//! What one client may take from the server: a connection slot only while it uses it, a
//! bounded share of the slots, and no more than [`WRITE_TIMEOUT`] of a stalled write.
//!
//! A slow client (slowloris: request headers a byte at a time) or a client that never reads
//! its answer would otherwise hold a slot, and memory, for as long as it likes. So:
//! - a connection waiting for a request (its head still arriving, or idle between requests)
//!   gives its slot to a newcomer when the server is full: the one that has waited longest
//!   goes first, those that never sent a request before idle keep-alives. Connections
//!   serving a request, or writing its answer, are never let go;
//! - beyond `per_client` connections, an address's newcomer takes the place of that
//!   address's longest-waiting one, or is refused if all of them are busy: one client
//!   competes with itself, never with the others;
//! - a write that makes no progress for [`WRITE_TIMEOUT`] ends the connection, and with it
//!   the answer it held.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// A write that makes no progress for this long ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a connection is: waiting for a request head (or idle between requests), serving a
/// request, or writing its answer. Only a waiting one may give its slot to a newcomer.
pub const WAITING: u8 = 0;
pub const SERVING: u8 = 1;
pub const ANSWERING: u8 = 2;

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    phase: Arc<AtomicU8>,
    served: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

impl Entry {
    /// Whether the slot may go to a newcomer, and in which order: never-served first.
    fn evictable(&self) -> Option<u8> {
        (self.phase.load(Ordering::Acquire) == WAITING).then(|| u8::from(self.served.load(Ordering::Relaxed)))
    }
}

/// The open connections, by age (ids grow).
#[derive(Debug)]
pub struct Conns {
    max: usize,
    per_client: usize,
    open: Mutex<(u64, BTreeMap<u64, Entry>)>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

/// One admitted connection: dropping it frees its slot.
#[derive(Debug)]
pub struct Ticket {
    conns: Arc<Conns>,
    id: u64,
    /// Notified when the slot is taken for a newcomer.
    pub evicted: Arc<Notify>,
    /// [`WAITING`], [`SERVING`] or [`ANSWERING`]; the stream ([`TimedIo`]) moves it back to
    /// waiting when it reads again, that is once the answer is out.
    pub phase: Arc<AtomicU8>,
    served: Arc<AtomicBool>,
}

impl Conns {
    pub fn new(max: usize, per_client: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            per_client: per_client.max(1),
            open: Mutex::new((0, BTreeMap::new())),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `addr`, letting the longest-waiting one go if the address
    /// is beyond its share or the server is full; `None` if every connection it could
    /// replace is busy.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Ticket> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (next, open) = &mut *guard;
        let oldest_waiting = |open: &BTreeMap<u64, Entry>, only: Option<IpAddr>| {
            open.iter()
                .filter(|(_, e)| only.is_none_or(|a| e.addr == a))
                .filter_map(|(id, e)| e.evictable().map(|rank| (rank, *id)))
                .min()
                .map(|(_, id)| id)
        };
        if open.values().filter(|e| e.addr == addr).count() >= self.per_client {
            match oldest_waiting(open, Some(addr)) {
                Some(id) => self.let_go(open, id),
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        if open.len() >= self.max {
            match oldest_waiting(open, None) {
                Some(id) => self.let_go(open, id),
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        *next += 1;
        let evict = Arc::new(Notify::new());
        let phase = Arc::new(AtomicU8::new(WAITING));
        let served = Arc::new(AtomicBool::new(false));
        open.insert(
            *next,
            Entry { addr, phase: phase.clone(), served: served.clone(), evict: evict.clone() },
        );
        Some(Ticket { conns: self.clone(), id: *next, evicted: evict, phase, served })
    }

    fn let_go(&self, open: &mut BTreeMap<u64, Entry>, id: u64) {
        if let Some(e) = open.remove(&id) {
            e.evict.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections let go for newcomers, and refused, since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.evicted.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }

    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }
}

impl Ticket {
    /// A request head arrived (`true`): serving it. Its answer was made (`false`): answering,
    /// until the stream reads again.
    pub fn in_request(&self, busy: bool) {
        self.phase.store(if busy { SERVING } else { ANSWERING }, Ordering::Release);
        if !busy {
            self.served.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut guard = self.conns.open.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.remove(&self.id);
    }
}

/// A stream whose writes fail once one has made no progress for [`WRITE_TIMEOUT`]: a client
/// that stops reading loses its connection instead of pinning the answer in memory.
pub struct TimedIo<S> {
    inner: S,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    /// The connection's phase: a read after an answer means the answer is out.
    phase: Option<Arc<AtomicU8>>,
}

impl<S> TimedIo<S> {
    pub fn new(inner: S, phase: Option<Arc<AtomicU8>>) -> TimedIo<S> {
        TimedIo { inner, stalled: None, timeout: WRITE_TIMEOUT, phase }
    }

    fn poll_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>>
    where
        S: Unpin,
    {
        match poll(Pin::new(&mut self.inner), cx) {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client has not read for the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Reading again means the answer before is out: the connection waits once more.
        if let Some(p) = &self.phase {
            let _ = p.compare_exchange(ANSWERING, WAITING, Ordering::AcqRel, Ordering::Relaxed);
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_progress(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_progress(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_progress(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_progress(cx, |s, cx| s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn ready(f: impl Future) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        std::pin::pin!(f).as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_newcomer_takes_the_slot_of_the_longest_waiting_connection() {
        let conns = Conns::new(3, 3);
        let a = conns.admit(ip(1)).unwrap();
        let b = conns.admit(ip(2)).unwrap();
        let c = conns.admit(ip(3)).unwrap();
        // a was served and waits again; b is busy; c never sent a request: c goes first.
        a.in_request(true);
        a.in_request(false);
        a.phase.store(WAITING, Ordering::Release);
        b.in_request(true);
        let d = conns.admit(ip(4)).unwrap();
        assert_eq!((conns.open(), conns.counts()), (3, (1, 0)));
        assert!(ready(c.evicted.notified()));
        // Then a, never the busy b or d.
        d.in_request(true);
        let e = conns.admit(ip(5)).unwrap();
        assert!(ready(a.evicted.notified()));
        // Busy ones, and those still writing an answer, are never let go: the server full of
        // them refuses a newcomer.
        d.in_request(false);
        e.in_request(true);
        assert!(conns.admit(ip(6)).is_none());
        assert_eq!(conns.counts(), (2, 1));
        // Once d's stream reads again its answer is out, and its slot can go.
        d.phase.store(WAITING, Ordering::Release);
        assert!(conns.admit(ip(6)).is_some());
    }

    #[test]
    fn one_address_holds_at_most_its_share_while_others_wait() {
        let conns = Conns::new(100, 2);
        let first = conns.admit(ip(1)).unwrap();
        let second = conns.admit(ip(1)).unwrap();
        let third = conns.admit(ip(1)).unwrap();
        assert_eq!(conns.open(), 2, "the address's longest-waiting one went");
        assert!(ready(first.evicted.notified()));
        let _other = conns.admit(ip(2)).unwrap();
        assert_eq!(conns.open(), 3);
        // With all of the address's connections busy, its newcomer is refused; others not.
        second.in_request(true);
        third.in_request(true);
        assert!(conns.admit(ip(1)).is_none());
        assert!(conns.admit(ip(3)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stalls_fails_after_the_timeout() {
        use tokio::io::AsyncWriteExt;
        let (client, server) = tokio::io::duplex(1024);
        let mut io = TimedIo::new(server, None);
        let started = tokio::time::Instant::now();
        // The client never reads: 1 KiB fits, the rest stalls.
        let e = io.write_all(&vec![0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= WRITE_TIMEOUT);
        drop(client);
    }
}

//! Bounds every listener applies to the peers it serves: how many connections one peer may hold
//! at once ([`PeerLimiter`]), and how long a response write may make no progress
//! ([`StallGuard`]).
//!
//! A listener's connection slots are a shared resource. Without these bounds a client that
//! opens connections and never reads the answers (or keeps reconnecting) holds slots for as long
//! as it likes, and everyone else waits. With them, a peer holds at most
//! [`PeerLimiter::max_per_peer`] slots, and a connection whose peer stops reading is closed
//! after the write timeout (as nginx's `send_timeout`: the time between two successful writes,
//! not the whole response).
//!
//! A "peer" is an IPv4 address, or an IPv6 /64 (one host's usual allocation: counting single
//! IPv6 addresses would give a client 2^64 budgets). Peers in the exempt list (the trusted
//! reverse proxies in front of a listener, which multiplex many clients) are not counted.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tracing::warn;

use crate::cidr::CidrList;
use crate::classify::normalize;

/// The next connection on `listener`. A failed accept (out of file descriptors and the like) is
/// logged and retried after a short pause instead of spinning. Cancel-safe, as
/// [`TcpListener::accept`] is.
pub async fn accept_with_backoff(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => return x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The key a peer's connections are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl PeerKey {
    fn of(ip: IpAddr) -> PeerKey {
        match normalize(ip) {
            IpAddr::V4(v4) => PeerKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => PeerKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Counts open connections per peer and refuses a peer's connection beyond the bound.
#[derive(Debug)]
pub struct PeerLimiter {
    max: usize,
    exempt: CidrList,
    open: Mutex<HashMap<PeerKey, usize>>,
}

impl PeerLimiter {
    /// At most `max_per_peer` connections per peer (0: no bound); peers in `exempt` are not
    /// counted.
    pub fn new(max_per_peer: usize, exempt: CidrList) -> Arc<PeerLimiter> {
        Arc::new(PeerLimiter {
            max: max_per_peer,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The bound (0: none).
    pub fn max_per_peer(&self) -> usize {
        self.max
    }

    /// A permit for one more connection of `peer`, held for the connection's life; `None` when
    /// the peer already holds the most it may.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Option<PeerPermit> {
        if self.max == 0 || self.exempt.contains(peer) {
            return Some(PeerPermit { counted: None });
        }
        let key = PeerKey::of(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerPermit {
            counted: Some((self.clone(), key)),
        })
    }

    /// Connections `peer` holds now (0 for exempt peers).
    pub fn open_for(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&PeerKey::of(peer)).copied().unwrap_or(0)
    }

    fn release(&self, key: PeerKey) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// One connection's place in its peer's count; released when dropped.
#[derive(Debug)]
pub struct PeerPermit {
    counted: Option<(Arc<PeerLimiter>, PeerKey)>,
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        if let Some((limiter, key)) = self.counted.take() {
            limiter.release(key);
        }
    }
}

/// A stream whose writes (and, when asked, reads) fail with [`io::ErrorKind::TimedOut`] once one
/// has waited its timeout without progress: a peer that stopped reading (or, for reads, stopped
/// sending). Any progress starts the wait afresh.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    write: Stall,
    read: Option<Stall>,
}

/// One direction's bound and its timer (allocated on the first wait, then reset).
#[derive(Debug)]
struct Stall {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stall {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// Passes a ready result through (disarming the timer), or arms it on `Pending` and turns
    /// the wait into an error once it fires.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
        what: &'static str,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let now = Instant::now();
                let deadline = now
                    .checked_add(self.timeout)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
                let timer = match &mut self.timer {
                    Some(t) => {
                        if !self.armed {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => self
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                self.armed = true;
                if timer.as_mut().poll(cx).is_ready() {
                    self.armed = false;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

const WRITE_STALLED: &str = "the peer did not read in time";
const READ_STALLED: &str = "the peer sent nothing in time";

impl<T> StallGuard<T> {
    /// Wraps `inner`: a write may wait at most `write_timeout` for progress.
    pub fn new(inner: T, write_timeout: Duration) -> Self {
        Self {
            inner,
            write: Stall::new(write_timeout),
            read: None,
        }
    }

    /// A read may wait at most `timeout` for data, too.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read = Some(Stall::new(timeout));
        self
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_read(cx, buf);
        match &mut me.read {
            Some(stall) => stall.watch(cx, polled, READ_STALLED),
            None => polled,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_write(cx, buf);
        me.write.watch(cx, polled, WRITE_STALLED)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        me.write.watch(cx, polled, WRITE_STALLED)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_flush(cx);
        me.write.watch(cx, polled, WRITE_STALLED)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_shutdown(cx);
        me.write.watch(cx, polled, WRITE_STALLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A connected (client, server) pair of loopback TCP streams.
    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[test]
    fn peers_are_counted_by_address_and_ipv6_prefix() {
        let l = PeerLimiter::new(2, CidrList::parse("10.0.0.0/8").expect("list"));
        let a1 = l.try_acquire(ip("192.0.2.1")).expect("first");
        let a2 = l
            .try_acquire(ip("::ffff:192.0.2.1"))
            .expect("second (mapped = same peer)");
        assert!(l.try_acquire(ip("192.0.2.1")).is_none(), "third refused");
        assert!(l.try_acquire(ip("192.0.2.2")).is_some(), "another peer");
        drop(a1);
        let a3 = l.try_acquire(ip("192.0.2.1")).expect("a slot came back");
        // One IPv6 /64 is one peer, whatever the interface identifier.
        let b1 = l.try_acquire(ip("2001:db8:1:2::1")).expect("v6");
        let b2 = l
            .try_acquire(ip("2001:db8:1:2:ffff::9"))
            .expect("v6 same /64");
        assert!(l.try_acquire(ip("2001:db8:1:2::77")).is_none());
        assert!(l.try_acquire(ip("2001:db8:1:3::1")).is_some(), "next /64");
        // Exempt peers (trusted proxies) are not counted.
        let many: Vec<_> = (0..10)
            .map(|_| l.try_acquire(ip("10.1.2.3")).expect("exempt"))
            .collect();
        assert_eq!(l.open_for(ip("10.1.2.3")), 0);
        assert_eq!(l.open_for(ip("192.0.2.1")), 2);
        drop((a2, a3, b1, b2, many));
        assert_eq!(l.open_for(ip("192.0.2.1")), 0);
        assert!(
            l.open.lock().expect("lock").is_empty(),
            "no entry left behind"
        );
        // 0: no bound.
        let none = PeerLimiter::new(0, CidrList::default());
        let held: Vec<_> = (0..100)
            .map(|_| none.try_acquire(ip("192.0.2.1")).expect("unbounded"))
            .collect();
        assert_eq!(held.len(), 100);
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        let (client, server) = connected_pair().await;
        let mut guarded = StallGuard::new(server, Duration::from_millis(300));
        let chunk = vec![7u8; 64 * 1024];
        let started = std::time::Instant::now();
        let err = loop {
            match guarded.write_all(&chunk).await {
                Ok(()) => assert!(started.elapsed() < Duration::from_secs(20), "never stalled"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(20));
        drop(client);
    }

    #[tokio::test]
    async fn a_read_that_never_gets_data_times_out_when_bounded() {
        let (_client, server) = connected_pair().await;
        let mut guarded = StallGuard::new(server, Duration::from_secs(60))
            .with_read_timeout(Duration::from_millis(200));
        let mut buf = [0u8; 16];
        let err = guarded
            .read(&mut buf)
            .await
            .expect_err("no data ever comes");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_but_reading_peer_is_not_cut() {
        let (mut client, server) = connected_pair().await;
        let total = 8 * 1024 * 1024;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0usize;
            while got < total {
                // Reads in bursts with pauses shorter than the timeout.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed early");
                got += n;
            }
            got
        });
        let mut guarded = StallGuard::new(server, Duration::from_millis(400));
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..total / chunk.len() {
            guarded
                .write_all(&chunk)
                .await
                .expect("progress resets the timer");
        }
        assert_eq!(reader.await.expect("reader"), total);
    }
}

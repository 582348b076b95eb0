//! Copying bytes both ways through a tunnel, with byte counts, an idle timeout and a lifetime
//! bound.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes each way and an activity counter (bumped on every read).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
    activity: AtomicU64,
}

/// A stream whose reads are counted (as `up` for the client side, `down` for the upstream).
pub(crate) struct Tracked<S> {
    inner: S,
    counters: Arc<Counters>,
    up: bool,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, counters: Arc<Counters>, up: bool) -> Self {
        Self {
            inner,
            counters,
            up,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                let c = if this.up {
                    &this.counters.up
                } else {
                    &this.counters.down
                };
                c.fetch_add(n, Ordering::Relaxed);
                this.counters.activity.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// Both sides finished.
    Closed,
    /// A side failed (reset, broken pipe).
    Error,
    /// No byte either way for the idle timeout.
    Idle,
    /// The tunnel reached its longest lifetime.
    Lifetime,
}

impl RelayEnd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RelayEnd::Closed => "closed",
            RelayEnd::Error => "error",
            RelayEnd::Idle => "idle_timeout",
            RelayEnd::Lifetime => "max_lifetime",
        }
    }
}

/// Waits until nothing was read for `idle` (checked in quarters of it).
async fn idle_watch(counters: &Counters, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(25));
    let mut last = counters.activity.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        let now = counters.activity.load(Ordering::Relaxed);
        if now == last {
            quiet += tick;
            if quiet >= idle {
                return;
            }
        } else {
            last = now;
            quiet = Duration::ZERO;
        }
    }
}

/// Copy both ways until both sides close, one fails, nothing moves for `idle`, or `lifetime`
/// passes. Both streams are shut down (best effort) at the end.
pub(crate) async fn relay<A, B>(
    client: A,
    upstream: B,
    counters: Arc<Counters>,
    idle: Duration,
    lifetime: Duration,
) -> RelayEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a = Tracked::new(client, counters.clone(), true);
    let mut b = Tracked::new(upstream, counters.clone(), false);
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 16 * 1024, 16 * 1024) => {
            if r.is_ok() { RelayEnd::Closed } else { RelayEnd::Error }
        }
        () = idle_watch(&counters, idle) => RelayEnd::Idle,
        () = tokio::time::sleep(lifetime) => RelayEnd::Lifetime,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), a.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), b.shutdown()).await;
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn copies_both_ways_and_counts() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(relay(
            client,
            upstream,
            counters.clone(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        ));
        client_peer.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        upstream_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        upstream_peer.write_all(b"world!").await.unwrap();
        let mut buf = [0u8; 6];
        client_peer.read_exact(&mut buf).await.unwrap();
        drop(client_peer);
        drop(upstream_peer);
        assert_eq!(task.await.unwrap(), RelayEnd::Closed);
        assert_eq!(counters.up.load(Ordering::Relaxed), 5);
        assert_eq!(counters.down.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn idle_and_lifetime_bounds() {
        let (client, _cp) = tokio::io::duplex(64);
        let (upstream, _up) = tokio::io::duplex(64);
        let started = std::time::Instant::now();
        let end = relay(
            client,
            upstream,
            Arc::default(),
            Duration::from_millis(200),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(end, RelayEnd::Idle);
        assert!(started.elapsed() < Duration::from_secs(2));

        let (client, mut cp) = tokio::io::duplex(64);
        let (upstream, mut up) = tokio::io::duplex(64);
        let chatter = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            for _ in 0..100 {
                if cp.write_all(b"x").await.is_err() || up.read_exact(&mut buf).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let end = relay(
            client,
            upstream,
            Arc::default(),
            Duration::from_millis(300),
            Duration::from_millis(400),
        )
        .await;
        assert_eq!(end, RelayEnd::Lifetime);
        chatter.abort();
    }
}

//! The server's accepted connections: TCP_NODELAY, at most
//! `connections_per_peer_max` live at once per peer IP address and
//! `connections_max` in all (refusals logged at most once a second), and a
//! lingering close.
//!
//! A connection past the per-peer bound is closed as soon as it is accepted
//! (the client sees UNAVAILABLE) and logged; the peer's other connections
//! go on. A lingering close: when the server closes a connection (after its
//! last reply, at shutdown), it shuts its sending side and reads, and
//! discards, what the client still sends until the client closes too (at
//! most [`LINGER_MAX`]). Closing a socket with unread bytes makes the kernel
//! reset the connection and drop the replies not yet delivered: a client
//! would be told a write failed that the journal holds.
//!
//! Never looks at what the bytes say: that is hyper's and tonic's work.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// Longest a closing connection waits for the client to close its side.
pub const LINGER_MAX: Duration = Duration::from_secs(2);

/// Most reads of discarded bytes in one poll of a lingering close.
const DRAIN_READS_PER_POLL_MAX: usize = 16;

/// Live connections per peer IP address.
/// Live connections, by peer address and in all.
#[derive(Default)]
struct Live {
    by_peer: HashMap<IpAddr, usize>,
    total: usize,
}

type LiveByPeer = Arc<Mutex<Live>>;

/// Accepted connections, at most `per_peer_max` live per peer IP address
/// and `total_max` in all.
pub struct PeerLimitedIncoming {
    accepted: TcpIncoming,
    live: LiveByPeer,
    per_peer_max: usize,
    total_max: usize,
    /// Refusals are logged at most once per [`REFUSALS_LOGGED_EVERY`], with
    /// the count of those not logged, so a flood does not flood the log.
    refusals_unlogged: u64,
    refusal_logged_at: Option<std::time::Instant>,
}

/// Shortest time between two log lines about refused connections.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(1);

impl PeerLimitedIncoming {
    /// Connections accepted by `accepted`, at most `per_peer_max` (at
    /// least 1) live at once from one IP address and `total_max` (at least
    /// 1) in all.
    pub fn new(
        accepted: TcpIncoming,
        per_peer_max: usize,
        total_max: usize,
    ) -> PeerLimitedIncoming {
        PeerLimitedIncoming {
            accepted,
            live: Arc::default(),
            per_peer_max: per_peer_max.max(1),
            total_max: total_max.max(1),
            refusals_unlogged: 0,
            refusal_logged_at: None,
        }
    }

    /// A slot for one more connection from `peer`, if neither it nor the
    /// server is at its bound; otherwise which bound was reached.
    fn admit(&self, peer: IpAddr) -> Result<PeerSlot, &'static str> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if live.total >= self.total_max {
            return Err("the server has the most connections allowed (connections_max)");
        }
        let count = live.by_peer.entry(peer).or_default();
        if *count >= self.per_peer_max {
            return Err("its address has the most connections allowed (connections_per_peer_max)");
        }
        *count += 1;
        live.total += 1;
        Ok(PeerSlot {
            peer,
            live: self.live.clone(),
        })
    }

    /// Logs a refusal unless one was logged less than a second ago.
    fn log_refusal(&mut self, peer: std::net::SocketAddr, why: &str) {
        let now = std::time::Instant::now();
        if self
            .refusal_logged_at
            .is_some_and(|at| now.duration_since(at) < REFUSALS_LOGGED_EVERY)
        {
            self.refusals_unlogged += 1;
            return;
        }
        tracing::warn!(
            %peer,
            refused_since_last_line = self.refusals_unlogged,
            "connection refused: {why}"
        );
        self.refusals_unlogged = 0;
        self.refusal_logged_at = Some(now);
    }
}

impl Stream for PeerLimitedIncoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let stream = match ready!(Pin::new(&mut self.accepted).poll_next(cx)) {
                Some(Ok(stream)) => stream,
                other => return Poll::Ready(other.map(|failed| failed.map(Connection::unbounded))),
            };
            let Ok(peer) = stream.peer_addr() else {
                // Gone before we looked: nothing to serve.
                continue;
            };
            match self.admit(peer.ip()) {
                Ok(slot) => return Poll::Ready(Some(Ok(Connection::new(stream, Some(slot))))),
                Err(why) => self.log_refusal(peer, why),
            }
        }
    }
}

/// Holds one of a peer's connection slots; gives it back when dropped.
struct PeerSlot {
    peer: IpAddr,
    live: LiveByPeer,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.total = live.total.saturating_sub(1);
        if let Some(count) = live.by_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.by_peer.remove(&self.peer);
            }
        }
    }
}

/// An accepted connection: the TCP stream, its peer's slot, and a
/// lingering close (see the module's doc).
pub struct Connection {
    stream: TcpStream,
    _slot: Option<PeerSlot>,
    /// Set once the sending side is shut: until when to read what the
    /// client still sends.
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    fn new(stream: TcpStream, slot: Option<PeerSlot>) -> Connection {
        Connection {
            stream,
            _slot: slot,
            lingering: None,
        }
    }

    fn unbounded(stream: TcpStream) -> Connection {
        Connection::new(stream, None)
    }

    /// Reads and discards until the client closes, fails, or the deadline passes.
    ///
    /// The deadline is checked before every read (`is_elapsed` needs no
    /// poll, so a client that keeps the socket full cannot hide it), and one
    /// poll discards at most [`DRAIN_READS_PER_POLL_MAX`] buffers before it
    /// yields, so a draining connection never monopolises a worker.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut discard = [0u8; 4096];
        for _ in 0..DRAIN_READS_PER_POLL_MAX {
            if self.lingering.as_ref().is_some_and(|d| d.is_elapsed()) {
                return Poll::Ready(());
            }
            let mut buffer = ReadBuf::new(&mut discard);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buffer) {
                Poll::Ready(Ok(())) if buffer.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    return match &mut self.lingering {
                        Some(deadline) => deadline.as_mut().poll(cx),
                        None => Poll::Ready(()),
                    };
                }
            }
        }
        // More to discard: come back after the other tasks had their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buffer)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Shuts the sending side (the client reads every reply, then the end),
    /// then lingers until the client closes: see the module's doc.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.lingering.is_none() {
            ready!(Pin::new(&mut self.stream).poll_shutdown(cx))?;
            self.lingering = Some(Box::pin(tokio::time::sleep(LINGER_MAX)));
        }
        self.poll_drain(cx).map(Ok)
    }
}

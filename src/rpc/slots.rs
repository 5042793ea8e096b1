//! The RPC port's connection slots, kept for clients that authenticate.
//!
//! ```text
//! accept ─► unauthenticated (at most `max_unauthenticated`; past that the OLDEST is closed,
//!           and each is closed `auth_deadline` after it opened)
//!             │ first request with valid credentials
//!             ▼
//!           authenticated (one of `max_connections` permits; none left ─► 503, closed)
//! ```
//!
//! A slot is held by the connection's socket itself ([`SlotIo`]), so a connection upgraded to
//! a WebSocket (whose socket jsonrpsee takes over) keeps its slot until the socket closes, and
//! the socket ends at the connection's deadline whatever protocol runs over it.
//!
//! So a local user without credentials can hold neither the authenticated slots nor, for
//! longer than a new connection takes to arrive, the unauthenticated ones.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The port's slots: permits for authenticated connections, and the connections still
/// waiting to authenticate, oldest first.
pub struct Slots {
    authenticated: Arc<Semaphore>,
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
    max_waiting: usize,
    next_id: std::sync::atomic::AtomicU64,
}

/// Why a connection could not become authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// It was closed to make room, or its deadline passed.
    Evicted,
    /// Every authenticated slot is taken.
    Full,
}

impl Slots {
    pub fn new(max_authenticated: usize, max_unauthenticated: usize) -> Arc<Slots> {
        Arc::new(Slots {
            authenticated: Arc::new(Semaphore::new(max_authenticated)),
            waiting: Mutex::new(BTreeMap::new()),
            max_waiting: max_unauthenticated.max(1),
            next_id: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A new connection, unauthenticated; the oldest waiting ones are closed if there are
    /// too many.
    pub fn admit(self: &Arc<Self>) -> Arc<ConnSlot> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        {
            let mut waiting = self.lock_waiting();
            while waiting.len() >= self.max_waiting {
                let Some((_, oldest)) = waiting.pop_first() else {
                    break;
                };
                oldest.cancel();
            }
            waiting.insert(id, token.clone());
        }
        Arc::new(ConnSlot {
            id,
            slots: Arc::clone(self),
            permit: Mutex::new(None),
            closed: token,
        })
    }

    /// Connections that have not authenticated yet.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock_waiting().len()
    }

    /// Authenticated slots free.
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.authenticated.available_permits()
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        // A panic while holding this lock cannot leave the map half-changed (single calls).
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes `id` from the waiting connections; whether it was there.
    fn leave(&self, id: u64) -> bool {
        self.lock_waiting().remove(&id).is_some()
    }
}

/// One connection's place: waiting, or holding an authenticated permit.
pub struct ConnSlot {
    id: u64,
    slots: Arc<Slots>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Fired when the connection must close before it authenticated.
    closed: CancellationToken,
}

impl ConnSlot {
    /// Moves the connection to an authenticated slot (nothing to do if it is there).
    pub fn authenticate(&self) -> Result<(), Refused> {
        let mut permit = self.permit.lock().unwrap_or_else(|e| e.into_inner());
        if permit.is_some() {
            return Ok(());
        }
        if !self.slots.leave(self.id) {
            return Err(Refused::Evicted);
        }
        match Arc::clone(&self.slots.authenticated).try_acquire_owned() {
            Ok(p) => {
                *permit = Some(p);
                Ok(())
            }
            // No longer waiting, and no slot: the connection ends once its 503 is sent.
            Err(_) => Err(Refused::Full),
        }
    }

    #[cfg(test)]
    pub fn is_authenticated(&self) -> bool {
        self.permit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Completes when the connection must close unauthenticated (evicted or refused).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Ends the wait of an unauthenticated connection (its deadline passed).
    pub fn expire(&self) {
        if self.slots.leave(self.id) {
            self.closed.cancel();
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.slots.leave(self.id);
    }
}

/// A client's socket carrying its slot and its end: the slot is freed when the socket is
/// dropped (by hyper, or by jsonrpsee after a WebSocket upgrade), and after `end` the socket
/// reads as closed and refuses writes, which ends HTTP and WebSocket sessions alike.
pub struct SlotIo {
    io: TcpStream,
    _slot: Arc<ConnSlot>,
    end: Pin<Box<tokio::time::Sleep>>,
}

impl SlotIo {
    pub fn new(io: TcpStream, slot: Arc<ConnSlot>, life: std::time::Duration) -> SlotIo {
        SlotIo {
            io,
            _slot: slot,
            end: Box::pin(tokio::time::sleep(life)),
        }
    }

    /// Whether the end has come; registers the reader to be woken then. Only reads register:
    /// a timer wakes one task, and after a WebSocket upgrade the reader and the writer are
    /// different tasks, so a write registering would leave an idle reader asleep forever.
    fn read_ended(&mut self, cx: &mut Context<'_>) -> bool {
        self.end.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for SlotIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_ended(cx) {
            // End of stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.end.is_elapsed() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_makes_room_and_authenticated_slots_are_counted() {
        let slots = Slots::new(1, 2);
        let a = slots.admit();
        let b = slots.admit();
        let c = slots.admit();
        // a was the oldest: closed to make room for c.
        assert!(a.closed.is_cancelled());
        assert_eq!(a.authenticate(), Err(Refused::Evicted));
        assert_eq!(slots.waiting(), 2);
        assert_eq!(b.authenticate(), Ok(()));
        assert_eq!(b.authenticate(), Ok(()));
        assert!(b.is_authenticated());
        assert_eq!(slots.free(), 0);
        assert_eq!(c.authenticate(), Err(Refused::Full));
        assert_eq!(slots.waiting(), 0);
        drop(b);
        assert_eq!(slots.free(), 1);
        let d = slots.admit();
        d.expire();
        assert!(d.closed.is_cancelled());
        assert_eq!(slots.waiting(), 0);
    }
}

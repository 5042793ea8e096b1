//! bitcoind's "warming up" (-28): what the node is doing while RPC cannot answer for its chain
//! state, and how far along it is.
//!
//! ```text
//! node: opening the database ──set──┐            ┌── front door, before the node is open:
//!       fast sync (headers, snapshot)│  Warmup ───┤   every call -28 "Warming up: <status>"
//!       open / fast sync over ─clear─┘            └── WarmupLayer, after: calls that read
//!                                                     the chain state -28 while a status is set
//! ```
//!
//! A fast sync replaces the chain state wholesale: until the UTXO snapshot is installed the
//! node holds genesis and nothing else, so a balance, a block count or a transaction lookup
//! would be a confident wrong answer. Those calls get -28 with the sync's progress instead,
//! as bitcoind answers while it loads its block index; calls about the process and its peers
//! ([`ANSWERED_WHILE_WARMING`]) go on being answered, so an operator can watch the sync and
//! stop the node.

use super::error::{err, IN_WARMUP};
use arc_swap::ArcSwapOption;
use jsonrpsee::server::middleware::rpc::RpcServiceT;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::Request;
use std::sync::Arc;

/// Methods answered while the node warms up after the RPC port opened: they say nothing
/// about the chain state (help, stop, uptime, peers and bans).
pub const ANSWERED_WHILE_WARMING: &[&str] = &[
    "help",
    "stop",
    "uptime",
    "getnetworkinfo",
    "getpeerinfo",
    "getconnectioncount",
    "addnode",
    "setban",
    "listbanned",
    "clearbanned",
];

/// What the node is doing while its chain state is not ready to be read, or nothing.
#[derive(Debug, Default)]
pub struct Warmup {
    status: ArcSwapOption<String>,
}

impl Warmup {
    /// Warming up, doing `status`.
    pub fn new(status: &str) -> Warmup {
        let w = Warmup::default();
        w.set(status);
        w
    }

    /// Says what the node is doing now (and refuses state reads until [`Warmup::clear`]).
    pub fn set(&self, status: impl Into<String>) {
        self.status.store(Some(Arc::new(status.into())));
    }

    /// The chain state is readable again.
    pub fn clear(&self) {
        self.status.store(None);
    }

    pub fn status(&self) -> Option<Arc<String>> {
        self.status.load_full()
    }

    /// The -28 message for a call made now, if it must be refused.
    pub fn refusal(&self, method: &str) -> Option<String> {
        if ANSWERED_WHILE_WARMING.contains(&method) {
            return None;
        }
        self.status().map(|s| format!("Warming up: {s}"))
    }
}

/// The layer for `RpcServiceBuilder`: refuses state reads with -28 while the node warms up.
#[derive(Clone, Debug)]
pub struct WarmupLayer(pub Arc<Warmup>);

impl<S> tower::Layer<S> for WarmupLayer {
    type Service = WarmupGate<S>;
    fn layer(&self, inner: S) -> WarmupGate<S> {
        WarmupGate {
            inner,
            warmup: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WarmupGate<S> {
    inner: S,
    warmup: Arc<Warmup>,
}

impl<'a, S> RpcServiceT<'a> for WarmupGate<S>
where
    S: RpcServiceT<'a>,
    S::Future: Send + 'a,
{
    type Future = futures_util::future::Either<S::Future, std::future::Ready<MethodResponse>>;

    fn call(&self, request: Request<'a>) -> Self::Future {
        match self.warmup.refusal(request.method_name()) {
            Some(why) => futures_util::future::Either::Right(std::future::ready(
                MethodResponse::error(request.id, err(IN_WARMUP, why)),
            )),
            None => futures_util::future::Either::Left(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reads_are_refused_with_the_status_until_cleared() {
        let w = Warmup::new("fast sync: verifying certified headers, 200 of 1000 (20%)");
        assert_eq!(
            w.refusal("getblockcount").as_deref(),
            Some("Warming up: fast sync: verifying certified headers, 200 of 1000 (20%)")
        );
        assert_eq!(w.refusal("getpeerinfo"), None);
        assert_eq!(w.refusal("stop"), None);
        w.set("fast sync: downloading the UTXO snapshot at height 1000, page 3 of 9");
        assert!(w
            .refusal("getaddressbalance")
            .is_some_and(|m| m.ends_with("page 3 of 9")));
        w.clear();
        assert_eq!(w.refusal("getblockcount"), None);
        assert_eq!(w.status(), None);
    }

    #[test]
    fn every_method_answered_while_warming_exists() {
        for name in ANSWERED_WHILE_WARMING {
            assert!(
                crate::rpc_api::catalog::find(name).is_some(),
                "{name} is not an RPC method"
            );
        }
    }
}

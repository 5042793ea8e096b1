//! Consensus: the masternode set, layer-1 finality and layer-2 BFT blocks.
//!
//! The engines are pure state machines (`step(input, now) -> effects`); `service` is the only
//! async code around them.

pub mod bft;
pub mod certificate;
pub mod door;
pub mod driver;
pub mod evidence_store;
pub mod finality;
pub mod genesis;
pub mod masternodes;
pub mod proofs;
pub mod safety_store;
pub mod service;
pub mod set_store;
pub mod snapshot;
pub mod status;

pub use masternodes::{Masternode, MasternodeSet, SetChanges};

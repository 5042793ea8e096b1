//! Consensus: the masternode set, layer-1 finality and layer-2 BFT blocks.
//!
//! The engines are pure state machines (`step(input, now) -> effects`); `service` is the only
//! async code around them.

pub mod bft;
pub mod finality;
pub mod masternodes;

pub use masternodes::{Masternode, MasternodeSet, SetChanges};

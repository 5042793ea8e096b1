//! The block reward schedule: a genesis parameter, halving like Bitcoin's.

use crate::types::Amount;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewardSchedule {
    /// Reward of the first block after genesis.
    pub initial: Amount,
    /// Blocks between halvings; 0 means never.
    pub halving_interval: u64,
}

impl RewardSchedule {
    /// New coins a block at `height` may create (fees come on top). Genesis creates its own
    /// allocation and gets no reward.
    pub fn reward_at(&self, height: u64) -> Amount {
        if height == 0 {
            return Amount::ZERO;
        }
        if self.halving_interval == 0 {
            return self.initial;
        }
        let halvings = (height - 1) / self.halving_interval;
        if halvings >= 64 {
            Amount::ZERO
        } else {
            Amount(self.initial.0 >> halvings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_schedule() {
        let s = RewardSchedule {
            initial: Amount(1000),
            halving_interval: 10,
        };
        assert_eq!(s.reward_at(0), Amount::ZERO);
        assert_eq!(s.reward_at(1), Amount(1000));
        assert_eq!(s.reward_at(10), Amount(1000));
        assert_eq!(s.reward_at(11), Amount(500));
        assert_eq!(s.reward_at(10 * 70), Amount::ZERO);
    }
}

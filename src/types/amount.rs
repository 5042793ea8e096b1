//! Amounts of TIME, counted in atoms (1 TIME = 100,000,000 atoms).
//!
//! Every operation is checked: an overflow makes a transaction invalid, it never wraps or panics.
//! Decimal strings are parsed exactly (no floating point), because a wallet that sends `0.1`
//! must move exactly 10,000,000 atoms.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Atoms in one TIME.
pub const ATOMS_PER_TIME: u64 = 100_000_000;
/// Decimal places of a TIME amount.
pub const DECIMALS: usize = 8;

/// A non-negative amount in atoms.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is negative")]
    Negative(String),
    #[error("amount {0:?} has more than 8 decimal places")]
    TooPrecise(String),
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn from_atoms(atoms: u64) -> Self {
        Amount(atoms)
    }

    /// Whole TIME to atoms; `None` on overflow.
    pub fn from_time(time: u64) -> Option<Self> {
        time.checked_mul(ATOMS_PER_TIME).map(Amount)
    }

    pub fn atoms(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    /// Sums amounts, `None` if the total overflows.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(items: I) -> Option<Amount> {
        items
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }

    /// The amount as a decimal string with exactly eight decimals, as Bitcoin's RPC prints it.
    pub fn to_decimal_string(self) -> String {
        format!("{}.{:08}", self.0 / ATOMS_PER_TIME, self.0 % ATOMS_PER_TIME)
    }

    /// Parses a decimal TIME amount such as `1.5`, `0.00000001` or `21`.
    ///
    /// Rejects signs, exponents, more than eight decimals and values above `u64::MAX` atoms.
    pub fn parse_decimal(text: &str) -> Result<Amount, AmountError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.starts_with('-') {
            return Err(AmountError::Negative(text.to_string()));
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits_only = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits_only(whole) || !digits_only(frac) {
            return Err(AmountError::NotANumber(text.to_string()));
        }
        if frac.len() > DECIMALS {
            return Err(AmountError::TooPrecise(text.to_string()));
        }
        let overflow = || AmountError::Overflow(text.to_string());
        let whole_atoms = if whole.is_empty() {
            0
        } else {
            whole
                .parse::<u64>()
                .map_err(|_| overflow())?
                .checked_mul(ATOMS_PER_TIME)
                .ok_or_else(overflow)?
        };
        let mut frac_atoms = 0u64;
        for (i, b) in frac.bytes().enumerate() {
            // At most 8 digits, so this stays below 10^8 and cannot overflow.
            frac_atoms += u64::from(b - b'0') * 10u64.pow((DECIMALS - 1 - i) as u32);
        }
        whole_atoms
            .checked_add(frac_atoms)
            .map(Amount)
            .ok_or_else(overflow)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_decimal(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_decimals() {
        assert_eq!(Amount::parse_decimal("1.5"), Ok(Amount(150_000_000)));
        assert_eq!(Amount::parse_decimal("0.00000001"), Ok(Amount(1)));
        assert_eq!(Amount::parse_decimal("21"), Ok(Amount(2_100_000_000)));
        assert_eq!(Amount::parse_decimal(".5"), Ok(Amount(50_000_000)));
        assert_eq!(Amount::parse_decimal("7."), Ok(Amount(700_000_000)));
        assert_eq!(Amount(150_000_000).to_decimal_string(), "1.50000000");
        assert_eq!(Amount(1).to_string(), "0.00000001");
    }

    #[test]
    fn rejects_bad_amounts_with_distinct_errors() {
        assert!(matches!(
            Amount::parse_decimal("1.123456789"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            Amount::parse_decimal("-1"),
            Err(AmountError::Negative(_))
        ));
        assert!(matches!(
            Amount::parse_decimal("184467440737.09551616"),
            Err(AmountError::Overflow(_))
        ));
        assert!(matches!(
            Amount::parse_decimal("999999999999999999999"),
            Err(AmountError::Overflow(_))
        ));
        for bad in ["1e5", "+1", "1.2.3", "abc", ".", " . ", "1,5"] {
            assert!(
                matches!(Amount::parse_decimal(bad), Err(AmountError::NotANumber(_))),
                "{bad}"
            );
        }
        assert_eq!(Amount::parse_decimal(""), Err(AmountError::Empty));
    }

    #[test]
    fn max_atoms_round_trip() {
        let max = Amount(u64::MAX);
        assert_eq!(Amount::parse_decimal(&max.to_decimal_string()), Ok(max));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount::checked_sum([Amount(u64::MAX), Amount(1)]), None);
        assert_eq!(Amount::checked_sum([Amount(2), Amount(3)]), Some(Amount(5)));
    }
}

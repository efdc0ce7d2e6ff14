//! A tiny deterministic PRNG (SplitMix64). The seed is always an input: no global randomness.

/// One SplitMix64 mixing round: a good 64-bit hash of `x`.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stateless random draw for (`seed`, `step`, `item`): the same inputs always give the same value.
#[inline]
pub(crate) fn draw(seed: u64, step: u64, item: u64) -> u64 {
    mix64(seed ^ mix64(step.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ mix64(item)))
}

/// Per-step draws: one mixing round per item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepRng(u64);

impl StepRng {
    #[inline]
    pub(crate) fn new(seed: u64, step: u64) -> Self {
        StepRng(mix64(
            seed ^ mix64(step.wrapping_mul(0xD6E8_FEB8_6659_FD93)),
        ))
    }

    /// A non-negative draw for `item`.
    #[inline]
    pub(crate) fn at(self, item: usize) -> i64 {
        (mix64(self.0 ^ (item as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1) as i64
    }
}

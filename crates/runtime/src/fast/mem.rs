//! The fast sentron's side of the memory budget (`budget.rs`): tile buffers grow only
//! through these checks, so a program asking for more than the machine has traps
//! (naming the sentron, pc, op and bytes) instead of aborting the process.

use super::{FastSentron, Fault};
use crate::budget::try_zeroed;
use crate::error::TrapKind;
use crate::fabric::Transport;
use crate::state::TileData;

impl<T: Transport> FastSentron<'_, T> {
    /// Bytes of every tile buffer this sentron holds: registers, spare and pool.
    pub(super) fn held_tile_bytes(&self) -> u64 {
        let regs: usize = self
            .regs
            .t
            .iter()
            .map(|t| match &t.data {
                TileData::Owned(v) => v.capacity(),
                _ => 0,
            })
            .sum();
        let pool: usize = self.pool.iter().map(Vec::capacity).sum();
        4 * (regs + self.spare.capacity() + pool) as u64
    }

    /// Give `out` (a buffer taken out of this sentron) room for `n` elements: growth is
    /// charged to the budget first and allocated fallibly. No cost when it is large
    /// enough (every steady-state loop).
    #[inline]
    pub(super) fn reserve_checked(&mut self, out: &mut Vec<f32>, n: usize) -> Result<(), Fault> {
        if out.capacity() >= n {
            return Ok(());
        }
        self.grow(out, n)
    }

    #[cold]
    fn grow(&mut self, out: &mut Vec<f32>, n: usize) -> Result<(), Fault> {
        // `out` is not among the sentron's buffers while taken: after growing it holds
        // n elements (its old allocation is given up).
        let now = self.held_tile_bytes() + 4 * n as u64;
        self.fabric
            .settle_tiles(self.id, now)
            .map_err(TrapKind::from)?;
        out.clear();
        out.try_reserve_exact(n)
            .map_err(|_| TrapKind::AllocFailed {
                bytes: 4 * n as u64,
            })?;
        Ok(())
    }

    /// `out` holding `n` zeros, grown under the budget when needed.
    #[inline]
    pub(super) fn zeroed_checked(&mut self, out: &mut Vec<f32>, n: usize) -> Result<(), Fault> {
        self.reserve_checked(out, n)?;
        if out.len() != n {
            try_zeroed(out, n).map_err(|bytes| TrapKind::AllocFailed { bytes })?;
        }
        Ok(())
    }

    /// Count buffers that arrived from elsewhere (a received message): a trap if they
    /// take the machine past its budget.
    pub(super) fn settle_received(&mut self) -> Result<(), Fault> {
        let now = self.held_tile_bytes();
        self.fabric
            .settle_tiles(self.id, now)
            .map_err(TrapKind::from)?;
        Ok(())
    }
}

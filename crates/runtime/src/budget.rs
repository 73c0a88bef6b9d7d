//! The machine's memory budget: tile buffers, mailboxes, scratch pages and the phext
//! space of a run draw from one limit, so a program that asks for more memory than
//! the machine has ends with a trap naming the sentron, pc, op and bytes, instead of
//! the process aborting with `memory allocation of N bytes failed`.
//!
//! Two guards, because each misses what the other catches:
//! - the budget (this type): a byte count with a limit, charged before an allocation
//!   whose size a program chooses. The default limit is three quarters of the smallest
//!   of the memory the system has available and the process's address-space and data
//!   limits (`ulimit -v`), leaving room for code, stacks and mappings; `--mem-limit`
//!   sets it.
//! - fallible allocation ([`try_zeroed`]): even within budget the allocator may refuse
//!   (other processes, fragmentation); `try_reserve` turns that into a trap too.
//!
//! Accounting is by settlement: a sentron's tile buffers (registers, spare, pool) are
//! re-counted when one must grow and the difference to what it was charged is charged
//! or released (see `LocalFabric::settle_tiles`). Buffers dropped in between stay
//! charged until the next settlement, so the count errs on the high side, never low.

use std::sync::atomic::{AtomicU64, Ordering};

/// A shared byte budget.
#[derive(Debug)]
pub struct MemBudget {
    limit: u64,
    used: AtomicU64,
}

/// A charge that would pass the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// Bytes asked for by this charge.
    pub asked: u64,
    /// Bytes charged before it.
    pub in_use: u64,
    pub limit: u64,
}

impl MemBudget {
    pub fn new(limit: u64) -> MemBudget {
        MemBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// No limit (library callers that manage memory themselves).
    pub fn unlimited() -> MemBudget {
        MemBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Take `bytes` from the budget, or say why not (nothing is taken then).
    pub fn charge(&self, bytes: u64) -> Result<(), OverBudget> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.checked_add(bytes).filter(|&n| n <= self.limit);
            let Some(next) = next else {
                return Err(OverBudget {
                    asked: bytes,
                    in_use: cur,
                    limit: self.limit,
                });
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Take `bytes` even past the limit: for memory that already exists and must be
    /// counted (a message in a mailbox), so later charges see it.
    pub fn force(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Give `bytes` back.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    /// Move one holder's charge from `was` to `now` bytes (a sentron's tile buffers).
    /// On failure nothing changes.
    pub fn settle(&self, was: u64, now: u64) -> Result<(), OverBudget> {
        if now > was {
            self.charge(now - was)
        } else {
            self.release(was - now);
            Ok(())
        }
    }
}

/// The default limit: three quarters of the smallest of the memory available to the
/// system now, the address-space limit and the data-segment limit; 4 GiB when none of
/// them can be read.
pub fn default_limit() -> u64 {
    let candidates = [
        available_memory(),
        rlimit(Limit::AddressSpace),
        rlimit(Limit::Data),
    ];
    let least = candidates.into_iter().flatten().min().unwrap_or(4 << 30);
    least / 4 * 3
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

enum Limit {
    AddressSpace,
    Data,
}

/// A soft resource limit in bytes; None if unlimited or unknown.
#[cfg(unix)]
fn rlimit(which: Limit) -> Option<u64> {
    let resource = match which {
        Limit::AddressSpace => libc::RLIMIT_AS,
        Limit::Data => libc::RLIMIT_DATA,
    };
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a valid pointer.
    let ok = unsafe { libc::getrlimit(resource, &mut r) } == 0;
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let cur = r.rlim_cur as u64;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(cur)
}

#[cfg(not(unix))]
fn rlimit(_: Limit) -> Option<u64> {
    None
}

/// Bytes of a `rows x cols` page of `dtype`, for a charge before it is allocated; 0
/// when the shape does not fit the dtype (the allocation then reports why).
pub fn page_bytes(dtype: vtpu_phext::DType, rows: u32, cols: u32) -> u64 {
    dtype
        .bytes_for(rows as usize * cols as usize)
        .map_or(0, |b| b as u64)
}

/// Make `buf` hold `n` zeros without aborting when the allocator refuses: `Err(bytes
/// asked)` instead. Keeps `buf`'s allocation when it is large enough.
pub fn try_zeroed(buf: &mut Vec<f32>, n: usize) -> Result<(), u64> {
    buf.clear();
    let bytes = (n as u64).saturating_mul(4);
    buf.try_reserve_exact(n).map_err(|_| bytes)?;
    buf.resize(n, 0.0);
    Ok(())
}

/// A copy of `src` without aborting when the allocator refuses.
pub fn try_copy(src: &[f32]) -> Result<Vec<f32>, u64> {
    let mut v = Vec::new();
    v.try_reserve_exact(src.len())
        .map_err(|_| (src.len() as u64).saturating_mul(4))?;
    v.extend_from_slice(src);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_release_gives_back() {
        let b = MemBudget::new(100);
        b.charge(60).unwrap();
        assert_eq!(
            b.charge(50),
            Err(OverBudget {
                asked: 50,
                in_use: 60,
                limit: 100
            })
        );
        assert_eq!(b.used(), 60, "a refused charge takes nothing");
        b.charge(40).unwrap();
        b.release(30);
        assert_eq!(b.used(), 70);
        b.settle(10, 40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(b.settle(40, 41).is_err());
        b.settle(40, 0).unwrap();
        assert_eq!(b.used(), 60);
        b.release(1000);
        assert_eq!(b.used(), 0, "never below zero");
        b.force(150);
        assert!(b.charge(1).is_err());
        assert!(MemBudget::new(u64::MAX).charge(u64::MAX).is_ok());
        assert!(MemBudget::unlimited().charge(u64::MAX).is_ok());
    }

    #[test]
    fn charges_from_many_threads_never_pass_the_limit() {
        let b = MemBudget::new(1000);
        let granted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if b.charge(3).is_ok() {
                            granted.fetch_add(3, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(b.used(), granted.load(Ordering::Relaxed));
        assert!(b.used() <= 1000 && b.used() > 990);
    }

    #[test]
    fn the_default_is_positive_and_below_what_is_available() {
        let d = default_limit();
        assert!(d > 0);
        if let Some(avail) = available_memory() {
            assert!(d <= avail);
        }
    }

    #[test]
    fn fallible_allocation_reports_instead_of_aborting() {
        let mut v = vec![1.0f32; 3];
        try_zeroed(&mut v, 5).unwrap();
        assert_eq!(v, vec![0.0; 5]);
        // More than any address space: refused, not an abort.
        assert_eq!(try_zeroed(&mut v, usize::MAX / 2), Err(u64::MAX));
        assert!(try_copy(&[1.0, 2.0]).is_ok());
    }
}

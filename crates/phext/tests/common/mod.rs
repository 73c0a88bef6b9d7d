//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vtpu_phext::{Coord, DType, Layout, PageKind, PhextSpace};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "vtpu-phext-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// File names in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .expect("read temp dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

pub fn coord(parts: [u32; 9]) -> Coord {
    Coord::new(parts).expect("test coordinate")
}

/// A coordinate spread over several dimensions, so curve orders differ from coordinate order.
pub fn spread(i: u32) -> Coord {
    coord([
        1 + i % 3,
        1,
        1 + (i / 3) % 2,
        1,
        1 + i % 2,
        1,
        1,
        1 + i / 6,
        1 + i % 5,
    ])
}

/// A space with, for every dtype, a writable Owned page, a frozen Owned page and a Scratch
/// page (plus one zero-length page), all with distinct pseudo-random contents.
pub fn mixed_space(layout: Layout) -> PhextSpace {
    let s = PhextSpace::new(layout);
    let mut i = 0u32;
    for d in DType::ALL {
        for (kind, ro) in [
            (PageKind::Owned, false),
            (PageKind::Owned, true),
            (PageKind::Scratch, false),
        ] {
            let shape = [1 + (i as usize % 3), d.block_elems() * (1 + i as usize % 4)];
            let len = d.bytes_for(shape[0] * shape[1]).expect("whole blocks");
            s.insert_bytes(spread(i), d, shape, &bytes(u64::from(i), len), ro, kind)
                .expect("insert");
            i += 1;
        }
    }
    s.alloc(spread(i), DType::F32, [0, 8], PageKind::Owned)
        .expect("zero-length page");
    s
}

/// (coord, dtype, shape, bytes) of every persisted page, in coordinate order.
pub fn snapshot(s: &PhextSpace) -> Vec<(Coord, DType, [usize; 2], Vec<u8>)> {
    let mut v: Vec<_> = s
        .pages()
        .into_iter()
        .filter(|p| p.kind() != PageKind::Scratch)
        .map(|p| (p.coord(), p.dtype(), p.shape(), p.read(|b| b.to_vec())))
        .collect();
    v.sort_by_key(|t| t.0);
    v
}

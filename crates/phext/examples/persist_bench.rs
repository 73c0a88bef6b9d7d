//! Host timing of save / load for about 64 MiB of pages, median of several runs.
//!
//!     cargo run --release -p vtpu-phext --example persist_bench [DIR]
//!
//! DIR defaults to the system temp dir; pass a directory on a real disk to include the
//! disk in the figures (save fsyncs; load reads whatever the OS page cache holds, which
//! right after a save is everything: these are warm-cache load figures).

use std::path::PathBuf;
use std::time::Instant;

use vtpu_phext::{Coord, Layout, LoadMode, PageKind, PhextSpace};

const PAGES: u32 = 256;
const SHAPE: [usize; 2] = [256, 256]; // f32: 256 KiB per page, 64 MiB in all
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("vtpu-persist-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create bench dir");
    let manifest = dir.join("bench.phext");

    let space = PhextSpace::new(Layout::Hilbert);
    let mut seed = 1u32;
    for i in 0..PAGES {
        let c = Coord::new([1, 1, 1, 1, 1 + i / 64, 1, 1, 1 + (i / 8) % 8, 1 + i % 8])
            .expect("coordinate");
        let data: Vec<f32> = (0..SHAPE[0] * SHAPE[1])
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32
            })
            .collect();
        space
            .insert_f32(c, SHAPE, &data, PageKind::Owned)
            .expect("insert");
    }
    let bytes = space.total_bytes() as f64;
    let want: Vec<u64> = space.pages().iter().map(|p| p.checksum()).collect();

    let (mut save, mut map, mut copy) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Alternate content so every save writes a new sidecar and deletes the old one.
        space.pages()[0].write_f32(0, &[run as f32]).expect("write");
        let t = Instant::now();
        let stats = space.save(&manifest).expect("save");
        save.push(t.elapsed().as_secs_f64());
        assert_eq!(stats.page_bytes as f64, bytes);

        let t = Instant::now();
        let l = PhextSpace::load(&manifest, LoadMode::Map).expect("load map");
        map.push(t.elapsed().as_secs_f64());
        assert_eq!(l.len(), PAGES as usize);

        let t = Instant::now();
        let l = PhextSpace::load(&manifest, LoadMode::Copy).expect("load copy");
        copy.push(t.elapsed().as_secs_f64());
        let got: Vec<u64> = l.pages().iter().skip(1).map(|p| p.checksum()).collect();
        assert_eq!(got, want[1..], "loaded bytes differ");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");

    let mib = bytes / (1 << 20) as f64;
    println!(
        "{PAGES} f32 pages, {mib:.0} MiB, dir {} ({RUNS} runs, host wall clock, median)",
        base.display()
    );
    for (name, v) in [
        ("save (write + fsync + rename)", save),
        ("load Map (mmap + verify xxh3)", map),
        ("load Copy (read + verify xxh3)", copy),
    ] {
        let s = median(v);
        println!(
            "  {name:32} {:8.2} ms  {:7.2} GB/s",
            s * 1e3,
            bytes / s / 1e9
        );
    }
}

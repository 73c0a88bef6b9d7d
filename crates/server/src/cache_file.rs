//! Cached sequences saved to phext space: the prompt cache of `vtpu serve --cache-dir`
//! and the session of `vtpu chat --session` are the same kind of file, a `.phext`
//! manifest plus its sidecar written by [`PhextSpace::save`] (atomic: a failed save
//! leaves the previous one loadable; every page checksummed).
//!
//! Coordinates (library 1 of the file's own space):
//! - `1.1.1/1.1.1/1.1.1`: the header, an i8 page of JSON (format, version, the model
//!   fingerprint, the KV dtype, pages per entry, each entry's token count and last
//!   use, and the caller's `extra` JSON, e.g. a chat session's messages);
//! - entry `e` (0-based, at most [`MAX_ENTRIES`]): its tokens, an i32 page `[n, 1]` at
//!   `1.e+2.1/1.1.1/1.1.1`; its KV page `k` as raw rows, an i8 page
//!   `[n, row bytes]` at `1.e+2.2/1.1.1/1.k/999+1.k%999+1`.

use crate::cache::Entry;
use crate::engine::KvSnap;
use serde::{Deserialize, Serialize};
use std::path::Path;
use vtpu_phext::{Coord, DType, Layout, LoadMode, PageKind, PhextSpace};

/// Entries a file holds at most (shelves 2..=999).
pub const MAX_ENTRIES: usize = 998;
/// KV pages per entry at most (sections 1..=999 of 999 scrolls).
pub const MAX_PAGES_PER_ENTRY: usize = 999 * 999;
/// Largest header read.
const MAX_HEADER_BYTES: usize = 16 << 20;
const FORMAT: &str = "vtpu-kv-cache";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheFileError {
    #[error("{path}: {source}")]
    Persist {
        path: String,
        source: Box<vtpu_phext::PersistError>,
    },
    #[error("{path}: {message}")]
    Space { path: String, message: String },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path}: saved for another model or KV layout (fingerprint {saved:016x}, this model's is {current:016x})")]
    Fingerprint {
        path: String,
        saved: u64,
        current: u64,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// Hex, so a JSON reader never rounds it.
    fingerprint: String,
    dtype: String,
    pages_per_entry: usize,
    entries: Vec<HeaderEntry>,
    #[serde(default)]
    extra: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct HeaderEntry {
    tokens: usize,
    last_used: u64,
}

fn coord(parts: [u32; 9]) -> Result<Coord, String> {
    Coord::new(parts).map_err(|e| e.to_string())
}

fn tokens_coord(e: usize) -> Result<Coord, String> {
    coord([1, e as u32 + 2, 1, 1, 1, 1, 1, 1, 1])
}

fn kv_coord(e: usize, k: usize) -> Result<Coord, String> {
    coord([
        1,
        e as u32 + 2,
        2,
        1,
        1,
        1,
        1,
        (k / 999) as u32 + 1,
        (k % 999) as u32 + 1,
    ])
}

/// Saves `entries` (all of one model) with `extra` JSON to `path` atomically.
pub fn save(
    path: &Path,
    fingerprint: u64,
    dtype: DType,
    pages_per_entry: usize,
    entries: &[&Entry],
    extra: serde_json::Value,
) -> Result<(), CacheFileError> {
    let p = path.display().to_string();
    let space_err = |m: String| CacheFileError::Space {
        path: p.clone(),
        message: m,
    };
    if entries.len() > MAX_ENTRIES || pages_per_entry > MAX_PAGES_PER_ENTRY {
        return Err(space_err(format!(
            "{} entries of {pages_per_entry} pages: at most {MAX_ENTRIES} of {MAX_PAGES_PER_ENTRY}",
            entries.len()
        )));
    }
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        fingerprint: format!("{fingerprint:016x}"),
        dtype: dtype.name().into(),
        pages_per_entry,
        entries: entries
            .iter()
            .map(|e| HeaderEntry {
                tokens: e.tokens.len(),
                last_used: e.last_used,
            })
            .collect(),
        extra,
    };
    let json = serde_json::to_vec(&header).map_err(|e| space_err(e.to_string()))?;
    let space = PhextSpace::new(Layout::Insertion);
    let ins = |c: Coord, dt: DType, shape: [usize; 2], bytes: &[u8]| {
        space
            .insert_bytes(c, dt, shape, bytes, false, PageKind::Owned)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    ins(
        coord([1; 9]).map_err(&space_err)?,
        DType::I8,
        [1, json.len()],
        &json,
    )
    .map_err(&space_err)?;
    for (i, e) in entries.iter().enumerate() {
        let n = e.tokens.len();
        if n == 0 || e.snap.pos != n || e.snap.pages.len() != pages_per_entry {
            return Err(space_err(format!(
                "entry {i}: {n} tokens, a snapshot of {} positions in {} pages",
                e.snap.pos,
                e.snap.pages.len()
            )));
        }
        let toks: Vec<u8> = e.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        ins(
            tokens_coord(i).map_err(&space_err)?,
            DType::I32,
            [n, 1],
            &toks,
        )
        .map_err(&space_err)?;
        for (k, page) in e.snap.pages.iter().enumerate() {
            if page.len() % n != 0 {
                return Err(space_err(format!(
                    "entry {i} page {k}: {} bytes is not {n} whole rows",
                    page.len()
                )));
            }
            ins(
                kv_coord(i, k).map_err(&space_err)?,
                DType::I8,
                [n, page.len() / n],
                page,
            )
            .map_err(&space_err)?;
        }
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| CacheFileError::Io {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    space.save(path).map_err(|source| CacheFileError::Persist {
        path: p,
        source: Box::new(source),
    })?;
    Ok(())
}

/// What [`load`] read.
pub struct Loaded {
    pub entries: Vec<Entry>,
    pub extra: serde_json::Value,
}

/// Loads a file saved by [`save`] for the model with `fingerprint` and `pages_per_entry`
/// KV pages; refuses anything else with an error naming the file and the problem.
pub fn load(
    path: &Path,
    fingerprint: u64,
    pages_per_entry: usize,
) -> Result<Loaded, CacheFileError> {
    let p = path.display().to_string();
    let fmt = |m: String| CacheFileError::Format {
        path: p.clone(),
        message: m,
    };
    let space =
        PhextSpace::load(path, LoadMode::Map).map_err(|source| CacheFileError::Persist {
            path: p.clone(),
            source: Box::new(source),
        })?;
    let get = |c: Coord| {
        space
            .get(c)
            .ok_or_else(|| fmt(format!("page {c} is missing")))
    };
    let hp = get(coord([1; 9]).map_err(&fmt)?)?;
    if hp.dtype() != DType::I8 || hp.len_bytes() > MAX_HEADER_BYTES {
        return Err(fmt(format!(
            "the header page is {} of {} bytes (an i8 page of at most {MAX_HEADER_BYTES})",
            hp.dtype().name(),
            hp.len_bytes()
        )));
    }
    let header: Header = hp
        .read(|b| serde_json::from_slice(b))
        .map_err(|e| fmt(format!("header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(fmt(format!(
            "format {} version {}, expected {FORMAT} version {VERSION}",
            header.format, header.version
        )));
    }
    let saved = u64::from_str_radix(&header.fingerprint, 16)
        .map_err(|e| fmt(format!("fingerprint {:?}: {e}", header.fingerprint)))?;
    if saved != fingerprint {
        return Err(CacheFileError::Fingerprint {
            path: p,
            saved,
            current: fingerprint,
        });
    }
    if header.pages_per_entry != pages_per_entry {
        return Err(fmt(format!(
            "{} KV pages per entry, this model has {pages_per_entry}",
            header.pages_per_entry
        )));
    }
    if header.entries.len() > MAX_ENTRIES {
        return Err(fmt(format!(
            "{} entries, at most {MAX_ENTRIES}",
            header.entries.len()
        )));
    }
    let dtype = DType::parse(&header.dtype)
        .ok_or_else(|| fmt(format!("unknown KV dtype {:?}", header.dtype)))?;
    let mut entries = Vec::with_capacity(header.entries.len());
    for (i, he) in header.entries.iter().enumerate() {
        let tp = get(tokens_coord(i).map_err(&fmt)?)?;
        let n = he.tokens;
        if tp.dtype() != DType::I32 || tp.shape() != [n, 1] || n == 0 {
            return Err(fmt(format!(
                "entry {i}: token page is {} {:?}, the header says {n} tokens",
                tp.dtype().name(),
                tp.shape()
            )));
        }
        let tokens: Vec<u32> = tp.read(|b| {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        });
        let mut pages = Vec::with_capacity(pages_per_entry);
        for k in 0..pages_per_entry {
            let kp = get(kv_coord(i, k).map_err(&fmt)?)?;
            if kp.dtype() != DType::I8 || kp.shape()[0] != n {
                return Err(fmt(format!(
                    "entry {i} KV page {k}: {} {:?}, expected i8 with {n} rows",
                    kp.dtype().name(),
                    kp.shape()
                )));
            }
            pages.push(kp.read(<[u8]>::to_vec));
        }
        entries.push(Entry {
            tokens,
            snap: KvSnap {
                pos: n,
                dtype,
                model_fingerprint: saved,
                pages,
            },
            last_used: he.last_used,
        });
    }
    Ok(Loaded {
        entries,
        extra: header.extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tokens: &[u32], seed: u8) -> Entry {
        let n = tokens.len();
        Entry {
            tokens: tokens.to_vec(),
            snap: KvSnap {
                pos: n,
                dtype: DType::F16,
                model_fingerprint: 0xabc,
                pages: (0..3)
                    .map(|k| (0..n * 8).map(|b| seed ^ (b as u8) ^ k).collect())
                    .collect(),
            },
            last_used: seed as u64,
        }
    }

    #[test]
    fn save_load_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/cache.phext");
        let a = entry(&[1, 2, 3], 7);
        let b = entry(&[9, 8], 3);
        let extra = serde_json::json!({"messages": ["hi"]});
        save(&path, 0xabc, DType::F16, 3, &[&a, &b], extra.clone()).unwrap();
        let l = load(&path, 0xabc, 3).unwrap();
        assert_eq!(l.extra, extra);
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.entries[0].tokens, a.tokens);
        assert_eq!(l.entries[0].snap.pages, a.snap.pages);
        assert_eq!(l.entries[1].snap.pages, b.snap.pages);
        assert_eq!(l.entries[1].snap.dtype, DType::F16);
        assert_eq!(l.entries[0].last_used, 7);
        // Another model: refused, naming both fingerprints.
        let e = load(&path, 0xdef, 3).err().unwrap().to_string();
        assert!(
            e.contains("0000000000000abc") && e.contains("0000000000000def"),
            "{e}"
        );
        assert!(load(&path, 0xabc, 4).is_err());
        // A damaged sidecar is an error, not a panic.
        let side: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
            .collect();
        assert_eq!(side.len(), 1);
        let sp = side[0].path();
        let mut bytes = std::fs::read(&sp).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes[100] ^= 0xff;
        std::fs::write(&sp, bytes).unwrap();
        assert!(load(&path, 0xabc, 3).is_err());
    }
}

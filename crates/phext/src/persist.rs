//! Saving and loading phext space: a `.phext` manifest (one scroll per page, written with
//! libphext's `implode`, read with `explode`) plus a binary, mmap-able sidecar of page
//! bytes. The format is described in `format.rs`.
//!
//! Atomic save protocol (an error at any step leaves the previous manifest + sidecar
//! loadable):
//! 1. write the sidecar to a temp file in the manifest's directory, fsync it;
//! 2. rename it to its versioned name `<manifest>.<content id>.bin`, fsync the directory;
//! 3. write the manifest to a temp file, fsync, rename over the old manifest, fsync the
//!    directory: the commit point;
//! 4. only then delete the previous sidecar (named in the old manifest).
//!
//! A failure before the commit removes the new files again (best effort); a failure to
//! delete the old sidecar after the commit is reported in [`SaveStats`], not as an error.
//! A save deletes only files that belong to its own manifest: the old sidecar only if
//! its name is exactly `<manifest>.<16 hex>.bin`, and temp files of earlier saves of
//! the same manifest only once the process that wrote them is gone (a save killed
//! mid-way cannot clean up after itself; the next successful one does).
//!
//! A space without pages is saved as a manifest holding only an empty-space marker and
//! no sidecar (`format.rs`), so a 0-byte or page-less manifest is an error on load, not
//! an empty space.
//!
//! Loading opens the manifest and the sidecar without blocking (a FIFO would wait for a
//! writer for ever) and refuses anything but a regular file; the manifest is read with
//! a bound ([`MAX_MANIFEST_BYTES`]) whatever size the file claims.
//!
//! Mapped loads: the sidecar is mapped read-only. Saves never modify a sidecar in place
//! (they write a new file and rename), so a space loaded with [`LoadMode::Map`] stays
//! valid across later saves to the same manifest. Editing a mapped sidecar by hand while
//! it is loaded is outside the contract (as for any mmap).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::MmapOptions;

use crate::buf::AlignedBuf;
use crate::coord::{Coord, DEFAULT_PART_LIMIT};
use crate::error::PersistError;
use crate::format::{
    is_plain_file_name, owned_sidecar_id, sidecar_name, sidecar_name_id, EmptySpace, Header,
    PageEntry, FILE_PART_LIMIT, HEADER_LEN,
};
use crate::page::{Page, PageKind};
use crate::space::{align_up, ArenaPage, MappedPage, PhextSpace};

/// Largest manifest `load` reads (about five million pages).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// How `load` materialises pages.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum LoadMode {
    /// Every page is a zero-copy, read-only view of the mmap'd sidecar (kind Mapped).
    Map,
    /// Every page is an Owned copy in one arena (one read of the sidecar). Pages saved as
    /// frozen Owned pages stay read-only; all others (including saved Mapped pages) are
    /// writable.
    Copy,
}

/// What a save wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveStats {
    /// Pages written (Owned + Mapped).
    pub pages: usize,
    /// Scratch pages left out.
    pub skipped_scratch: usize,
    /// Sum of the saved pages' sizes.
    pub page_bytes: u64,
    /// Size of the sidecar file (header + pages + alignment padding).
    pub sidecar_bytes: u64,
    pub manifest_bytes: u64,
    /// The sidecar written; `None` when there were no pages to save (the manifest then
    /// holds the empty-space marker).
    pub sidecar: Option<PathBuf>,
    /// The previous save's sidecar, when it could not be deleted after the commit.
    pub old_sidecar_left: Option<PathBuf>,
}

/// Makes temp names unique within the process (the pid makes them unique across).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
thread_local! {
    /// Test hook: the save step that should fail on this thread.
    pub(crate) static FAIL_AT: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

/// A point in the save protocol where tests can inject a failure.
fn checkpoint(step: &'static str) -> Result<(), PersistError> {
    #[cfg(test)]
    if FAIL_AT.with(|f| f.get()) == Some(step) {
        return Err(PersistError::Injected(step));
    }
    let _ = step;
    Ok(())
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest's directory and UTF-8 file name (which must be safe to embed in a scroll).
fn split_manifest_path(manifest: &Path) -> Result<(PathBuf, String), PersistError> {
    let invalid = |why: &str| PersistError::Io {
        op: "use manifest path",
        path: manifest.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    };
    let name = manifest
        .file_name()
        .ok_or_else(|| invalid("it has no file name"))?
        .to_str()
        .ok_or_else(|| invalid("its file name is not UTF-8"))?
        .to_string();
    if !is_plain_file_name(&name) {
        return Err(invalid("its file name contains control characters"));
    }
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Open `path` for reading without blocking: a FIFO opens at once instead of waiting
/// for a writer (no effect on regular files).
fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    opts.open(path)
}

/// What a file that is not a regular file is, for an error message.
fn file_kind(ft: fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        return None;
    }
    if ft.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some("a FIFO");
        }
        if ft.is_char_device() {
            return Some("a character device");
        }
        if ft.is_block_device() {
            return Some("a block device");
        }
        if ft.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Refuse an open file that is not a regular file (a FIFO, device or directory would
/// block, never end, or not be data).
fn check_regular(file: &File, what: &'static str, path: &Path) -> Result<u64, PersistError> {
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(PersistError::NotRegularFile {
            what,
            path: path.to_path_buf(),
            kind,
        });
    }
    Ok(meta.len())
}

/// The whole of a regular file of at most `max` bytes, read with that bound whatever
/// the file claims (it may grow while being read).
fn read_bounded(path: &Path, what: &'static str, max: u64) -> Result<Vec<u8>, PersistError> {
    let file = open_nonblocking(path).map_err(io_err("open", path))?;
    let len = check_regular(&file, what, path)?;
    let too_large = |len| PersistError::ManifestTooLarge {
        path: path.to_path_buf(),
        len,
        max,
    };
    if len > max {
        return Err(too_large(len));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| PersistError::OutOfMemory {
            path: path.to_path_buf(),
            bytes: len,
        })?;
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The sidecar named by an existing manifest, if it belongs to this manifest (exactly
/// `<name>.<16 hex>.bin`, see [`owned_sidecar_id`]); best effort: any problem means
/// "nothing to delete".
fn previous_sidecar(manifest: &Path, manifest_name: &str) -> Option<String> {
    let bytes = read_bounded(manifest, "manifest", MAX_MANIFEST_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let scrolls = libphext::phext::explode(&text);
    let name = scrolls.values().find_map(|s| {
        s.split('\n')
            .find_map(|l| l.strip_prefix("sidecar="))
            .map(str::to_string)
    })?;
    let ours = is_plain_file_name(&name) && owned_sidecar_id(manifest_name, &name).is_some();
    ours.then_some(name)
}

/// Temp files `.<name>.<pid>.<seq>.<sidecar|manifest>.tmp` of earlier saves of this
/// manifest whose process is gone (killed mid-save): removed after a successful save.
/// Temp files of live processes (a save in progress elsewhere) and of this process are
/// left alone, as is anything that does not match the pattern exactly. Best effort.
fn remove_stale_temps(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(f) = file_name.to_str() else {
            continue;
        };
        let Some(mid) = f
            .strip_prefix('.')
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let parts: Vec<&str> = mid.split('.').collect();
        let [pid, seq, what] = parts[..] else {
            continue;
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !digits(seq) || !matches!(what, "sidecar" | "manifest") || pid == me {
            continue;
        }
        if !process_is_gone(pid) {
            continue;
        }
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if is_file {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// True only when process `pid` certainly does not exist.
fn process_is_gone(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: kill with signal 0 sends nothing; it only checks that the process
        // exists (ESRCH if not). No memory is touched.
        let r = unsafe { libc::kill(pid, 0) };
        r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Step 3 of a save: write `text` to a temp manifest, fsync, rename it over
/// `manifest_path` (the commit point).
fn commit_manifest(
    dir: &Path,
    name: &str,
    manifest_path: &Path,
    text: &str,
) -> Result<(), PersistError> {
    let tmp_manifest = temp_path(dir, name, "manifest");
    let mut manifest_guard = RemoveOnDrop(Some(tmp_manifest.clone()));
    checkpoint("manifest-write")?;
    let mut mf = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_manifest)
        .map_err(io_err("create temp manifest", &tmp_manifest))?;
    mf.write_all(text.as_bytes())
        .map_err(io_err("write temp manifest", &tmp_manifest))?;
    checkpoint("manifest-sync")?;
    mf.sync_all()
        .map_err(io_err("fsync temp manifest", &tmp_manifest))?;
    drop(mf);
    checkpoint("manifest-rename")?;
    fs::rename(&tmp_manifest, manifest_path)
        .map_err(io_err("rename manifest to", manifest_path))?;
    manifest_guard.disarm();
    Ok(())
}

/// Step 4 of a save: delete the previous sidecar unless it is the one just written;
/// the path of one that could not be deleted.
fn delete_old_sidecar(dir: &Path, old: Option<String>, new_name: Option<&str>) -> Option<PathBuf> {
    let old = old.filter(|o| Some(o.as_str()) != new_name)?;
    let old_path = dir.join(old);
    let deleted = checkpoint("old-sidecar-delete").is_ok() && fs::remove_file(&old_path).is_ok();
    (!deleted).then_some(old_path)
}

/// Removes a file on drop unless disarmed: cleans up after a failed save.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn temp_path(dir: &Path, name: &str, what: &str) -> PathBuf {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{seq}.{what}.tmp", std::process::id()))
}

impl PhextSpace {
    /// Save Owned and Mapped pages (Scratch pages are not saved) to `manifest_path` plus a
    /// sidecar beside it, atomically (see the module docs). Every coordinate part must be
    /// <= 999.
    pub fn save(&self, manifest_path: &Path) -> Result<SaveStats, PersistError> {
        let (dir, name) = split_manifest_path(manifest_path)?;
        let all = self.pages();
        let pages: Vec<Arc<Page>> = all
            .iter()
            .filter(|p| p.kind().is_persisted())
            .cloned()
            .collect();
        if let Some(p) = pages
            .iter()
            .find(|p| p.coord().max_part() > FILE_PART_LIMIT)
        {
            return Err(PersistError::PartAboveFileLimit { coord: p.coord() });
        }
        let old_sidecar = previous_sidecar(manifest_path, &name);
        if pages.is_empty() {
            // No sidecar: the manifest says the space is empty (see format.rs).
            let marker = EmptySpace {
                layout: self.layout(),
                part_limit: self.part_limit(),
            };
            let mut scrolls = HashMap::with_capacity(1);
            scrolls.insert(Coord::ORIGIN.to_libphext(), marker.to_scroll());
            let text = libphext::phext::implode(scrolls);
            commit_manifest(&dir, &name, manifest_path, &text)?;
            sync_dir(&dir)?;
            let old_sidecar_left = delete_old_sidecar(&dir, old_sidecar, None);
            remove_stale_temps(&dir, &name);
            return Ok(SaveStats {
                pages: 0,
                skipped_scratch: all.len(),
                page_bytes: 0,
                sidecar_bytes: 0,
                manifest_bytes: text.len() as u64,
                sidecar: None,
                old_sidecar_left,
            });
        }

        // Offsets: 64-byte aligned, after the header, in layout order.
        let mut offsets = Vec::with_capacity(pages.len());
        let mut end = HEADER_LEN;
        for p in &pages {
            let off = align_up(end).unwrap_or(usize::MAX);
            offsets.push(off);
            end = off.saturating_add(p.len_bytes());
        }
        let total_len = end as u64;

        // 1. Sidecar to a temp file.
        let tmp_sidecar = temp_path(&dir, &name, "sidecar");
        let mut tmp_guard = RemoveOnDrop(Some(tmp_sidecar.clone()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_sidecar)
            .map_err(io_err("create temp sidecar", &tmp_sidecar))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let werr = io_err("write temp sidecar", &tmp_sidecar);
        let mut pos = HEADER_LEN;
        let mut sums = Vec::with_capacity(pages.len());
        let result: io::Result<()> = (|| {
            w.write_all(&[0u8; HEADER_LEN])?; // placeholder, rewritten below
            for (i, (p, &off)) in pages.iter().zip(&offsets).enumerate() {
                if i == pages.len() / 2 {
                    checkpoint("sidecar-write").map_err(io::Error::other)?;
                }
                w.write_all(&[0u8; 64][..off - pos])?; // padding is < 64 bytes
                                                       // Hash and write under one read lock, so the checksum matches the bytes
                                                       // even while sentrons keep writing.
                let sum = p.read(|b| w.write_all(b).map(|()| xxhash_rust::xxh3::xxh3_64(b)))?;
                sums.push(sum);
                pos = off + p.len_bytes();
            }
            Ok(())
        })();
        result.map_err(werr)?;

        // Content id: a hash of everything the manifest will say about the pages.
        let layout = self.layout();
        let mut meta = Vec::with_capacity(16 + pages.len() * 64);
        meta.extend_from_slice(&[layout.code()]);
        meta.extend_from_slice(&self.part_limit().to_le_bytes());
        for ((p, &off), &sum) in pages.iter().zip(&offsets).zip(&sums) {
            meta.extend_from_slice(&p.coord().key().0.to_le_bytes());
            meta.extend_from_slice(&[
                p.dtype().code(),
                kind_code(p.kind()),
                p.is_read_only() as u8,
            ]);
            for v in [p.shape()[0], p.shape()[1], off, p.len_bytes()] {
                meta.extend_from_slice(&(v as u64).to_le_bytes());
            }
            meta.extend_from_slice(&sum.to_le_bytes());
        }
        let content_id = xxhash_rust::xxh3::xxh3_64(&meta);
        let header = Header {
            total_len,
            pages: pages.len() as u64,
            content_id,
            part_limit: self.part_limit(),
            layout,
        };
        let mut file = w
            .into_inner()
            .map_err(|e| io_err("write temp sidecar", &tmp_sidecar)(e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header.encode()))
            .map_err(io_err("write sidecar header", &tmp_sidecar))?;
        checkpoint("sidecar-sync")?;
        file.sync_all()
            .map_err(io_err("fsync temp sidecar", &tmp_sidecar))?;
        drop(file);

        // 2. Rename to the versioned name.
        let new_name = sidecar_name(&name, content_id);
        let sidecar_path = dir.join(&new_name);
        checkpoint("sidecar-rename")?;
        fs::rename(&tmp_sidecar, &sidecar_path)
            .map_err(io_err("rename sidecar to", &sidecar_path))?;
        tmp_guard.disarm();
        // Until the manifest commits, the new sidecar is garbage, unless it is the very
        // file the old manifest names (identical content, same id).
        let same_as_old = old_sidecar.as_deref() == Some(new_name.as_str());
        let mut sidecar_guard = RemoveOnDrop((!same_as_old).then(|| sidecar_path.clone()));
        sync_dir(&dir)?;

        // 3. Manifest: one scroll per page at its own coordinate.
        let mut scrolls = HashMap::with_capacity(pages.len());
        for ((p, &off), &sum) in pages.iter().zip(&offsets).zip(&sums) {
            let entry = PageEntry {
                coord: p.coord(),
                dtype: p.dtype(),
                shape: p.shape(),
                kind: p.kind(),
                read_only: p.is_read_only(),
                offset: off as u64,
                length: p.len_bytes() as u64,
                xxh3: sum,
                sidecar: new_name.clone(),
            };
            scrolls.insert(p.coord().to_libphext(), entry.to_scroll());
        }
        let text = libphext::phext::implode(scrolls);
        commit_manifest(&dir, &name, manifest_path, &text)?;
        sidecar_guard.disarm();
        // Committed. A failed directory fsync now only risks durability, not consistency;
        // report it all the same.
        sync_dir(&dir)?;

        // 4. Delete the previous sidecar, and temp files of saves that were killed.
        let old_sidecar_left = delete_old_sidecar(&dir, old_sidecar, Some(&new_name));
        remove_stale_temps(&dir, &name);
        Ok(SaveStats {
            pages: pages.len(),
            skipped_scratch: all.len() - pages.len(),
            page_bytes: pages.iter().map(|p| p.len_bytes() as u64).sum(),
            sidecar_bytes: total_len,
            manifest_bytes: text.len() as u64,
            sidecar: Some(sidecar_path),
            old_sidecar_left,
        })
    }

    /// Load a space saved by [`PhextSpace::save`]. Verifies the manifest (every key and
    /// number), the sidecar header, that every page lies inside the sidecar, 64-byte
    /// aligned and disjoint from the others, and every page's checksum. Any problem is an
    /// error naming the file and, where there is one, the coordinate.
    pub fn load(manifest_path: &Path, mode: LoadMode) -> Result<PhextSpace, PersistError> {
        let (dir, _) = split_manifest_path(manifest_path)?;
        let entries = match read_manifest(manifest_path)? {
            Manifest::Empty(m) => return Ok(PhextSpace::with_part_limit(m.layout, m.part_limit)?),
            Manifest::Pages(entries) => entries,
        };
        let Some(first) = entries.first() else {
            // read_manifest never returns an empty page list; stay total anyway.
            return Err(PersistError::NoPages {
                path: manifest_path.to_path_buf(),
            });
        };
        let name = first.sidecar.clone();
        for e in &entries {
            if e.sidecar != name {
                return Err(PersistError::MixedSidecars {
                    path: manifest_path.to_path_buf(),
                    coord: e.coord,
                    first: name,
                    other: e.sidecar.clone(),
                });
            }
        }
        let name_id = sidecar_name_id(&name).filter(|_| is_plain_file_name(&name));
        let Some(name_id) = name_id else {
            return Err(PersistError::BadSidecarName {
                path: manifest_path.to_path_buf(),
                coord: first.coord,
                name,
            });
        };
        let sidecar_path = dir.join(&name);
        let mut file = open_nonblocking(&sidecar_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => PersistError::MissingSidecar {
                path: sidecar_path.clone(),
                manifest: manifest_path.to_path_buf(),
            },
            _ => io_err("open sidecar", &sidecar_path)(e),
        })?;
        let actual_len = check_regular(&file, "sidecar", &sidecar_path)?;
        let bad_header = |problem: String| PersistError::BadSidecarHeader {
            path: sidecar_path.clone(),
            problem,
        };
        if actual_len < HEADER_LEN as u64 {
            return Err(bad_header(format!(
                "is {actual_len} bytes, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        match mode {
            LoadMode::Map => {
                // SAFETY: the mapping is read-only and pages never write through it. The
                // file must not be modified while mapped (saves never do: they rename new
                // files into place); see the module docs. `populate` pre-faults the whole
                // file in one call: load reads every byte to verify checksums anyway.
                let map = unsafe { MmapOptions::new().populate().map(&file) }
                    .map_err(io_err("mmap sidecar", &sidecar_path))?;
                let header = check_sidecar(&map, &entries, name_id, &sidecar_path, manifest_path)?;
                let space = PhextSpace::with_part_limit(header.layout, header.part_limit)?;
                let pages = entries
                    .iter()
                    .map(|e| MappedPage {
                        coord: e.coord,
                        dtype: e.dtype,
                        shape: e.shape,
                        offset: e.offset as usize, // <= sidecar length, checked
                    })
                    .collect();
                space.adopt_map(Arc::new(map), pages)?;
                Ok(space)
            }
            LoadMode::Copy => {
                let len = usize::try_from(actual_len).unwrap_or(usize::MAX);
                let mut buf =
                    AlignedBuf::zeroed_for_fill(len).ok_or(PersistError::OutOfMemory {
                        path: sidecar_path.clone(),
                        bytes: actual_len,
                    })?;
                file.read_exact(buf.as_mut_slice())
                    .map_err(io_err("read sidecar", &sidecar_path))?;
                let header = check_sidecar(
                    buf.as_mut_slice(),
                    &entries,
                    name_id,
                    &sidecar_path,
                    manifest_path,
                )?;
                let space = PhextSpace::with_part_limit(header.layout, header.part_limit)?;
                let pages = entries
                    .iter()
                    .map(|e| ArenaPage {
                        coord: e.coord,
                        dtype: e.dtype,
                        shape: e.shape,
                        kind: PageKind::Owned,
                        read_only: e.kind == PageKind::Owned && e.read_only,
                        offset: e.offset as usize,
                    })
                    .collect();
                space.adopt_arena(buf, pages)?;
                Ok(space)
            }
        }
    }
}

fn kind_code(kind: PageKind) -> u8 {
    match kind {
        PageKind::Owned => 0,
        PageKind::Mapped => 1,
        PageKind::Scratch => 2,
    }
}

/// What a manifest holds.
enum Manifest {
    /// Page entries, sorted by offset; never empty.
    Pages(Vec<PageEntry>),
    /// The empty-space marker of a space saved without pages.
    Empty(EmptySpace),
}

/// Read and parse the manifest: page entries (sorted by offset) or the empty-space
/// marker. A 0-byte manifest, or one with neither, is an error.
fn read_manifest(path: &Path) -> Result<Manifest, PersistError> {
    let bytes = read_bounded(path, "manifest", MAX_MANIFEST_BYTES)?;
    if bytes.is_empty() {
        return Err(PersistError::EmptyManifest {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| PersistError::ManifestNotText {
        path: path.to_path_buf(),
    })?;
    let mut entries = Vec::new();
    let mut marker: Option<(Coord, EmptySpace)> = None;
    for (lcoord, scroll) in libphext::phext::explode(&text) {
        if scroll.is_empty() {
            continue; // explode reports an empty final scroll for an empty document
        }
        let coord = Coord::from_libphext(&lcoord, DEFAULT_PART_LIMIT).map_err(|source| {
            PersistError::BadCoordinate {
                path: path.to_path_buf(),
                coord: lcoord.to_string(),
                source,
            }
        })?;
        let bad = |problem: String| PersistError::BadScroll {
            path: path.to_path_buf(),
            coord: coord.to_string(),
            problem,
        };
        if EmptySpace::is_marker(&scroll) {
            let m = EmptySpace::parse(&scroll).map_err(bad)?;
            if marker.replace((coord, m)).is_some() {
                return Err(bad("a second empty-space marker".to_string()));
            }
            continue;
        }
        let entry = PageEntry::parse(coord, &scroll).map_err(bad)?;
        entries.push(entry);
    }
    match (marker, entries.is_empty()) {
        (Some((_, m)), true) => Ok(Manifest::Empty(m)),
        (Some((coord, _)), false) => Err(PersistError::BadScroll {
            path: path.to_path_buf(),
            coord: coord.to_string(),
            problem: "an empty-space marker in a manifest that also lists pages".to_string(),
        }),
        (None, true) => Err(PersistError::NoPages {
            path: path.to_path_buf(),
        }),
        (None, false) => {
            // Zero-length pages first at a shared offset, so they never look like overlaps.
            entries.sort_by_key(|e| (e.offset, e.length, e.coord));
            Ok(Manifest::Pages(entries))
        }
    }
}

/// Check the sidecar bytes against the header and the manifest entries (which are sorted
/// by offset), including every checksum.
fn check_sidecar(
    bytes: &[u8],
    entries: &[PageEntry],
    name_id: u64,
    path: &Path,
    manifest: &Path,
) -> Result<Header, PersistError> {
    let header = Header::decode(bytes).map_err(|problem| PersistError::BadSidecarHeader {
        path: path.to_path_buf(),
        problem,
    })?;
    let actual = bytes.len() as u64;
    if actual < header.total_len {
        return Err(PersistError::TruncatedSidecar {
            path: path.to_path_buf(),
            expected: header.total_len,
            actual,
        });
    }
    if actual > header.total_len {
        return Err(PersistError::BadSidecarHeader {
            path: path.to_path_buf(),
            problem: format!(
                "is {actual} bytes but its header says {}: trailing bytes",
                header.total_len
            ),
        });
    }
    if header.content_id != name_id {
        return Err(PersistError::BadSidecarHeader {
            path: path.to_path_buf(),
            problem: format!(
                "content id {:016x} does not match the id {name_id:016x} in its name (manifest {} names another save)",
                header.content_id,
                manifest.display()
            ),
        });
    }
    if header.pages != entries.len() as u64 {
        return Err(PersistError::PageCountMismatch {
            path: path.to_path_buf(),
            manifest: entries.len() as u64,
            sidecar: header.pages,
        });
    }
    let mut prev: Option<(u64, Coord)> = None; // end and coordinate of the previous page
    for e in entries {
        let end = e.offset.checked_add(e.length);
        let inside = e.offset >= HEADER_LEN as u64 && end.is_some_and(|x| x <= actual);
        if !inside {
            return Err(PersistError::PageOutOfSidecar {
                path: path.to_path_buf(),
                coord: e.coord,
                offset: e.offset,
                length: e.length,
                sidecar_len: actual,
            });
        }
        if e.offset % 64 != 0 {
            return Err(PersistError::MisalignedPage {
                path: path.to_path_buf(),
                coord: e.coord,
                offset: e.offset,
            });
        }
        if let Some((prev_end, prev_coord)) = prev {
            if e.offset < prev_end {
                return Err(PersistError::OverlappingPages {
                    path: path.to_path_buf(),
                    first: prev_coord,
                    second: e.coord,
                });
            }
        }
        let end = e.offset + e.length; // checked above
        prev = Some((end, e.coord));
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[e.offset as usize..end as usize]);
        if sum != e.xxh3 {
            return Err(PersistError::ChecksumMismatch {
                path: path.to_path_buf(),
                coord: e.coord,
                expected: e.xxh3,
                actual: sum,
            });
        }
    }
    Ok(header)
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;

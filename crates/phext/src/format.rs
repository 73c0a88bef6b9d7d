//! The on-disk format of a saved phext space: the sidecar header and the text of one
//! manifest scroll. I/O and the atomic-save protocol live in `persist.rs`.
//!
//! Sidecar (`<manifest name>.<16-hex content id>.bin`), little-endian:
//!
//! | bytes  | field                                             |
//! |--------|---------------------------------------------------|
//! | 0..8   | magic `VTPUPAGE`                                  |
//! | 8..12  | format version (u32, = 1)                         |
//! | 12..16 | header length (u32, = 64)                         |
//! | 16..24 | total file length in bytes (u64)                  |
//! | 24..32 | page count (u64)                                  |
//! | 32..40 | content id (u64, also in the file name)           |
//! | 40..44 | part limit of the saved space (u32)               |
//! | 44     | layout code (0 insertion, 1 zorder, 2 hilbert)    |
//! | 45..56 | zero                                              |
//! | 56..64 | xxh3-64 of bytes 0..56                            |
//!
//! then page bytes, each at a 64-byte-aligned offset, in the layout's order, zero padding
//! between them.
//!
//! Manifest scroll (one per page, at the page's coordinate), `key=value` lines in this
//! order: `vtpu-page=1`, `dtype`, `shape` (`ROWSxCOLS`), `kind` (`owned`|`mapped`),
//! `read_only` (`true`|`false`), `offset`, `length`, `xxh3` (16 lower-case hex digits),
//! `sidecar`.
//!
//! A space without pages is saved as one scroll at `1.1.1/1.1.1/1.1.1` and no sidecar:
//! `vtpu-empty-space=1`, `layout` (`insertion`|`zorder`|`hilbert`), `part_limit`. So a
//! 0-byte (or otherwise page-less) manifest is never mistaken for an empty space: it is
//! an error.

use crate::coord::{Coord, MAX_PART_LIMIT};
use crate::curve::Layout;
use crate::dtype::DType;
use crate::page::PageKind;

pub(crate) const MAGIC: [u8; 8] = *b"VTPUPAGE";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;
/// Every coordinate part in a file is at most this (what other phext readers accept).
pub(crate) const FILE_PART_LIMIT: u32 = 999;

/// The sidecar header (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub total_len: u64,
    pub pages: u64,
    pub content_id: u64,
    pub part_limit: u32,
    pub layout: Layout,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.total_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.pages.to_le_bytes());
        h[32..40].copy_from_slice(&self.content_id.to_le_bytes());
        h[40..44].copy_from_slice(&self.part_limit.to_le_bytes());
        h[44] = self.layout.code();
        let sum = xxhash_rust::xxh3::xxh3_64(&h[..56]);
        h[56..64].copy_from_slice(&sum.to_le_bytes());
        h
    }

    /// Decode and check a header; the error is a sentence about what is wrong.
    pub(crate) fn decode(h: &[u8]) -> Result<Header, String> {
        if h.len() < HEADER_LEN {
            return Err(format!(
                "is {} bytes, shorter than the {HEADER_LEN}-byte header",
                h.len()
            ));
        }
        if h[0..8] != MAGIC {
            return Err(format!(
                "bad magic {:?}, expected \"VTPUPAGE\" (not a vtpu page sidecar)",
                String::from_utf8_lossy(&h[0..8])
            ));
        }
        let version = u32_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this build reads version {FORMAT_VERSION}"
            ));
        }
        let stored = u64_at(h, 56);
        let actual = xxhash_rust::xxh3::xxh3_64(&h[..56]);
        if stored != actual {
            return Err(format!(
                "header checksum mismatch: stored {stored:016x}, header hashes to {actual:016x}"
            ));
        }
        let header_len = u32_at(h, 12);
        if header_len as usize != HEADER_LEN {
            return Err(format!("header length {header_len}, expected {HEADER_LEN}"));
        }
        if h[45..56].iter().any(|&b| b != 0) {
            return Err("reserved header bytes 45..56 are not zero".to_string());
        }
        let layout =
            Layout::from_code(h[44]).ok_or_else(|| format!("unknown layout code {}", h[44]))?;
        let part_limit = u32_at(h, 40);
        if !(1..=MAX_PART_LIMIT).contains(&part_limit) {
            return Err(format!(
                "part limit {part_limit} is out of range 1..={MAX_PART_LIMIT}"
            ));
        }
        Ok(Header {
            total_len: u64_at(h, 16),
            pages: u64_at(h, 24),
            content_id: u64_at(h, 32),
            part_limit,
            layout,
        })
    }
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The sidecar name for a manifest file name and content id.
pub(crate) fn sidecar_name(manifest_name: &str, content_id: u64) -> String {
    format!("{manifest_name}.{content_id:016x}.bin")
}

/// The content id encoded in a sidecar name (`*.<16 lower-case hex>.bin`).
pub(crate) fn sidecar_name_id(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".bin")?;
    let (_, hex) = stem.rsplit_once('.')?;
    parse_hex16(hex)
}

/// The content id of `name` if it is exactly the sidecar name of manifest
/// `manifest_name` (`<manifest_name>.<16 lower-case hex>.bin`), the only files a save
/// may delete. `m.phext.0123456789abcdef.<id>.bin` ends like one of ours but belongs
/// to manifest `m.phext.0123456789abcdef`.
pub(crate) fn owned_sidecar_id(manifest_name: &str, name: &str) -> Option<u64> {
    let hex = name
        .strip_prefix(manifest_name)?
        .strip_prefix('.')?
        .strip_suffix(".bin")?;
    parse_hex16(hex)
}

/// A name that may be joined to the manifest's directory: one plain path component with
/// no control characters (which would also break the phext scroll it is stored in).
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

fn parse_hex16(s: &str) -> Option<u64> {
    let ok = s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// The marker scroll of a saved space without pages (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EmptySpace {
    pub layout: Layout,
    pub part_limit: u32,
}

/// The key that makes a scroll an empty-space marker.
pub(crate) const EMPTY_SPACE_KEY: &str = "vtpu-empty-space";

impl EmptySpace {
    pub(crate) fn to_scroll(self) -> String {
        format!(
            "{EMPTY_SPACE_KEY}={FORMAT_VERSION}\nlayout={}\npart_limit={}",
            self.layout.name(),
            self.part_limit
        )
    }

    /// Is this scroll an empty-space marker (whether or not it is a valid one)?
    pub(crate) fn is_marker(text: &str) -> bool {
        text.starts_with(EMPTY_SPACE_KEY) && text[EMPTY_SPACE_KEY.len()..].starts_with('=')
    }

    /// Parse a marker scroll; the error is a sentence about what is wrong.
    pub(crate) fn parse(text: &str) -> Result<EmptySpace, String> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body.split('\n');
        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("vtpu-empty-space="));
        if version != Some(&*FORMAT_VERSION.to_string()) {
            return Err(format!(
                "empty-space marker {:?}: unsupported version, this build reads {FORMAT_VERSION}",
                cut(body.lines().next().unwrap_or(""))
            ));
        }
        let layout_text = lines
            .next()
            .and_then(|l| l.strip_prefix("layout="))
            .ok_or("empty-space marker: second line must be layout=NAME")?;
        let layout = Layout::parse(layout_text)
            .ok_or_else(|| format!("empty-space marker: unknown layout {:?}", cut(layout_text)))?;
        let limit_text = lines
            .next()
            .and_then(|l| l.strip_prefix("part_limit="))
            .ok_or("empty-space marker: third line must be part_limit=N")?;
        let part_limit = parse_num(limit_text, "part_limit")?;
        let part_limit = u32::try_from(part_limit)
            .ok()
            .filter(|l| (1..=MAX_PART_LIMIT).contains(l))
            .ok_or_else(|| format!("empty-space marker: part_limit {part_limit} is out of range 1..={MAX_PART_LIMIT}"))?;
        if let Some(extra) = lines.next() {
            return Err(format!(
                "empty-space marker: unexpected line {:?}",
                cut(extra)
            ));
        }
        Ok(EmptySpace { layout, part_limit })
    }
}

/// One page's entry in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageEntry {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    pub kind: PageKind,
    pub read_only: bool,
    pub offset: u64,
    pub length: u64,
    pub xxh3: u64,
    pub sidecar: String,
}

const KEYS: [&str; 9] = [
    "vtpu-page",
    "dtype",
    "shape",
    "kind",
    "read_only",
    "offset",
    "length",
    "xxh3",
    "sidecar",
];

impl PageEntry {
    /// The scroll text (no trailing newline: phext scrolls hold exactly their text).
    pub(crate) fn to_scroll(&self) -> String {
        format!(
            "vtpu-page={FORMAT_VERSION}\ndtype={}\nshape={}x{}\nkind={}\nread_only={}\noffset={}\nlength={}\nxxh3={:016x}\nsidecar={}",
            self.dtype.name(),
            self.shape[0],
            self.shape[1],
            self.kind.name(),
            self.read_only,
            self.offset,
            self.length,
            self.xxh3,
            self.sidecar
        )
    }

    /// Parse a scroll at `coord`; the error is a sentence about what is wrong. Checks
    /// every field and their consistency (shape x dtype = length), not the sidecar.
    pub(crate) fn parse(coord: Coord, text: &str) -> Result<PageEntry, String> {
        let mut values: [Option<&str>; 9] = [None; 9];
        let body = text.strip_suffix('\n').unwrap_or(text);
        for (n, line) in body.split('\n').enumerate() {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} {:?} is not key=value", n + 1, cut(line)))?;
            let slot = KEYS
                .iter()
                .position(|&k| k == key)
                .ok_or_else(|| format!("unknown key {:?} on line {}", cut(key), n + 1))?;
            if values[slot].replace(value).is_some() {
                return Err(format!("key {key} appears twice"));
            }
        }
        let version = values[0].ok_or(
            "is not a vtpu page (no vtpu-page= line); every scroll of a vtpu manifest describes one page",
        )?;
        if version != FORMAT_VERSION.to_string() {
            return Err(format!(
                "vtpu-page={:?}: unsupported page format version, this build reads {FORMAT_VERSION}",
                cut(version)
            ));
        }
        let get = |i: usize| values[i].ok_or_else(|| format!("missing key {}", KEYS[i]));
        let dtype = DType::parse(get(1)?)
            .ok_or_else(|| format!("unknown dtype {:?}", cut(get(1).unwrap_or(""))))?;
        let shape_text = get(2)?;
        let (r, c) = shape_text
            .split_once('x')
            .ok_or_else(|| format!("shape {:?} is not ROWSxCOLS", cut(shape_text)))?;
        let shape = [
            parse_num(r, "shape rows")? as usize,
            parse_num(c, "shape cols")? as usize,
        ];
        let kind = match get(3)? {
            "owned" => PageKind::Owned,
            "mapped" => PageKind::Mapped,
            "scratch" => return Err("kind scratch: scratch pages are never saved".to_string()),
            other => {
                return Err(format!(
                    "unknown kind {:?}, expected owned or mapped",
                    cut(other)
                ))
            }
        };
        let read_only = match get(4)? {
            "true" => true,
            "false" => false,
            other => return Err(format!("read_only {:?} is not true or false", cut(other))),
        };
        if kind == PageKind::Mapped && !read_only {
            return Err("kind mapped with read_only=false: mapped pages are read-only".to_string());
        }
        let offset = parse_num(get(5)?, "offset")?;
        let length = parse_num(get(6)?, "length")?;
        let xxh3 = parse_hex16(get(7)?).ok_or_else(|| {
            format!(
                "xxh3 {:?} is not 16 lower-case hex digits",
                cut(get(7).unwrap_or(""))
            )
        })?;
        let sidecar = get(8)?.to_string();
        let elems = shape[0]
            .checked_mul(shape[1])
            .ok_or_else(|| format!("shape {}x{} overflows", shape[0], shape[1]))?;
        let expected = dtype.bytes_for(elems).map_err(|e| e.to_string())?;
        if expected as u64 != length {
            return Err(format!(
                "length {length} does not match {dtype} {}x{} ({expected} bytes)",
                shape[0], shape[1]
            ));
        }
        Ok(PageEntry {
            coord,
            dtype,
            shape,
            kind,
            read_only,
            offset,
            length,
            xxh3,
            sidecar,
        })
    }
}

/// A decimal u64 (digits only: no sign, no spaces), fitting in usize.
fn parse_num(s: &str, what: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{what} {:?} is not a decimal number that fits this machine",
            cut(s)
        )
    };
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u64 = s.parse().map_err(|_| bad())?;
    usize::try_from(v).map_err(|_| bad())?;
    Ok(v)
}

/// File text for an error message, cut to 40 characters.
fn cut(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> PageEntry {
        PageEntry {
            coord: Coord::ORIGIN,
            dtype: DType::Q8_0,
            shape: [2, 32],
            kind: PageKind::Owned,
            read_only: false,
            offset: 64,
            length: 68,
            xxh3: 0x0123_4567_89ab_cdef,
            sidecar: "m.phext.0123456789abcdef.bin".to_string(),
        }
    }

    #[test]
    fn scroll_round_trip() {
        let e = entry();
        let text = e.to_scroll();
        assert!(text.starts_with("vtpu-page=1\ndtype=q8_0\nshape=2x32\nkind=owned\n"));
        assert_eq!(PageEntry::parse(Coord::ORIGIN, &text).unwrap(), e);
        assert_eq!(PageEntry::parse(Coord::ORIGIN, &(text + "\n")).unwrap(), e);
    }

    #[test]
    fn scroll_errors_say_what() {
        let ok = entry().to_scroll();
        let err = |t: String| PageEntry::parse(Coord::ORIGIN, &t).unwrap_err();
        assert!(err("hello world".into()).contains("not key=value"));
        assert!(err("title=notes".into()).contains("unknown key"));
        assert!(err("dtype=f32".into()).contains("is not a vtpu page"));
        assert!(err(ok.replace("dtype=q8_0\n", "")).contains("missing key dtype"));
        assert!(err(ok.replace("q8_0", "q9")).contains("unknown dtype"));
        assert!(err(ok.replace("2x32", "2x33")).contains("whole number of blocks"));
        assert!(err(ok.replace("2x32", "4x32")).contains("length 68 does not match"));
        assert!(err(ok.replace("2x32", "99999999999x99999999999")).contains("overflows"));
        assert!(err(ok.replace("offset=64", "offset=-64")).contains("offset"));
        assert!(err(ok.replace("offset=64", "offset=99999999999999999999999")).contains("offset"));
        assert!(err(ok.replace("kind=owned", "kind=scratch")).contains("never saved"));
        assert!(err(ok.replace("kind=owned", "kind=mapped")).contains("read-only"));
        assert!(err(ok.replace("xxh3=0123", "xxh3=0X23")).contains("hex"));
        assert!(err(ok.replace("vtpu-page=1", "vtpu-page=2")).contains("version"));
        assert!(err(format!("{ok}\nlength=68")).contains("twice"));
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = Header {
            total_len: 4096,
            pages: 3,
            content_id: 77,
            part_limit: 999,
            layout: Layout::Hilbert,
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        assert!(Header::decode(&bytes[..10])
            .unwrap_err()
            .contains("shorter"));
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(Header::decode(&bad).unwrap_err().contains("magic"));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("checksum"));
        let mut bad = bytes;
        bad[8] = 2;
        assert!(Header::decode(&bad).unwrap_err().contains("version"));
    }

    #[test]
    fn empty_space_marker_round_trip_and_errors() {
        let m = EmptySpace {
            layout: Layout::Hilbert,
            part_limit: 999,
        };
        let text = m.to_scroll();
        assert!(EmptySpace::is_marker(&text));
        assert_eq!(EmptySpace::parse(&text), Ok(m));
        assert!(!EmptySpace::is_marker("vtpu-empty-spacex=1"));
        assert!(!EmptySpace::is_marker(&entry().to_scroll()));
        for (bad, why) in [
            (
                "vtpu-empty-space=2\nlayout=zorder\npart_limit=999",
                "version",
            ),
            (
                "vtpu-empty-space=1\nlayout=spiral\npart_limit=999",
                "unknown layout",
            ),
            (
                "vtpu-empty-space=1\nlayout=zorder\npart_limit=0",
                "out of range",
            ),
            (
                "vtpu-empty-space=1\nlayout=zorder\npart_limit=99999",
                "out of range",
            ),
            ("vtpu-empty-space=1\nlayout=zorder", "part_limit"),
            (
                "vtpu-empty-space=1\nlayout=zorder\npart_limit=9\ndtype=f32",
                "unexpected line",
            ),
        ] {
            let e = EmptySpace::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    /// Only `<manifest>.<16 hex>.bin` belongs to a manifest: a longer name that starts
    /// the same way is another manifest's sidecar.
    #[test]
    fn sidecar_ownership_is_exact() {
        let id = 0x0123_4567_89ab_cdef;
        assert_eq!(
            owned_sidecar_id("m.phext", &sidecar_name("m.phext", id)),
            Some(id)
        );
        let other = sidecar_name("m.phext.0123456789abcdef", 5);
        assert_eq!(owned_sidecar_id("m.phext", &other), None);
        assert_eq!(
            owned_sidecar_id("m.phext", &sidecar_name("m.phex", id)),
            None
        );
        assert_eq!(
            owned_sidecar_id("m.phext", "m.phext.0123456789ABCDEF.bin"),
            None
        );
        assert_eq!(owned_sidecar_id("m.phext", "m.phext..bin"), None);
    }

    #[test]
    fn names() {
        let n = sidecar_name("m.phext", 0xabc);
        assert_eq!(n, "m.phext.0000000000000abc.bin");
        assert_eq!(sidecar_name_id(&n), Some(0xabc));
        assert_eq!(sidecar_name_id("m.phext.bin"), None);
        assert_eq!(sidecar_name_id("m.phext.0000000000000ABC.bin"), None);
        assert!(is_plain_file_name(&n));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\x17b", "a\nb"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}

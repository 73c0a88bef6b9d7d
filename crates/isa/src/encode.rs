//! The binary encoding of words and programs (`.vsiw` files), container version 2.
//!
//! Every multi-byte integer is little-endian. The layout is written down for people in
//! `docs/ISA.md`; this module is its only implementation.
//!
//! Slot (24 bytes): opcode u16 (the table's `code`), `args[0..4]` (4 x u8), 2 reserved
//! bytes (zero), `imm` u128. A word (SIW) is 72 bytes: the D, S and C slots in order.
//!
//! The decoder accepts only the canonical form, so `decode(encode(x)) == x` and
//! `encode(decode(b)) == b` for every accepted `b`: known opcodes, each op in its own
//! pipe's slot, zero reserved bytes, zero argument bytes beyond the op's small operands
//! and zero `imm` bits beyond what its big operand uses ([`Operand::imm_bits`]). Whether
//! the values make sense (register indices in range, valid coordinates, branch targets
//! inside the stream) is the validator's job, not the decoder's; the crate limits
//! (counts, sentron ids, page sizes, file size: see `limits.rs`) are checked by the
//! decoder, the assembler and the validator alike.
//!
//! Program container (version 2):
//!
//! ```text
//! header   magic "VSIW", version u16 = 2, flags u16 = 0,
//!          checked_len u64 (bytes after byte 24 = file length - 24),
//!          checksum u64 (xxh3-64 of every byte after byte 24),
//!          page_count u64, stream_count u64
//! page     coord key u128, dtype code u8, kind u8 (0 owned, 1 scratch, 2 mapped),
//!          read_only u8 (0|1), init u8 (0 zero, 1 f32), rows u32, cols u32,
//!          [init = 1: value_count u64, value_count x f32 bits u32]
//! stream   target u64 (u64::MAX = every sentron, else a sentron id < 64),
//!          word_count u64, word_count x 72-byte words
//! ```
//!
//! Nothing may follow the last stream. The checksum is verified before anything else
//! is decoded, so a damaged file (one flipped byte anywhere) is reported as damaged
//! instead of decoding as a different program; every count is then checked against the
//! bytes that remain and against the crate limits before anything is allocated.
//!
//! Version 1 (no length, no checksum: the header ended after the two counts) is not
//! read: its files are build products of `.vasm` sources, and reading unchecked bytes
//! would bring back the problem the checksum solves. The decoder says so and how to
//! rebuild the file (`vtpu asm SOURCE.vasm`).

use crate::limits;
use crate::word::{kind_code, kind_from_code};
use crate::{
    Op, Opcode, Operand, PageDecl, PageInitData, Pipe, Program, Siw, Stream, MAX_PAGES,
    MAX_PROGRAM_BYTES, MAX_STREAMS, MAX_STREAM_WORDS,
};
use vtpu_phext::{Coord, CoordKey, DType};

/// The four bytes every `.vsiw` file starts with.
pub const MAGIC: [u8; 4] = *b"VSIW";
/// The container version this build writes and reads.
pub const FORMAT_VERSION: u16 = 2;
/// The first version with a length and checksum; older files get a clear error.
const FIRST_CHECKED_VERSION: u16 = 2;
/// Bytes of one encoded slot.
pub const SLOT_BYTES: usize = 24;
/// Bytes of one encoded word (three slots).
pub const SIW_BYTES: usize = 3 * SLOT_BYTES;
/// Bytes of the program header (magic .. stream count).
pub const HEADER_BYTES: usize = 40;
/// The checksum covers every byte from here to the end of the file.
pub const CHECKED_FROM: usize = 24;
/// Where the header's `checked_len` and `checksum` fields are.
const CHECKED_LEN_AT: usize = 8;
const CHECKSUM_AT: usize = 16;
/// Bytes of a page declaration without its init values.
pub const PAGE_FIXED_BYTES: usize = 28;
/// Bytes of a stream header.
pub const STREAM_HEADER_BYTES: usize = 16;
/// Stream target meaning "every sentron" (the SPMD stream).
const EVERY_SENTRON: u64 = u64::MAX;

/// Why bytes are not a valid encoding: where, what was expected and what was there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: expected {expected}, found {found}")]
pub struct DecodeError {
    /// Byte offset from the start of the input.
    pub offset: usize,
    pub expected: String,
    pub found: String,
}

fn err(offset: usize, expected: impl Into<String>, found: impl Into<String>) -> DecodeError {
    DecodeError {
        offset,
        expected: expected.into(),
        found: found.into(),
    }
}

fn encode_slot(op: &Op, out: &mut Vec<u8>) {
    out.extend_from_slice(&op.code.info().code.to_le_bytes());
    out.extend_from_slice(&op.args);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&op.imm.to_le_bytes());
}

/// The 72-byte encoding of a word.
pub fn encode_word(w: &Siw) -> [u8; SIW_BYTES] {
    let mut v = Vec::with_capacity(SIW_BYTES);
    for op in &w.slots {
        encode_slot(op, &mut v);
    }
    let mut out = [0u8; SIW_BYTES];
    out.copy_from_slice(&v);
    out
}

/// Decode exactly one 72-byte word.
pub fn decode_word(bytes: &[u8]) -> Result<Siw, DecodeError> {
    if bytes.len() != SIW_BYTES {
        return Err(err(
            0,
            format!("exactly {SIW_BYTES} bytes (one word)"),
            format!("{} bytes", bytes.len()),
        ));
    }
    decode_word_at(bytes, 0)
}

/// Decode one word from the first 72 bytes of `bytes`, whose first byte is at `base`.
fn decode_word_at(bytes: &[u8], base: usize) -> Result<Siw, DecodeError> {
    let mut w = Siw::NOP;
    for pipe in Pipe::ALL {
        let at = pipe as usize * SLOT_BYTES;
        let slot: [u8; SLOT_BYTES] = bytes
            .get(at..at + SLOT_BYTES)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                err(
                    base + at,
                    format!("a {SLOT_BYTES}-byte slot"),
                    "end of input",
                )
            })?;
        w.slots[pipe as usize] = decode_slot(slot, base + at, pipe)?;
    }
    Ok(w)
}

fn decode_slot(b: [u8; SLOT_BYTES], base: usize, pipe: Pipe) -> Result<Op, DecodeError> {
    let raw = u16::from_le_bytes([b[0], b[1]]);
    let code =
        Opcode::from_code(raw).ok_or_else(|| err(base, "a known opcode", format!("{raw:#06x}")))?;
    let info = code.info();
    if info.pipe != pipe {
        return Err(err(
            base,
            format!("a {}-pipe op in the {} slot", pipe.name(), pipe.name()),
            format!("{} (a {}-pipe op)", info.name, info.pipe.name()),
        ));
    }
    let args = [b[2], b[3], b[4], b[5]];
    let used = code.small_operands().count();
    for (i, &a) in args.iter().enumerate().skip(used) {
        if a != 0 {
            return Err(err(
                base + 2 + i,
                format!(
                    "0 in argument byte {i} ({} has {used} small operands)",
                    info.name
                ),
                a.to_string(),
            ));
        }
    }
    for (i, &r) in b[6..8].iter().enumerate() {
        if r != 0 {
            return Err(err(base + 6 + i, "0 in a reserved byte", r.to_string()));
        }
    }
    let mut imm_bytes = [0u8; 16];
    imm_bytes.copy_from_slice(&b[8..24]);
    let imm = u128::from_le_bytes(imm_bytes);
    let bits = code.big_operand().map_or(0, Operand::imm_bits);
    if bits < 128 && imm >> bits != 0 {
        return Err(err(
            base + 8,
            format!(
                "an immediate of {} using only its low {bits} bits (canonical form)",
                info.name
            ),
            format!("{imm:#x}"),
        ));
    }
    Ok(Op::new(code, args, imm))
}

/// The number of bytes [`encode_program`] writes for `p` (without writing them), so
/// limits on the file size can be checked before a program is encoded or accepted.
pub fn encoded_len(p: &Program) -> u64 {
    let pages: u64 = p.pages.iter().map(limits::encoded_page_bytes).sum();
    let streams: u64 = p
        .streams
        .iter()
        .map(|s| STREAM_HEADER_BYTES as u64 + SIW_BYTES as u64 * s.words.len() as u64)
        .sum();
    HEADER_BYTES as u64 + pages + streams
}

/// The `.vsiw` encoding of a program (container version 2, sealed with its length
/// and checksum).
pub fn encode_program(p: &Program) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(encoded_len(p)).unwrap_or(0));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]); // checked_len and checksum: sealed below
    out.extend_from_slice(&(p.pages.len() as u64).to_le_bytes());
    out.extend_from_slice(&(p.streams.len() as u64).to_le_bytes());
    for page in &p.pages {
        out.extend_from_slice(&page.coord.key().0.to_le_bytes());
        out.push(page.dtype.code());
        out.push(kind_code(page.kind));
        out.push(u8::from(page.read_only));
        out.push(match page.init {
            PageInitData::Zero => 0,
            PageInitData::F32(_) => 1,
        });
        out.extend_from_slice(&page.shape[0].to_le_bytes());
        out.extend_from_slice(&page.shape[1].to_le_bytes());
        if let PageInitData::F32(values) = &page.init {
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            for v in values {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
    for s in &p.streams {
        let target = s.sentron.map_or(EVERY_SENTRON, u64::from);
        out.extend_from_slice(&target.to_le_bytes());
        out.extend_from_slice(&(s.words.len() as u64).to_le_bytes());
        for w in &s.words {
            for op in &w.slots {
                encode_slot(op, &mut out);
            }
        }
    }
    seal(&mut out);
    out
}

/// Write the length and checksum fields of a version-2 container over its current
/// bytes. For tools and tests that edit a program's bytes on purpose (fuzzers that
/// must get past the checksum to reach the body); a no-op on input too short to have
/// the fields.
pub fn seal(bytes: &mut [u8]) {
    if bytes.len() < CHECKED_FROM {
        return;
    }
    let len = (bytes.len() - CHECKED_FROM) as u64;
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[CHECKED_FROM..]);
    bytes[CHECKED_LEN_AT..CHECKED_LEN_AT + 8].copy_from_slice(&len.to_le_bytes());
    bytes[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
}

/// A bounds-checked little-endian cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(err(
                self.pos,
                format!("{what} ({n} bytes)"),
                format!("end of input after {} bytes", self.remaining()),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn u128(&mut self, what: &str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }

    /// A count of items of `item_bytes` each, capped by `limit` and by the bytes left.
    fn count(&mut self, what: &str, limit: usize, item_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let raw = self.u64(what)?;
        let fits = self.remaining() / item_bytes.max(1);
        let cap = limit.min(fits);
        match usize::try_from(raw) {
            Ok(n) if n <= cap => Ok(n),
            _ => Err(err(
                at,
                format!(
                    "{what} of at most {cap} (limit {limit}, {} bytes left for {item_bytes}-byte items)",
                    self.remaining()
                ),
                raw.to_string(),
            )),
        }
    }

    fn flag(&mut self, what: &str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(err(at, format!("{what}: 0 or 1"), v.to_string())),
        }
    }
}

/// Decode a `.vsiw` program. Never panics and never allocates more than the input size
/// justifies; the error names the byte offset and what was expected there. Inputs
/// larger than [`MAX_PROGRAM_BYTES`] are refused before anything is read.
pub fn decode_program(bytes: &[u8]) -> Result<Program, DecodeError> {
    if bytes.len() as u64 > MAX_PROGRAM_BYTES {
        return Err(err(
            0,
            format!("a program of at most {MAX_PROGRAM_BYTES} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.array::<4>("the magic \"VSIW\"")?;
    if magic != MAGIC {
        return Err(err(
            0,
            "the magic \"VSIW\"",
            format!("{:?}", String::from_utf8_lossy(&magic)),
        ));
    }
    let at = r.pos;
    let version = r.u16("the format version")?;
    if version != FORMAT_VERSION {
        let hint = if version < FIRST_CHECKED_VERSION {
            " (an old file without a checksum: rebuild it from its source with `vtpu asm SOURCE.vasm`)"
        } else {
            " (written by a newer vtpu)"
        };
        return Err(err(
            at,
            format!("format version {FORMAT_VERSION}"),
            format!("version {version}{hint}"),
        ));
    }
    let at = r.pos;
    let flags = r.u16("the header flags")?;
    if flags != 0 {
        return Err(err(at, "header flags 0", flags.to_string()));
    }
    let at = r.pos;
    let checked_len = r.u64("the checked length")?;
    let stored_sum = r.u64("the checksum")?;
    let actual_len = (bytes.len() - CHECKED_FROM) as u64;
    if checked_len != actual_len {
        return Err(err(
            at,
            format!(
                "{} bytes after the first {CHECKED_FROM} (the length the header records)",
                checked_len
            ),
            format!("{actual_len} bytes: the file is truncated or has bytes appended"),
        ));
    }
    let actual_sum = xxhash_rust::xxh3::xxh3_64(&bytes[CHECKED_FROM..]);
    if stored_sum != actual_sum {
        return Err(err(
            CHECKSUM_AT,
            format!("checksum {stored_sum:016x} (xxh3-64 of bytes {CHECKED_FROM}..)"),
            format!("bytes that hash to {actual_sum:016x}: the file is damaged"),
        ));
    }
    let page_count = r.count("a page count", MAX_PAGES, PAGE_FIXED_BYTES)?;
    let stream_count = r.count("a stream count", MAX_STREAMS, STREAM_HEADER_BYTES)?;
    let mut pages = Vec::with_capacity(page_count);
    for _ in 0..page_count {
        pages.push(decode_page(&mut r)?);
    }
    let mut streams = Vec::with_capacity(stream_count);
    for _ in 0..stream_count {
        streams.push(decode_stream(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(err(
            r.pos,
            "end of input after the last stream",
            format!("{} more bytes", r.remaining()),
        ));
    }
    Ok(Program { pages, streams })
}

fn decode_page(r: &mut Reader<'_>) -> Result<PageDecl, DecodeError> {
    let at = r.pos;
    let key = r.u128("a page coordinate key")?;
    let coord = Coord::from_key(CoordKey(key))
        .map_err(|e| err(at, "a packed phext coordinate", format!("{key:#x} ({e})")))?;
    let at = r.pos;
    let code = r.u8("a dtype code")?;
    let dtype =
        DType::from_code(code).ok_or_else(|| err(at, "a known dtype code", code.to_string()))?;
    let at = r.pos;
    let code = r.u8("a page kind")?;
    let kind = kind_from_code(code).ok_or_else(|| {
        err(
            at,
            "a page kind 0 (owned), 1 (scratch) or 2 (mapped)",
            code.to_string(),
        )
    })?;
    let read_only = r.flag("the read-only flag")?;
    let has_values = r.flag("the init tag")?;
    let at = r.pos;
    let rows = r.u32("the page rows")?;
    let cols = r.u32("the page cols")?;
    if let Some(problem) = limits::page_shape_problem(rows, cols) {
        return Err(err(at, "a page shape within the limits", problem));
    }
    let init = if has_values {
        let n = r.count("an init value count", limits::MAX_PAGE_ELEMS_USIZE, 4)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(f32::from_bits(r.u32("an f32 init value")?));
        }
        PageInitData::F32(values)
    } else {
        PageInitData::Zero
    };
    Ok(PageDecl {
        coord,
        dtype,
        shape: [rows, cols],
        kind,
        read_only,
        init,
    })
}

fn decode_stream(r: &mut Reader<'_>) -> Result<Stream, DecodeError> {
    let at = r.pos;
    let target = r.u64("a stream target")?;
    let sentron = if target == EVERY_SENTRON {
        None
    } else {
        let id = u32::try_from(target)
            .ok()
            .filter(|&id| limits::sentron_id_ok(id));
        Some(id.ok_or_else(|| {
            err(
                at,
                format!(
                    "a sentron id 0..={} or 0xffffffffffffffff (every sentron)",
                    crate::MAX_SENTRONS - 1
                ),
                format!("{target} ({target:#x})"),
            )
        })?)
    };
    let n = r.count("a word count", MAX_STREAM_WORDS, SIW_BYTES)?;
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos;
        let b = r.take(SIW_BYTES, "a word")?;
        words.push(decode_word_at(b, at)?);
    }
    Ok(Stream { sentron, words })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nop_word_layout() {
        let b = encode_word(&Siw::NOP);
        assert_eq!(&b[0..2], &[0x00, 0x00]);
        assert_eq!(&b[24..26], &[0x00, 0x01]);
        assert_eq!(&b[48..50], &[0x00, 0x02]);
        assert_eq!(decode_word(&b), Ok(Siw::NOP));
    }

    #[test]
    fn rejects_wrong_pipe_and_noncanonical_bits() {
        let mut b = encode_word(&Siw::NOP);
        b[0] = 0x01; // DLI in the D slot is fine,
        assert!(decode_word(&b).is_ok());
        b[25] = 0x00; // but a D-pipe op in the S slot is not.
        let e = decode_word(&b).unwrap_err();
        assert_eq!(e.offset, 24);
        let mut b = encode_word(&Siw::NOP);
        b[6] = 1;
        assert_eq!(decode_word(&b).unwrap_err().offset, 6);
        let mut b = encode_word(&Siw::NOP);
        b[2] = 1; // DNOP has no small operands
        assert_eq!(decode_word(&b).unwrap_err().offset, 2);
        let mut b = encode_word(&Siw::NOP);
        b[23] = 1; // DNOP has no immediate
        assert_eq!(decode_word(&b).unwrap_err().offset, 8);
    }

    #[test]
    fn empty_program_and_truncation() {
        let p = Program::default();
        let b = encode_program(&p);
        assert_eq!(b.len(), HEADER_BYTES);
        assert_eq!(encoded_len(&p), HEADER_BYTES as u64);
        assert_eq!(decode_program(&b), Ok(p));
        for n in 0..b.len() {
            assert!(decode_program(&b[..n]).is_err());
        }
        let mut huge = b.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        seal(&mut huge);
        let e = decode_program(&huge).unwrap_err();
        assert_eq!(e.offset, 24, "{e}");
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let mut p = Program::default();
        p.streams.push(Stream {
            sentron: Some(1),
            words: vec![Siw::NOP; 2],
        });
        let b = encode_program(&p);
        assert_eq!(encoded_len(&p), b.len() as u64);
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(decode_program(&c).is_err(), "byte {i} bit {bit}");
            }
        }
        let mut c = b.clone();
        c[60] ^= 1;
        let e = decode_program(&c).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn version_1_is_refused_with_a_hint() {
        let mut b = encode_program(&Program::default());
        b[4] = 1;
        let e = decode_program(&b).unwrap_err().to_string();
        assert!(e.contains("vtpu asm"), "{e}");
    }
}

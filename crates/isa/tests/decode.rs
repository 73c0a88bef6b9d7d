//! Decoder errors: each names the byte offset and what was expected there.

use vtpu_isa::encode::{seal, HEADER_BYTES, PAGE_FIXED_BYTES, SIW_BYTES, STREAM_HEADER_BYTES};
use vtpu_isa::{assemble, decode_program, decode_word, encode_program, Program};

fn sample() -> Vec<u8> {
    let p =
        assemble(".page 1.1.1/1.1.1/1.1.2 f32 1x2 = 1, 2\n.sentron 1\nDLI r1, 7 | CHALT\nCHALT")
            .unwrap();
    encode_program(&p)
}

/// Offsets in `sample()`.
const PAGE: usize = HEADER_BYTES;
const STREAM: usize = PAGE + PAGE_FIXED_BYTES + 8 + 2 * 4;
const WORD0: usize = STREAM + STREAM_HEADER_BYTES;

#[track_caller]
fn check(bytes: &[u8], want: &str) {
    match decode_program(bytes) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => assert!(
            e.to_string().starts_with(want),
            "{e}\nshould start with {want}"
        ),
    }
}

/// `sample()` with bytes replaced and the container re-sealed (length and checksum), so
/// the decoder gets past the checksum to the field under test.
fn patched(at: usize, new: &[u8]) -> Vec<u8> {
    let mut b = sample();
    b[at..at + new.len()].copy_from_slice(new);
    seal(&mut b);
    b
}

#[test]
fn sample_decodes() {
    let b = sample();
    assert_eq!(b.len(), WORD0 + 2 * SIW_BYTES);
    let p = decode_program(&b).unwrap();
    assert_eq!(p.streams[0].sentron, Some(1));
    assert_eq!(encode_program(&p), b);
}

#[test]
fn header_errors() {
    check(
        b"ELF\x7f",
        "byte 0: expected the magic \"VSIW\", found \"ELF\\u{7f}\"",
    );
    check(
        b"VS",
        "byte 0: expected the magic \"VSIW\" (4 bytes), found end of input after 2 bytes",
    );
    check(
        &patched(4, &[3, 0]),
        "byte 4: expected format version 2, found version 3 (written by a newer vtpu)",
    );
    check(
        &patched(4, &[1, 0]),
        "byte 4: expected format version 2, found version 1 (an old file without a checksum: rebuild it from its source with `vtpu asm SOURCE.vasm`)",
    );
    check(
        &patched(6, &[1, 0]),
        "byte 6: expected header flags 0, found 1",
    );
    check(
        &patched(24, &u64::MAX.to_le_bytes()),
        "byte 24: expected a page count of at most",
    );
    check(
        &patched(32, &66u64.to_le_bytes()),
        "byte 32: expected a stream count of at most 12 (limit 65, 204 bytes left",
    );
    let mut b = sample();
    b.push(0);
    seal(&mut b);
    check(
        &b,
        &format!(
            "byte {}: expected end of input after the last stream, found 1 more bytes",
            b.len() - 1
        ),
    );
    assert_eq!(
        decode_program(&encode_program(&Program::default())),
        Ok(Program::default())
    );
}

#[test]
fn page_errors() {
    check(
        &patched(PAGE, &[0xff; 16]),
        "byte 40: expected a packed phext coordinate, found 0xffff",
    );
    check(
        &patched(PAGE + 16, &[99]),
        "byte 56: expected a known dtype code, found 99",
    );
    check(
        &patched(PAGE + 17, &[3]),
        "byte 57: expected a page kind 0 (owned), 1 (scratch) or 2 (mapped), found 3",
    );
    check(
        &patched(PAGE + 18, &[2]),
        "byte 58: expected the read-only flag: 0 or 1, found 2",
    );
    check(
        &patched(PAGE + 19, &[7]),
        "byte 59: expected the init tag: 0 or 1, found 7",
    );
    check(
        &patched(PAGE + 28, &1000u64.to_le_bytes()),
        "byte 68: expected an init value count of at most",
    );
    // Shapes beyond the limits the assembler and validator enforce too.
    check(
        &patched(PAGE + 20, &0u32.to_le_bytes()),
        "byte 60: expected a page shape within the limits, found shape 0x2",
    );
    let mut big = Vec::new();
    big.extend((1u32 << 16).to_le_bytes());
    big.extend((1u32 << 16).to_le_bytes());
    check(
        &patched(PAGE + 20, &big),
        "byte 60: expected a page shape within the limits, found shape 65536x65536 has 4294967296 elements",
    );
}

#[test]
fn damage_is_reported_as_damage() {
    // One flipped bit in a word's immediate would decode as another valid program
    // without the checksum.
    let mut b = sample();
    b[WORD0 + 8] ^= 1;
    check(&b, "byte 16: expected checksum");
    let e = decode_program(&b).unwrap_err().to_string();
    assert!(e.ends_with("the file is damaged"), "{e}");
    // Truncated or extended: the recorded length says so first.
    let b = sample();
    check(&b[..b.len() - 1], "byte 8: expected");
    let mut b = sample();
    b.extend([0; 72]);
    let e = decode_program(&b).unwrap_err().to_string();
    assert!(e.contains("truncated or has bytes appended"), "{e}");
}

#[test]
fn stream_and_word_errors() {
    check(
        &patched(STREAM, &(1u64 << 32).to_le_bytes()),
        &format!("byte {STREAM}: expected a sentron id"),
    );
    // Sentron ids follow the assembler's limit (0..=63), so `run` never blames a
    // --sentrons it was not given.
    check(
        &patched(STREAM, &u64::from(u32::MAX).to_le_bytes()),
        &format!("byte {STREAM}: expected a sentron id 0..=63 or 0xffffffffffffffff (every sentron), found 4294967295"),
    );
    check(
        &patched(STREAM, &64u64.to_le_bytes()),
        &format!("byte {STREAM}: expected a sentron id 0..=63"),
    );
    check(
        &patched(STREAM + 8, &3u64.to_le_bytes()),
        &format!("byte {}: expected a word count of at most 2", STREAM + 8),
    );
    check(
        &patched(WORD0, &[0xff, 0x0f]),
        &format!("byte {WORD0}: expected a known opcode, found 0x0fff"),
    );
    check(
        &patched(WORD0, &[0x01, 0x02]),
        &format!("byte {WORD0}: expected a D-pipe op in the D slot, found CSEND (a C-pipe op)"),
    );
    // DLI r1: argument bytes 1..4 must be zero, the imm's high 64 bits too.
    check(
        &patched(WORD0 + 3, &[5]),
        &format!(
            "byte {}: expected 0 in argument byte 1 (DLI has 1 small operands), found 5",
            WORD0 + 3
        ),
    );
    check(
        &patched(WORD0 + 6, &[1]),
        &format!("byte {}: expected 0 in a reserved byte, found 1", WORD0 + 6),
    );
    check(
        &patched(WORD0 + 16, &[1]),
        &format!(
            "byte {}: expected an immediate of DLI using only its low 64 bits",
            WORD0 + 8
        ),
    );
    // A count is checked against the bytes left before any word is read.
    let mut b = sample();
    b.pop();
    seal(&mut b);
    check(
        &b,
        &format!(
            "byte {}: expected a word count of at most 1 (limit 16777216, 143 bytes left",
            STREAM + 8
        ),
    );
}

#[test]
fn decode_word_needs_exactly_one_word() {
    let b = sample();
    let w = &b[WORD0..WORD0 + SIW_BYTES];
    assert!(decode_word(w).is_ok());
    let e = decode_word(&b[WORD0..WORD0 + SIW_BYTES + 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "byte 0: expected exactly 72 bytes (one word), found 73 bytes"
    );
}

//! Fuzzing with proptest: random bytes and mutated valid encodings into the decoders,
//! random text and mutated valid assembly into the assembler. Nothing may panic, and
//! whatever is accepted must round-trip.
//!
//! `cargo test` runs a modest number of cases; for a long run:
//! `VTPU_FUZZ_CASES=200000 cargo test --release -p vtpu-isa --test fuzz`.

mod common;

use common::{arb_program, arb_word};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::atomic::{AtomicU64, Ordering};
use vtpu_isa::encode::{seal, CHECKED_FROM, HEADER_BYTES, MAGIC, SIW_BYTES};
use vtpu_isa::{
    assemble, decode_program, decode_word, disassemble, encode_program, encode_word, validate, Op,
    Opcode, PageDecl, PageInitData, Pipe, Program, Siw, Stream, ValidateOptions, OPS,
};
use vtpu_phext::{Coord, DType, PageKind, MAX_PART_LIMIT};

const DEFAULT_CASES: u32 = 2000;

fn cases() -> u32 {
    std::env::var("VTPU_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Cases run and inputs accepted per test, printed (with `--nocapture`) once the
/// configured number of cases has run, so a long run reports what it exercised.
struct Stats {
    name: &'static str,
    run: AtomicU64,
    accepted: AtomicU64,
}

impl Stats {
    const fn new(name: &'static str) -> Stats {
        Stats {
            name,
            run: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }
    fn record(&self, accepted: bool) {
        if accepted {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        let run = self.run.fetch_add(1, Ordering::Relaxed) + 1;
        if run == u64::from(cases()) {
            eprintln!(
                "fuzz {}: {run} cases, {} accepted",
                self.name,
                self.accepted.load(Ordering::Relaxed)
            );
        }
    }
}

static BYTES: Stats = Stats::new("random bytes -> decode_program");
static PROGRAMS: Stats = Stats::new("mutated programs -> decode_program");
static WORDS: Stats = Stats::new("mutated words -> decode_word");
static TEXT: Stats = Stats::new("random text -> assemble");
static ASSEMBLY: Stats = Stats::new("mutated assembly -> assemble");
static WELL_FORMED: Stats = Stats::new("well-formed programs -> disassemble -> assemble");

/// Properties of any decoded program: exact re-encoding, a disassembly that never
/// panics, and text that assembles back to the same program whenever it assembles (it
/// always does for a valid program).
fn check_decoded(p: &Program, bytes: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(encode_program(p), bytes);
    let text = disassemble(p);
    let valid = validate(p, &ValidateOptions::default()).is_ok();
    match assemble(&text) {
        Ok(q) => prop_assert_eq!(&q, p, "text:\n{}", text),
        Err(e) => prop_assert!(!valid, "valid program, text rejected: {}\n{}", e, text),
    }
    Ok(())
}

/// Properties of any assembled program: the canonical text assembles to it, is a fixed
/// point, and the binary encoding round-trips.
fn check_assembled(p: &Program) -> Result<(), TestCaseError> {
    let text = disassemble(p);
    match assemble(&text) {
        Ok(q) => prop_assert_eq!(&q, p, "text:\n{}", text),
        Err(e) => prop_assert!(false, "canonical text rejected: {}\n{}", e, text),
    }
    let bytes = encode_program(p);
    let decoded = decode_program(&bytes);
    prop_assert_eq!(decoded.as_ref(), Ok(p));
    let _ = validate(p, &ValidateOptions::default());
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Overwrite 8 bytes with a little-endian u64 (hits counts and targets).
    Word(Index, u64),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), prop_oneof![any::<u64>(), 0u64..100, Just(u64::MAX)]).prop_map(|(i, v)| Mutation::Word(i, v)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Delete(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Word(i, v) => {
            let at = i.index(bytes.len());
            for (k, b) in v.to_le_bytes().into_iter().enumerate() {
                if let Some(x) = bytes.get_mut(at + k) {
                    *x = b;
                }
            }
        }
    }
}

/// Tokens the assembler knows, plus some it must reject.
fn arb_token() -> impl Strategy<Value = String> {
    let mnemonic =
        prop::sample::select(OPS.iter().map(|i| i.name).collect::<Vec<_>>()).prop_map(String::from);
    let fixed = prop::sample::select(vec![
        "\n",
        "\n",
        "\n",
        " ",
        " ",
        ",",
        ", ",
        "|",
        " | ",
        "{",
        "}",
        "=",
        ":",
        ";",
        "#",
        ".sentron",
        ".spmd",
        ".page",
        "r0",
        "r31",
        "r32",
        "t0",
        "t15",
        "t16",
        "c0",
        "c15",
        "@0",
        "@1",
        "@63",
        "@64",
        "all",
        "sum",
        "max",
        "owned",
        "scratch",
        "readonly",
        "mapped",
        "f32",
        "bf16",
        "q4_k",
        "4x8",
        "0x0",
        "1x1",
        "16777217x1",
        "1.1.1/1.1.1/1.1.1",
        "1.2.3/4.5.6/7.8.0",
        "999.999.999/999.999.999/999.999.999",
        "library",
        "scroll",
        "8",
        "9",
        "-1",
        "0x7f",
        "9223372036854775808",
        "1e-7",
        "1e50",
        "nan",
        "inf",
        "f32:0x7fc00000",
        "f32:0x",
        "loop",
        "loop:",
        "L0",
        "L0:",
        "\u{e9}",
        "\t",
        "\r\n",
    ])
    .prop_map(String::from);
    prop_oneof![
        3 => mnemonic,
        6 => fixed,
        1 => any::<u32>().prop_map(|v| v.to_string()),
        1 => "[ -~]{1,6}",
    ]
}

#[derive(Clone, Debug)]
enum TextEdit {
    DeleteChar(Index),
    DeleteLine(Index),
    Insert(Index, String),
    DuplicateLine(Index),
    SwapLines(Index, Index),
}

fn arb_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(TextEdit::DeleteChar),
        1 => any::<Index>().prop_map(TextEdit::DeleteLine),
        3 => (any::<Index>(), arb_token()).prop_map(|(i, t)| TextEdit::Insert(i, t)),
        1 => any::<Index>().prop_map(TextEdit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| TextEdit::SwapLines(a, b)),
    ]
}

fn edit(text: &str, e: &TextEdit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<&str> = text.lines().collect();
    match e {
        TextEdit::DeleteChar(i) if !chars.is_empty() => {
            let at = i.index(chars.len());
            chars[..at].iter().chain(&chars[at + 1..]).collect()
        }
        TextEdit::Insert(i, t) => {
            let at = i.index(chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            s.push_str(t);
            s.extend(&chars[at..]);
            s
        }
        TextEdit::DeleteLine(i) if !lines.is_empty() => {
            lines.remove(i.index(lines.len()));
            lines.join("\n")
        }
        TextEdit::DuplicateLine(i) if !lines.is_empty() => {
            let at = i.index(lines.len());
            lines.insert(at, lines[at]);
            lines.join("\n")
        }
        TextEdit::SwapLines(a, b) if !lines.is_empty() => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
            lines.join("\n")
        }
        _ => text.to_string(),
    }
}

/// Any well-formed op of `pipe`: canonical bits, but values anywhere in their fields
/// (registers past the file, unknown dtype codes, wild branch targets, ...).
fn arb_wellformed_op(pipe: Pipe) -> impl Strategy<Value = Op> {
    let codes: Vec<Opcode> = OPS
        .iter()
        .filter(|i| i.pipe == pipe)
        .map(|i| i.opcode)
        .collect();
    let byte = prop_oneof![3 => 0u8..20, 1 => any::<u8>()];
    let wide = prop_oneof![3 => 0u128..20, 1 => any::<u128>()];
    (
        prop::sample::select(codes),
        [byte.clone(), byte.clone(), byte.clone(), byte],
        wide,
    )
        .prop_map(|(code, mut args, mut imm)| {
            let used = code.small_operands().count();
            args[used..].fill(0);
            let bits = code.big_operand().map_or(0, |o| o.imm_bits());
            imm = if bits == 0 {
                0
            } else if bits < 128 {
                imm & ((1u128 << bits) - 1)
            } else {
                imm
            };
            Op::new(code, args, imm)
        })
}

fn arb_wellformed_program() -> impl Strategy<Value = Program> {
    let word = (
        arb_wellformed_op(Pipe::D),
        arb_wellformed_op(Pipe::S),
        arb_wellformed_op(Pipe::C),
    )
        .prop_map(|(d, s, c)| Siw { slots: [d, s, c] });
    // Within the crate limits the decoder checks (sentron ids < 64, page shapes).
    let sentron =
        prop_oneof![2 => Just(None), 3 => (0u32..4).prop_map(Some), 1 => (0u32..64).prop_map(Some)];
    let stream = (sentron, prop::collection::vec(word, 0..6))
        .prop_map(|(sentron, words)| Stream { sentron, words });
    let page = (
        prop::array::uniform9(prop_oneof![1u32..=3, 1u32..=16383]),
        prop::sample::select(DType::ALL.to_vec()),
        (
            prop_oneof![1u32..4, 1u32..=vtpu_isa::MAX_TILE_DIM],
            prop_oneof![1u32..300, 1u32..=vtpu_isa::MAX_TILE_DIM],
        )
            .prop_map(|(r, c)| (r, c.min((vtpu_isa::MAX_PAGE_ELEMS / u64::from(r)) as u32))),
        prop::sample::select(vec![PageKind::Owned, PageKind::Scratch, PageKind::Mapped]),
        any::<bool>(),
        prop::option::of(prop::collection::vec(
            any::<u32>().prop_map(f32::from_bits),
            0..5,
        )),
    )
        .prop_map(
            |(parts, dtype, (rows, cols), kind, read_only, values)| PageDecl {
                coord: Coord::new_with_limit(parts, MAX_PART_LIMIT)
                    .expect("parts within the limit"),
                dtype,
                shape: [rows, cols],
                kind,
                read_only,
                init: values.map_or(PageInitData::Zero, PageInitData::F32),
            },
        );
    (
        prop::collection::vec(page, 0..3),
        prop::collection::vec(stream, 0..4),
    )
        .prop_map(|(pages, streams)| Program { pages, streams })
}

/// A valid header claiming a few pages and streams, then random bytes, sealed with a
/// matching length and checksum so the decoder reads the random body.
fn header_then((pages, streams, rest): (u64, u64, Vec<u8>)) -> Vec<u8> {
    let mut b = encode_program(&Program::default());
    debug_assert_eq!(b.len(), HEADER_BYTES);
    b.truncate(CHECKED_FROM);
    b.extend(pages.to_le_bytes());
    b.extend(streams.to_le_bytes());
    b.extend(rest);
    seal(&mut b);
    b
}

proptest! {
    #![proptest_config(common::proptest_config(cases()))]

    #[test]
    fn random_bytes_never_panic_the_decoders(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            (0u64..3, 0u64..3, prop::collection::vec(any::<u8>(), 0..600)).prop_map(header_then),
        ],
    ) {
        let decoded = decode_program(&bytes);
        BYTES.record(decoded.is_ok());
        if let Ok(p) = decoded {
            check_decoded(&p, &bytes)?;
        }
        prop_assert!(bytes.starts_with(&MAGIC) || decode_program(&bytes).is_err());
        for chunk in bytes.chunks(SIW_BYTES) {
            if let Ok(w) = decode_word(chunk) {
                prop_assert_eq!(&encode_word(&w)[..], chunk);
            }
        }
    }

    #[test]
    fn mutated_programs_never_panic_the_decoder(
        (p, _) in arb_program(),
        muts in prop::collection::vec(arb_mutation(), 1..4),
        reseal in prop::bool::weighted(0.9),
    ) {
        let mut bytes = encode_program(&p);
        for m in &muts {
            mutate(&mut bytes, m);
        }
        // Mostly re-sealed so the body parser sees the damage; otherwise the checksum
        // must catch it.
        let unchanged = bytes == encode_program(&p);
        if reseal {
            seal(&mut bytes);
        }
        let decoded = decode_program(&bytes);
        if !reseal && !unchanged {
            prop_assert!(decoded.is_err(), "damage not detected");
        }
        PROGRAMS.record(decoded.is_ok());
        if let Ok(q) = decoded {
            check_decoded(&q, &bytes)?;
        }
    }

    #[test]
    fn mutated_words_never_panic_the_decoder(
        w in arb_word(64),
        muts in prop::collection::vec(arb_mutation(), 1..3),
    ) {
        let mut bytes = encode_word(&w).to_vec();
        for m in &muts {
            mutate(&mut bytes, m);
        }
        let decoded = decode_word(&bytes);
        WORDS.record(decoded.is_ok());
        if let Ok(v) = decoded {
            prop_assert_eq!(&encode_word(&v)[..], &bytes[..]);
        }
    }

    #[test]
    fn well_formed_programs_round_trip_or_are_rejected(p in arb_wellformed_program()) {
        let bytes = encode_program(&p);
        let decoded = decode_program(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&p));
        WELL_FORMED.record(assemble(&disassemble(&p)).is_ok());
        check_decoded(&p, &bytes)?;
    }

    #[test]
    fn random_text_never_panics_the_assembler(
        text in prop_oneof![
            prop::collection::vec(arb_token(), 0..40).prop_map(|t| t.join(" ")),
            prop::collection::vec(arb_token(), 0..40).prop_map(|t| t.concat()),
            any::<String>(),
        ],
    ) {
        let assembled = assemble(&text);
        TEXT.record(assembled.is_ok());
        if let Ok(p) = assembled {
            check_assembled(&p)?;
        }
    }

    #[test]
    fn mutated_assembly_never_panics_the_assembler(
        (p, _) in arb_program(),
        edits in prop::collection::vec(arb_edit(), 1..4),
    ) {
        let mut text = disassemble(&p);
        for e in &edits {
            text = edit(&text, e);
        }
        let assembled = assemble(&text);
        ASSEMBLY.record(assembled.is_ok());
        if let Ok(q) = assembled {
            check_assembled(&q)?;
        }
    }
}

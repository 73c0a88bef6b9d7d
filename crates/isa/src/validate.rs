//! The validator: the semantic rules a program must obey before it runs, and the
//! per-op register helpers the executors and the scheduler share.
//!
//! The assembler and the decoder only produce structurally well-formed programs (known
//! opcodes, each in its pipe's slot, canonical bits); a decoded program can still name
//! `t200` or branch past its stream. [`validate`] checks every rule and reports all
//! violations, each naming where it is. All checks are driven by the operand kinds of
//! the op table, never by op names.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::word::{kind_code, GROUP_ALL, KIND_OWNED, KIND_SCRATCH, REDUCE_NAMES};
use crate::{
    Op, Opcode, Operand, PageDecl, PageInitData, Pipe, Program, RegFile, MAX_PAGES, MAX_PAGE_ELEMS,
    MAX_SENTRONS, MAX_STREAMS, MAX_STREAM_WORDS, MAX_TILE_DIM, MAX_TILE_ELEMS,
};
use vtpu_phext::{Coord, CoordKey, DType, PageKind, DEFAULT_PART_LIMIT, DIM_NAMES};

/// Ops the program does not need (unread results, useless prefetches); separate from
/// [`validate`] because a program with dead ops is valid, just not honestly packed.
pub use crate::dead::{dead_ops, DeadOp, DeadReason};

/// What the program is validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Number of sentrons of the machine it will run on, if known: sentron operands,
    /// group members and explicit stream ids must be below it.
    pub sentrons: Option<usize>,
    /// Largest coordinate part allowed (phext files keep parts <= 999).
    pub part_limit: u32,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            sentrons: None,
            part_limit: DEFAULT_PART_LIMIT,
        }
    }
}

/// Where a validation error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Site {
    /// The program as a whole.
    Program,
    /// Page declaration `index` (at `coord`).
    Page { index: usize, coord: String },
    /// Stream `index` (of sentron `sentron`, or the SPMD stream).
    Stream { index: usize, sentron: Option<u32> },
    /// Word `word` of a stream.
    Word {
        stream: usize,
        sentron: Option<u32>,
        word: usize,
    },
    /// One slot (`op`) of a word.
    Slot {
        stream: usize,
        sentron: Option<u32>,
        word: usize,
        pipe: Pipe,
        op: &'static str,
    },
}

fn stream_name(index: usize, sentron: Option<u32>) -> String {
    match sentron {
        Some(id) => format!("stream {index} (sentron {id})"),
        None => format!("stream {index} (spmd)"),
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Program => write!(f, "program"),
            Site::Page { index, coord } => write!(f, "page {index} at {coord}"),
            Site::Stream { index, sentron } => write!(f, "{}", stream_name(*index, *sentron)),
            Site::Word {
                stream,
                sentron,
                word,
            } => write!(f, "{}, word {word}", stream_name(*stream, *sentron)),
            Site::Slot {
                stream,
                sentron,
                word,
                pipe,
                op,
            } => write!(
                f,
                "{}, word {word}, {} slot ({op})",
                stream_name(*stream, *sentron),
                pipe.name()
            ),
        }
    }
}

/// One violated rule: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub site: Site,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.site, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// The registers `op` reads, in operand order.
pub fn reads(op: &Op) -> impl Iterator<Item = (RegFile, u8)> {
    regs(op, Operand::reads)
}

/// The registers `op` writes, in operand order (written at the end of the word).
pub fn writes(op: &Op) -> impl Iterator<Item = (RegFile, u8)> {
    regs(op, Operand::writes)
}

fn regs(op: &Op, keep: fn(Operand) -> bool) -> impl Iterator<Item = (RegFile, u8)> {
    let args = op.args;
    op.code
        .small_operands()
        .zip(args)
        .filter(move |(kind, _)| keep(*kind))
        .filter_map(|(kind, a)| kind.reg_file().map(|f| (f, a)))
}

/// Check every semantic rule; `Err` holds every violation found.
pub fn validate(p: &Program, opts: &ValidateOptions) -> Result<(), Vec<ValidationError>> {
    let mut errs = Vec::new();
    let limit = opts.part_limit;
    check_pages(p, limit, &mut errs);
    check_streams(p, opts, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn coord_problem(c: &Coord, limit: u32) -> Option<String> {
    let max = c.max_part();
    (max > limit).then(|| format!("coordinate {c} has a part {max} above the part limit {limit}"))
}

fn check_pages(p: &Program, limit: u32, errs: &mut Vec<ValidationError>) {
    if p.pages.len() > MAX_PAGES {
        errs.push(ValidationError {
            site: Site::Program,
            message: format!(
                "{} page declarations, more than the limit {MAX_PAGES}",
                p.pages.len()
            ),
        });
    }
    let mut seen: HashMap<Coord, usize> = HashMap::new();
    for (index, page) in p.pages.iter().enumerate() {
        let mut push = |message: String| {
            errs.push(ValidationError {
                site: Site::Page {
                    index,
                    coord: page.coord.to_string(),
                },
                message,
            })
        };
        if let Some(first) = seen.insert(page.coord, index) {
            seen.insert(page.coord, first);
            push(format!(
                "duplicate page: page {first} is already declared at this coordinate"
            ));
        }
        if let Some(m) = coord_problem(&page.coord, limit) {
            push(m);
        }
        for m in page_problems(page) {
            push(m);
        }
    }
}

/// What is wrong with one page declaration's shape, kind, size and init data.
fn page_problems(page: &PageDecl) -> Vec<String> {
    let mut out = Vec::new();
    let [rows, cols] = page.shape;
    if page.kind == PageKind::Mapped {
        out.push(
            "a program cannot declare a mapped page (mapped pages come from model files)".into(),
        );
    }
    // The same check as the assembler's and the decoder's (limits.rs).
    if let Some(problem) = crate::limits::page_shape_problem(rows, cols) {
        out.push(problem);
    }
    let elems = u64::from(rows) * u64::from(cols);
    match usize::try_from(elems) {
        Ok(n) => {
            if let Err(e) = page.dtype.bytes_for(n) {
                out.push(format!("shape {rows}x{cols}: {e}"));
            }
        }
        Err(_) => out.push(format!("shape {rows}x{cols} overflows the address space")),
    }
    if let PageInitData::F32(values) = &page.init {
        if page.dtype != DType::F32 {
            out.push(format!(
                "f32 initial values on a {} page",
                page.dtype.name()
            ));
        }
        if values.len() as u64 != elems {
            out.push(format!(
                "{} initial values for a {rows}x{cols} page, expected {elems}",
                values.len()
            ));
        }
    }
    out
}

fn check_streams(p: &Program, opts: &ValidateOptions, errs: &mut Vec<ValidationError>) {
    if p.streams.is_empty() {
        errs.push(ValidationError {
            site: Site::Program,
            message: "the program has no stream to run".into(),
        });
    }
    if p.streams.len() > MAX_STREAMS {
        errs.push(ValidationError {
            site: Site::Program,
            message: format!(
                "{} streams, more than the limit {MAX_STREAMS} (one per sentron and one SPMD)",
                p.streams.len()
            ),
        });
    }
    let mut seen: HashMap<Option<u32>, usize> = HashMap::new();
    for (index, s) in p.streams.iter().enumerate() {
        let mut push = |message: String| {
            errs.push(ValidationError {
                site: Site::Stream {
                    index,
                    sentron: s.sentron,
                },
                message,
            })
        };
        if let Some(&first) = seen.get(&s.sentron) {
            push(format!("stream {first} already serves the same sentron(s)"));
        } else {
            seen.insert(s.sentron, index);
        }
        if let Some(id) = s.sentron {
            if id as usize >= MAX_SENTRONS {
                push(format!(
                    "sentron id {id} is not below MAX_SENTRONS ({MAX_SENTRONS})"
                ));
            } else if let Some(n) = opts.sentrons.filter(|&n| id as usize >= n) {
                push(format!(
                    "sentron id {id} is not below the machine's {n} sentrons"
                ));
            }
        }
        if s.words.len() > MAX_STREAM_WORDS {
            push(format!(
                "{} words, more than MAX_STREAM_WORDS ({MAX_STREAM_WORDS})",
                s.words.len()
            ));
        }
        for (word, w) in s.words.iter().enumerate() {
            check_word(index, s.sentron, word, w, s.words.len(), opts, errs);
        }
    }
}

fn check_word(
    stream: usize,
    sentron: Option<u32>,
    word: usize,
    w: &crate::Siw,
    len: usize,
    opts: &ValidateOptions,
    errs: &mut Vec<ValidationError>,
) {
    for (i, op) in w.slots.iter().enumerate() {
        let pipe = Pipe::ALL[i];
        let site = || Site::Slot {
            stream,
            sentron,
            word,
            pipe,
            op: op.code.name(),
        };
        if op.code.pipe() != pipe {
            errs.push(ValidationError {
                site: site(),
                message: format!(
                    "a {}-pipe op in the {} slot",
                    op.code.pipe().name(),
                    pipe.name()
                ),
            });
        }
        for message in op_problems(op, len, opts) {
            errs.push(ValidationError {
                site: site(),
                message,
            });
        }
    }
    // The core VLIW rule: one writer per register per word.
    let mut writers: HashMap<(RegFile, u8), Opcode> = HashMap::new();
    let mut reported = HashSet::new();
    for op in &w.slots {
        for reg in writes(op) {
            match writers.get(&reg) {
                Some(first) if reported.insert(reg) => errs.push(ValidationError {
                    site: Site::Word {
                        stream,
                        sentron,
                        word,
                    },
                    message: format!(
                        "{} and {} both write {}{} in one word",
                        first.name(),
                        op.code.name(),
                        reg.0.prefix(),
                        reg.1
                    ),
                }),
                Some(_) => {}
                None => {
                    writers.insert(reg, op.code);
                }
            }
        }
    }
}

/// What is wrong with one op's operand values, by operand kind.
fn op_problems(op: &Op, stream_len: usize, opts: &ValidateOptions) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = op.args.iter().copied();
    let sentron_ok = |id: usize| -> Option<String> {
        if id >= MAX_SENTRONS {
            Some(format!(
                "sentron {id} is not below MAX_SENTRONS ({MAX_SENTRONS})"
            ))
        } else {
            opts.sentrons
                .filter(|&n| id >= n)
                .map(|n| format!("sentron {id} is not below the machine's {n} sentrons"))
        }
    };
    for (i, &kind) in op.code.info().operands.iter().enumerate() {
        let n = i + 1;
        let arg = if kind.is_big() {
            0
        } else {
            args.next().unwrap_or(0)
        };
        if let Some(file) = kind.reg_file() {
            if arg as usize >= file.count() {
                let p = file.prefix();
                out.push(format!(
                    "operand {n}: register {p}{arg} is out of range {p}0..{p}{}",
                    file.count() - 1
                ));
            }
            continue;
        }
        match kind {
            Operand::Dim if arg as usize >= DIM_NAMES.len() => {
                out.push(format!("operand {n}: dimension {arg} is not 0..8"))
            }
            Operand::DType if DType::from_code(arg).is_none() => {
                out.push(format!("operand {n}: unknown dtype code {arg}"))
            }
            Operand::Kind if arg != KIND_OWNED && arg != KIND_SCRATCH => out.push(format!(
                "operand {n}: page kind code {arg} is not owned ({KIND_OWNED}) or scratch ({KIND_SCRATCH}); {} is mapped",
                kind_code(PageKind::Mapped)
            )),
            Operand::Reduce if arg as usize >= REDUCE_NAMES.len() => {
                out.push(format!("operand {n}: unknown reduction code {arg}"))
            }
            Operand::Sentron => out.extend(sentron_ok(arg as usize).map(|m| format!("operand {n}: {m}"))),
            Operand::Shape => {
                let (r, c) = op.imm_shape();
                if !(1..=MAX_TILE_DIM).contains(&r) || !(1..=MAX_TILE_DIM).contains(&c) {
                    out.push(format!("operand {n}: shape {r}x{c}: each dimension must be 1..={MAX_TILE_DIM}"));
                }
                // Tiles live in sentron scratch and pages in memory: cap the element
                // count so an immediate cannot ask for an allocation that aborts.
                let elems = u64::from(r) * u64::from(c);
                let cap = if op.code.info().mem == crate::Mem::Alloc { MAX_PAGE_ELEMS } else { MAX_TILE_ELEMS };
                if elems > cap {
                    out.push(format!("operand {n}: shape {r}x{c} has {elems} elements, more than the limit {cap}"));
                }
            }
            Operand::CoordImm => match Coord::from_key(CoordKey(op.imm)) {
                Ok(c) => out.extend(coord_problem(&c, opts.part_limit).map(|m| format!("operand {n}: {m}"))),
                Err(e) => out.push(format!("operand {n}: {e}")),
            },
            Operand::Group => {
                let mask = op.imm_group();
                if mask == 0 {
                    out.push(format!("operand {n}: the group is empty"));
                } else if mask != GROUP_ALL {
                    let bad = (0..64usize).filter(|i| mask >> i & 1 == 1).find_map(sentron_ok);
                    out.extend(bad.map(|m| format!("operand {n}: group member {m}")));
                }
            }
            Operand::Label => {
                let t = op.imm_label();
                if t as usize >= stream_len {
                    out.push(format!("operand {n}: branch target {t} is outside the stream (words 0..{stream_len})"));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Siw;

    #[test]
    fn reads_and_writes_follow_operand_kinds() {
        let op = Op::new(Opcode::DTFma, [3, 4, 5, 0], 0);
        assert_eq!(
            reads(&op).collect::<Vec<_>>(),
            [(RegFile::Tile, 3), (RegFile::Tile, 4), (RegFile::Tile, 5)]
        );
        assert_eq!(writes(&op).collect::<Vec<_>>(), [(RegFile::Tile, 3)]);
        let op = Op::new(Opcode::SIndex, [1, 2, 4, 7], 0);
        assert_eq!(
            reads(&op).collect::<Vec<_>>(),
            [(RegFile::Coord, 2), (RegFile::Scalar, 7)]
        );
        assert_eq!(writes(&op).collect::<Vec<_>>(), [(RegFile::Coord, 1)]);
    }

    #[test]
    fn one_writer_per_register() {
        let w = Siw::from_ops(&[
            Op::new(Opcode::DLi, [3, 0, 0, 0], 5),
            Op::new(Opcode::CRecvR, [3, 1, 0, 0], 0),
        ])
        .unwrap();
        let p = Program {
            pages: vec![],
            streams: vec![crate::Stream {
                sentron: None,
                words: vec![w],
            }],
        };
        let errs = validate(&p, &ValidateOptions::default()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].to_string().contains("DLI and CRECV both write r3"),
            "{}",
            errs[0]
        );
    }
}

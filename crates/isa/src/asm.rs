//! The text assembler: `.vasm` source to a [`Program`].
//!
//! Format (see `docs/ISA.md` for the full description):
//! - `;` or `#` starts a comment to the end of the line; blank lines are ignored;
//!   mnemonics, register names and keywords are case-insensitive, labels are not.
//! - `.sentron N` starts the stream of sentron N; `.spmd` starts the stream every
//!   sentron without its own runs. Words before any stream directive form the SPMD
//!   stream. Each stream may appear once.
//! - `.page COORD DTYPE ROWSxCOLS [owned|scratch] [readonly] [= v0, v1, ...]` declares
//!   a page (default: owned, writable, zero-filled; values only for f32, exactly
//!   rows*cols of them).
//! - `name:` defines a label (local to its stream) at the next word.
//! - A word is one line of 1..3 ops separated by `|`, in any order; each lands in its
//!   pipe's slot and missing slots are NOPs. Operands are separated by commas; an
//!   overloaded mnemonic (CSEND, CRECV) picks the table row whose operand kinds match.
//!
//! The assembler checks syntax and the range of every operand it reads; semantic rules
//! (one writer per register per word, branch targets, duplicate pages) are the
//! validator's.

use std::collections::HashMap;
use std::fmt;

use crate::limits;
use crate::syntax::{
    describe, is_ident, parse_dec_u32, parse_f32, parse_operand, parse_shape, Raw, Val,
};
use crate::word::{PageDecl, PageInitData};
use crate::{
    Op, Opcode, Program, Siw, Stream, MAX_PAGES, MAX_PROGRAM_BYTES, MAX_SENTRONS, MAX_STREAM_WORDS,
};
use vtpu_phext::{Coord, DType, PageKind, MAX_PART_LIMIT};

/// An assembly error: where (1-based line and column, in characters) and what was
/// expected versus found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsmError {
    /// The file name given to [`assemble_file`], if any.
    pub file: Option<String>,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for AsmError {}

/// Assemble `.vasm` source text.
pub fn assemble(src: &str) -> Result<Program, AsmError> {
    let mut asm = Assembler::default();
    for (i, line) in src.lines().enumerate() {
        asm.line(i + 1, line)?;
    }
    asm.finish()
}

/// Assemble `.vasm` source text; errors name `name` (`prog.vasm:12:9: ...`).
pub fn assemble_file(name: &str, src: &str) -> Result<Program, AsmError> {
    assemble(src).map_err(|mut e| {
        e.file = Some(name.to_string());
        e
    })
}

/// An error inside one line: column and message.
struct LineError {
    column: usize,
    message: String,
}

impl LineError {
    fn at_line(self, line: usize) -> AsmError {
        AsmError {
            file: None,
            line,
            column: self.column,
            message: self.message,
        }
    }
}

fn expected(column: usize, what: impl fmt::Display, found: impl fmt::Display) -> LineError {
    LineError {
        column,
        message: format!("expected {what}, found {found}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Atom,
    Punct(char),
}

#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
    /// 1-based character column.
    col: usize,
}

impl Tok<'_> {
    fn end_col(&self) -> usize {
        self.col + self.text.chars().count()
    }
    fn shown(&self) -> String {
        quoted(self.text)
    }
}

/// Most characters of an offending token an error message quotes.
const QUOTE_CHARS: usize = 40;

/// `text` quoted for an error message, cut to a short prefix when long (a 10 MB token
/// is named by its start and length, not echoed).
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!(
            "{:?}... ({} characters)",
            &text[..cut],
            text.chars().count()
        ),
        None => format!("{text:?}"),
    }
}

const PUNCT: &[char] = &[',', '|', '{', '}', '='];

/// Split a line into atoms and punctuation, stopping at a comment.
fn tokenize(line: &str) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut chars = line.char_indices().peekable();
    let mut col = 0usize;
    while let Some((start, c)) = chars.next() {
        col += 1;
        if c == ';' || c == '#' {
            break;
        }
        if c.is_whitespace() {
            continue;
        }
        if PUNCT.contains(&c) {
            toks.push(Tok {
                kind: Kind::Punct(c),
                text: &line[start..start + c.len_utf8()],
                col,
            });
            continue;
        }
        let first_col = col;
        let mut end = start + c.len_utf8();
        while let Some(&(i, n)) = chars.peek() {
            if n.is_whitespace() || PUNCT.contains(&n) || n == ';' || n == '#' {
                break;
            }
            chars.next();
            col += 1;
            end = i + n.len_utf8();
        }
        toks.push(Tok {
            kind: Kind::Atom,
            text: &line[start..end],
            col: first_col,
        });
    }
    toks
}

/// A branch target to resolve when its stream ends.
struct Fixup {
    word: usize,
    slot: usize,
    name: String,
    line: usize,
    col: usize,
}

struct StreamBuilder {
    sentron: Option<u32>,
    words: Vec<Siw>,
    /// name -> (word index, line of the definition)
    labels: HashMap<String, (u32, usize)>,
    fixups: Vec<Fixup>,
}

impl StreamBuilder {
    fn new(sentron: Option<u32>) -> StreamBuilder {
        StreamBuilder {
            sentron,
            words: Vec::new(),
            labels: HashMap::new(),
            fixups: Vec::new(),
        }
    }

    fn finish(mut self) -> Result<Stream, AsmError> {
        for f in &self.fixups {
            let Some(&(target, _)) = self.labels.get(&f.name) else {
                let e = expected(
                    f.col,
                    "a label defined in this stream",
                    format!("undefined label {}", quoted(&f.name)),
                );
                return Err(e.at_line(f.line));
            };
            self.words[f.word].slots[f.slot].imm = Op::encode_label(target);
        }
        Ok(Stream {
            sentron: self.sentron,
            words: self.words,
        })
    }
}

struct Assembler {
    pages: Vec<PageDecl>,
    streams: Vec<Stream>,
    cur: Option<StreamBuilder>,
    /// Line of the `.sentron N` directive per id, and of the SPMD stream's start.
    seen: HashMap<Option<u32>, usize>,
    /// Bytes of the `.vsiw` encoding so far: a program that would not fit
    /// [`MAX_PROGRAM_BYTES`] is refused here, not by the decoder after `asm` wrote it.
    encoded: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler {
            pages: Vec::new(),
            streams: Vec::new(),
            cur: None,
            seen: HashMap::new(),
            encoded: crate::encode::HEADER_BYTES as u64,
        }
    }
}

/// Grow the encoded size by `more` bytes, or say why the program is too large.
fn grow(encoded: &mut u64, more: u64, col: usize) -> Result<(), LineError> {
    let total = encoded.saturating_add(more);
    if total > MAX_PROGRAM_BYTES {
        return Err(expected(
            col,
            format!("a program whose .vsiw encoding fits {MAX_PROGRAM_BYTES} bytes"),
            format!("{total} bytes with this line"),
        ));
    }
    *encoded = total;
    Ok(())
}

impl Assembler {
    fn line(&mut self, line_no: usize, line: &str) -> Result<(), AsmError> {
        let toks = tokenize(line);
        if toks
            .first()
            .is_some_and(|t| t.kind == Kind::Atom && t.text.starts_with('.'))
        {
            return self.directive(line_no, &toks);
        }
        self.code_line(line_no, toks)
            .map_err(|e| e.at_line(line_no))
    }

    /// Labels and an optional word.
    fn code_line(&mut self, line_no: usize, toks: Vec<Tok<'_>>) -> Result<(), LineError> {
        // Labels: `name:` (possibly glued to the word that follows: `name:DNOP`).
        let mut toks = toks;
        while let Some(first) = toks.first().copied() {
            if first.kind != Kind::Atom {
                break;
            }
            let Some((name, rest)) = first.text.split_once(':') else {
                break;
            };
            if !is_ident(name) {
                return Err(expected(
                    first.col,
                    "a label name (letters, digits and _, not starting with a digit)",
                    quoted(name),
                ));
            }
            self.define_label(line_no, first.col, name)?;
            if rest.is_empty() {
                toks.remove(0);
            } else {
                toks[0] = Tok {
                    kind: Kind::Atom,
                    text: rest,
                    col: first.col + name.chars().count() + 1,
                };
            }
        }
        if toks.is_empty() {
            return Ok(());
        }
        let (word, fixups) = parse_word(&toks)?;
        let cur_exists = self.cur.is_some();
        let stream_bytes = if cur_exists {
            0
        } else {
            limits::ENCODED_STREAM_BYTES
        };
        grow(
            &mut self.encoded,
            limits::ENCODED_WORD_BYTES + stream_bytes,
            toks[0].col,
        )?;
        // current() counts the implicit stream's header itself.
        self.encoded -= stream_bytes;
        let cur = self.current(line_no);
        if cur.words.len() >= MAX_STREAM_WORDS {
            return Err(expected(
                toks[0].col,
                format!("at most {MAX_STREAM_WORDS} words in a stream"),
                "one more",
            ));
        }
        let index = cur.words.len();
        cur.words.push(word);
        for (slot, name, col) in fixups {
            cur.fixups.push(Fixup {
                word: index,
                slot,
                name,
                line: line_no,
                col,
            });
        }
        Ok(())
    }

    /// The stream words go to; before any stream directive, the implicit SPMD stream.
    fn current(&mut self, line_no: usize) -> &mut StreamBuilder {
        if self.cur.is_none() {
            self.seen.insert(None, line_no);
            self.encoded = self.encoded.saturating_add(limits::ENCODED_STREAM_BYTES);
        }
        self.cur.get_or_insert_with(|| StreamBuilder::new(None))
    }

    fn define_label(&mut self, line_no: usize, col: usize, name: &str) -> Result<(), LineError> {
        let cur = self.current(line_no);
        let here = cur.words.len() as u32;
        if let Some(&(_, first)) = cur.labels.get(name) {
            return Err(expected(
                col,
                "a new label name",
                format!("{}, already defined at line {first}", quoted(name)),
            ));
        }
        cur.labels.insert(name.to_string(), (here, line_no));
        Ok(())
    }

    fn start_stream(&mut self, sentron: Option<u32>) -> Result<(), AsmError> {
        if let Some(prev) = self.cur.take() {
            self.streams.push(prev.finish()?);
        }
        // At most MAX_STREAMS headers of 16 bytes: never the byte that breaks the limit
        // on its own, so it is simply counted.
        self.encoded = self.encoded.saturating_add(limits::ENCODED_STREAM_BYTES);
        self.cur = Some(StreamBuilder::new(sentron));
        Ok(())
    }

    fn directive(&mut self, line_no: usize, toks: &[Tok<'_>]) -> Result<(), AsmError> {
        let at = |e: LineError| e.at_line(line_no);
        let d = toks[0];
        let end = toks.last().map_or(1, Tok::end_col);
        match d.text.to_ascii_lowercase().as_str() {
            ".sentron" => {
                let Some(n_tok) = toks.get(1) else {
                    return Err(at(expected(
                        end,
                        format!("a sentron id 0..{}", MAX_SENTRONS - 1),
                        "end of line",
                    )));
                };
                let id = parse_dec_u32(n_tok.text)
                    .filter(|&n| (n as usize) < MAX_SENTRONS)
                    .ok_or_else(|| {
                        at(expected(
                            n_tok.col,
                            format!("a sentron id 0..{}", MAX_SENTRONS - 1),
                            n_tok.shown(),
                        ))
                    })?;
                no_more(toks, 2).map_err(at)?;
                self.open(line_no, n_tok.col, Some(id))
            }
            ".spmd" => {
                no_more(toks, 1).map_err(at)?;
                self.open(line_no, d.col, None)
            }
            ".page" => {
                if self.pages.len() >= MAX_PAGES {
                    return Err(at(expected(
                        d.col,
                        format!("at most {MAX_PAGES} page declarations"),
                        "one more",
                    )));
                }
                let page = parse_page(&toks[1..], end).map_err(at)?;
                grow(&mut self.encoded, limits::encoded_page_bytes(&page), d.col).map_err(at)?;
                self.pages.push(page);
                Ok(())
            }
            _ => Err(at(expected(
                d.col,
                "a directive (.sentron, .spmd or .page)",
                d.shown(),
            ))),
        }
    }

    fn open(&mut self, line_no: usize, col: usize, sentron: Option<u32>) -> Result<(), AsmError> {
        if let Some(first) = self.seen.get(&sentron) {
            let what = match sentron {
                Some(id) => format!("a second stream for sentron {id}"),
                None => "a second SPMD stream".to_string(),
            };
            let e = expected(
                col,
                "each stream once",
                format!("{what} (the first starts at line {first})"),
            );
            return Err(e.at_line(line_no));
        }
        self.seen.insert(sentron, line_no);
        self.start_stream(sentron)
    }

    fn finish(mut self) -> Result<Program, AsmError> {
        if let Some(cur) = self.cur.take() {
            self.streams.push(cur.finish()?);
        }
        Ok(Program {
            pages: self.pages,
            streams: self.streams,
        })
    }
}

fn no_more(toks: &[Tok<'_>], n: usize) -> Result<(), LineError> {
    match toks.get(n) {
        Some(t) => Err(expected(t.col, "end of line", t.shown())),
        None => Ok(()),
    }
}

/// `COORD DTYPE ROWSxCOLS [owned|scratch] [readonly] [= v0, v1, ...]` (after `.page`).
fn parse_page(toks: &[Tok<'_>], end: usize) -> Result<PageDecl, LineError> {
    let get = |i: usize, what: &str| -> Result<Tok<'_>, LineError> {
        match toks.get(i) {
            Some(t) if t.kind == Kind::Atom => Ok(*t),
            Some(t) => Err(expected(t.col, what, t.shown())),
            None => Err(expected(end, what, "end of line")),
        }
    };
    let t = get(0, "a page coordinate like 1.1.1/1.1.1/1.1.1")?;
    let coord = Coord::parse_with_limit(t.text, MAX_PART_LIMIT)
        .map_err(|e| expected(t.col, format!("a page coordinate ({e})"), t.shown()))?;
    let dt = get(1, "a dtype")?;
    let dtype = DType::parse(&dt.text.to_ascii_lowercase())
        .ok_or_else(|| expected(dt.col, describe(crate::Operand::DType), dt.shown()))?;
    let t = get(2, "a page shape ROWSxCOLS")?;
    let (rows, cols) = parse_shape(t.text)
        .ok_or_else(|| expected(t.col, describe(crate::Operand::Shape), t.shown()))?;
    if let Some(problem) = limits::page_shape_problem(rows, cols) {
        return Err(expected(t.col, "a page shape within the limits", problem));
    }
    let mut page = PageDecl {
        coord,
        dtype,
        shape: [rows, cols],
        kind: PageKind::Owned,
        read_only: false,
        init: PageInitData::Zero,
    };
    let (mut kind_seen, mut ro_seen) = (false, false);
    let mut i = 3;
    while let Some(t) = toks.get(i) {
        let word = t.text.to_ascii_lowercase();
        match (t.kind, word.as_str()) {
            (Kind::Atom, "owned" | "scratch") if !kind_seen && !ro_seen => {
                kind_seen = true;
                page.kind = if word == "owned" {
                    PageKind::Owned
                } else {
                    PageKind::Scratch
                };
            }
            (Kind::Atom, "readonly") if !ro_seen => ro_seen = true,
            (Kind::Punct('='), _) => {
                page.init = PageInitData::F32(parse_values(&toks[i + 1..], end)?);
                check_values(&page, *t)?;
                break;
            }
            _ => {
                let what = match (kind_seen, ro_seen) {
                    (false, false) => "owned, scratch, readonly, \"=\" or end of line",
                    (true, false) => "readonly, \"=\" or end of line",
                    _ => "\"=\" or end of line",
                };
                return Err(expected(t.col, what, t.shown()));
            }
        }
        i += 1;
    }
    page.read_only = ro_seen;
    Ok(page)
}

fn parse_values(toks: &[Tok<'_>], end: usize) -> Result<Vec<f32>, LineError> {
    let what = describe(crate::Operand::F32);
    let mut values = Vec::new();
    let mut i = 0;
    loop {
        match toks.get(i) {
            Some(t) if t.kind == Kind::Atom => {
                values.push(parse_f32(t.text).ok_or_else(|| expected(t.col, &what, t.shown()))?);
            }
            Some(t) => return Err(expected(t.col, &what, t.shown())),
            None => return Err(expected(end, &what, "end of line")),
        }
        match toks.get(i + 1) {
            None => return Ok(values),
            Some(t) if t.kind == Kind::Punct(',') => i += 2,
            Some(t) => return Err(expected(t.col, "\",\" or end of line", t.shown())),
        }
    }
}

fn check_values(page: &PageDecl, eq: Tok<'_>) -> Result<(), LineError> {
    let PageInitData::F32(values) = &page.init else {
        return Ok(());
    };
    if page.dtype != DType::F32 {
        return Err(expected(
            eq.col,
            "initial values only for an f32 page",
            format!("a {} page", page.dtype.name()),
        ));
    }
    let want = u64::from(page.shape[0]) * u64::from(page.shape[1]);
    if values.len() as u64 != want {
        let [r, c] = page.shape;
        return Err(expected(
            eq.col,
            format!("{want} values for a {r}x{c} page"),
            values.len(),
        ));
    }
    Ok(())
}

/// One word: ops separated by `|`. Returns the word and its label uses (slot, name, col).
type LabelUse = (usize, String, usize);

fn parse_word(toks: &[Tok<'_>]) -> Result<(Siw, Vec<LabelUse>), LineError> {
    let mut word = Siw::NOP;
    let mut first_in: [Option<(&str, usize)>; 3] = [None; 3];
    let mut uses = Vec::new();
    let mut rest = toks;
    // Where an op missing after a trailing '|' would start.
    let mut line_end = 1;
    loop {
        let split = rest.iter().position(|t| t.kind == Kind::Punct('|'));
        let (seg, after) = match split {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        // Where a missing piece would go, and what is there instead.
        let (end_col, end_found) = match after {
            Some(a) => (a[0].col, "\"|\"".to_string()),
            None => (
                seg.last().map_or(line_end, Tok::end_col),
                "end of line".to_string(),
            ),
        };
        let Some(m) = seg.first() else {
            return Err(expected(end_col, "an op mnemonic", end_found));
        };
        if m.kind != Kind::Atom {
            return Err(expected(m.col, "an op mnemonic", m.shown()));
        }
        let (op, label) = parse_op(m, &seg[1..], end_col, &end_found)?;
        let slot = op.code.pipe() as usize;
        if let Some((name, col)) = first_in[slot] {
            let pipe = op.code.pipe().name();
            return Err(expected(
                m.col,
                format!("at most one {pipe}-pipe op per word"),
                format!(
                    "a second one, {} (the first is {} at column {col})",
                    quoted(m.text),
                    quoted(name)
                ),
            ));
        }
        first_in[slot] = Some((m.text, m.col));
        word.slots[slot] = op;
        if let Some((name, col)) = label {
            uses.push((slot, name, col));
        }
        match after {
            Some(a) => {
                line_end = a[0].end_col();
                rest = &a[1..];
            }
            None => return Ok((word, uses)),
        }
    }
}

/// Raw operands of one op, split at commas; groups are braced lists.
fn raw_operands<'a>(
    toks: &[Tok<'a>],
    end_col: usize,
    end_found: &str,
) -> Result<Vec<(Raw<'a>, usize)>, LineError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        match t.kind {
            Kind::Atom => {
                out.push((Raw::Atom(t.text), t.col));
                i += 1;
            }
            Kind::Punct('{') => {
                let mut items = Vec::new();
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(x) if x.kind == Kind::Punct('}') && items.is_empty() => break,
                        Some(x) if x.kind == Kind::Atom => items.push(x.text),
                        Some(x) => {
                            return Err(expected(x.col, "a sentron id in the group", x.shown()))
                        }
                        None => {
                            return Err(expected(end_col, "a sentron id in the group", end_found))
                        }
                    }
                    match toks.get(i + 1) {
                        Some(x) if x.kind == Kind::Punct(',') => i += 2,
                        Some(x) if x.kind == Kind::Punct('}') => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            return Err(expected(x.col, "\",\" or \"}\" in the group", x.shown()))
                        }
                        None => {
                            return Err(expected(end_col, "\",\" or \"}\" in the group", end_found))
                        }
                    }
                }
                out.push((Raw::List(items), t.col));
                i += 1; // the '}'
            }
            _ => return Err(expected(t.col, "an operand", t.shown())),
        }
        match toks.get(i) {
            None => break,
            Some(c) if c.kind == Kind::Punct(',') => {
                if i + 1 == toks.len() {
                    return Err(expected(end_col, "an operand after \",\"", end_found));
                }
                i += 1;
            }
            Some(c) => return Err(expected(c.col, "\",\" between operands", c.shown())),
        }
    }
    Ok(out)
}

/// One op: the mnemonic's table rows are tried in order; the first whose operand kinds
/// all match wins. Otherwise the error of the row that matched the most operands is
/// reported, merged over rows that failed at the same operand.
fn parse_op(
    m: &Tok<'_>,
    toks: &[Tok<'_>],
    end_col: usize,
    end_found: &str,
) -> Result<(Op, Option<(String, usize)>), LineError> {
    let rows: Vec<Opcode> = Opcode::by_name(m.text).collect();
    if rows.is_empty() {
        return Err(expected(m.col, "an op mnemonic", m.shown()));
    }
    let raw = raw_operands(toks, end_col, end_found)?;
    // (operand index reached, column, expected, found)
    let mut best: Option<(usize, usize, Vec<String>, String)> = None;
    for &code in &rows {
        let kinds = code.info().operands;
        let mut vals = Vec::with_capacity(kinds.len());
        let mut failure = None;
        for (i, &kind) in kinds.iter().enumerate() {
            let Some((r, col)) = raw.get(i) else {
                let what = format!("{} as operand {} of {}", describe(kind), i + 1, code.name());
                failure = Some((i, end_col, what, end_found.to_string()));
                break;
            };
            match parse_operand(kind, r) {
                Ok(v) => vals.push((v, *col)),
                Err(what) => {
                    let found = match r {
                        Raw::Atom(a) => quoted(a),
                        Raw::List(items) => quoted(&format!("{{{}}}", items.join(","))),
                    };
                    failure = Some((i, *col, what, found));
                    break;
                }
            }
        }
        if failure.is_none() && raw.len() > kinds.len() {
            let (_, col) = raw[kinds.len()];
            let what = format!(
                "end of op after {} operand(s) of {}",
                kinds.len(),
                code.name()
            );
            failure = Some((kinds.len(), col, what, "another operand".to_string()));
        }
        let Some((i, col, what, found)) = failure else {
            return Ok(build_op(code, vals));
        };
        match &mut best {
            Some((bi, bcol, bwhat, _)) if *bi == i && *bcol == col => {
                if !bwhat.contains(&what) {
                    bwhat.push(what);
                }
            }
            Some((bi, ..)) if *bi >= i => {}
            _ => best = Some((i, col, vec![what], found)),
        }
    }
    let (_, col, what, found) = best.unwrap_or((0, m.col, vec!["an op".into()], m.shown()));
    Err(expected(col, what.join(" or "), found))
}

fn build_op(code: Opcode, vals: Vec<(Val, usize)>) -> (Op, Option<(String, usize)>) {
    let mut op = Op::new(code, [0; 4], 0);
    let mut next_arg = 0;
    let mut label = None;
    for (v, col) in vals {
        match v {
            Val::Small(a) => {
                // The table test guarantees at most 4 small operands per op.
                if let Some(slot) = op.args.get_mut(next_arg) {
                    *slot = a;
                }
                next_arg += 1;
            }
            Val::Big(imm) => op.imm = imm,
            Val::Label(name) => label = Some((name, col)),
        }
    }
    (op, label)
}

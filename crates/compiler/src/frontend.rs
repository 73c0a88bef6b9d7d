//! `.vasm` / `.vsiw` programs as compiler input.
//!
//! **Renamed** (the graph frontend): a stream in the structured subset becomes a
//! dataflow graph with fresh values for every register write, and is compiled like any
//! graph (list and modulo scheduling, prefetch insertion, register allocation). The
//! subset:
//! - straight-line words, and counted loops: a body of consecutive words whose last
//!   word's C slot is `CLOOP rN, start` branching back to the body's first word, with no
//!   other branch or label inside; loops do not nest;
//! - `rN` holds a constant N >= 1 when the loop starts (set by `DLI`/`DADDI` in the
//!   straight-line code before it), no other op of the body touches it, and nothing
//!   reads it after the loop (where the original leaves 0);
//! - no other branch; `CHALT` only at the end;
//! - every register is written before it is read (the initial register state is not an
//!   input).
//!
//! Final register contents are not preserved (they are not outputs: pages and messages
//! are); the `DLI` that only set a loop counter is replaced by the compiler's own.
//!
//! **In place** (the fallback for anything else: other branches, nested loops, reads of
//! initial registers): each basic block is list-scheduled with dependencies on the
//! physical registers as written, so the program keeps its registers and control flow.

use std::collections::{HashMap, HashSet};

use crate::error::{CompileError, Result};
use crate::graph::{Arg, Graph, SentronGraph, Value};
use crate::lower::{check_output, lower_stream, CompileOptions, Compiled, StreamReport};
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::word::{KIND_OWNED, REDUCE_NAMES};
use vtpu_isa::{Op, Opcode, Operand, Pipe, Program, RegFile, Stream};
use vtpu_phext::{Coord, CoordKey, DType, PageKind};

/// Compile a program: streams in the subset through the graph, others in place.
pub fn compile_program(p: &Program, opts: &CompileOptions) -> Result<Compiled> {
    let vopts = vtpu_isa::ValidateOptions {
        sentrons: None,
        part_limit: vtpu_phext::MAX_PART_LIMIT,
    };
    if let Err(errs) = vtpu_isa::validate(p, &vopts) {
        let text: Vec<String> = errs.iter().take(10).map(|e| format!("  {e}")).collect();
        return Err(CompileError::Invalid(text.join("\n")));
    }
    let sizes: HashMap<Coord, u64> = p
        .pages
        .iter()
        .map(|pg| {
            let n = pg.shape[0] as usize * pg.shape[1] as usize;
            (pg.coord, pg.dtype.bytes_for(n).unwrap_or(0) as u64)
        })
        .collect();
    let mut streams = Vec::new();
    let mut reports = Vec::new();
    for (i, s) in p.streams.iter().enumerate() {
        let (words, report) = match stream_graph(s, i) {
            Ok(sg) => {
                let (w, mut r) = lower_stream(&sg, opts, &sizes)?;
                r.frontend = "vasm, renamed".into();
                (w, r)
            }
            Err(CompileError::Unsupported(why)) => crate::in_place::schedule_stream(s, i, &why)?,
            Err(e) => return Err(e),
        };
        streams.push(Stream {
            sentron: s.sentron,
            words,
        });
        reports.push(report);
    }
    let program = Program {
        pages: p.pages.clone(),
        streams,
    };
    check_output(&program)?;
    Ok(Compiled {
        program,
        streams: reports,
    })
}

/// The graph of a whole program whose streams are all in the subset.
pub fn program_graph(p: &Program) -> Result<Graph> {
    let mut g = Graph::new();
    g.pages = p.pages.clone();
    for (i, s) in p.streams.iter().enumerate() {
        g.streams.push(stream_graph(s, i)?);
    }
    Ok(g)
}

fn unsupported(stream: usize, word: usize, what: &str) -> CompileError {
    CompileError::Unsupported(format!("stream {stream}, word {word}: {what}"))
}

/// A counted loop found in the stream.
struct LoopShape {
    start: usize,
    /// The word holding the CLOOP.
    end: usize,
    counter: u8,
}

fn reg_key(f: RegFile, i: u8) -> (u8, u8) {
    (f as u8, i)
}

/// Find the loops of the subset; Err(Unsupported) for anything else.
fn find_loops(s: &Stream, si: usize) -> Result<Vec<LoopShape>> {
    let n = s.words.len();
    let mut loops = Vec::new();
    let mut targets: HashSet<usize> = HashSet::new();
    for (w, word) in s.words.iter().enumerate() {
        let c = word.c();
        match c.code.info().coord {
            Coordination::Branch if c.code == Opcode::CLoop => {
                let t = c.imm_label() as usize;
                if t > w {
                    return Err(unsupported(si, w, "a forward CLOOP"));
                }
                if loops.last().is_some_and(|l: &LoopShape| t <= l.end) {
                    return Err(unsupported(si, w, "nested or overlapping loops"));
                }
                targets.insert(t);
                loops.push(LoopShape {
                    start: t,
                    end: w,
                    counter: c.args[0],
                });
            }
            Coordination::Branch => return Err(unsupported(si, w, "a branch other than CLOOP")),
            Coordination::Halt if s.words[w + 1..].iter().any(|x| x.op_count() > 0) => {
                return Err(unsupported(si, w, "CHALT before the end of the stream"));
            }
            _ => {}
        }
    }
    let _ = n;
    Ok(loops)
}

/// Is register `key` read from word `from` on before it is written? (Straight program
/// order, later loops included: the first access decides; a read in the word that
/// writes it sees the old value.)
fn read_later(s: &Stream, from: usize, key: (u8, u8)) -> bool {
    for word in s.words.iter().skip(from) {
        if word
            .slots
            .iter()
            .any(|op| reads(op).iter().any(|&(f, r)| reg_key(f, r) == key))
        {
            return true;
        }
        if word
            .slots
            .iter()
            .any(|op| writes(op).iter().any(|&(f, r)| reg_key(f, r) == key))
        {
            return false;
        }
    }
    false
}

/// Registers each op reads and writes.
fn reads(op: &Op) -> Vec<(RegFile, u8)> {
    vtpu_isa::validate::reads(op).collect()
}
fn writes(op: &Op) -> Vec<(RegFile, u8)> {
    vtpu_isa::validate::writes(op).collect()
}

/// Convert one stream to a graph (the renamed subset).
pub fn stream_graph(s: &Stream, si: usize) -> Result<SentronGraph> {
    let loops = find_loops(s, si)?;
    let mut sg = SentronGraph::new(s.sentron);
    let mut cur: HashMap<(u8, u8), Value> = HashMap::new();
    let mut consts: HashMap<u8, i64> = HashMap::new();
    // The DLI words that only set a loop counter are not converted.
    let mut skip: HashSet<(usize, usize)> = HashSet::new();
    for l in &loops {
        let counter_def = (0..l.start)
            .rev()
            .find(|&w| writes(s.words[w].d()).contains(&(RegFile::Scalar, l.counter)));
        if let Some(w) = counter_def {
            let read_between = (w..l.start).any(|x| {
                s.words[x]
                    .slots
                    .iter()
                    .any(|op| reads(op).contains(&(RegFile::Scalar, l.counter)))
            });
            if !read_between && s.words[w].d().code == Opcode::DLi {
                skip.insert((w, 0));
            }
        }
    }
    let mut w = 0usize;
    let mut li = 0usize;
    while w < s.words.len() {
        if let Some(l) = loops.get(li).filter(|l| l.start == w) {
            let trip = consts
                .get(&l.counter)
                .copied()
                .filter(|&t| t >= 1)
                .ok_or_else(|| {
                    unsupported(
                        si,
                        w,
                        &format!(
                            "the loop counter r{} is not a known constant >= 1 at the loop",
                            l.counter
                        ),
                    )
                })?;
            convert_loop(&mut sg, s, si, l, trip as u64, &mut cur)?;
            // Registers the body writes are unknown constants afterwards.
            for x in l.start..=l.end {
                for op in &s.words[x].slots {
                    for (f, r) in writes(op) {
                        if f == RegFile::Scalar {
                            consts.remove(&r);
                        }
                    }
                }
            }
            // The counter is 0 after the loop in the original: nothing may read it.
            if read_later(s, l.end + 1, reg_key(RegFile::Scalar, l.counter)) {
                return Err(unsupported(
                    si,
                    l.end,
                    &format!("r{} (the loop counter) is read after the loop", l.counter),
                ));
            }
            cur.remove(&reg_key(RegFile::Scalar, l.counter));
            w = l.end + 1;
            li += 1;
            continue;
        }
        convert_word(&mut sg, s, si, w, &mut cur, &skip, None)?;
        track_consts(s.words[w].d(), &mut consts);
        for op in &s.words[w].slots[1..] {
            for (f, r) in writes(op) {
                if f == RegFile::Scalar {
                    consts.remove(&r);
                }
            }
        }
        w += 1;
    }
    Ok(sg)
}

fn track_consts(op: &Op, consts: &mut HashMap<u8, i64>) {
    let [d, a, b, _] = op.args;
    let v = match op.code {
        Opcode::DLi => Some(op.imm_i64()),
        Opcode::DAddi => consts.get(&a).and_then(|x| x.checked_add(op.imm_i64())),
        Opcode::DAdd => consts
            .get(&a)
            .zip(consts.get(&b))
            .and_then(|(x, y)| x.checked_add(*y)),
        _ => None,
    };
    for (f, r) in writes(op) {
        if f == RegFile::Scalar {
            consts.remove(&r);
        }
    }
    if let (Some(v), true) = (v, op.code.info().operands.first() == Some(&Operand::SW)) {
        consts.insert(d, v);
    }
}

fn convert_loop(
    sg: &mut SentronGraph,
    s: &Stream,
    si: usize,
    l: &LoopShape,
    trip: u64,
    cur: &mut HashMap<(u8, u8), Value>,
) -> Result<()> {
    let counter = reg_key(RegFile::Scalar, l.counter);
    let mut written: HashSet<(u8, u8)> = HashSet::new();
    for w in l.start..=l.end {
        for (k, op) in s.words[w].slots.iter().enumerate() {
            if w == l.end && k == 2 {
                continue;
            }
            for (f, r) in reads(op).into_iter().chain(writes(op)) {
                if reg_key(f, r) == counter {
                    return Err(unsupported(
                        si,
                        w,
                        &format!("r{} is the loop counter and is used in the body", l.counter),
                    ));
                }
            }
            for (f, r) in writes(op) {
                written.insert(reg_key(f, r));
            }
        }
    }
    sg.begin_loop(trip)
        .map_err(|e| unsupported(si, l.start, &e.to_string()))?;
    // Registers written in the body are carried if read before their first write.
    let mut body: HashMap<(u8, u8), Value> = HashMap::new();
    let mut phis: Vec<((u8, u8), Value)> = Vec::new();
    let outer = cur.clone();
    let mut first_write_done: HashSet<(u8, u8)> = HashSet::new();
    for w in l.start..=l.end {
        // Upward-exposed reads of written registers become carried values.
        for (k, op) in s.words[w].slots.iter().enumerate() {
            if w == l.end && k == 2 {
                continue;
            }
            for (f, r) in reads(op) {
                let key = reg_key(f, r);
                if written.contains(&key)
                    && !first_write_done.contains(&key)
                    && !body.contains_key(&key)
                {
                    let init = *outer.get(&key).ok_or_else(|| {
                        unsupported(
                            si,
                            w,
                            &format!("{}{r} is read before it is written", f.prefix()),
                        )
                    })?;
                    let phi = sg.carried(init)?;
                    body.insert(key, phi);
                    phis.push((key, phi));
                }
            }
        }
        let mut view: HashMap<(u8, u8), Value> = outer.clone();
        view.extend(body.iter().map(|(k, v)| (*k, *v)));
        let skip = HashSet::new();
        let cloop = (w == l.end).then_some(2usize);
        convert_word(sg, s, si, w, &mut view, &skip, cloop)?;
        for op in &s.words[w].slots {
            for (f, r) in writes(op) {
                let key = reg_key(f, r);
                if key == counter {
                    continue;
                }
                first_write_done.insert(key);
                if let Some(&v) = view.get(&key) {
                    body.insert(key, v);
                }
            }
        }
    }
    for (key, phi) in &phis {
        let next = body[key];
        sg.set_next(*phi, next)?;
    }
    let lp = sg.end_loop()?;
    for key in written {
        if key == counter {
            continue;
        }
        // Only values read after the loop become outputs (an output keeps a register
        // of its own through the loop).
        match body.get(&key) {
            Some(&v) if read_later(s, l.end + 1, key) => {
                let o = sg.loop_output(lp, v)?;
                cur.insert(key, o);
            }
            _ => {
                cur.remove(&key);
            }
        }
    }
    Ok(())
}

/// Convert the ops of word `w` (all reading `cur` as it was before the word); slot
/// `skip_slot` (the CLOOP of a loop's last word) is left out.
fn convert_word(
    sg: &mut SentronGraph,
    s: &Stream,
    si: usize,
    w: usize,
    cur: &mut HashMap<(u8, u8), Value>,
    skip: &HashSet<(usize, usize)>,
    skip_slot: Option<usize>,
) -> Result<()> {
    let word = &s.words[w];
    let mut results: Vec<((u8, u8), Value)> = Vec::new();
    // Ops that overwrite a register in place go last, after the word's other readers.
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by_key(|&k| {
        word.slots[k]
            .code
            .info()
            .operands
            .iter()
            .any(|o| o.reads() && o.writes())
    });
    for k in order {
        let op = &word.slots[k];
        if op.is_nop() || skip.contains(&(w, k)) || skip_slot == Some(k) {
            continue;
        }
        if op.code.pipe() != Pipe::ALL[k] {
            return Err(CompileError::WrongPipe {
                at: format!("stream {si}, word {w}"),
                code: op.code.name(),
                op_pipe: op.code.pipe().name(),
                slot: Pipe::ALL[k].name(),
            });
        }
        if op.code.info().coord == Coordination::Halt {
            sg.halt()?;
            continue;
        }
        let args = op_args(op, cur).map_err(|what| unsupported(si, w, &what))?;
        let (_, defs) = sg.op_node(op.code, &args)?;
        let mut d = defs.into_iter();
        for (f, r) in writes(op) {
            if let Some(v) = d.next() {
                results.push((reg_key(f, r), v));
            }
        }
    }
    cur.extend(results);
    Ok(())
}

/// The graph operands of a physical op: registers become their current values.
fn op_args(op: &Op, cur: &HashMap<(u8, u8), Value>) -> std::result::Result<Vec<Arg>, String> {
    let mut out = Vec::new();
    let mut small = op.args.iter().copied();
    for &kind in op.code.info().operands {
        let a = if kind.is_big() {
            0
        } else {
            small.next().unwrap_or(0)
        };
        if let Some(f) = kind.reg_file() {
            if !kind.reads() {
                continue;
            }
            let v = cur
                .get(&reg_key(f, a))
                .ok_or_else(|| format!("{}{a} is read before it is written", f.prefix()))?;
            out.push(Arg::V(*v));
            continue;
        }
        out.push(match kind {
            Operand::Dim => Arg::Dim(a),
            Operand::DType => Arg::DType(DType::from_code(a).ok_or("unknown dtype")?),
            Operand::Kind => Arg::Kind(if a == KIND_OWNED {
                PageKind::Owned
            } else {
                PageKind::Scratch
            }),
            Operand::Sentron => Arg::Sentron(u32::from(a)),
            Operand::Reduce if (a as usize) < REDUCE_NAMES.len() => Arg::Reduce(a),
            Operand::Reduce => return Err(format!("unknown reduction code {a}")),
            Operand::I64 => Arg::I64(op.imm_i64()),
            Operand::F32 => Arg::F32(op.imm_f32()),
            Operand::Shape => {
                let (r, c) = op.imm_shape();
                Arg::Shape(r, c)
            }
            Operand::CoordImm => {
                Arg::Coord(Coord::from_key(CoordKey(op.imm)).map_err(|e| e.to_string())?)
            }
            Operand::Group => Arg::Group(op.imm_group()),
            other => return Err(format!("operand kind {other:?} has no graph form")),
        });
    }
    Ok(out)
}

/// A report for a stream compiled in place.
pub fn in_place_report(s: &Stream, words: usize, why: &str) -> StreamReport {
    StreamReport {
        sentron: s.sentron,
        frontend: format!("vasm, in place ({why})"),
        ops: s.words.iter().map(|w| w.op_count()).sum(),
        words,
        prefetches: 0,
        copies: 0,
        loops: Vec::new(),
        buffered_words: 0,
    }
}

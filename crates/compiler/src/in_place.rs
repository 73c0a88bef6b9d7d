//! In-place scheduling of any valid stream: basic blocks are list-scheduled with
//! dependencies on the physical registers as the program wrote them (read after write:
//! a later word; write after read: the same word or later, a C-pipe reader a word
//! earlier; write after write: a later word), on pages (constant coordinates compared
//! exactly, others conservatively; an op reading a window operand reads the window's
//! page, and a tile register not written in the block may hold a window onto any page),
//! and on coordination (C ops keep their order). The
//! branch or halt that ends a block stays in the block's last word; branch targets are
//! renumbered. Registers, control flow and semantics are those of the input.

use std::collections::HashMap;

use crate::deps::{DepGraph, Edge, Lat};
use crate::error::Result;
use crate::graph::NodeId;
use crate::lower::StreamReport;
use crate::schedule::list_schedule;
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::{Mem, Op, Opcode, Operand, Pipe, RegFile, Siw, Stream, Window};
use vtpu_phext::{Coord, MAX_PART_LIMIT};

fn bit(f: RegFile, i: u8) -> usize {
    match f {
        RegFile::Scalar => i as usize,
        RegFile::Tile => 32 + i as usize,
        RegFile::Coord => 48 + i as usize,
    }
}

/// Schedule every basic block of `s` in place.
pub fn schedule_stream(s: &Stream, si: usize, why: &str) -> Result<(Vec<Siw>, StreamReport)> {
    let n = s.words.len();
    let mut starts = vec![false; n + 1];
    starts[0] = true;
    for (w, word) in s.words.iter().enumerate() {
        let c = word.c();
        if matches!(
            c.code.info().coord,
            Coordination::Branch | Coordination::Halt
        ) {
            starts[w + 1] = true;
            if c.code.info().coord == Coordination::Branch {
                starts[(c.imm_label() as usize).min(n)] = true;
            }
        }
    }
    let mut out: Vec<Siw> = Vec::new();
    let mut new_index = vec![0usize; n + 1];
    let mut fix: Vec<(usize, usize)> = Vec::new(); // (new word, old target)
    let mut w = 0;
    while w < n {
        let end = (w + 1..=n).find(|&x| starts[x]).unwrap_or(n);
        for (k, slot) in new_index.iter_mut().enumerate().take(end).skip(w) {
            let _ = k;
            *slot = out.len();
        }
        let words = schedule_block(&s.words[w..end]);
        for word in words {
            let c = word.c();
            if c.code.info().coord == Coordination::Branch {
                fix.push((out.len(), c.imm_label() as usize));
            }
            out.push(word);
        }
        w = end;
    }
    new_index[n] = out.len();
    for (at, old) in fix {
        let target = new_index[old.min(n)].min(out.len().saturating_sub(1));
        out[at].slots[2].imm = Op::encode_label(target as u32);
    }
    let mut report = crate::frontend::in_place_report(s, out.len(), why);
    report.buffered_words = crate::lower::buffered_words(&out);
    let _ = si;
    Ok((out, report))
}

/// One op of a block, with what it touches.
struct BOp {
    op: Op,
    pipe: Pipe,
    reads: Vec<usize>,
    writes: Vec<usize>,
    /// Its page access: the op's own memory effect, or a read of the page behind a
    /// window operand (the table gives window readers no memory effect of their own).
    mem: Mem,
    /// Page coordinate, if it touches a page: Some(constant) or None (unknown).
    page: Option<Option<Coord>>,
}

/// What a tile register holds, as far as a block can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TileState {
    /// Written by an op that makes no window.
    Plain,
    /// A window onto this page (None: a page whose coordinate is unknown).
    Window(Option<Coord>),
}

/// List-schedule one basic block (its last word may hold the branch that ends it).
fn schedule_block(words: &[Siw]) -> Vec<Siw> {
    // Coordinate registers with known constant values, for memory disambiguation.
    let mut coords: HashMap<u8, Coord> = HashMap::new();
    // Tile registers written in the block; any other may hold a window from before.
    let mut tiles: HashMap<u8, TileState> = HashMap::new();
    let mut ops: Vec<BOp> = Vec::new();
    let mut word_of: Vec<usize> = Vec::new();
    for (wi, word) in words.iter().enumerate() {
        let before = coords.clone();
        let tiles_before = tiles.clone();
        for (k, op) in word.slots.iter().enumerate() {
            if op.is_nop() {
                continue;
            }
            let reads: Vec<usize> = vtpu_isa::validate::reads(op)
                .map(|(f, i)| bit(f, i))
                .collect();
            let writes: Vec<usize> = vtpu_isa::validate::writes(op)
                .map(|(f, i)| bit(f, i))
                .collect();
            let info = op.code.info();
            let arg_of = |pick: &dyn Fn(usize, Operand) -> bool| {
                info.operands
                    .iter()
                    .copied()
                    .enumerate()
                    .filter(|(_, kd)| !kd.is_big())
                    .zip(op.args)
                    .find(|((i, kd), _)| pick(*i, *kd))
                    .map(|(_, a)| a)
            };
            let own_page =
                || arg_of(&|_, kd| kd == Operand::CR).and_then(|r| before.get(&r).copied());
            let tile_read = |i: Option<usize>| {
                let reg = arg_of(&|j, kd| {
                    kd.reg_file() == Some(RegFile::Tile) && kd.reads() && i.is_none_or(|i| i == j)
                })?;
                // Unknown here (set before the block): it may be a window onto any page.
                Some(
                    tiles_before
                        .get(&reg)
                        .copied()
                        .unwrap_or(TileState::Window(None)),
                )
            };
            let (mem, page) = if info.mem != Mem::None {
                (info.mem, Some(own_page()))
            } else {
                // One page read per window operand; two windows onto different (or
                // unknown) pages are an unknown page.
                let mut pages = info
                    .window
                    .read_operands()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| match tile_read(Some(n)) {
                        Some(TileState::Window(p)) => Some(p),
                        _ => None,
                    });
                match (pages.next(), pages.next()) {
                    (Some(p), None) => (Mem::Read, Some(p)),
                    (Some(p), Some(q)) => (Mem::Read, if p == q { Some(p) } else { Some(None) }),
                    _ => (Mem::None, None),
                }
            };
            // What the op leaves in the tile register it writes.
            let made = match info.window {
                Window::Opens => TileState::Window(own_page()),
                Window::Forwards => tile_read(None).unwrap_or(TileState::Window(None)),
                Window::None | Window::Reads(_) | Window::ReadsTwo(..) => TileState::Plain,
            };
            for (f, i) in vtpu_isa::validate::writes(op) {
                if f == RegFile::Tile {
                    tiles.insert(i, made);
                }
            }
            match op.code {
                Opcode::SCli => {
                    if let Ok(c) = Coord::from_key(op.imm_coord()) {
                        coords.insert(op.args[0], c);
                    }
                }
                Opcode::SIndexi => match before.get(&op.args[1]).and_then(|c| {
                    c.offset(op.args[2] as usize, op.imm_i64(), MAX_PART_LIMIT)
                        .ok()
                }) {
                    Some(c) => {
                        coords.insert(op.args[0], c);
                    }
                    None => {
                        coords.remove(&op.args[0]);
                    }
                },
                _ => {
                    for (f, i) in vtpu_isa::validate::writes(op) {
                        if f == RegFile::Coord {
                            coords.remove(&i);
                        }
                    }
                }
            }
            ops.push(BOp {
                op: *op,
                pipe: Pipe::ALL[k],
                reads,
                writes,
                mem,
                page,
            });
            word_of.push(wi);
        }
        // A word whose slots both read what the other writes (a swap) cannot be split.
        let first = ops.len() - word.op_count();
        let cross = (first..ops.len()).any(|a| {
            (first..ops.len())
                .any(|b| a != b && ops[a].reads.iter().any(|r| ops[b].writes.contains(r)))
                && (first..ops.len())
                    .any(|b| a != b && ops[b].reads.iter().any(|r| ops[a].writes.contains(r)))
        });
        if cross {
            return words.to_vec();
        }
    }
    let n = ops.len();
    if n == 0 {
        return Vec::new();
    }
    let mut g = DepGraph {
        nodes: (0..n as u32).map(NodeId).collect(),
        pipe: ops.iter().map(|o| o.pipe).collect(),
        edges: Vec::new(),
        succ: vec![Vec::new(); n],
        pred: vec![Vec::new(); n],
        terminator: None,
        prefetch: vec![false; n],
        constant: ops
            .iter()
            .map(|o| {
                o.reads.is_empty()
                    && o.page.is_none()
                    && o.op.code.info().coord == Coordination::None
            })
            .collect(),
    };
    let mut edges: Vec<(usize, usize, u32)> = Vec::new();
    let mut last_writer: [Option<usize>; 64] = [None; 64];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); 64];
    let mut i = 0;
    while i < n {
        // All ops of one input word read the state before that word.
        let j = (i..n).find(|&x| word_of[x] != word_of[i]).unwrap_or(n);
        for (x, o) in ops.iter().enumerate().take(j).skip(i) {
            for &r in &o.reads {
                if let Some(w) = last_writer[r] {
                    edges.push((w, x, 1));
                }
            }
        }
        for (x, o) in ops.iter().enumerate().take(j).skip(i) {
            for &r in &o.reads {
                readers[r].push(x);
            }
        }
        for x in i..j {
            for &r in &ops[x].writes {
                if let Some(w) = last_writer[r] {
                    edges.push((w, x, 1));
                }
                for &y in &readers[r] {
                    if y != x {
                        let late = crate::deps::reads_late(ops[y].op.code);
                        edges.push((y, x, u32::from(late && word_of[y] != word_of[x])));
                    }
                }
                readers[r].clear();
                last_writer[r] = Some(x);
            }
        }
        i = j;
    }
    // Pages, coordination and the block's terminator, in program order. A page access
    // follows the conflicting accesses before it back to the last write that covers
    // them (earlier ones are ordered through it); coordination ops are fences.
    let mut last_c: Option<usize> = None;
    let mut mem_since_c: Vec<usize> = Vec::new();
    let mut mems: Vec<usize> = Vec::new();
    for x in 0..n {
        let info = ops[x].op.code.info();
        if let Some(page) = ops[x].page {
            for &y in mems.iter().rev() {
                let Some(other) = ops[y].page else { continue };
                let alias = match (page, other) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                let (ma, mb) = (ops[y].mem, ops[x].mem);
                let reads_only = |m: Mem| matches!(m, Mem::Read | Mem::Prefetch);
                let conflict = match (ma, mb) {
                    (Mem::Write, Mem::Prefetch) | (Mem::Prefetch, Mem::Write) => false,
                    _ => !reads_only(ma) || !reads_only(mb),
                };
                if alias && conflict {
                    edges.push((y, x, 1));
                    // A write to this very page (or to an unknown page) is ordered
                    // after every earlier access it conflicts with: stop there.
                    if !reads_only(ma) && (other.is_none() || (page.is_some() && other == page)) {
                        break;
                    }
                }
            }
            mems.push(x);
            mem_since_c.push(x);
            if let Some(c) = last_c {
                edges.push((c, x, 1));
            }
        }
        if ops[x].pipe == Pipe::C {
            if let Some(c) = last_c {
                edges.push((c, x, 1));
            }
            if info.coord != Coordination::None {
                for &y in &mem_since_c {
                    edges.push((y, x, 0));
                }
                mem_since_c.clear();
                last_c = Some(x);
            }
            if matches!(info.coord, Coordination::Branch | Coordination::Halt) {
                g.terminator = Some(x);
            }
        }
    }
    for (a, b, lat) in edges {
        if a == b {
            continue;
        }
        let e = g.edges.len() as u32;
        g.edges.push(Edge {
            from: a as u32,
            to: b as u32,
            lat: Lat::Fixed(lat),
            dist: 0,
        });
        g.succ[a].push(e);
        g.pred[b].push(e);
    }
    // Edges between the slots of one input word can form a cycle (each must stay in
    // that word); such a block is kept as written.
    if crate::schedule::topo_order(&g).len() != n {
        return words.to_vec();
    }
    let time = list_schedule(&g, None);
    let len = time.iter().max().map_or(0, |&t| t as usize + 1);
    let mut out = vec![Siw::NOP; len];
    for (x, &t) in time.iter().enumerate() {
        out[t as usize].slots[ops[x].pipe as usize] = ops[x].op;
    }
    out.retain(|w| w.op_count() > 0);
    out
}

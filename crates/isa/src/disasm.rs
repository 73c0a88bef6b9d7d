//! The disassembler: a [`Program`] in canonical `.vasm` text.
//!
//! Canonical form: page declarations first, then each stream in program order under
//! its header (`.sentron N`, or `.spmd` for the stream every other sentron runs), one
//! word per line with all three slots in D | S | C order (NOPs printed as DNOP, SNOP,
//! CNOP), branch targets as labels `L<word index>:` on their own line before the target
//! word. `assemble(&disassemble(p)) == p` for every program the assembler can produce,
//! which includes every valid program. Values the assembler cannot produce (a decoded
//! `t200`) are printed in forms it rejects, so a disassembly that assembles always
//! assembles to the same program.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::syntax::{fmt_f32, fmt_operand};
use crate::{Op, Operand, PageDecl, PageInitData, Program, Stream};
use vtpu_phext::PageKind;

/// The canonical text of a whole program.
pub fn disassemble(p: &Program) -> String {
    let mut out = String::new();
    for page in &p.pages {
        out.push_str(&format_page(page));
        out.push('\n');
    }
    for (i, s) in p.streams.iter().enumerate() {
        if i > 0 || !p.pages.is_empty() {
            out.push('\n');
        }
        format_stream(s, &mut out);
    }
    out
}

/// One op in assembly syntax, branch targets as `L<word index>`.
pub fn format_op(op: &Op) -> String {
    format_op_with(op, &|t| format!("L{t}"))
}

fn format_op_with(op: &Op, label: &dyn Fn(u32) -> String) -> String {
    let info = op.code.info();
    let mut text = info.name.to_string();
    let mut args = op.args.iter().copied();
    for (i, &kind) in info.operands.iter().enumerate() {
        let arg = if kind.is_big() {
            0
        } else {
            args.next().unwrap_or(0)
        };
        text.push_str(if i == 0 { " " } else { ", " });
        text.push_str(&fmt_operand(kind, arg, op.imm, label));
    }
    text
}

/// A `.page` directive (without a newline).
pub fn format_page(page: &PageDecl) -> String {
    let [rows, cols] = page.shape;
    let mut t = format!(".page {} {} {rows}x{cols}", page.coord, page.dtype.name());
    match page.kind {
        PageKind::Owned => {}
        kind => {
            t.push(' ');
            t.push_str(kind.name());
        }
    }
    if page.read_only {
        t.push_str(" readonly");
    }
    if let PageInitData::F32(values) = &page.init {
        t.push_str(" =");
        for (i, v) in values.iter().enumerate() {
            t.push_str(if i == 0 { " " } else { ", " });
            t.push_str(&fmt_f32(*v));
        }
    }
    t
}

/// Word indices some branch of the stream targets.
fn branch_targets(s: &Stream) -> BTreeSet<u32> {
    s.words
        .iter()
        .flat_map(|w| w.slots.iter())
        .filter(|op| op.code.big_operand() == Some(Operand::Label))
        .map(|op| op.imm_label())
        .collect()
}

fn format_stream(s: &Stream, out: &mut String) {
    match s.sentron {
        Some(id) => {
            let _ = writeln!(out, ".sentron {id}");
        }
        None => out.push_str(".spmd\n"),
    }
    let targets = branch_targets(s);
    let label = |t: u32| format!("L{t}");
    let texts: Vec<[String; 3]> = s
        .words
        .iter()
        .map(|w| w.slots.map(|op| format_op_with(&op, &label)))
        .collect();
    // Align the '|' columns within a stream so packed words read as a table.
    let mut width = [0usize; 2];
    for t in &texts {
        for (w, text) in width.iter_mut().zip(t) {
            *w = (*w).max(text.len());
        }
    }
    for (i, [d, sl, c]) in texts.iter().enumerate() {
        if targets.contains(&(i as u32)) {
            let _ = writeln!(out, "L{i}:");
        }
        let _ = writeln!(
            out,
            "    {d:<w0$} | {sl:<w1$} | {c}",
            w0 = width[0],
            w1 = width[1]
        );
    }
    // A target just past the last word: legal to assemble, rejected by the validator.
    let end = s.words.len() as u32;
    if targets.contains(&end) {
        let _ = writeln!(out, "L{end}:");
    }
}

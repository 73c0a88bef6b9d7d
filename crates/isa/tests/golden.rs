//! Golden files: the canonical disassembly of hand-written programs, and the op table
//! in docs/ISA.md. `VTPU_BLESS=1 cargo test -p vtpu-isa` rewrites them deliberately.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{bless, repo_root};
use vtpu_isa::ops::op_table_markdown;
use vtpu_isa::{assemble, assemble_file, disassemble, validate, Opcode, Program, ValidateOptions};

/// (source under the repository root, golden name, sentrons to validate with or None
/// when the program is deliberately not runnable)
const PROGRAMS: &[(&str, &str, Option<usize>)] = &[
    ("examples/vasm/microvtpu.vasm", "microvtpu", Some(2)),
    ("examples/vasm/loop_sum.vasm", "loop_sum", Some(4)),
    ("testdata/asm/kitchen_sink.vasm", "kitchen_sink", Some(8)),
];

fn load(rel: &str) -> Program {
    let path = repo_root().join(rel);
    let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assemble_file(rel, &src).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn golden_disassembly() {
    let mut stale = Vec::new();
    for &(src, name, _) in PROGRAMS {
        let p = load(src);
        let text = disassemble(&p);
        let golden = repo_root().join(format!("testdata/golden/{name}.vasm"));
        if bless() {
            fs::write(&golden, &text).unwrap();
        } else {
            let want = fs::read_to_string(&golden).unwrap_or_default();
            if want != text {
                stale.push(format!("{}:\n{text}", golden.display()));
            }
        }
        // The golden text assembles back to the same program.
        assert_eq!(assemble(&text).unwrap(), p, "{name}");
    }
    assert!(
        stale.is_empty(),
        "golden disassembly differs (VTPU_BLESS=1 cargo test -p vtpu-isa rewrites it):\n{}",
        stale.join("\n")
    );
}

#[test]
fn examples_are_valid() {
    for &(src, _, sentrons) in PROGRAMS {
        let opts = ValidateOptions {
            sentrons,
            ..ValidateOptions::default()
        };
        if let Err(errs) = validate(&load(src), &opts) {
            let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            panic!("{src}:\n{}", shown.join("\n"));
        }
    }
}

#[test]
fn kitchen_sink_uses_every_op() {
    let p = load("testdata/asm/kitchen_sink.vasm");
    let used: BTreeSet<Opcode> = p
        .streams
        .iter()
        .flat_map(|s| &s.words)
        .flat_map(|w| w.slots)
        .map(|op| op.code)
        .collect();
    let missing: Vec<&str> = Opcode::ALL
        .iter()
        .filter(|c| !used.contains(c))
        .map(|c| c.name())
        .collect();
    assert!(missing.is_empty(), "kitchen_sink.vasm lacks {missing:?}");
}

const BEGIN: &str = "<!-- BEGIN OP TABLE: generated from crates/isa/src/ops.rs, VTPU_BLESS=1 cargo test -p vtpu-isa rewrites it -->\n";
const END: &str = "<!-- END OP TABLE -->";

#[test]
fn isa_doc_contains_the_op_table() {
    let path = repo_root().join("docs/ISA.md");
    let doc = fs::read_to_string(&path).unwrap_or_default();
    let table = op_table_markdown();
    if bless() {
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!(
                "{}: markers {BEGIN:?} and {END:?} not found",
                path.display()
            );
        };
        let new = format!("{}{BEGIN}{table}{}", &doc[..b], &doc[e..]);
        fs::write(&path, new).unwrap();
        return;
    }
    assert!(
        doc.contains(&format!("{BEGIN}{table}{END}")),
        "docs/ISA.md does not contain the current op table (VTPU_BLESS=1 cargo test -p vtpu-isa rewrites it)"
    );
}

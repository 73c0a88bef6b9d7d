//! Assembler error messages: each bad input is reported at the right line and column,
//! saying what was expected and what was found.

use vtpu_isa::{assemble, assemble_file};

/// Assemble `src` (named prog.vasm) and check the error's "file:line:col: message"
/// starts with `prefix` and contains `needle`.
#[track_caller]
fn check(src: &str, prefix: &str, needle: &str) {
    let e = match assemble_file("prog.vasm", src) {
        Ok(p) => panic!("accepted:\n{src}\n{p:?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.starts_with(prefix), "{e:?} should start with {prefix:?}");
    assert!(e.contains(needle), "{e:?} should contain {needle:?}");
}

#[test]
fn unknown_op() {
    check(
        "    DLI r1, 5\n    FROB r1, r2\n",
        "prog.vasm:2:5: ",
        "expected an op mnemonic, found \"FROB\"",
    );
}

#[test]
fn tile_register_out_of_range() {
    check(
        "; tiles\n\n    DTADD t1, t2, t16\n",
        "prog.vasm:3:19: ",
        "expected a tile register t0..t15, found \"t16\"",
    );
    check(
        "DMOV t1, r2",
        "prog.vasm:1:10: ",
        "expected a tile register t0..t15, found \"r2\"",
    );
}

#[test]
fn bad_coordinate() {
    check(
        "    SCLI c0, 1.2.3/4.5.6/7.8.0\n",
        "prog.vasm:1:14: ",
        "found \"1.2.3/4.5.6/7.8.0\"",
    );
    check(
        "SCLI c0, 1.2.3/4.5.6/7.8.0",
        "prog.vasm:1:10: ",
        "part 9 (scroll) is 0",
    );
    check(
        ".page 1.2.3/4.5.6/7.8 f32 1x1",
        "prog.vasm:1:7: ",
        "group 3 has 2 parts",
    );
}

#[test]
fn missing_operand() {
    check(
        "DADD r1, r2",
        "prog.vasm:1:12: ",
        "expected a scalar register r0..r31 as operand 3 of DADD, found end of line",
    );
    check("DADD r1, r2 | CHALT", "prog.vasm:1:13: ", "found \"|\"");
    check(
        "DADD r1, r2,",
        "prog.vasm:1:13: ",
        "expected an operand after \",\"",
    );
    check(
        "CHALT r1",
        "prog.vasm:1:7: ",
        "expected end of op after 0 operand(s) of CHALT",
    );
    check(
        "DADD r1 r2, r3",
        "prog.vasm:1:9: ",
        "expected \",\" between operands, found \"r2\"",
    );
}

#[test]
fn overloaded_mnemonic_reports_every_form() {
    check(
        "CSEND @1, c0",
        "prog.vasm:1:11: ",
        "expected a scalar register r0..r31 or a tile register t0..t15, found \"c0\"",
    );
    check(
        "CRECV t0",
        "prog.vasm:1:9: ",
        "expected a sentron @0..@63 as operand 2 of CRECV",
    );
}

#[test]
fn two_ops_of_one_pipe() {
    check(
        "    DTMUL t3, t0, t1 | SNOP | DTADD t2, t0, t1\n",
        "prog.vasm:1:31: ",
        "expected at most one D-pipe op per word, found a second one, \"DTADD\" (the first is \"DTMUL\" at column 5)",
    );
    check("CNOP | CHALT", "prog.vasm:1:8: ", "C-pipe");
    check(
        "DNOP | | CNOP",
        "prog.vasm:1:8: ",
        "expected an op mnemonic, found \"|\"",
    );
    check(
        "DNOP |",
        "prog.vasm:1:7: ",
        "expected an op mnemonic, found end of line",
    );
}

#[test]
fn labels() {
    check(
        ".sentron 0\n  CJMP nowhere\n  CHALT\n.sentron 1\n  CHALT\n",
        "prog.vasm:2:8: ",
        "undefined label \"nowhere\"",
    );
    check(
        "top:\n  DNOP\ntop: CHALT\n",
        "prog.vasm:3:1: ",
        "\"top\", already defined at line 1",
    );
    // Labels are local to a stream.
    check(
        ".sentron 0\nx: CJMP x\n.sentron 1\n CJMP x\n",
        "prog.vasm:4:7: ",
        "undefined label \"x\"",
    );
    check("1x: DNOP", "prog.vasm:1:1: ", "expected a label name");
}

#[test]
fn bad_page() {
    check(
        ".page 1.1.1/1.1.1/1.1.1 f33 1x1",
        "prog.vasm:1:25: ",
        "expected a dtype (f32, f16",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 f32 0x4",
        "prog.vasm:1:29: ",
        "expected a shape ROWSxCOLS",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 f32 2x2 = 1, 2, 3",
        "prog.vasm:1:33: ",
        "expected 4 values for a 2x2 page, found 3",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 bf16 1x1 = 1",
        "prog.vasm:1:34: ",
        "expected initial values only for an f32 page, found a bf16 page",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 f32 1x1 mapped",
        "prog.vasm:1:33: ",
        "expected owned, scratch, readonly",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 f32 1x1 = inf",
        "prog.vasm:1:35: ",
        "expected a finite f32 literal",
    );
    check(
        ".page 1.1.1/1.1.1/1.1.1 f32 1x2 = 1,, 2",
        "prog.vasm:1:37: ",
        "found \",\"",
    );
    check(
        ".page",
        "prog.vasm:1:6: ",
        "expected a page coordinate like",
    );
}

#[test]
fn streams() {
    check(
        ".sentron 1\nCHALT\n.sentron 1\n",
        "prog.vasm:3:10: ",
        "a second stream for sentron 1 (the first starts at line 1)",
    );
    check("CHALT\n.spmd\n", "prog.vasm:2:1: ", "a second SPMD stream");
    check(
        ".sentron 64",
        "prog.vasm:1:10: ",
        "expected a sentron id 0..63",
    );
    check(".sentron 1 2", "prog.vasm:1:12: ", "expected end of line");
    check(".sentrons 1", "prog.vasm:1:1: ", "expected a directive");
}

#[test]
fn operand_kinds() {
    check(
        "SINDEX c0, c1, page, r0",
        "prog.vasm:1:16: ",
        "expected a dimension (library, shelf",
    );
    check(
        "CBAR {}",
        "prog.vasm:1:6: ",
        "a group needs at least one sentron",
    );
    check("CBAR {1,1}", "prog.vasm:1:6: ", "sentron 1 listed once");
    check("CBAR {1,64}", "prog.vasm:1:6: ", "a sentron 0..63");
    check(
        "CBAR {1 2}",
        "prog.vasm:1:9: ",
        "expected \",\" or \"}\" in the group",
    );
    check(
        "CREDUCE t0, avg, all",
        "prog.vasm:1:13: ",
        "expected a reduction (sum, max, cat)",
    );
    check(
        "DLI r0, 9223372036854775808",
        "prog.vasm:1:9: ",
        "expected a 64-bit integer",
    );
    check(
        "DTSCALE t0, t1, nan",
        "prog.vasm:1:17: ",
        "expected a finite f32 literal",
    );
    check(
        "SALLOC c0, f32, mapped, 1x1",
        "prog.vasm:1:17: ",
        "expected a page kind (owned or scratch)",
    );
    check(
        "DTZERO t0, 16777217x1",
        "prog.vasm:1:12: ",
        "each 1..=16777216",
    );
    check("CJMP 12", "prog.vasm:1:6: ", "expected a label name");
}

#[test]
fn no_file_name_and_unicode_columns() {
    let e = assemble("; ünïcode\n  DLI r1, 5 ; ok\n  DLI r99, 1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "3:7: expected a scalar register r0..r31, found \"r99\""
    );
    let e = assemble("DNOP | CJMP ünïcode").unwrap_err();
    assert_eq!(
        e.to_string(),
        "1:13: expected a label name, found \"ünïcode\""
    );
    // Columns count characters, not bytes: the tab is one column.
    let e = assemble("é:\tDNOP ä").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1), "{e}");
    let e = assemble("x:\tDNOP ä").unwrap_err();
    assert_eq!((e.line, e.column), (1, 9), "{e}");
}

#[test]
fn accepted_forms() {
    let p = assemble("start: dli R1, -0x1 | Cjmp start").map(|p| p.streams.len());
    assert!(p.is_err(), "hex integers are unsigned bit patterns");
    let p = assemble("start:dli R1, 0xFF | Cjmp start # glued label, mixed case").unwrap();
    assert_eq!(p.streams[0].words.len(), 1);
    assert_eq!(p.streams[0].words[0].slots[0].imm, 0xff);
}

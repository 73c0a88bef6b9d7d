//! Random straight-line programs: the fast executor (kernels at their scalar level)
//! and the reference executor must agree exactly, including on traps.

mod common;
use common::*;
use proptest::prelude::*;
use vtpu_runtime::ExecutorKind;

fn d_op(kind: u8, d: u8, a: u8, b: u8, imm: i8) -> String {
    match kind % 12 {
        0 => format!("DTADD t{d}, t{a}, t{b}"),
        1 => format!("DTSUB t{d}, t{a}, t{b}"),
        2 => format!("DTMUL t{d}, t{a}, t{b}"),
        3 => format!("DTMAX t{d}, t{a}, t{b}"),
        4 => format!("DTFMA t{d}, t{a}, t{b}"),
        5 => format!("DTSCALE t{d}, t{a}, {}", imm as f32 / 8.0),
        6 => format!("DMOV t{d}, t{a}"),
        7 => format!("DTZERO t{d}, 2x4"),
        8 => format!("DTSILU t{d}, t{a}"),
        9 => format!("DADDI r{d}, r{a}, {imm}"),
        10 => format!("DMUL r{d}, r{a}, r{b}"),
        _ => "DNOP".to_string(),
    }
}

fn s_op(kind: u8, t: u8, c: u8) -> String {
    match kind % 4 {
        0 => format!("SGATHER t{}, c{}", 6 + t % 2, c % 4),
        1 => format!("SSCATTR t{}, c{}, r0", t % 8, c % 2), // c0, c1 are writable
        2 => format!("SPREFCH c{}", c % 4),
        _ => "SNOP".to_string(),
    }
}

fn program(words: &[(u8, u8, u8, u8, i8, u8, u8, u8)]) -> String {
    let mut src = String::from(
        ".page 1.1.1/1.1.1/1.1.1 f32 2x4 = 1, 2, 3, 4, -1, -2, -3, -4
         .page 1.1.1/1.1.1/1.1.2 f32 2x4 = 0.5, 0.25, 2, 8, 1, 1, 1, 1
         .page 1.1.1/1.1.1/1.1.3 f32 2x4 readonly = 3, 1, 4, 1, 5, 9, 2, 6
         .page 1.1.2/1.1.1/1.1.1 f32 2x4 readonly = -1, 0, 1, 0, 2, 0, -2, 0
         SCLI c0, 1.1.1/1.1.1/1.1.1
         SCLI c1, 1.1.1/1.1.1/1.1.2
         SCLI c2, 1.1.1/1.1.1/1.1.3
         SCLI c3, 1.1.2/1.1.1/1.1.1
         DLI r1, 3
        ",
    );
    for i in 0..6 {
        src.push_str(&format!("SGATHER t{i}, c{}\n", i % 4));
    }
    for &(dk, d, a, b, imm, sk, st, sc) in words {
        // D writes t0..t5 / r0..r5 only; S gathers into t6/t7: never two writers.
        let d_line = d_op(dk, d % 6, a % 8, b % 8, imm);
        let s_line = s_op(sk, st, sc);
        src.push_str(&format!("{d_line} | {s_line}\n"));
    }
    src
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]
    #[test]
    fn executors_agree(words in proptest::collection::vec(any::<(u8, u8, u8, u8, i8, u8, u8, u8)>(), 1..40)) {
        let src = program(&words);
            let (fast, fs) = run_on(&src, 1, ExecutorKind::Fast);
        let (refr, rs) = run_on(&src, 1, ExecutorKind::Reference);
        match (fast, refr) {
            (Ok(f), Ok(r)) => {
                // Debug text compares NaNs as equal (bitwise payloads are not at stake).
                prop_assert_eq!(format!("{:?}", f.states), format!("{:?}", r.states), "{}", src);
                prop_assert_eq!(page_dump(&fs), page_dump(&rs));
                let fv: Vec<_> = f.counters.iter().map(|c| c.virtual_part()).collect();
                let rv: Vec<_> = r.counters.iter().map(|c| c.virtual_part()).collect();
                prop_assert_eq!(fv, rv);
            }
            (Err(a), Err(b)) => {
                let (ta, tb) = (a.as_trap().cloned(), b.as_trap().cloned());
                prop_assert!(ta.is_some() && tb.is_some(), "{} / {}", a, b);
                let (ta, tb) = (ta.unwrap(), tb.unwrap());
                prop_assert_eq!((ta.pc, ta.kind.clone()), (tb.pc, tb.kind.clone()), "{}", src);
            }
            (a, b) => prop_assert!(false, "fast ok={} reference ok={}\n{}", a.is_ok(), b.is_ok(), src),
        }
    }
}

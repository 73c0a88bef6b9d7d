//! microvtpu, batched: many independent `q * k * v + residual` samples over two
//! sentrons. Alice (sentron 0) gathers a block of R samples of q, k and v per iteration
//! (one SGATHERS each, at an offset she advances on the D pipe), multiplies them and
//! sends the product to Bob (C pipe). Bob (sentron 1) receives each block, gathers the
//! residual block, adds it and scatters the result.
//!
//! Per iteration Alice has 3 S ops (gathers), 3 D ops (two multiplies and the offset
//! update) and 2 C ops (the send and the loop branch): 8 ops in 3 words when packed.
//! Bob has 2 S (gather, scatter), 2 D (add, offset) and 2 C (receive, branch): 6 ops in
//! 2 words. Every op is needed: the offset feeds the gathers, the branch makes the
//! loop, nothing is computed that is not sent or stored.

use super::Workload;
use crate::error::Result;
use crate::graph::Graph;
use vtpu_isa::{Opcode, PageDecl, PageInitData};
use vtpu_phext::{Coord, DType, PageKind, PhextSpace};

/// Sizes of the batched microvtpu.
#[derive(Clone, Copy, Debug)]
pub struct MicroParams {
    /// Samples (each a row of `features` f32).
    pub samples: u32,
    pub features: u32,
    /// Samples per gather (rows of one tile).
    pub rows: u32,
}

impl Default for MicroParams {
    fn default() -> Self {
        MicroParams {
            samples: 16384,
            features: 32,
            rows: 8,
        }
    }
}

fn coord(book: u32, scroll: u32) -> Coord {
    Coord::new([1, 1, 1, 1, 1, book, 1, 1, scroll]).unwrap_or(Coord::ORIGIN)
}

/// q, k, v, residual (read-only inputs) and Bob's output page.
pub fn page_coords() -> [Coord; 5] {
    [
        coord(1, 1),
        coord(1, 2),
        coord(1, 3),
        coord(1, 4),
        coord(2, 1),
    ]
}

/// Input value of tensor `t` (0 q, 1 k, 2 v, 3 residual) at element `i`: small
/// multiples of 1/8, so the products are exact in f32.
fn input(t: usize, i: usize) -> f32 {
    ((i * (t + 3) + 7 * t) % 17) as f32 / 8.0 - 1.0
}

/// The batched microvtpu as a graph.
// `u32::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub fn build(p: MicroParams) -> Result<Workload> {
    if p.rows == 0 || p.features == 0 || p.samples == 0 || p.samples % p.rows != 0 {
        return Err(crate::CompileError::Structure {
            at: "microvtpu-batched".into(),
            what: format!(
                "samples ({}) must be a positive multiple of rows ({})",
                p.samples, p.rows
            ),
        });
    }
    let elems = p.samples as usize * p.features as usize;
    let shape = [p.samples, p.features];
    let [cq, ck, cv, cr, co] = page_coords();
    let mut g = Graph::new();
    for (t, &c) in [cq, ck, cv, cr].iter().enumerate() {
        g.page(PageDecl {
            coord: c,
            dtype: DType::F32,
            shape,
            kind: PageKind::Owned,
            read_only: true,
            init: PageInitData::F32((0..elems).map(|i| input(t, i)).collect()),
        });
    }
    g.page(PageDecl {
        coord: co,
        dtype: DType::F32,
        shape,
        kind: PageKind::Owned,
        read_only: false,
        init: PageInitData::Zero,
    });
    let iters = u64::from(p.samples / p.rows);
    let step = i64::from(p.rows) * i64::from(p.features);
    let (r, f) = (p.rows, p.features);

    let alice = g.sentron(0)?;
    let (q, k, v) = (alice.scli(cq)?, alice.scli(ck)?, alice.scli(cv)?);
    let off0 = alice.li(0)?;
    alice.begin_loop(iters)?;
    let off = alice.carried(off0)?;
    let tq = alice.gathers(q, off, r, f)?;
    let tk = alice.gathers(k, off, r, f)?;
    let tv = alice.gathers(v, off, r, f)?;
    let qk = alice.tbin(Opcode::DTMul, tq, tk)?;
    let qkv = alice.tbin(Opcode::DTMul, qk, tv)?;
    alice.send_tile(1, qkv)?;
    let next = alice.addi(off, step)?;
    alice.set_next(off, next)?;
    alice.end_loop()?;

    let bob = g.sentron(1)?;
    let (res, out) = (bob.scli(cr)?, bob.scli(co)?);
    let off0 = bob.li(0)?;
    bob.begin_loop(iters)?;
    let off = bob.carried(off0)?;
    let x = bob.recv_tile(0)?;
    let rr = bob.gathers(res, off, r, f)?;
    let y = bob.tbin(Opcode::DTAdd, x, rr)?;
    bob.scatter(y, out, off)?;
    let next = bob.addi(off, step)?;
    bob.set_next(off, next)?;
    bob.end_loop()?;

    Ok(Workload {
        name: "microvtpu-batched".into(),
        description: format!(
            "{} samples of {} f32, q*k*v on Alice (sentron 0), + residual on Bob (sentron 1), {} samples per gather, {} iterations",
            p.samples, p.features, p.rows, iters
        ),
        graph: g,
        sentrons: 2,
        data_pages: Vec::new(),
        check: Box::new(move |space: &PhextSpace| check(space, elems)),
    })
}

fn check(space: &PhextSpace, elems: usize) -> std::result::Result<String, String> {
    let [_, _, _, _, co] = page_coords();
    let page = space.get(co).ok_or("no output page")?;
    let mut out = vec![0f32; elems];
    page.read_f32(0, &mut out).map_err(|e| e.to_string())?;
    for (i, &o) in out.iter().enumerate() {
        let want = input(0, i) * input(1, i) * input(2, i) + input(3, i);
        if o != want {
            return Err(format!("output element {i} is {o}, expected {want}"));
        }
    }
    Ok(format!(
        "all {elems} outputs equal q*k*v + residual exactly"
    ))
}

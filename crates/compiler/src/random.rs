//! Random dataflow graphs for testing the compiler (and timing it): many sentrons,
//! straight-line phases and counted loops, gathers and scatters through pages (with
//! read-after-write through memory), in-place accumulators, carried values, messages
//! and collectives in a deadlock-free global order. Every value is used (leftovers are
//! folded into a checksum that is scattered), so a correct compile has no dead ops, and
//! no op can trap: offsets and coordinates stay inside their pages.

use crate::error::Result;
use crate::graph::{Graph, SentronGraph, Value};
use vtpu_isa::word::GROUP_ALL;
use vtpu_isa::{Opcode, PageDecl, PageInitData};
use vtpu_phext::{Coord, DType, PageKind};

/// Shape of the generated graphs.
#[derive(Clone, Debug)]
pub struct RandomSpec {
    pub seed: u64,
    pub sentrons: u32,
    /// Alternating straight-line and loop phases.
    pub phases: usize,
    /// Ops per sentron per straight-line phase (and per loop body, divided by 4).
    pub ops_per_phase: usize,
    /// Loop trip counts are 1..=max_trip.
    pub max_trip: u64,
    pub messages: bool,
    /// Loop bodies made of short gather -> multiply -> scatter chains (few ops per
    /// pipe, long latency paths: what software pipelining is for) instead of random
    /// ops.
    pub chains: bool,
}

impl Default for RandomSpec {
    fn default() -> Self {
        RandomSpec {
            seed: 1,
            sentrons: 2,
            phases: 4,
            ops_per_phase: 24,
            max_trip: 6,
            messages: true,
            chains: false,
        }
    }
}

/// xorshift64*: small, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const TR: u32 = 2;
const TC: u32 = 4;
const SLOT: i64 = (TR * TC) as i64;
/// Input pages: consecutive scrolls 1..=IN_PAGES, each IN_SLOTS slots of 2x4.
const IN_PAGES: u32 = 10;
const IN_SLOTS: i64 = 128;
/// Output page slots per sentron.
const OUT_SLOTS: i64 = 4096;

fn in_coord(p: u32) -> Coord {
    Coord::new([1, 1, 1, 1, 1, 1, 1, 1, p + 1]).unwrap_or(Coord::ORIGIN)
}
fn out_coord(s: u32) -> Coord {
    Coord::new([1, 1, 1, 1, 1, 2, 1, 1, s + 1]).unwrap_or(Coord::ORIGIN)
}

/// Values of one scope (top level or a loop body), with use counts.
#[derive(Default)]
struct Pool {
    tiles: Vec<(Value, u32)>,
    accs: Vec<(Value, u32)>,
    scalars: Vec<(Value, u32)>,
}

impl Pool {
    fn pick(v: &mut [(Value, u32)], rng: &mut Rng) -> Option<Value> {
        if v.is_empty() {
            return None;
        }
        let i = rng.below(v.len() as u64) as usize;
        v[i].1 += 1;
        Some(v[i].0)
    }
    /// Take a value out for an in-place update (it must not be read afterwards).
    fn take(v: &mut Vec<(Value, u32)>, rng: &mut Rng) -> Option<Value> {
        if v.is_empty() {
            return None;
        }
        let i = rng.below(v.len() as u64) as usize;
        Some(v.swap_remove(i).0)
    }
}

struct Sen {
    id: u32,
    top: Pool,
    next_slot: i64,
}

/// Build a random graph.
pub fn random_graph(spec: &RandomSpec) -> Result<Graph> {
    let mut rng = Rng::new(spec.seed);
    let mut g = Graph::new();
    for p in 0..IN_PAGES {
        let vals: Vec<f32> = (0..IN_SLOTS * SLOT)
            .map(|_| (rng.below(17) as f32 - 8.0) / 8.0)
            .collect();
        g.page(PageDecl {
            coord: in_coord(p),
            dtype: DType::F32,
            shape: [(IN_SLOTS as u32) * TR, TC],
            kind: PageKind::Owned,
            read_only: p % 2 == 0,
            init: PageInitData::F32(vals),
        });
    }
    let n = spec.sentrons.max(1);
    let mut sens: Vec<Sen> = (0..n)
        .map(|id| Sen {
            id,
            top: Pool::default(),
            next_slot: 0,
        })
        .collect();
    for s in &sens {
        g.page(PageDecl {
            coord: out_coord(s.id),
            dtype: DType::F32,
            shape: [(OUT_SLOTS as u32) * TR, TC],
            kind: PageKind::Owned,
            read_only: false,
            init: PageInitData::Zero,
        });
        g.sentron(s.id)?;
    }
    for phase in 0..spec.phases {
        if phase % 2 == 1 {
            let trip = 1 + rng.below(spec.max_trip.max(1));
            loop_phase(&mut g, &mut sens, &mut rng, spec, trip)?;
        } else {
            for k in 0..spec.ops_per_phase {
                for s in sens.iter_mut() {
                    let sg = g.sentron(s.id)?;
                    block_op(sg, s, &mut rng)?;
                }
                if spec.messages && n > 1 && k % 6 == 5 {
                    comm_event(&mut g, &mut sens, &mut rng, None)?;
                }
            }
        }
    }
    for s in sens.iter_mut() {
        let sg = g.sentron(s.id)?;
        sink(sg, s, &mut rng)?;
    }
    Ok(g)
}

fn new_tile(sg: &mut SentronGraph, s: &mut Sen, rng: &mut Rng) -> Result<Value> {
    // A gather from an input page, or from this sentron's output page.
    let (coord, slot) = if s.next_slot > 0 && rng.chance(25) {
        (out_coord(s.id), rng.below(s.next_slot as u64) as i64)
    } else {
        (
            in_coord(rng.below(u64::from(IN_PAGES)) as u32),
            rng.below(IN_SLOTS as u64) as i64,
        )
    };
    let c = sg.scli(coord)?;
    let off = sg.li(slot * SLOT)?;
    sg.gathers(c, off, TR, TC)
}

fn tile_or_new(sg: &mut SentronGraph, s: &mut Sen, rng: &mut Rng) -> Result<Value> {
    // Decide first, then pick: a picked value counts as used.
    let reuse = rng.chance(70);
    match if reuse {
        Pool::pick(&mut s.top.tiles, rng)
    } else {
        None
    } {
        Some(t) => Ok(t),
        None => new_tile(sg, s, rng),
    }
}

/// Keep the number of unused values bounded (scatter or fold the surplus), so that
/// random graphs stay within the register files.
fn trim(sg: &mut SentronGraph, s: &mut Sen) -> Result<()> {
    while s.top.tiles.len() > 4 {
        let (t, _) = s.top.tiles.remove(0);
        scatter_out(sg, s, t)?;
    }
    while s.top.scalars.len() > 8 {
        let (a, _) = s.top.scalars.remove(0);
        let (b, _) = s.top.scalars.remove(0);
        let c = sg.add(a, b)?;
        s.top.scalars.push((c, 0));
    }
    while s.top.accs.len() > 2 {
        let (a, _) = s.top.accs.remove(0);
        let (b, _) = s.top.accs.remove(0);
        let c = sg.tbin(Opcode::DTAdd, a, b)?;
        s.top.accs.push((c, 0));
    }
    Ok(())
}

fn block_op(sg: &mut SentronGraph, s: &mut Sen, rng: &mut Rng) -> Result<()> {
    trim(sg, s)?;
    match rng.below(10) {
        0 | 1 => {
            let t = new_tile(sg, s, rng)?;
            s.top.tiles.push((t, 0));
        }
        2 | 3 => {
            let a = tile_or_new(sg, s, rng)?;
            let b = tile_or_new(sg, s, rng)?;
            let code =
                [Opcode::DTAdd, Opcode::DTSub, Opcode::DTMul, Opcode::DTMax][rng.below(4) as usize];
            let t = sg.tbin(code, a, b)?;
            s.top.tiles.push((t, 0));
        }
        4 => {
            let a = tile_or_new(sg, s, rng)?;
            let t = if rng.chance(50) {
                sg.op(Opcode::DTScale, &[crate::Arg::V(a), crate::Arg::F32(0.5)])?[0]
            } else {
                sg.op(Opcode::DTSilu, &[crate::Arg::V(a)])?[0]
            };
            s.top.tiles.push((t, 0));
        }
        5 => {
            // In-place FMA on a tile nobody reads afterwards.
            let a = tile_or_new(sg, s, rng)?;
            let b = tile_or_new(sg, s, rng)?;
            let acc = match Pool::take(&mut s.top.tiles, rng) {
                Some(t) => t,
                None => new_tile(sg, s, rng)?,
            };
            let t = sg.op(
                Opcode::DTFma,
                &[crate::Arg::V(acc), crate::Arg::V(a), crate::Arg::V(b)],
            )?[0];
            s.top.tiles.push((t, 0));
        }
        6 => {
            let a = tile_or_new(sg, s, rng)?;
            let b = tile_or_new(sg, s, rng)?;
            let acc = match Pool::take(&mut s.top.accs, rng) {
                Some(t) => t,
                None => sg.tzero(TR, TR)?,
            };
            let t = sg.matmul(acc, a, b)?;
            s.top.accs.push((t, 0));
        }
        7 => {
            let reuse = rng.chance(60);
            let v = match if reuse {
                Pool::pick(&mut s.top.scalars, rng)
            } else {
                None
            } {
                Some(a) => match rng.below(3) {
                    0 | 1 => {
                        let b = Pool::pick(&mut s.top.scalars, rng).unwrap_or(a);
                        if rng.chance(50) {
                            sg.add(a, b)?
                        } else {
                            sg.op(Opcode::DSub, &[crate::Arg::V(a), crate::Arg::V(b)])?[0]
                        }
                    }
                    _ => sg.muli(a, rng.below(5) as i64 - 2)?,
                },
                _ => sg.li(rng.below(100) as i64 - 50)?,
            };
            s.top.scalars.push((v, 0));
        }
        8 => {
            if let Some(r) = Pool::pick(&mut s.top.scalars, rng) {
                let t = sg.op(
                    Opcode::DTSplat,
                    &[crate::Arg::V(r), crate::Arg::Shape(TR, TC)],
                )?[0];
                s.top.tiles.push((t, 0));
            }
        }
        _ => {
            let t = tile_or_new(sg, s, rng)?;
            scatter_out(sg, s, t)?;
        }
    }
    Ok(())
}

fn scatter_out(sg: &mut SentronGraph, s: &mut Sen, t: Value) -> Result<()> {
    let c = sg.scli(out_coord(s.id))?;
    let off = sg.li(s.next_slot * SLOT)?;
    s.next_slot = (s.next_slot + 1) % OUT_SLOTS;
    sg.scatter(t, c, off)?;
    Ok(())
}

/// One communication event in the global order: a message between two sentrons, or a
/// collective over all of them. `body`: the per-sentron loop-body pools, when inside a
/// loop phase.
fn comm_event(
    g: &mut Graph,
    sens: &mut [Sen],
    rng: &mut Rng,
    mut body: Option<&mut Vec<Pool>>,
) -> Result<()> {
    let n = sens.len() as u32;
    let kind = rng.below(4);
    if kind == 3 {
        // CREDUCE sum over everyone: each contributes a fresh 2x4 tile.
        for i in 0..n as usize {
            let sg = g.sentron(i as u32)?;
            let t = new_tile(sg, &mut sens[i], rng)?;
            let r = sg.reduce(t, 0, GROUP_ALL)?;
            match body.as_deref_mut() {
                Some(b) => b[i].tiles.push((r, 0)),
                None => sens[i].top.tiles.push((r, 0)),
            }
        }
        return Ok(());
    }
    let from = rng.below(u64::from(n)) as u32;
    let to = (from + 1 + rng.below(u64::from(n - 1)) as u32) % n;
    if kind == 2 {
        let sg = g.sentron(from)?;
        let v = sg.li(rng.below(1000) as i64)?;
        sg.send_scalar(to, v)?;
        let r = g.sentron(to)?.recv_scalar(from)?;
        match body {
            Some(b) => b[to as usize].scalars.push((r, 0)),
            None => sens[to as usize].top.scalars.push((r, 0)),
        }
    } else {
        let sg = g.sentron(from)?;
        let t = new_tile(sg, &mut sens[from as usize], rng)?;
        sg.send_tile(to, t)?;
        let r = g.sentron(to)?.recv_tile(from)?;
        match body {
            Some(b) => b[to as usize].tiles.push((r, 0)),
            None => sens[to as usize].top.tiles.push((r, 0)),
        }
    }
    Ok(())
}

/// Every sentron runs a loop of `trip` iterations with carried accumulators, induction
/// offsets and coordinates, gathers, scatters and (in a common order) messages.
fn loop_phase(
    g: &mut Graph,
    sens: &mut [Sen],
    rng: &mut Rng,
    spec: &RandomSpec,
    trip: u64,
) -> Result<()> {
    struct L {
        sum: Value,
        acc: Value,
        mm: Value,
        off: Value,
        coord: Value,
        out_off: Value,
        cnt: Value,
        inv_coord: Value,
        inv_a: Option<Value>,
        inv_b: Option<Value>,
    }
    let mut ls = Vec::new();
    let mut bodies: Vec<Pool> = Vec::new();
    for s in sens.iter_mut() {
        let sg = g.sentron(s.id)?;
        trim(sg, s)?;
        let init_sum = match Pool::take(&mut s.top.tiles, rng) {
            Some(t) => t,
            None => sg.tzero(TR, TC)?,
        };
        let init_acc = new_tile(sg, s, rng)?;
        let init_mm = match Pool::take(&mut s.top.accs, rng) {
            Some(t) => t,
            None => sg.tzero(TR, TR)?,
        };
        let start = rng.below((IN_SLOTS as u64).saturating_sub(trip) + 1) as i64;
        let init_off = sg.li(start * SLOT)?;
        let page0 = rng.below(u64::from(IN_PAGES) - trip.min(u64::from(IN_PAGES) - 1)) as u32;
        let init_coord = sg.scli(in_coord(page0))?;
        if s.next_slot + trip as i64 >= OUT_SLOTS {
            s.next_slot = 0;
        }
        let init_out = sg.li(s.next_slot * SLOT)?;
        s.next_slot += trip as i64;
        let reuse = rng.chance(50);
        let init_cnt = match if reuse {
            Pool::pick(&mut s.top.scalars, rng)
        } else {
            None
        } {
            Some(v) => v,
            None => sg.li(0)?,
        };
        let inv_coord = sg.scli(out_coord(s.id))?;
        let (inv_a, inv_b) = if spec.chains {
            (
                Some(sg.scli(in_coord(rng.below(u64::from(IN_PAGES)) as u32))?),
                Some(sg.scli(in_coord(rng.below(u64::from(IN_PAGES)) as u32))?),
            )
        } else {
            (None, None)
        };
        sg.begin_loop(trip)?;
        let l = L {
            sum: sg.carried(init_sum)?,
            acc: sg.carried(init_acc)?,
            mm: sg.carried(init_mm)?,
            off: sg.carried(init_off)?,
            coord: sg.carried(init_coord)?,
            out_off: sg.carried(init_out)?,
            cnt: sg.carried(init_cnt)?,
            inv_coord,
            inv_a,
            inv_b,
        };
        ls.push(l);
        bodies.push(Pool::default());
    }
    let body_ops = if spec.chains {
        0
    } else {
        (spec.ops_per_phase / 4).max(2)
    };
    if spec.chains {
        for (i, s) in sens.iter_mut().enumerate() {
            let sg = g.sentron(s.id)?;
            let l = &ls[i];
            let b = &mut bodies[i];
            let (Some(inv_a), Some(inv_b)) = (l.inv_a, l.inv_b) else {
                continue;
            };
            for _ in 0..1 + rng.below(2) {
                let ta = sg.gathers(inv_a, l.off, TR, TC)?;
                let tb = sg.gathers(inv_b, l.off, TR, TC)?;
                let p = sg.tbin(Opcode::DTMul, ta, tb)?;
                if rng.chance(50) {
                    sg.scatter(p, l.inv_coord, l.out_off)?;
                } else {
                    b.tiles.push((p, 0));
                }
            }
        }
        if spec.messages && sens.len() > 1 {
            comm_event(g, sens, rng, Some(&mut bodies))?;
        }
    }
    for k in 0..body_ops {
        for (i, s) in sens.iter_mut().enumerate() {
            let sg = g.sentron(s.id)?;
            let l = &ls[i];
            let b = &mut bodies[i];
            match rng.below(6) {
                0 => {
                    // Gather at the carried offset from a fixed page or at the carried page.
                    let t = if rng.chance(50) {
                        let c = sg.scli(in_coord(rng.below(u64::from(IN_PAGES)) as u32))?;
                        sg.gathers(c, l.off, TR, TC)?
                    } else {
                        let off = sg.li(rng.below(IN_SLOTS as u64) as i64 * SLOT)?;
                        sg.gathers(l.coord, off, TR, TC)?
                    };
                    b.tiles.push((t, 0));
                }
                1 | 2 => {
                    let a = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
                    let c = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
                    let code = [Opcode::DTAdd, Opcode::DTMul, Opcode::DTMax][rng.below(3) as usize];
                    let t = sg.tbin(code, a, c)?;
                    b.tiles.push((t, 0));
                }
                3 => {
                    let t = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
                    sg.scatter(t, l.inv_coord, l.out_off)?;
                }
                4 => {
                    let v = match Pool::pick(&mut b.scalars, rng) {
                        Some(a) => sg.addi(a, rng.below(7) as i64)?,
                        None => sg.addi(l.cnt, 3)?,
                    };
                    b.scalars.push((v, 0));
                }
                _ => {
                    let t = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
                    b.tiles.push((t, 0));
                }
            }
        }
        if spec.messages && sens.len() > 1 && k % 3 == 2 {
            comm_event(g, sens, rng, Some(&mut bodies))?;
        }
        // Keep the body's unused tiles few (fold pairs), so bodies stay allocatable.
        for (i, s) in sens.iter().enumerate() {
            let b = &mut bodies[i];
            while b.tiles.iter().filter(|t| t.1 == 0).count() > 3 {
                let pos: Vec<usize> = (0..b.tiles.len())
                    .filter(|&j| b.tiles[j].1 == 0)
                    .take(2)
                    .collect();
                let (x, y) = (b.tiles[pos[0]].0, b.tiles[pos[1]].0);
                b.tiles[pos[0]].1 += 1;
                b.tiles[pos[1]].1 += 1;
                let f = g.sentron(s.id)?.tbin(Opcode::DTAdd, x, y)?;
                b.tiles.push((f, 0));
            }
        }
    }
    for (i, s) in sens.iter_mut().enumerate() {
        let sg = g.sentron(s.id)?;
        let l = &ls[i];
        let b = &mut bodies[i];
        // Every carried offset and coordinate is used: a gather at the carried page and
        // offset, and a scatter at the carried output slot.
        let g0 = sg.gathers(l.coord, l.off, TR, TC)?;
        sg.scatter(g0, l.inv_coord, l.out_off)?;
        // The in-place accumulators: acc += a * b, mm += a x b^T, chained into `next`.
        let x = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
        let y = body_tile(sg, b, &mut s.top, rng, l.coord, l.off)?;
        let acc_next = sg.op(
            Opcode::DTFma,
            &[crate::Arg::V(l.acc), crate::Arg::V(x), crate::Arg::V(y)],
        )?[0];
        let mm_next = sg.matmul(l.mm, x, y)?;
        // Everything else the body computed is folded into the running sum.
        let mut sum = l.sum;
        for (t, uses) in std::mem::take(&mut b.tiles) {
            if uses == 0 {
                sum = sg.tbin(Opcode::DTAdd, sum, t)?;
            }
        }
        if sum == l.sum {
            sum = sg.tbin(Opcode::DTAdd, sum, x)?;
        }
        let mut cnt = sg.addi(l.cnt, 1)?;
        for (v, uses) in std::mem::take(&mut b.scalars) {
            if uses == 0 {
                cnt = sg.add(cnt, v)?;
            }
        }
        let off_next = sg.addi(l.off, SLOT)?;
        let coord_next = sg.sindexi(l.coord, 8, 1)?;
        let out_next = sg.addi(l.out_off, SLOT)?;
        sg.set_next(l.sum, sum)?;
        sg.set_next(l.acc, acc_next)?;
        sg.set_next(l.mm, mm_next)?;
        sg.set_next(l.off, off_next)?;
        sg.set_next(l.coord, coord_next)?;
        sg.set_next(l.out_off, out_next)?;
        sg.set_next(l.cnt, cnt)?;
        let lp = sg.end_loop()?;
        let outs = [
            (sg.loop_output(lp, l.sum)?, 0),
            (sg.loop_output(lp, l.acc)?, 0),
            (sg.loop_output(lp, l.mm)?, 1),
            (sg.loop_output(lp, l.cnt)?, 2),
        ];
        for (v, kind) in outs {
            match kind {
                0 => s.top.tiles.push((v, 0)),
                1 => s.top.accs.push((v, 0)),
                _ => s.top.scalars.push((v, 0)),
            }
        }
    }
    Ok(())
}

/// A tile for a loop-body op: a body value, a top-level (invariant) value, or a gather.
fn body_tile(
    sg: &mut SentronGraph,
    b: &mut Pool,
    top: &mut Pool,
    rng: &mut Rng,
    coord: Value,
    off: Value,
) -> Result<Value> {
    match rng.below(3) {
        0 => {
            if let Some(t) = Pool::pick(&mut b.tiles, rng) {
                return Ok(t);
            }
        }
        1 => {
            if let Some(t) = Pool::pick(&mut top.tiles, rng) {
                return Ok(t);
            }
        }
        _ => {}
    }
    let t = if rng.chance(50) {
        sg.gathers(coord, off, TR, TC)?
    } else {
        let c = sg.scli(in_coord(0))?;
        sg.gathers(c, off, TR, TC)?
    };
    b.tiles.push((t, 0));
    if let Some(x) = b.tiles.last_mut() {
        x.1 += 1;
    }
    Ok(t)
}

/// Fold every unused value into checksums and scatter them.
fn sink(sg: &mut SentronGraph, s: &mut Sen, rng: &mut Rng) -> Result<()> {
    let _ = rng;
    let mut tile: Option<Value> = None;
    for (t, uses) in std::mem::take(&mut s.top.tiles) {
        if uses == 0 {
            tile = Some(match tile {
                Some(acc) => sg.tbin(Opcode::DTAdd, acc, t)?,
                None => t,
            });
        }
    }
    let mut scalar: Option<Value> = None;
    for (v, uses) in std::mem::take(&mut s.top.scalars) {
        if uses == 0 {
            scalar = Some(match scalar {
                Some(acc) => sg.add(acc, v)?,
                None => v,
            });
        }
    }
    if let Some(r) = scalar {
        let t = sg.op(
            Opcode::DTSplat,
            &[crate::Arg::V(r), crate::Arg::Shape(TR, TC)],
        )?[0];
        tile = Some(match tile {
            Some(acc) => sg.tbin(Opcode::DTAdd, acc, t)?,
            None => t,
        });
    }
    if let Some(t) = tile {
        scatter_out(sg, s, t)?;
    }
    let mut acc: Option<Value> = None;
    for (m, uses) in std::mem::take(&mut s.top.accs) {
        if uses == 0 {
            acc = Some(match acc {
                Some(a) => sg.tbin(Opcode::DTAdd, a, m)?,
                None => m,
            });
        }
    }
    if let Some(m) = acc {
        // A 2x2 tile: scatter it as 4 elements at a fresh slot.
        let c = sg.scli(out_coord(s.id))?;
        let off = sg.li(s.next_slot * SLOT)?;
        s.next_slot = (s.next_slot + 1) % OUT_SLOTS;
        sg.scatter(m, c, off)?;
    }
    Ok(())
}

/// A random graph of at least `ops` ops (2 sentrons with messages, straight-line phases
/// and loops), for timing the compiler.
pub fn graph_of_size(ops: usize, seed: u64) -> Result<Graph> {
    let mut phases = 4usize;
    loop {
        let spec = RandomSpec {
            seed,
            sentrons: 2,
            phases,
            ops_per_phase: 40,
            max_trip: 9,
            messages: true,
            chains: false,
        };
        let g = random_graph(&spec)?;
        if g.total_ops() >= ops || phases > 1 << 16 {
            return Ok(g);
        }
        let scale = (ops as f64 / g.total_ops().max(1) as f64).max(1.1);
        phases = ((phases as f64 * scale).ceil() as usize).max(phases + 1);
    }
}

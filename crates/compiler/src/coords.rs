//! Symbolic coordinates: which page each memory op touches, as far as the compiler can
//! tell. Two memory ops conflict only if their pages may be the same; a coordinate is a
//! root (a constant, or an opaque value such as a loop's carried coordinate) plus known
//! or unknown offsets per part. Scalar constants are tracked too (for SINDEX offsets).
//!
//! Windows (`vtpu_isa::Window`): a tile value that is a live window onto a page is
//! tracked to the coordinate its opening op (SWINDOW) named, through ops that forward
//! windows (DMOV), carried values and loop outputs; an op that reads a window operand
//! reads that page when it runs, and [`CoordInfo::page_accesses`] reports it as a page
//! read there, like any gather.

use std::collections::HashMap;

use crate::graph::{LoopId, Node, NodeId, SentronGraph, Value, ValueDef};
use vtpu_isa::{Mem, Opcode, Operand, RegFile, Window};
use vtpu_phext::{Coord, MAX_PART_LIMIT};

/// What a coordinate is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Root {
    Const(Coord),
    /// An opaque coordinate value (a carried value, a loop output).
    Val(Value),
}

/// A coordinate: root plus a per-part offset (None: unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sym {
    pub root: Root,
    pub off: [Option<i64>; 9],
}

impl Sym {
    fn opaque(v: Value) -> Sym {
        Sym {
            root: Root::Val(v),
            off: [Some(0); 9],
        }
    }
    /// The exact coordinate, when it is a known constant.
    pub fn constant(&self) -> Option<Coord> {
        match self.root {
            Root::Const(c) if self.off.iter().all(|o| *o == Some(0)) => Some(c),
            _ => None,
        }
    }
}

/// Results of the analysis for one sentron's graph.
pub struct CoordInfo {
    syms: Vec<Option<Sym>>,
    scalars: Vec<Option<i64>>,
    /// Carried coordinates that advance by a constant step per iteration.
    steps: HashMap<Value, [i64; 9]>,
    /// Carried value -> its loop.
    phi_loop: HashMap<Value, LoopId>,
    /// Carried coordinates with a constant initial value: the initial coordinate.
    phi_init: HashMap<Value, Coord>,
    /// Tile values that may be windows: the page each is a window onto (an opaque root
    /// when it may be one of several, e.g. a carried tile).
    windows: Vec<Option<Sym>>,
}

impl CoordInfo {
    /// One pass in op order (values are defined before they are used, except carried
    /// values, which are opaque roots).
    pub fn analyze(sg: &SentronGraph) -> CoordInfo {
        let n = sg.values.len();
        let mut ci = CoordInfo {
            syms: vec![None; n],
            scalars: vec![None; n],
            steps: HashMap::new(),
            phi_loop: HashMap::new(),
            phi_init: HashMap::new(),
            windows: vec![None; n],
        };
        for node in &sg.nodes {
            let op = &node.template;
            let Some(&d) = node.defs.first() else {
                continue;
            };
            let u = |i: usize| node.uses.get(i).copied();
            match op.code {
                Opcode::DLi => ci.scalars[d.0 as usize] = Some(op.imm_i64()),
                Opcode::DAddi | Opcode::DMuli => {
                    let a = u(0).and_then(|v| ci.scalar(v));
                    ci.scalars[d.0 as usize] = a.and_then(|a| {
                        if op.code == Opcode::DAddi {
                            a.checked_add(op.imm_i64())
                        } else {
                            a.checked_mul(op.imm_i64())
                        }
                    });
                }
                Opcode::DAdd | Opcode::DSub | Opcode::DMul => {
                    let (a, b) = (
                        u(0).and_then(|v| ci.scalar(v)),
                        u(1).and_then(|v| ci.scalar(v)),
                    );
                    ci.scalars[d.0 as usize] = match (a, b) {
                        (Some(a), Some(b)) => match op.code {
                            Opcode::DAdd => a.checked_add(b),
                            Opcode::DSub => a.checked_sub(b),
                            _ => a.checked_mul(b),
                        },
                        _ => None,
                    };
                }
                Opcode::SCli => {
                    if let Ok(c) = Coord::from_key(op.imm_coord()) {
                        ci.syms[d.0 as usize] = Some(Sym {
                            root: Root::Const(c),
                            off: [Some(0); 9],
                        });
                    }
                }
                Opcode::SIndexi | Opcode::SIndex => {
                    let dim = op.args[2] as usize;
                    let delta = if op.code == Opcode::SIndexi {
                        Some(op.imm_i64())
                    } else {
                        u(1).and_then(|v| ci.scalar(v))
                    };
                    if let Some(base) = u(0) {
                        let mut s = ci.sym(base);
                        if dim < 9 {
                            s.off[dim] = match (s.off[dim], delta) {
                                (Some(a), Some(b)) => a.checked_add(b),
                                _ => None,
                            };
                        }
                        ci.syms[d.0 as usize] = Some(fold(s));
                    }
                }
                _ => {}
            }
        }
        for (li, l) in sg.loops.iter().enumerate() {
            for p in &l.phis {
                ci.phi_loop.insert(p.value, LoopId(li as u32));
                if let Some(c) = ci
                    .syms
                    .get(p.init.0 as usize)
                    .copied()
                    .flatten()
                    .and_then(|s| s.constant())
                {
                    ci.phi_init.insert(p.value, c);
                }
                let Some(next) = p.next else { continue };
                let s = ci.sym(next);
                if s.root == Root::Val(p.value) {
                    let mut step = [0i64; 9];
                    if s.off.iter().zip(step.iter_mut()).all(|(o, st)| {
                        o.map(|x| {
                            *st = x;
                        })
                        .is_some()
                    }) {
                        ci.steps.insert(p.value, step);
                    }
                }
            }
        }
        ci.track_windows(sg);
        ci
    }

    /// Which tile values are windows, onto which page. Windows only appear (None ->
    /// Some) and every window value has one source, so repeating the pass until nothing
    /// changes terminates; a carried value sees its next value only on a later pass.
    fn track_windows(&mut self, sg: &SentronGraph) {
        if !sg
            .nodes
            .iter()
            .any(|n| n.code().info().window == Window::Opens)
        {
            return; // no window is ever opened: nothing to track
        }
        loop {
            let mut changed = false;
            for node in &sg.nodes {
                let made = match node.code().info().window {
                    Window::Opens => coord_use(node).map(|c| self.sym(c)),
                    Window::Forwards => tile_use(node).and_then(|t| self.windows[t.0 as usize]),
                    Window::None | Window::Reads(_) | Window::ReadsTwo(..) => None,
                };
                let Some(page) = made else { continue };
                for &d in &node.defs {
                    if sg.value(d).file == RegFile::Tile && self.windows[d.0 as usize].is_none() {
                        self.windows[d.0 as usize] = Some(page);
                        changed = true;
                    }
                }
            }
            for l in &sg.loops {
                for p in &l.phis {
                    // A carried tile may be a window in one iteration and not (or onto
                    // another page) in the next: any page.
                    let from = |v: Value| self.windows[v.0 as usize].is_some();
                    if self.windows[p.value.0 as usize].is_none()
                        && (from(p.init) || p.next.is_some_and(from))
                    {
                        self.windows[p.value.0 as usize] = Some(Sym::opaque(p.value));
                        changed = true;
                    }
                }
            }
            for (i, v) in sg.values.iter().enumerate() {
                if let ValueDef::Output { of, .. } = v.def {
                    // The last iteration's window (its coordinate, symbolic in the
                    // loop's carried values, holds for every iteration).
                    if self.windows[i].is_none() && self.windows[of.0 as usize].is_some() {
                        self.windows[i] = self.windows[of.0 as usize];
                        changed = true;
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// The page a tile value is a window onto, if it may be a window.
    pub fn window(&self, v: Value) -> Option<Sym> {
        self.windows.get(v.0 as usize).copied().flatten()
    }

    /// The pages `node` reads through its window operands when it runs: each
    /// window-read operand whose value is (or may be) a window. None for other ops and
    /// other values.
    pub fn window_reads(&self, sg: &SentronGraph, node: NodeId) -> [Option<Sym>; 2] {
        let n = sg.node(node);
        let info = n.code().info();
        info.window.read_operands().map(|k| {
            let k = k?;
            // `uses` holds the read registers in operand order.
            let idx = info.operands.get(..k)?.iter().filter(|o| o.reads()).count();
            self.window(*n.uses.get(idx)?)
        })
    }

    /// Every page access of `node`: its own memory effect on its coordinate operand,
    /// plus a read of the page behind each window operand (a page read at this op).
    pub fn page_accesses(
        &self,
        sg: &SentronGraph,
        node: NodeId,
    ) -> impl Iterator<Item = (Mem, Sym)> {
        let own = self
            .mem_loc(sg, node)
            .map(|s| (sg.node(node).code().info().mem, s));
        let windows = self
            .window_reads(sg, node)
            .into_iter()
            .flatten()
            .map(|s| (Mem::Read, s));
        own.into_iter().chain(windows)
    }

    /// The symbolic coordinate of a coordinate value.
    pub fn sym(&self, v: Value) -> Sym {
        self.syms
            .get(v.0 as usize)
            .copied()
            .flatten()
            .unwrap_or_else(|| Sym::opaque(v))
    }

    /// A scalar value's constant, when known.
    pub fn scalar(&self, v: Value) -> Option<i64> {
        self.scalars.get(v.0 as usize).copied().flatten()
    }

    /// The page coordinate a memory op reads (its coordinate-register operand).
    pub fn mem_loc(&self, sg: &SentronGraph, node: NodeId) -> Option<Sym> {
        let n = sg.node(node);
        if n.code().info().mem == Mem::None {
            return None;
        }
        coord_use(n).map(|v| self.sym(v))
    }

    /// May `a` and `b` name the same page (in the same iteration)?
    pub fn may_alias(&self, a: &Sym, b: &Sym) -> bool {
        match (a.root, b.root) {
            (Root::Const(x), Root::Const(y)) => {
                let (px, py) = (x.parts(), y.parts());
                for d in 0..9 {
                    if let (Some(oa), Some(ob)) = (a.off[d], b.off[d]) {
                        if i64::from(px[d]) + oa != i64::from(py[d]) + ob {
                            return false;
                        }
                    }
                }
                true
            }
            (Root::Val(x), Root::Val(y)) if x == y => !differs(&a.off, &b.off),
            (Root::Val(x), Root::Const(c)) => !self.phi_excludes(x, &a.off, c, &b.off),
            (Root::Const(c), Root::Val(x)) => !self.phi_excludes(x, &b.off, c, &a.off),
            _ => true,
        }
    }

    /// A carried coordinate that starts at a constant and moves by a constant step
    /// never changes the parts whose step is 0: if such a part differs from the
    /// constant coordinate's, they never alias.
    fn phi_excludes(
        &self,
        phi: Value,
        off: &[Option<i64>; 9],
        c: Coord,
        c_off: &[Option<i64>; 9],
    ) -> bool {
        let (Some(init), Some(step)) = (self.phi_init.get(&phi), self.steps.get(&phi)) else {
            return false;
        };
        let (pi, pc) = (init.parts(), c.parts());
        (0..9).any(|d| {
            step[d] == 0
                && matches!((off[d], c_off[d]), (Some(x), Some(y)) if i64::from(pi[d]) + x != i64::from(pc[d]) + y)
        })
    }

    /// May `a` in some iteration and `b` in a later iteration of loop `l` name the same
    /// page?
    pub fn may_alias_later(&self, l: LoopId, a: &Sym, b: &Sym) -> bool {
        let carried = |r: Root| match r {
            Root::Val(v) => self.phi_loop.get(&v) == Some(&l),
            Root::Const(_) => false,
        };
        match (carried(a.root), carried(b.root)) {
            (false, false) => self.may_alias(a, b),
            (true, false) | (false, true) => self.may_alias(a, b),
            (true, true) if a.root == b.root => {
                let Root::Val(p) = a.root else { return true };
                let Some(step) = self.steps.get(&p) else {
                    return true;
                };
                // a.off == b.off + d * step for some d >= 1?
                let mut d_needed: Option<i64> = None;
                for ((oa, ob), &st) in a.off.iter().zip(&b.off).zip(step) {
                    let (Some(oa), Some(ob)) = (oa, ob) else {
                        continue;
                    };
                    let diff = oa - ob;
                    if st == 0 {
                        if diff != 0 {
                            return false;
                        }
                        continue;
                    }
                    if diff % st != 0 {
                        return false;
                    }
                    let d = diff / st;
                    if d < 1 || d_needed.is_some_and(|x| x != d) {
                        return false;
                    }
                    d_needed = Some(d);
                }
                true
            }
            _ => true,
        }
    }
}

fn differs(a: &[Option<i64>; 9], b: &[Option<i64>; 9]) -> bool {
    a.iter()
        .zip(b)
        .any(|(x, y)| matches!((x, y), (Some(p), Some(q)) if p != q))
}

/// A constant root with known offsets becomes the constant coordinate itself.
fn fold(s: Sym) -> Sym {
    let Root::Const(c) = s.root else { return s };
    let mut cur = c;
    let mut off = s.off;
    for (d, o) in off.iter_mut().enumerate() {
        if let Some(delta) = *o {
            if delta != 0 {
                match cur.offset(d, delta, MAX_PART_LIMIT) {
                    Ok(n) => {
                        cur = n;
                        *o = Some(0);
                    }
                    Err(_) => return s,
                }
            }
        }
    }
    Sym {
        root: Root::Const(cur),
        off,
    }
}

/// The value of an op's first read operand of kind `want` (`uses` is in operand order).
fn read_use(n: &Node, want: fn(Operand) -> bool) -> Option<Value> {
    let mut uses = n.uses.iter();
    for &kind in n.code().info().operands {
        if !kind.reads() {
            continue;
        }
        let v = uses.next()?;
        if want(kind) {
            return Some(*v);
        }
    }
    None
}

/// The coordinate register an op reads (its page operand).
fn coord_use(n: &Node) -> Option<Value> {
    read_use(n, |k| k == Operand::CR)
}

/// The tile register an op reads (the source of a window-forwarding op).
fn tile_use(n: &Node) -> Option<Value> {
    read_use(n, |k| k.reg_file() == Some(RegFile::Tile))
}

/// Is this value's definition a carried value of loop `l`?
pub fn is_phi_of(sg: &SentronGraph, v: Value, l: LoopId) -> bool {
    matches!(sg.value(v).def, ValueDef::Phi { lp, .. } if lp == l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;

    #[test]
    fn constants_offsets_and_inductions() {
        let mut g = Graph::new();
        let s = g.sentron(0).unwrap();
        let a = s
            .scli(Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 1]).unwrap())
            .unwrap();
        let b = s.sindexi(a, 8, 1).unwrap();
        let c = s
            .scli(Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 2]).unwrap())
            .unwrap();
        let k = s.li(1).unwrap();
        let d = s
            .op(
                vtpu_isa::Opcode::SIndex,
                &[crate::Arg::V(a), crate::Arg::Dim(8), crate::Arg::V(k)],
            )
            .unwrap()[0];
        let r = s.recv_scalar(1).unwrap();
        let e = s
            .op(
                vtpu_isa::Opcode::SIndex,
                &[crate::Arg::V(a), crate::Arg::Dim(8), crate::Arg::V(r)],
            )
            .unwrap()[0];
        s.begin_loop(4).unwrap();
        let p = s.carried(a).unwrap();
        let next = s.sindexi(p, 7, 1).unwrap();
        s.set_next(p, next).unwrap();
        s.end_loop().unwrap();
        let sg = &g.streams[0];
        let ci = CoordInfo::analyze(sg);
        let sym = |v| ci.sym(v);
        assert!(!ci.may_alias(&sym(a), &sym(b)), "b is a + 1 scroll");
        assert!(
            ci.may_alias(&sym(b), &sym(c)),
            "b and c are the same constant"
        );
        assert!(
            ci.may_alias(&sym(d), &sym(c)),
            "SINDEX by a known constant folds"
        );
        assert!(
            ci.may_alias(&sym(e), &sym(a)),
            "SINDEX by an unknown offset may be anything"
        );
        // The carried page moves by +1 section every iteration: never the same page in a
        // later iteration, and never c (its scroll part never changes).
        let l = crate::graph::LoopId(0);
        assert!(!ci.may_alias_later(l, &sym(p), &sym(p)));
        assert!(!ci.may_alias(&sym(p), &sym(c)));
        assert!(ci.may_alias(&sym(p), &sym(a)), "iteration 0 reads a's page");
    }

    #[test]
    fn windows_are_tracked_through_forwards_carried_values_and_outputs() {
        use crate::Arg;
        use vtpu_isa::Opcode;
        let at = |scroll| Coord::new([1, 1, 1, 1, 1, 1, 1, 1, scroll]).unwrap();
        let mut g = Graph::new();
        let s = g.sentron(0).unwrap();
        let (p, q) = (s.scli(at(1)).unwrap(), s.scli(at(2)).unwrap());
        let (zero, four) = (s.li(0).unwrap(), s.li(4).unwrap());
        let window = |s: &mut SentronGraph, c| {
            s.op(
                Opcode::SWindow,
                &[Arg::V(c), Arg::V(zero), Arg::V(four), Arg::I64(8)],
            )
            .unwrap()[0]
        };
        let w = window(s, p);
        let moved = s.op(Opcode::DMov, &[Arg::V(w)]).unwrap()[0];
        let copy = s.gathers(q, zero, 4, 8).unwrap();
        let x = s.gathers(q, zero, 2, 8).unwrap();
        let (mm_window, _) = s
            .op_node(Opcode::DTMm, &[Arg::V(x), Arg::V(moved)])
            .unwrap();
        let (mm_copy, _) = s.op_node(Opcode::DTMm, &[Arg::V(x), Arg::V(copy)]).unwrap();
        // The window operand is the second one: a window as the first is not a page read.
        let (mm_first, _) = s.op_node(Opcode::DTMm, &[Arg::V(w), Arg::V(copy)]).unwrap();
        let l = s.begin_loop(3).unwrap();
        let carried = s.carried(copy).unwrap();
        let inner = window(s, q);
        s.set_next(carried, inner).unwrap();
        s.end_loop().unwrap();
        let out = s.loop_output(l, inner).unwrap();
        let sg = &g.streams[0];
        let ci = CoordInfo::analyze(sg);
        let page = |v| ci.window(v).and_then(|s: Sym| s.constant());
        assert_eq!(page(w), Some(at(1)));
        assert_eq!(page(moved), Some(at(1)), "DMOV forwards the window");
        assert_eq!(ci.window(copy), None, "a gathered copy is no window");
        assert_eq!(page(out), Some(at(2)), "a loop output is its body value");
        // Carried: a copy in the first iteration, a window onto q later: any page.
        let any = ci.window(carried).expect("may be a window");
        assert!(any.constant().is_none() && ci.may_alias(&any, &ci.sym(p)));
        let reads = |n| ci.page_accesses(sg, n).collect::<Vec<_>>();
        assert_eq!(reads(mm_window), vec![(Mem::Read, ci.sym(p))]);
        assert!(reads(mm_copy).is_empty());
        assert!(reads(mm_first).is_empty());
    }
}

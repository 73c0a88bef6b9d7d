//! The dataflow graph of a program: per sentron, D/S/C ops on values.
//!
//! A [`SentronGraph`] is a sequence of regions: straight-line blocks and counted loops.
//! Ops read and write **values** (virtual registers in SSA form: every value is written
//! by exactly one op), never physical registers; the compiler allocates registers after
//! scheduling. Edges are implicit and complete:
//! - data: an op that reads a value depends on the op that wrote it;
//! - in-place ops (read-write operands such as `DTMATMUL acc!`) consume their input: the
//!   result shares its register, so every other reader of the input must come first and
//!   nothing may read the input afterwards (the builder rejects it);
//! - memory: through pages, derived from each op's `Mem` effect and its coordinate value
//!   (two coordinates alias unless they provably differ);
//! - coordination: C-pipe ops keep their order; messages pair sends and receives across
//!   sentrons in FIFO order (checked for deadlock);
//! - explicit ordering edges ([`SentronGraph::order`]).
//!
//! Loops run a body a constant number of times. A value computed in one iteration and
//! used in the next is a *carried* value ([`SentronGraph::carried`]: its initial value,
//! and [`SentronGraph::set_next`]: the body value that becomes it in the next
//! iteration). A body value used after the loop is read through
//! [`SentronGraph::loop_output`] (its value in the last iteration). Loops do not nest.

use std::collections::HashMap;
use std::fmt;

use crate::error::{CompileError, Result};
pub use crate::loops::MAX_TRIP;
use vtpu_isa::ops::Coord as Coordination;
use vtpu_isa::word::{KIND_OWNED, KIND_SCRATCH, REDUCE_NAMES};
use vtpu_isa::{Op, Opcode, Operand, PageDecl, RegFile, MAX_SENTRONS};
use vtpu_phext::{Coord, DType, PageKind};

/// Most ops one sentron's graph may hold.
pub const MAX_NODES: usize = 1 << 22;

/// A value (virtual register) of one sentron's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);
/// An op of one sentron's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);
/// A loop of one sentron's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopId(pub u32);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One operand of an op, in the op table's order; register results are not operands
/// (they are returned), read-write registers are (their input value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    V(Value),
    I64(i64),
    F32(f32),
    Shape(u32, u32),
    Coord(Coord),
    Dim(u8),
    DType(DType),
    Kind(PageKind),
    Sentron(u32),
    Reduce(u8),
    Group(u64),
}

/// Where an op lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// Region index of a straight-line block.
    Block(u32),
    Loop(LoopId),
}

/// One op.
#[derive(Clone, Debug)]
pub struct Node {
    /// The opcode and every non-register operand; register arguments are zero until
    /// allocation.
    pub template: Op,
    /// Values read, in operand order (read-write operands included).
    pub uses: Vec<Value>,
    /// Values written, in operand order.
    pub defs: Vec<Value>,
    /// Per def: the index into `uses` of the read-write operand it shares a register
    /// with, if any.
    pub tied: Vec<Option<u8>>,
    pub place: Place,
    /// A prefetch the compiler inserted for this gather.
    pub prefetch_for: Option<NodeId>,
    /// Inserted by the compiler (prefetch, copy), not written by the user.
    pub synthetic: bool,
}

impl Node {
    pub fn code(&self) -> Opcode {
        self.template.code
    }
}

/// How a value comes to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    /// Result `slot` of an op.
    Node { node: NodeId, slot: u8 },
    /// Carried value `index` of a loop.
    Phi { lp: LoopId, index: u32 },
    /// The last-iteration value of body value `of`, after the loop.
    Output { lp: LoopId, of: Value },
}

#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub file: RegFile,
    pub def: ValueDef,
    /// The loop whose body it belongs to (None: top level).
    pub scope: Option<LoopId>,
    /// The in-place op that overwrote it, if any.
    pub consumed_by: Option<NodeId>,
}

/// A carried value: `init` before the first iteration, `next` (a body value) after each.
#[derive(Clone, Debug)]
pub struct Phi {
    pub value: Value,
    pub init: Value,
    pub next: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct LoopInfo {
    pub trip: u64,
    pub body: Vec<NodeId>,
    pub phis: Vec<Phi>,
    pub closed: bool,
    /// Memo of `loop_output`: body value -> output value.
    pub outputs: HashMap<Value, Value>,
}

#[derive(Clone, Debug)]
pub enum Region {
    Block(Vec<NodeId>),
    Loop(LoopId),
}

/// The graph of one sentron's stream (or of the SPMD stream, `sentron == None`).
#[derive(Clone, Debug)]
pub struct SentronGraph {
    pub sentron: Option<u32>,
    pub values: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
    pub regions: Vec<Region>,
    pub loops: Vec<LoopInfo>,
    /// Explicit ordering edges: (before, after).
    pub order: Vec<(NodeId, NodeId)>,
    pub(crate) open: Option<LoopId>,
    pub(crate) halted: bool,
}

/// A whole program as a graph: pages plus one graph per stream.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub pages: Vec<PageDecl>,
    pub streams: Vec<SentronGraph>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }
    /// Declare a page created before the sentrons start.
    pub fn page(&mut self, decl: PageDecl) {
        self.pages.push(decl);
    }
    /// The graph of sentron `id` (created empty on first use).
    pub fn sentron(&mut self, id: u32) -> Result<&mut SentronGraph> {
        if id as usize >= MAX_SENTRONS {
            return Err(CompileError::TooLarge {
                what: "a sentron id".into(),
                got: id.into(),
                limit: MAX_SENTRONS as u64 - 1,
            });
        }
        Ok(self.stream(Some(id)))
    }
    /// The SPMD graph: the stream every sentron without its own runs.
    pub fn spmd(&mut self) -> &mut SentronGraph {
        self.stream(None)
    }
    fn stream(&mut self, sentron: Option<u32>) -> &mut SentronGraph {
        let i = match self.streams.iter().position(|s| s.sentron == sentron) {
            Some(i) => i,
            None => {
                self.streams.push(SentronGraph::new(sentron));
                self.streams.len() - 1
            }
        };
        &mut self.streams[i]
    }
    /// Total ops over all streams.
    pub fn total_ops(&self) -> usize {
        self.streams.iter().map(|s| s.nodes.len()).sum()
    }
}

impl SentronGraph {
    pub fn new(sentron: Option<u32>) -> SentronGraph {
        SentronGraph {
            sentron,
            values: Vec::new(),
            nodes: Vec::new(),
            regions: Vec::new(),
            loops: Vec::new(),
            order: Vec::new(),
            open: None,
            halted: false,
        }
    }

    /// "sentron 3" or "spmd stream", for messages.
    pub fn name(&self) -> String {
        match self.sentron {
            Some(id) => format!("sentron {id}"),
            None => "spmd stream".into(),
        }
    }

    pub(crate) fn at(&self, what: &str) -> String {
        format!("{}, op {} ({what})", self.name(), self.nodes.len())
    }

    /// The op table row of node `n` plus its operands, for messages.
    pub fn describe(&self, n: NodeId) -> String {
        match self.nodes.get(n.0 as usize) {
            Some(node) => {
                let uses: Vec<String> = node.uses.iter().map(|v| v.to_string()).collect();
                let defs: Vec<String> = node.defs.iter().map(|v| v.to_string()).collect();
                format!(
                    "op {} ({} {} <- {})",
                    n.0,
                    node.code().name(),
                    defs.join(","),
                    uses.join(",")
                )
            }
            None => format!("op {}", n.0),
        }
    }

    pub fn value(&self, v: Value) -> &ValueInfo {
        &self.values[v.0 as usize]
    }

    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n.0 as usize]
    }

    pub fn lp(&self, l: LoopId) -> &LoopInfo {
        &self.loops[l.0 as usize]
    }

    /// Is a loop open (ops go to its body)?
    pub fn in_loop(&self) -> Option<LoopId> {
        self.open
    }

    pub(crate) fn new_value(
        &mut self,
        file: RegFile,
        def: ValueDef,
        scope: Option<LoopId>,
    ) -> Value {
        self.values.push(ValueInfo {
            file,
            def,
            scope,
            consumed_by: None,
        });
        Value(self.values.len() as u32 - 1)
    }

    /// Check that `v` exists, is visible at this point and was not overwritten in place.
    pub(crate) fn check_use(&self, v: Value, file: RegFile, at: &dyn Fn() -> String) -> Result<()> {
        let Some(info) = self.values.get(v.0 as usize) else {
            return Err(CompileError::Scope {
                at: at(),
                value: v.0,
                why: "no such value in this sentron's graph".into(),
            });
        };
        if info.file != file {
            return Err(CompileError::Scope {
                at: at(),
                value: v.0,
                why: format!(
                    "it is a {} value, a {} value is needed",
                    crate::error::file_name(info.file),
                    crate::error::file_name(file)
                ),
            });
        }
        if info.scope.is_some() && info.scope != self.open {
            return Err(CompileError::Scope {
                at: at(),
                value: v.0,
                why: "it belongs to another loop's body (read it after the loop with loop_output)"
                    .into(),
            });
        }
        if let Some(by) = info.consumed_by {
            return Err(CompileError::UseAfterInPlace {
                at: at(),
                value: v.0,
                by: by.0,
            });
        }
        Ok(())
    }

    /// Add an op. `args` are its operands in table order without its write-only
    /// registers; returns its results (one per written register, in operand order).
    pub fn op(&mut self, code: Opcode, args: &[Arg]) -> Result<Vec<Value>> {
        self.op_node(code, args).map(|(_, d)| d)
    }

    /// Like [`SentronGraph::op`], also returning the node.
    pub fn op_node(&mut self, code: Opcode, args: &[Arg]) -> Result<(NodeId, Vec<Value>)> {
        let info = code.info();
        if matches!(info.coord, Coordination::Branch | Coordination::Halt) {
            return Err(CompileError::Structure {
                at: self.at(info.name),
                what: "control flow is structural in a graph: use begin_loop/end_loop (and halt)"
                    .into(),
            });
        }
        self.push_op(code, args)
    }

    fn push_op(&mut self, code: Opcode, args: &[Arg]) -> Result<(NodeId, Vec<Value>)> {
        let info = code.info();
        let name = info.name;
        let (who, count) = (self.name(), self.nodes.len());
        let at = move || format!("{who}, op {count} ({name})");
        if self.halted {
            return Err(CompileError::Structure {
                at: at(),
                what: "no op may follow CHALT".into(),
            });
        }
        if code.is_nop() {
            return Err(CompileError::Structure {
                at: at(),
                what: "NOPs are not graph ops (the scheduler leaves empty slots itself)".into(),
            });
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(CompileError::TooLarge {
                what: format!("the op count of {}", self.name()),
                got: self.nodes.len() as u64 + 1,
                limit: MAX_NODES as u64,
            });
        }
        let kinds: Vec<Operand> = info
            .operands
            .iter()
            .copied()
            .filter(|k| !k.writes() || k.reads())
            .collect();
        if kinds.len() != args.len() {
            let syntax: Vec<&str> = kinds.iter().map(|k| k.syntax()).collect();
            return Err(CompileError::Arity {
                at: at(),
                code: name,
                expected: kinds.len(),
                got: args.len(),
                syntax: syntax.join(", "),
            });
        }
        let node_id = NodeId(self.nodes.len() as u32);
        let mut template = Op::new(code, [0; 4], 0);
        let mut uses = Vec::new();
        let mut def_files = Vec::new();
        let mut tied = Vec::new();
        let mut args_it = args.iter().enumerate();
        let mut small = 0usize;
        for &kind in info.operands {
            let slot = small;
            if !kind.is_big() {
                small += 1;
            }
            if let Some(file) = kind.reg_file() {
                if !kind.reads() {
                    def_files.push(file);
                    tied.push(None);
                    continue;
                }
                let Some((i, arg)) = args_it.next() else {
                    break;
                };
                let Arg::V(v) = *arg else {
                    return Err(bad_operand(at(), name, i, kind, arg));
                };
                self.check_use(v, file, &at)?;
                uses.push(v);
                if kind.writes() {
                    def_files.push(file);
                    tied.push(Some(uses.len() as u8 - 1));
                }
                continue;
            }
            let Some((i, arg)) = args_it.next() else {
                break;
            };
            let bad = || bad_operand(at(), name, i, kind, arg);
            match (kind, *arg) {
                (Operand::Dim, Arg::Dim(d)) if (d as usize) < 9 => template.args[slot] = d,
                (Operand::DType, Arg::DType(t)) => template.args[slot] = t.code(),
                (Operand::Kind, Arg::Kind(PageKind::Owned)) => template.args[slot] = KIND_OWNED,
                (Operand::Kind, Arg::Kind(PageKind::Scratch)) => template.args[slot] = KIND_SCRATCH,
                (Operand::Sentron, Arg::Sentron(s)) if (s as usize) < MAX_SENTRONS => {
                    template.args[slot] = s as u8
                }
                (Operand::Reduce, Arg::Reduce(r)) if (r as usize) < REDUCE_NAMES.len() => {
                    template.args[slot] = r
                }
                (Operand::I64, Arg::I64(x)) => template.imm = Op::encode_i64(x),
                (Operand::F32, Arg::F32(x)) => template.imm = Op::encode_f32(x),
                (Operand::Shape, Arg::Shape(r, c))
                    if (1..=vtpu_isa::MAX_TILE_DIM).contains(&r)
                        && (1..=vtpu_isa::MAX_TILE_DIM).contains(&c) =>
                {
                    template.imm = Op::encode_shape(r, c)
                }
                (Operand::CoordImm, Arg::Coord(c)) => template.imm = Op::encode_coord(c),
                (Operand::Group, Arg::Group(g)) if g != 0 => template.imm = Op::encode_group(g),
                _ => return Err(bad()),
            }
        }
        // In-place consumption: checked after every operand is known to be valid.
        for (d, t) in tied.iter().enumerate() {
            let Some(u) = *t else { continue };
            let v = uses[u as usize];
            let vi = &self.values[v.0 as usize];
            if self.open.is_some() && vi.scope.is_none() {
                return Err(CompileError::Structure {
                    at: at(),
                    what: format!(
                        "result {d} overwrites {v} in place, but {v} is defined before the loop and every iteration reads it: make it a carried value"
                    ),
                });
            }
            self.values[v.0 as usize].consumed_by = Some(node_id);
        }
        let place = match self.open {
            Some(l) => Place::Loop(l),
            None => {
                if !matches!(self.regions.last(), Some(Region::Block(_))) {
                    self.regions.push(Region::Block(Vec::new()));
                }
                Place::Block(self.regions.len() as u32 - 1)
            }
        };
        let defs: Vec<Value> = def_files
            .iter()
            .enumerate()
            .map(|(slot, &file)| {
                self.new_value(
                    file,
                    ValueDef::Node {
                        node: node_id,
                        slot: slot as u8,
                    },
                    self.open,
                )
            })
            .collect();
        self.nodes.push(Node {
            template,
            uses,
            defs: defs.clone(),
            tied,
            place,
            prefetch_for: None,
            synthetic: false,
        });
        match place {
            Place::Loop(l) => self.loops[l.0 as usize].body.push(node_id),
            Place::Block(r) => {
                if let Region::Block(b) = &mut self.regions[r as usize] {
                    b.push(node_id);
                }
            }
        }
        Ok((node_id, defs))
    }

    /// End the stream with CHALT (optional: falling off the end halts too).
    pub fn halt(&mut self) -> Result<NodeId> {
        if self.open.is_some() {
            return Err(CompileError::Structure {
                at: self.at("CHALT"),
                what: "CHALT inside a loop body".into(),
            });
        }
        let (n, _) = self.push_op(Opcode::CHalt, &[])?;
        self.halted = true;
        Ok(n)
    }

    /// Does the stream end with an explicit CHALT?
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Require `after` to run in a later word than `before` (same block or loop body).
    pub fn order(&mut self, before: NodeId, after: NodeId) -> Result<()> {
        let at = self.at("order");
        let (Some(a), Some(b)) = (
            self.nodes.get(before.0 as usize),
            self.nodes.get(after.0 as usize),
        ) else {
            return Err(CompileError::Structure {
                at,
                what: format!("no op {} or {}", before.0, after.0),
            });
        };
        if a.place != b.place {
            return Err(CompileError::Structure {
                at,
                what: "an ordering edge must join two ops of one block or one loop body (regions run in order anyway)".into(),
            });
        }
        self.order.push((before, after));
        Ok(())
    }

    /// Insert a compiler-made op into a region, right before `pos` in that region's
    /// op list (or at its end). Used by the prefetch and copy passes.
    pub(crate) fn insert_synthetic(
        &mut self,
        code: Opcode,
        uses: Vec<Value>,
        def_file: Option<RegFile>,
        place: Place,
        pos: Option<usize>,
    ) -> (NodeId, Option<Value>) {
        let id = NodeId(self.nodes.len() as u32);
        let scope = match place {
            Place::Loop(l) => Some(l),
            Place::Block(_) => None,
        };
        let def = def_file.map(|f| self.new_value(f, ValueDef::Node { node: id, slot: 0 }, scope));
        self.nodes.push(Node {
            template: Op::new(code, [0; 4], 0),
            uses,
            defs: def.into_iter().collect(),
            tied: def.map(|_| None).into_iter().collect(),
            place,
            prefetch_for: None,
            synthetic: true,
        });
        let list = match place {
            Place::Loop(l) => &mut self.loops[l.0 as usize].body,
            Place::Block(r) => match &mut self.regions[r as usize] {
                Region::Block(b) => b,
                Region::Loop(l) => &mut self.loops[l.0 as usize].body,
            },
        };
        let at = pos.unwrap_or(list.len()).min(list.len());
        list.insert(at, id);
        (id, def)
    }

    /// Make sure a block region sits right before every loop (the compiler puts loop
    /// counters and hoisted prefetches there). Returns the region index of the block
    /// before loop `l`.
    pub(crate) fn block_before(&mut self, l: LoopId) -> u32 {
        let pos = self
            .regions
            .iter()
            .position(|r| matches!(r, Region::Loop(x) if *x == l))
            .unwrap_or(0);
        if pos > 0 {
            if let Region::Block(_) = self.regions[pos - 1] {
                return pos as u32 - 1;
            }
        }
        self.regions.insert(pos, Region::Block(Vec::new()));
        // Region indices after `pos` moved by one.
        for n in &mut self.nodes {
            if let Place::Block(r) = &mut n.place {
                if *r as usize >= pos {
                    *r += 1;
                }
            }
        }
        pos as u32
    }

    /// Every node's readers: value -> nodes that read it (in node order).
    pub fn readers(&self) -> Vec<Vec<NodeId>> {
        let mut r = vec![Vec::new(); self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &u in &n.uses {
                let list: &mut Vec<NodeId> = &mut r[u.0 as usize];
                if list.last() != Some(&NodeId(i as u32)) {
                    list.push(NodeId(i as u32));
                }
            }
        }
        r
    }
}

fn bad_operand(at: String, code: &'static str, i: usize, kind: Operand, arg: &Arg) -> CompileError {
    CompileError::Operand {
        at,
        code,
        index: i + 1,
        expected: kind_text(kind).into(),
        got: format!("{arg:?}"),
    }
}

fn kind_text(kind: Operand) -> &'static str {
    match kind {
        Operand::SR | Operand::SRW => "a scalar value",
        Operand::TR | Operand::TRW => "a tile value",
        Operand::CR => "a coordinate value",
        Operand::Dim => "a dimension 0..8",
        Operand::DType => "a dtype",
        Operand::Kind => "a page kind (owned or scratch)",
        Operand::Sentron => "a sentron id below 64",
        Operand::Reduce => "a reduction (0 sum, 1 max, 2 cat)",
        Operand::I64 => "an i64 immediate",
        Operand::F32 => "an f32 immediate",
        Operand::Shape => "a shape ROWSxCOLS, each 1..=2^24",
        Operand::CoordImm => "a coordinate",
        Operand::Group => "a non-empty group",
        Operand::Label => "a label (graphs have no labels)",
        _ => "a register value",
    }
}

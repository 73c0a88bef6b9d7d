//! Convenience constructors for common ops on top of [`SentronGraph::op`]. Each is one
//! op of the table; names follow the mnemonics.

use crate::error::{CompileError, Result};
use crate::graph::{Arg, NodeId, SentronGraph, Value};
use vtpu_isa::Opcode;
use vtpu_phext::Coord;

/// The single result of an op (every constructor below names an op with one result;
/// a table change that broke that is reported, not a panic).
fn one(v: Vec<Value>) -> Result<Value> {
    v.into_iter()
        .next()
        .ok_or_else(|| CompileError::Internal("an op expected to have a result has none".into()))
}

impl SentronGraph {
    /// DLI: a scalar constant.
    pub fn li(&mut self, imm: i64) -> Result<Value> {
        self.op(Opcode::DLi, &[Arg::I64(imm)]).and_then(one)
    }
    /// DADDI: a + imm.
    pub fn addi(&mut self, a: Value, imm: i64) -> Result<Value> {
        self.op(Opcode::DAddi, &[Arg::V(a), Arg::I64(imm)])
            .and_then(one)
    }
    /// DADD: a + b.
    pub fn add(&mut self, a: Value, b: Value) -> Result<Value> {
        self.op(Opcode::DAdd, &[Arg::V(a), Arg::V(b)]).and_then(one)
    }
    /// DMULI: a * imm.
    pub fn muli(&mut self, a: Value, imm: i64) -> Result<Value> {
        self.op(Opcode::DMuli, &[Arg::V(a), Arg::I64(imm)])
            .and_then(one)
    }
    /// DTZERO: a zero f32 tile.
    pub fn tzero(&mut self, rows: u32, cols: u32) -> Result<Value> {
        self.op(Opcode::DTZero, &[Arg::Shape(rows, cols)])
            .and_then(one)
    }
    /// A binary elementwise tile op (DTADD, DTSUB, DTMUL, DTMAX).
    pub fn tbin(&mut self, code: Opcode, a: Value, b: Value) -> Result<Value> {
        self.op(code, &[Arg::V(a), Arg::V(b)]).and_then(one)
    }
    /// DTMATMUL in place: acc += a x b^T; returns the new accumulator (same register).
    pub fn matmul(&mut self, acc: Value, a: Value, b: Value) -> Result<Value> {
        self.op(Opcode::DTMatmul, &[Arg::V(acc), Arg::V(a), Arg::V(b)])
            .and_then(one)
    }
    /// SCLI: a coordinate constant.
    pub fn scli(&mut self, c: Coord) -> Result<Value> {
        self.op(Opcode::SCli, &[Arg::Coord(c)]).and_then(one)
    }
    /// SINDEXI: c with part `dim` += imm.
    pub fn sindexi(&mut self, c: Value, dim: u8, imm: i64) -> Result<Value> {
        self.op(Opcode::SIndexi, &[Arg::V(c), Arg::Dim(dim), Arg::I64(imm)])
            .and_then(one)
    }
    /// SGATHER: the whole page at `c`.
    pub fn gather(&mut self, c: Value) -> Result<Value> {
        self.op(Opcode::SGather, &[Arg::V(c)]).and_then(one)
    }
    /// SGATHERS: rows x cols elements of the page at `c` from element offset `off`.
    pub fn gathers(&mut self, c: Value, off: Value, rows: u32, cols: u32) -> Result<Value> {
        self.op(
            Opcode::SGathers,
            &[Arg::V(c), Arg::V(off), Arg::Shape(rows, cols)],
        )
        .and_then(one)
    }
    /// SSCATTR: tile `t` into the page at `c` from element offset `off`.
    pub fn scatter(&mut self, t: Value, c: Value, off: Value) -> Result<NodeId> {
        self.op_node(Opcode::SScatter, &[Arg::V(t), Arg::V(c), Arg::V(off)])
            .map(|(n, _)| n)
    }
    /// CSEND of a tile to sentron `to`.
    pub fn send_tile(&mut self, to: u32, t: Value) -> Result<NodeId> {
        self.op_node(Opcode::CSendT, &[Arg::Sentron(to), Arg::V(t)])
            .map(|(n, _)| n)
    }
    /// CSEND of a scalar to sentron `to`.
    pub fn send_scalar(&mut self, to: u32, r: Value) -> Result<NodeId> {
        self.op_node(Opcode::CSendR, &[Arg::Sentron(to), Arg::V(r)])
            .map(|(n, _)| n)
    }
    /// CRECV of a tile from sentron `from`.
    pub fn recv_tile(&mut self, from: u32) -> Result<Value> {
        self.op(Opcode::CRecvT, &[Arg::Sentron(from)]).and_then(one)
    }
    /// CRECV of a scalar from sentron `from`.
    pub fn recv_scalar(&mut self, from: u32) -> Result<Value> {
        self.op(Opcode::CRecvR, &[Arg::Sentron(from)]).and_then(one)
    }
    /// CREDUCE in place: the all-reduce of `t` over `group` (0 sum, 1 max, 2 cat: the
    /// all-gather).
    pub fn reduce(&mut self, t: Value, op: u8, group: u64) -> Result<Value> {
        self.op(
            Opcode::CReduce,
            &[Arg::V(t), Arg::Reduce(op), Arg::Group(group)],
        )
        .and_then(one)
    }
    /// CBAR over `group`.
    pub fn barrier(&mut self, group: u64) -> Result<NodeId> {
        self.op_node(Opcode::CBar, &[Arg::Group(group)])
            .map(|(n, _)| n)
    }
}

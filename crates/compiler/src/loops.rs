//! Counted loops of a sentron graph: begin and end a loop, carried values (initial
//! value + next value), and the values a loop leaves for the ops after it.

use std::collections::HashMap;

use crate::error::{CompileError, Result};
use crate::graph::{LoopId, LoopInfo, Phi, Region, SentronGraph, Value, ValueDef};

/// Largest loop trip count (the loop counter is a signed 64-bit register).
pub const MAX_TRIP: u64 = i64::MAX as u64;

impl SentronGraph {
    /// Start a loop whose body runs `trip` times (1..=i64::MAX).
    pub fn begin_loop(&mut self, trip: u64) -> Result<LoopId> {
        if self.open.is_some() {
            return Err(CompileError::Structure {
                at: self.at("loop"),
                what: "loops do not nest in a graph (unroll the outer loop)".into(),
            });
        }
        if self.halted {
            return Err(CompileError::Structure {
                at: self.at("loop"),
                what: "no loop may follow CHALT".into(),
            });
        }
        if trip == 0 || trip > MAX_TRIP {
            return Err(CompileError::TooLarge {
                what: format!("{}: a loop trip count (must be 1..)", self.name()),
                got: trip,
                limit: MAX_TRIP,
            });
        }
        let id = LoopId(self.loops.len() as u32);
        self.loops.push(LoopInfo {
            trip,
            body: Vec::new(),
            phis: Vec::new(),
            closed: false,
            outputs: HashMap::new(),
        });
        self.regions.push(Region::Loop(id));
        self.open = Some(id);
        Ok(id)
    }

    fn open_loop(&self, what: &str) -> Result<LoopId> {
        self.open.ok_or_else(|| CompileError::Structure {
            at: self.at(what),
            what: format!("{what} outside a loop"),
        })
    }

    /// A carried value of the open loop: `init` in the first iteration, then the value
    /// given to [`SentronGraph::set_next`] in the iteration before.
    pub fn carried(&mut self, init: Value) -> Result<Value> {
        let l = self.open_loop("carried value")?;
        let file = match self.values.get(init.0 as usize) {
            Some(v) => v.file,
            None => {
                return Err(CompileError::Scope {
                    at: self.at("carried value"),
                    value: init.0,
                    why: "no such value".into(),
                })
            }
        };
        self.open = None; // the initial value is read before the loop
        let r = self.check_use(init, file, &|| self.at("carried value"));
        self.open = Some(l);
        r?;
        let index = self.loops[l.0 as usize].phis.len() as u32;
        let v = self.new_value(file, ValueDef::Phi { lp: l, index }, Some(l));
        self.loops[l.0 as usize].phis.push(Phi {
            value: v,
            init,
            next: None,
        });
        Ok(v)
    }

    /// Set the body value that carried value `phi` takes in the next iteration.
    pub fn set_next(&mut self, phi: Value, next: Value) -> Result<()> {
        let l = self.open_loop("set_next")?;
        let at = self.at("set_next");
        let Some(index) = self.loops[l.0 as usize]
            .phis
            .iter()
            .position(|p| p.value == phi)
        else {
            return Err(CompileError::Scope {
                at,
                value: phi.0,
                why: "not a carried value of the open loop".into(),
            });
        };
        let file = self.values[phi.0 as usize].file;
        self.check_use(next, file, &|| at.clone())?;
        let ni = &self.values[next.0 as usize];
        if ni.scope != Some(l) || !matches!(ni.def, ValueDef::Node { .. }) {
            return Err(CompileError::Structure {
                at,
                what: format!("the next value of {phi} must be computed by an op of the loop body, {next} is not"),
            });
        }
        self.loops[l.0 as usize].phis[index].next = Some(next);
        Ok(())
    }

    /// Close the open loop.
    pub fn end_loop(&mut self) -> Result<LoopId> {
        let l = self.open_loop("end_loop")?;
        let at = self.at("end_loop");
        let info = &self.loops[l.0 as usize];
        if info.body.is_empty() {
            return Err(CompileError::Structure {
                at,
                what: "a loop needs at least one op".into(),
            });
        }
        for p in &info.phis {
            let Some(next) = p.next else {
                return Err(CompileError::Structure {
                    at,
                    what: format!("carried value {} has no next value (set_next)", p.value),
                });
            };
            if let Some(by) = self.values[next.0 as usize].consumed_by {
                return Err(CompileError::UseAfterInPlace {
                    at,
                    value: next.0,
                    by: by.0,
                });
            }
            // A carried value updated in place must reach its next value through the
            // in-place chain, so that one register holds it through every iteration.
            let mut v = p.value;
            let mut steps = 0usize;
            while let Some(by) = self.values[v.0 as usize].consumed_by {
                let node = &self.nodes[by.0 as usize];
                let Some(d) = node
                    .tied
                    .iter()
                    .position(|t| t.map(|u| node.uses[u as usize]) == Some(v))
                else {
                    break;
                };
                v = node.defs[d];
                steps += 1;
            }
            if steps > 0 && v != next {
                return Err(CompileError::Structure {
                    at,
                    what: format!(
                        "carried value {} is updated in place, so its next value must be the result of that in-place chain ({v}), not {next}",
                        p.value
                    ),
                });
            }
        }
        self.loops[l.0 as usize].closed = true;
        self.open = None;
        Ok(l)
    }

    /// The value body value (or carried value) `v` of loop `l` has after its last
    /// iteration, for ops after the loop.
    pub fn loop_output(&mut self, l: LoopId, v: Value) -> Result<Value> {
        let at = self.at("loop_output");
        let Some(info) = self.loops.get(l.0 as usize) else {
            return Err(CompileError::Structure {
                at,
                what: format!("no loop {}", l.0),
            });
        };
        if !info.closed {
            return Err(CompileError::Structure {
                at,
                what: "loop_output of a loop that is still open".into(),
            });
        }
        let vi = self
            .values
            .get(v.0 as usize)
            .ok_or_else(|| CompileError::Scope {
                at: at.clone(),
                value: v.0,
                why: "no such value".into(),
            })?;
        if vi.scope != Some(l) {
            return Err(CompileError::Scope {
                at,
                value: v.0,
                why: "not a value of that loop's body".into(),
            });
        }
        // A carried value's final value is its last next value.
        let v = match vi.def {
            ValueDef::Phi { index, .. } => info.phis[index as usize].next.unwrap_or(v),
            _ => v,
        };
        if let Some(by) = self.values[v.0 as usize].consumed_by {
            return Err(CompileError::UseAfterInPlace {
                at,
                value: v.0,
                by: by.0,
            });
        }
        if let Some(&o) = self.loops[l.0 as usize].outputs.get(&v) {
            return Ok(o);
        }
        let file = self.values[v.0 as usize].file;
        let o = self.new_value(file, ValueDef::Output { lp: l, of: v }, None);
        self.loops[l.0 as usize].outputs.insert(v, o);
        Ok(o)
    }
}

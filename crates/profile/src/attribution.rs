//! Which part of the model each slot of a model program belongs to, derived from the
//! program alone (the executor only counts per word index, `vtpu_runtime::profile`).
//!
//! Every weight and KV-cache page sits at a coordinate that names its layer and tensor
//! kind (ARCHITECTURE.md, "Model weights and run state in phext space"). A walk over
//! each stream in word order gives every register a *region*: an SCLI of a coordinate
//! immediate takes the coordinate's region, and every other op takes the latest
//! (largest) region among the registers it reads, which its written registers then
//! carry. Data flows layer to layer, so an op's latest input region is the layer it
//! computes: `rmsnorm(x, attn_norm[l])` reads `x` of layer l-1 and a weight of layer l,
//! so it is layer l. The walk follows data, not word order, so it is exact however the
//! SIW compiler interleaves independent ops of adjacent layers; it needs no markers in
//! the program and costs nothing at run time.
//!
//! Regions are ordered setup < embedding < layer 0 attention < layer 0 FFN < layer 1
//! ... < head. Model-wide pages (the rope table) and run-state pages other than the KV
//! caches (arguments, token ids, the hidden row, a batch's scratch rows) carry no region
//! of their own: an op whose inputs carry none (a constant, an argument load, a gather
//! from a scratch page) belongs to the latest region the walk has met so far in word
//! order, i.e. the layer it sits in. (Without that, a batched decode step's per-sequence
//! argument loads and scratch gathers, and the all-gather that reads the attention
//! outputs back from scratch, would all count as setup.)

use serde::Serialize;
use vtpu_isa::{ops::Coord as Coordination, Opcode, Program, RegFile};
use vtpu_llm::layer_coords::{
    TensorKind, MODEL_LIBRARY, MODEL_SHELF, RUN_LIBRARY, SERIES_K_CACHE, SERIES_V_CACHE,
};
use vtpu_phext::Coord;

/// Attention (norm, q/k/v, rope, cache, scores, output projection, its all-reduce) or
/// the feed-forward half (residual, norm, gate/up/down, its all-reduce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Phase {
    Attn,
    Ffn,
}

/// Part of the model a slot belongs to (ordered as data flows, see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Region {
    /// Constants and arguments read before any model data (T, start_pos, addresses).
    Setup,
    Embed,
    Layer {
        layer: u32,
        phase: Phase,
    },
    /// Final norm and logits.
    Head,
}

impl Region {
    pub fn name(&self) -> String {
        match self {
            Region::Setup => "setup".into(),
            Region::Embed => "embed".into(),
            Region::Layer { layer, phase } => format!(
                "L{layer}.{}",
                match phase {
                    Phase::Attn => "attn",
                    Phase::Ffn => "ffn",
                }
            ),
            Region::Head => "head".into(),
        }
    }

    /// The whole-layer name ("L3"), or the region's own name outside layers.
    pub fn layer_name(&self) -> String {
        match self {
            Region::Layer { layer, .. } => format!("L{layer}"),
            r => r.name(),
        }
    }
}

/// The region of a page coordinate, if it has one.
pub fn coord_region(c: &Coord) -> Option<Region> {
    let p = c.parts();
    let (library, shelf, series) = (p[0], p[1], p[2]);
    if library == MODEL_LIBRARY {
        if shelf == MODEL_SHELF {
            return match series {
                s if s == TensorKind::TokenEmbd as u32 => Some(Region::Embed),
                s if s == TensorKind::OutputNorm as u32 || s == TensorKind::Output as u32 => {
                    Some(Region::Head)
                }
                _ => None,
            };
        }
        let phase = if series <= TensorKind::Wo as u32 {
            Phase::Attn
        } else {
            Phase::Ffn
        };
        return Some(Region::Layer {
            layer: shelf.checked_sub(1)?,
            phase,
        });
    }
    if library == RUN_LIBRARY && (series == SERIES_K_CACHE || series == SERIES_V_CACHE) {
        return Some(Region::Layer {
            layer: shelf.checked_sub(1)?,
            phase: Phase::Attn,
        });
    }
    None
}

/// The region of every slot of one stream, by word index.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StreamMap {
    /// Indexed by pc, then slot (D, S, C).
    pub slots: Vec<[Region; 3]>,
    /// False when the stream branches backwards: the walk then follows word order
    /// once, and a loop body's first iteration decides its region.
    pub straight_line: bool,
}

impl StreamMap {
    pub fn region(&self, pc: usize, slot: usize) -> Region {
        self.slots
            .get(pc)
            .and_then(|w| w.get(slot))
            .copied()
            .unwrap_or(Region::Setup)
    }
}

fn file_index(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Coord => 1,
        RegFile::Tile => 2,
    }
}

/// Walk one stream (see the module doc).
pub fn map_stream(words: &[vtpu_isa::Siw]) -> StreamMap {
    // Register files are at most 32 wide; indices are masked like the executor's.
    let mut regs = [[Region::Setup; 32]; 3];
    // The latest region met so far, for ops whose inputs carry none.
    let mut seen = Region::Setup;
    let mut slots = Vec::with_capacity(words.len());
    let mut straight_line = true;
    for (pc, w) in words.iter().enumerate() {
        let mut tags = [Region::Setup; 3];
        for (slot, op) in w.slots.iter().enumerate() {
            if op.is_nop() {
                continue;
            }
            let mut tag = Region::Setup;
            for (kind, &r) in op.code.small_operands().zip(&op.args) {
                if let (Some(f), true) = (kind.reg_file(), kind.reads()) {
                    tag = tag.max(regs[file_index(f)][r as usize & 31]);
                }
            }
            if op.code.big_operand() == Some(vtpu_isa::Operand::CoordImm) {
                if let Some(r) = Coord::from_key(op.imm_coord())
                    .ok()
                    .and_then(|c| coord_region(&c))
                {
                    tag = tag.max(r);
                }
            }
            if op.code.info().coord == Coordination::Branch && op.imm_label() as usize <= pc {
                straight_line = false;
            }
            if tag == Region::Setup {
                tag = seen;
            }
            tags[slot] = tag;
        }
        seen = tags.iter().copied().fold(seen, Region::max);
        // Writes commit at the end of the word (reads above saw the old registers).
        for (slot, op) in w.slots.iter().enumerate() {
            if op.is_nop() {
                continue;
            }
            for (kind, &r) in op.code.small_operands().zip(&op.args) {
                if let (Some(f), true) = (kind.reg_file(), kind.writes()) {
                    regs[file_index(f)][r as usize & 31] = tags[slot];
                }
            }
        }
        slots.push(tags);
    }
    StreamMap {
        slots,
        straight_line,
    }
}

/// The map of every sentron's stream, indexed by sentron id.
pub fn map_program(program: &Program, sentrons: usize) -> Vec<StreamMap> {
    (0..sentrons as u32)
        .map(|id| {
            program
                .stream_for(id)
                .map(|s| map_stream(&s.words))
                .unwrap_or_default()
        })
        .collect()
}

/// Is `code` a C-pipe op that waits for other sentrons (its host time is blocking)?
pub fn is_sync(code: Opcode) -> bool {
    matches!(
        code.info().coord,
        Coordination::Recv | Coordination::Collective
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtpu_llm::layer_coords as lc;

    #[test]
    fn coordinates_name_their_layer_and_phase() {
        let l = |layer, phase| Some(Region::Layer { layer, phase });
        let w = |layer, kind| coord_region(&lc::weight(layer, kind, 0).unwrap());
        assert_eq!(w(0, TensorKind::AttnNorm), l(0, Phase::Attn));
        assert_eq!(w(3, TensorKind::Wo), l(3, Phase::Attn));
        assert_eq!(w(3, TensorKind::FfnNorm), l(3, Phase::Ffn));
        assert_eq!(w(29, TensorKind::WDown), l(29, Phase::Ffn));
        assert_eq!(w(0, TensorKind::TokenEmbd), Some(Region::Embed));
        assert_eq!(w(0, TensorKind::Output), Some(Region::Head));
        assert_eq!(w(0, TensorKind::OutputNorm), Some(Region::Head));
        assert_eq!(w(0, TensorKind::RopeTable), None);
        assert_eq!(
            coord_region(&lc::kv_cache(7, 1, true).unwrap()),
            l(7, Phase::Attn)
        );
        assert_eq!(coord_region(&lc::args()), None);
        assert_eq!(coord_region(&lc::logits()), None);
        assert!(Region::Setup < Region::Embed);
        assert!(l(0, Phase::Ffn).unwrap() < l(1, Phase::Attn).unwrap());
        assert!(l(500, Phase::Ffn).unwrap() < Region::Head);
    }

    #[test]
    fn regions_follow_data_not_word_order() {
        // t1 = layer-0 weight; t2 = layer-1 weight; a word with a D op on t1 and an S
        // op loading the next layer's weight; then a D op mixing both.
        let src = "
            SCLI c0, 1.2.1/1.1.1/1.1.1
            SCLI c1, 1.1.12/1.1.1/1.1.1
            SGATHER t1, c1
            SGATHER t2, c0
            DTADD t3, t1, t1
            DTADD t4, t3, t2
            DTADD t5, t3, t3
            CHALT
        ";
        let p = vtpu_isa::assemble(src).unwrap();
        let m = map_stream(&p.streams[0].words);
        assert!(m.straight_line);
        let region_of = |pc: usize| m.slots[pc].into_iter().max().unwrap();
        let l = |layer, phase| Region::Layer { layer, phase };
        assert_eq!(region_of(0), l(1, Phase::Attn));
        assert_eq!(region_of(2), l(0, Phase::Ffn));
        assert_eq!(region_of(4), l(0, Phase::Ffn));
        assert_eq!(region_of(5), l(1, Phase::Attn));
        assert_eq!(region_of(6), l(0, Phase::Ffn));
        // CHALT reads nothing: it belongs to the latest region met in word order.
        assert_eq!(region_of(7), l(1, Phase::Attn));
    }

    #[test]
    fn ops_without_region_inputs_take_the_latest_region_met() {
        // A constant before any model data is setup; a constant and a gather from a
        // scratch page (no region of its own) after layer 2's weights belong to layer
        // 2, and so does what they feed.
        let src = "
            DLI r1, 4
            SCLI c0, 1.3.1/1.1.1/1.1.1
            SGATHER t1, c0
            DLI r2, 0
            SCLI c1, 2.1.8/1.1.1/1.1.1
            SGATHERV t2, c1, r2, r1, 4
            DTADD t3, t2, t2
            CHALT
        ";
        let p = vtpu_isa::assemble(src).unwrap();
        let m = map_stream(&p.streams[0].words);
        let region_of = |pc: usize| m.slots[pc].into_iter().max().unwrap();
        let l2 = Region::Layer {
            layer: 2,
            phase: Phase::Attn,
        };
        assert_eq!(region_of(0), Region::Setup);
        for pc in 2..7 {
            assert_eq!(region_of(pc), l2, "pc {pc}");
        }
    }
}

//! Run one decoder layer on the vTPU: build phext space with the layer's pages, generate
//! its program, then run prefill (T tokens) and decode (T = 1) steps through the KV
//! cache held in phext pages.
//!
//! Everything a caller can get wrong is checked before the machine starts, and reported
//! as a [`LayerError`]: shapes that do not divide, head counts that do not match,
//! weights of the wrong size, unsupported weight dtypes, positions beyond the KV cache
//! capacity, calls that do not continue the cache, inputs of the wrong length.

use crate::config::{ConfigError, LayerConfig};
use crate::layer_coords as lc;
use crate::layer_pages::{layer_pages, RunCapacity};
use crate::layer_program::{layer_program, LayerPlan, Packer, PlanError};
use crate::weights::{LayerWeights, WeightsError};
use std::sync::Arc;
use vtpu_isa::Program;
use vtpu_phext::{DType, Layout, Page, PhextSpace, DEFAULT_PART_LIMIT};
use vtpu_runtime::{Counters, ExecutorKind, MachineError, OpProfile, RunConfig, Session};

/// How to build and run the layer.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// Sentrons (threads); the default is one per available core.
    pub sentrons: usize,
    pub executor: ExecutorKind,
    /// Storage dtype of the projection matrices: f32, f16 or bf16 (norm scales, biases
    /// and the rope table are always f32).
    pub weight_dtype: DType,
    /// Largest T of one call.
    pub max_tokens: usize,
    /// Positions the KV cache holds (at most the config's `max_seq`).
    pub kv_capacity: usize,
    /// Kernel level of the fast executor (None: the best this CPU has).
    pub kernel_level: Option<vtpu_kernels::KernelLevel>,
    /// Page placement of the layer's arena.
    pub layout: Layout,
    /// Pin sentron i to core i.
    pub pin: bool,
    /// What packs the generated ops into words (the SIW compiler by default).
    pub packer: Packer,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            sentrons: std::thread::available_parallelism().map_or(1, |n| n.get()),
            executor: ExecutorKind::Fast,
            weight_dtype: DType::F32,
            max_tokens: 128,
            kv_capacity: 2048,
            kernel_level: None,
            layout: Layout::ZOrder,
            pin: true,
            packer: Packer::default(),
        }
    }
}

/// Why a layer could not be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("layer: weight dtype {0} is not supported by the matmul kernels (supported: f32, f16, bf16)")]
    WeightDType(&'static str),
    #[error("layer: {what} must be at least 1")]
    ZeroCapacity { what: &'static str },
    #[error("layer: kv_capacity {capacity} exceeds the config's max_seq {max_seq}")]
    CapacityAboveMaxSeq { capacity: usize, max_seq: usize },
    #[error("layer: a {rows}x{cols} {what} tile exceeds the machine's {limit} elements per tile")]
    TileTooBig {
        what: &'static str,
        rows: usize,
        cols: usize,
        limit: u64,
    },
    #[error("layer: input has {len} values, not a whole number T >= 1 of rows of D = {dim}")]
    InputLength { len: usize, dim: usize },
    #[error("layer: {tokens} tokens in one call, but the layer was built for at most {max}")]
    TooManyTokens { tokens: usize, max: usize },
    #[error("layer: positions {start_pos}..{end} exceed the KV cache capacity {capacity}")]
    PositionOutOfRange {
        start_pos: usize,
        end: usize,
        capacity: usize,
    },
    #[error("layer: start_pos {start_pos} but the KV cache holds {cache_len} positions; tokens must continue the cache")]
    NonContiguousPosition { start_pos: usize, cache_len: usize },
    #[error("layer: output buffer has {got} values, expected {expected}")]
    OutputLength { got: usize, expected: usize },
    #[error("layer: building phext space: {0}")]
    Space(String),
    #[error("layer: the f64 reference forward failed: {0}")]
    Reference(String),
    #[error("layer: disagrees with the f64 reference: max rel error {error:.3e} > tolerance {tolerance:.3e}")]
    Mismatch { error: f64, tolerance: f64 },
    #[error("layer: the vTPU stopped: {0}")]
    Machine(#[from] MachineError),
}

/// What one call measured.
#[derive(Clone, Debug)]
pub struct LayerReport {
    /// Per sentron: virtual counters and the host time of its stream.
    pub counters: Vec<Counters>,
    /// Host: wall time of the machine run (without writing inputs / reading outputs).
    pub host_wall_ns: u64,
    /// Per-opcode host time, when profiling is on (fast executor only).
    pub profile: Option<OpProfile>,
}

/// How the program runs: a persistent session (fast executor: pinned worker threads,
/// nothing spawned or validated per call) or one reference-executor run per call.
enum Machine {
    Fast(Session),
    Reference(RunConfig),
}

/// One layer on the vTPU: its plan, program, phext space and KV cache length.
pub struct LayerRunner {
    plan: LayerPlan,
    program: Program,
    space: Arc<PhextSpace>,
    machine: Machine,
    cap: RunCapacity,
    dtype: DType,
    /// Positions held in the KV cache.
    len: usize,
    args: Arc<Page>,
    input: Arc<Page>,
    output: Arc<Page>,
}

/// The layer's pages, fetched once (the program reads them through the PPT; the host
/// writes arguments and input and reads the output directly).
fn page(space: &PhextSpace, c: vtpu_phext::Coord) -> Result<Arc<Page>, LayerError> {
    space
        .get(c)
        .ok_or_else(|| LayerError::Space(format!("page {c} missing after build")))
}

impl LayerRunner {
    /// Check everything, slice the weights into pages, build the program.
    pub fn new(
        cfg: &LayerConfig,
        w: &LayerWeights,
        opts: &LayerOptions,
    ) -> Result<LayerRunner, LayerError> {
        w.check_shapes(cfg)?;
        if !matches!(opts.weight_dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(LayerError::WeightDType(opts.weight_dtype.name()));
        }
        for (what, v) in [
            ("max_tokens", opts.max_tokens),
            ("kv_capacity", opts.kv_capacity),
        ] {
            if v == 0 {
                return Err(LayerError::ZeroCapacity { what });
            }
        }
        if opts.kv_capacity > cfg.max_seq {
            return Err(LayerError::CapacityAboveMaxSeq {
                capacity: opts.kv_capacity,
                max_seq: cfg.max_seq,
            });
        }
        // The largest tiles: attention scores [T*G, S] and the SwiGLU activations [T, F].
        let limit = vtpu_isa::MAX_TILE_ELEMS;
        let score_rows = opts.max_tokens.saturating_mul(cfg.group_size());
        for (what, rows, cols) in [
            ("attention score", score_rows, opts.kv_capacity),
            ("ffn", opts.max_tokens, cfg.ffn_dim),
            ("kv cache", opts.kv_capacity, cfg.head_dim),
        ] {
            if rows.saturating_mul(cols) as u64 > limit || rows > vtpu_isa::MAX_TILE_DIM as usize {
                return Err(LayerError::TileTooBig {
                    what,
                    rows,
                    cols,
                    limit,
                });
            }
        }
        let plan = LayerPlan::new(cfg, 0, opts.sentrons)?;
        let program = layer_program(&plan, opts.packer)?;
        let cap = RunCapacity {
            max_tokens: opts.max_tokens,
            kv_capacity: opts.kv_capacity,
        };
        let pages = layer_pages(&plan, w, opts.weight_dtype, cap)?;
        let space = PhextSpace::build_placed(opts.layout, pages, DEFAULT_PART_LIMIT)
            .map_err(|e| LayerError::Space(e.to_string()))?;
        let space = Arc::new(space);
        let run_cfg = RunConfig {
            sentrons: opts.sentrons,
            executor: opts.executor,
            pin: opts.pin,
            kernel_level: opts.kernel_level,
            ..RunConfig::default()
        };
        let machine = match opts.executor {
            ExecutorKind::Fast => {
                Machine::Fast(Session::new(&program, Arc::clone(&space), &run_cfg)?)
            }
            ExecutorKind::Reference => Machine::Reference(run_cfg),
        };
        Ok(LayerRunner {
            args: page(&space, lc::args())?,
            input: page(&space, lc::input())?,
            output: page(&space, lc::output())?,
            plan,
            program,
            space,
            machine,
            cap,
            dtype: opts.weight_dtype,
            len: 0,
        })
    }

    pub fn plan(&self) -> &LayerPlan {
        &self.plan
    }
    pub fn program(&self) -> &Program {
        &self.program
    }
    pub fn space(&self) -> &PhextSpace {
        &self.space
    }
    pub fn capacity(&self) -> RunCapacity {
        self.cap
    }
    /// Storage dtype of the projection matrices.
    pub fn weight_dtype(&self) -> DType {
        self.dtype
    }
    /// Positions held in the KV cache.
    pub fn kv_len(&self) -> usize {
        self.len
    }
    /// Start a new sequence (the cache pages are overwritten as positions come).
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Pretend the cache holds `len` positions (benchmarks of decode at a KV length; the
    /// cache rows then hold whatever they held).
    pub fn set_kv_len(&mut self, len: usize) -> Result<(), LayerError> {
        if len > self.cap.kv_capacity {
            return Err(LayerError::PositionOutOfRange {
                start_pos: len,
                end: len,
                capacity: self.cap.kv_capacity,
            });
        }
        self.len = len;
        Ok(())
    }
    /// Profile every following call per opcode (fast executor; host time, slower).
    pub fn set_profile(&mut self, on: bool) {
        if let Machine::Fast(s) = &mut self.machine {
            s.set_profile(on);
        }
    }

    /// Check a call of `x_len` values at `start_pos`; returns T.
    fn check_call(&self, x_len: usize, start_pos: usize) -> Result<usize, LayerError> {
        let d = self.plan.cfg.dim;
        if x_len == 0 || !x_len.is_multiple_of(d) {
            return Err(LayerError::InputLength { len: x_len, dim: d });
        }
        let t = x_len / d;
        if t > self.cap.max_tokens {
            return Err(LayerError::TooManyTokens {
                tokens: t,
                max: self.cap.max_tokens,
            });
        }
        let end = start_pos.saturating_add(t);
        if end > self.cap.kv_capacity {
            return Err(LayerError::PositionOutOfRange {
                start_pos,
                end,
                capacity: self.cap.kv_capacity,
            });
        }
        if start_pos != self.len {
            return Err(LayerError::NonContiguousPosition {
                start_pos,
                cache_len: self.len,
            });
        }
        Ok(t)
    }

    /// Forward of the T tokens in `x` ([T, D]) at positions `start_pos..start_pos + T`,
    /// appending to the KV cache; writes `[T, D]` into `out`.
    pub fn forward_into(
        &mut self,
        x: &[f32],
        start_pos: usize,
        out: &mut [f32],
    ) -> Result<LayerReport, LayerError> {
        let t = self.check_call(x.len(), start_pos)?;
        if out.len() != x.len() {
            return Err(LayerError::OutputLength {
                got: out.len(),
                expected: x.len(),
            });
        }
        let space_err = |e: vtpu_phext::PageError| LayerError::Space(e.to_string());
        self.input.write_f32(0, x).map_err(space_err)?;
        self.args
            .write(|b| {
                // [T, start_pos] as i32 (both < MAX_TILE_DIM, checked above).
                b[0..4].copy_from_slice(&(t as i32).to_le_bytes());
                b[4..8].copy_from_slice(&(start_pos as i32).to_le_bytes());
            })
            .map_err(space_err)?;
        let report = match &mut self.machine {
            Machine::Fast(s) => {
                let r = s.run()?;
                LayerReport {
                    counters: r.counters,
                    host_wall_ns: r.host_wall_ns,
                    profile: r.profile,
                }
            }
            Machine::Reference(cfg) => {
                let r = vtpu_runtime::run(&self.program, &self.space, cfg)?;
                LayerReport {
                    counters: r.counters,
                    host_wall_ns: r.host_wall_ns,
                    profile: None,
                }
            }
        };
        self.output.read_f32(0, out).map_err(space_err)?;
        self.len = start_pos + t;
        Ok(report)
    }

    /// Like [`LayerRunner::forward_into`], returning the output.
    pub fn forward(
        &mut self,
        x: &[f32],
        start_pos: usize,
    ) -> Result<(Vec<f32>, LayerReport), LayerError> {
        let mut out = vec![0.0; x.len()];
        let r = self.forward_into(x, start_pos, &mut out)?;
        Ok((out, r))
    }
}

//! Model files into phext space: every weight at its coordinate of the scheme in
//! ARCHITECTURE.md ("Model weights and run state in phext space").
//!
//! Tensors are mapped zero-copy (read-only pages over the file's memory map) whenever
//! the kernels read their stored dtype and the bytes sit on a [`MAPPED_ALIGN`] boundary
//! (GGUF guarantees 32). Copies are made, once, at load, only for:
//! - the column slices of `wo` (per attention part) and `w_down` (per sentron) that a
//!   split over several sentrons or kv heads needs as matrices of their own (whole
//!   quantized blocks are copied, nothing is requantized);
//! - norm scales and biases stored in f16/bf16 (the norm and bias ops read f32);
//! - tensors whose bytes are not aligned for mapping (possible in safetensors).

use super::config::ModelConfig;
use super::names::{tensor_name, Naming};
use crate::config::LayerConfig;
use crate::layer_coords::{self as lc, TensorKind};
use crate::layer_program::{LayerPlan, PlanError};
use memmap2::Mmap;
use std::sync::Arc;
use vtpu_kernels::quant::r8::R8_ROWS;
use vtpu_phext::{Coord, DType, PageInit, PageKind, MAPPED_ALIGN};

/// One tensor as a file holds it: dtype, `[rows, cols]` (a 1-D tensor is one row), its
/// bytes, and where they sit in a memory map (for zero-copy pages).
#[derive(Clone)]
pub struct SrcTensor<'a> {
    pub dtype: DType,
    pub shape: [usize; 2],
    pub bytes: &'a [u8],
    pub map: Option<(&'a Arc<Mmap>, usize)>,
}

/// Where a model's tensors come from (a GGUF file, a Hugging Face directory, a phext
/// image).
pub trait TensorSource {
    /// How tensors are named.
    fn naming(&self) -> Naming;
    /// The tensor called `name`, `None` if the file has none; an error for a tensor that
    /// exists but cannot be used (an unknown dtype), naming it.
    fn tensor(&self, name: &str) -> Result<Option<SrcTensor<'_>>, LoadError>;
    /// For messages: the file or directory.
    fn origin(&self) -> String;
}

/// Why a model cannot be placed in phext space.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: tensor `{name}` is missing")]
    Missing { file: String, name: String },
    #[error(
        "{file}: tensor `{name}` has shape {got:?}, expected {expected:?} for this {arch} model"
    )]
    Shape {
        file: String,
        name: String,
        got: [usize; 2],
        expected: [usize; 2],
        arch: &'static str,
    },
    #[error("{file}: tensor `{name}` is {dtype}, which the matmul kernels do not read (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)")]
    DType {
        file: String,
        name: String,
        dtype: String,
    },
    #[error("{file}: tensor `{name}`: {why}")]
    Tensor {
        file: String,
        name: String,
        why: String,
    },
    #[error("model plan: {0}")]
    Plan(#[from] PlanError),
    #[error("coordinate: {0}")]
    Coord(#[from] vtpu_phext::CoordError),
    #[error("phext space: {0}")]
    Space(#[from] vtpu_phext::SpaceError),
    #[error("{0}")]
    Other(String),
}

/// Dtypes the matmul kernels read as weights.
pub fn matmul_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
        || (d.is_quantized() && vtpu_runtime::common::kernels_read_quant(d))
}

/// How the run state is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Largest T of one call (a longer prompt is processed in chunks).
    pub max_tokens: usize,
    /// Positions the KV cache holds.
    pub ctx: usize,
    /// Element type of the KV cache pages (f32 or f16; SSCATTR rounds into f16 pages).
    pub kv_type: DType,
    /// Sequences with KV rows of their own (`ctx` rows each, slot `s` from row `s ctx`);
    /// with more than one, one more `ctx` rows hold the padding rows of batched steps.
    pub slots: usize,
    /// Largest batched decode step (1: none).
    pub max_batch: usize,
}

impl Capacity {
    /// Rows of each KV cache page.
    pub fn kv_rows(&self) -> usize {
        let pad = usize::from(self.max_batch > 1);
        (self.slots + pad) * self.ctx
    }
}

/// The pages of a model: placed pages (copies and run state) and mapped tensors.
pub struct ModelPages {
    pub placed: Vec<PageInit>,
    pub mapped: Vec<MappedTensor>,
    /// Bytes mapped zero-copy and bytes copied at load.
    pub mapped_bytes: usize,
    pub copied_bytes: usize,
    /// Bytes of weight matrices repacked into groups of 8 rows at load (copies too).
    pub repacked_bytes: usize,
    /// Mapped tensors to repack into pages of their own once the space is built.
    pub repack: Vec<RepackJob>,
}

/// A mapped weight matrix to place in the load's weight arena (huge pages, see
/// `PhextSpace::fill_arena`): repacked into groups of 8 rows, or copied as it is.
pub struct RepackJob {
    pub coord: Coord,
    /// The page dtype (the repacked one, or the file's for a copy).
    pub dtype: DType,
    /// The file's quant type when repacked; `None`: copied byte for byte.
    base: Option<vtpu_kernels::QuantType>,
    pub shape: [usize; 2],
    map: Arc<Mmap>,
    offset: usize,
    len: usize,
    name: String,
    file: String,
}

impl RepackJob {
    /// Bytes of the tensor.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The page the tensor is placed in (read-only, in the load's weight arena).
    pub fn spec(&self) -> vtpu_phext::PageSpec {
        vtpu_phext::PageSpec {
            coord: self.coord,
            dtype: self.dtype,
            shape: self.shape,
            kind: PageKind::Owned,
        }
    }

    /// Repacks (or copies) the tensor into `page` (its page's bytes, see [`Self::spec`]),
    /// then drops the file pages it read from this process's resident set.
    pub fn fill(self, page: &mut [u8]) -> Result<(), LoadError> {
        let RepackJob {
            base,
            shape,
            map,
            offset,
            len,
            name,
            file,
            ..
        } = self;
        let src = offset
            .checked_add(len)
            .and_then(|end| map.get(offset..end))
            .ok_or_else(|| LoadError::Tensor {
                file: file.clone(),
                name: name.clone(),
                why: format!("bytes {offset}..+{len} are outside the mapped file"),
            })?;
        match base {
            Some(base) => vtpu_kernels::quant::r8::repack_r8(base, src, shape[0], shape[1], page)
                .map_err(|e| LoadError::Tensor {
                file,
                name,
                why: format!("repacking into groups of {R8_ROWS} rows: {e}"),
            })?,
            None if page.len() == src.len() => page.copy_from_slice(src),
            None => {
                return Err(LoadError::Tensor {
                    file,
                    name,
                    why: format!("{} bytes for a page of {}", src.len(), page.len()),
                })
            }
        }
        release_pages(&map, offset, len);
        Ok(())
    }
}

/// A zero-copy page to insert with `PhextSpace::insert_mapped`.
pub struct MappedTensor {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    pub map: Arc<Mmap>,
    pub offset: usize,
}

struct Builder<'s, S: TensorSource + ?Sized> {
    src: &'s S,
    cfg: &'s ModelConfig,
    out: ModelPages,
    /// Placing the layers' matrices (see [`Builder::repack_kind`]).
    in_layers: bool,
    /// Copy a block-quantized matrix left in the file's layout into the weight arena
    /// (huge pages) instead of mapping it: set for every matrix a token reads whole,
    /// when the load may restructure weights (`ModelOptions::repack`).
    copy_mapped: bool,
}

impl<'s, S: TensorSource + ?Sized> Builder<'s, S> {
    fn file(&self) -> String {
        self.src.origin()
    }

    fn get(&self, name: &str, shape: [usize; 2]) -> Result<SrcTensor<'s>, LoadError> {
        let src: &'s S = self.src;
        let t = src.tensor(name)?.ok_or_else(|| LoadError::Missing {
            file: self.file(),
            name: name.to_string(),
        })?;
        // A 1-D tensor of n elements is [1, n]; GGUF and safetensors agree on [rows, cols]
        // for matrices (GGUF's ne0 is the row length).
        if t.shape != shape {
            return Err(LoadError::Shape {
                file: self.file(),
                name: name.to_string(),
                got: t.shape,
                expected: shape,
                arch: self.cfg.arch.name(),
            });
        }
        let expect = t
            .dtype
            .bytes_for(shape[0] * shape[1])
            .map_err(|e| LoadError::Tensor {
                file: self.file(),
                name: name.to_string(),
                why: e.to_string(),
            })?;
        if t.bytes.len() != expect {
            return Err(LoadError::Tensor {
                file: self.file(),
                name: name.to_string(),
                why: format!("holds {} bytes, expected {expect}", t.bytes.len()),
            });
        }
        Ok(t)
    }

    /// A weight matrix: repacked into groups of 8 rows when `repack` (the caller checked
    /// that every row range the program views starts and ends on a group) and the dtype
    /// has a repacked layout; otherwise mapped (or copied when misaligned).
    fn matrix_r(
        &mut self,
        coord: Coord,
        name: &str,
        shape: [usize; 2],
        repack: bool,
    ) -> Result<(), LoadError> {
        let t = self.get(name, shape)?;
        if !matmul_dtype(t.dtype) {
            return Err(LoadError::DType {
                file: self.file(),
                name: name.to_string(),
                dtype: t.dtype.name().to_string(),
            });
        }
        if repack && self.repack_kind(t.dtype) {
            // A mapped tensor is repacked straight into its page once the space exists
            // (`RepackJob::fill`): one copy, no staging buffer.
            if let (Some(r8), Some(base), Some((map, offset))) = (
                t.dtype.repacked(),
                vtpu_runtime::common::quant_type(t.dtype),
                t.map,
            ) {
                if shape[0].is_multiple_of(R8_ROWS) {
                    self.out.repacked_bytes += t.bytes.len();
                    self.out.repack.push(RepackJob {
                        coord,
                        dtype: r8,
                        base: Some(base),
                        shape,
                        map: Arc::clone(map),
                        offset,
                        len: t.bytes.len(),
                        name: name.to_string(),
                        file: self.file(),
                    });
                    return Ok(());
                }
            }
            if let Some((r8, bytes)) = self.repacked(name, t.dtype, shape, t.bytes)? {
                self.out.repacked_bytes += bytes.len();
                self.out.placed.push(PageInit {
                    coord,
                    dtype: r8,
                    shape,
                    bytes: Some(bytes),
                    read_only: true,
                    kind: PageKind::Owned,
                });
                return Ok(());
            }
        }
        let (dtype, bytes, map) = (t.dtype, t.bytes, t.map.map(|(m, o)| (Arc::clone(m), o)));
        if let (true, Some((map, offset))) = (self.copy_mapped && dtype.is_quantized(), &map) {
            // Decode streams it whole every token: from huge pages, measured 1.03-1.13x
            // faster than from the file's 4 KiB pages on GGUF models (see
            // `PhextSpace::fill_arena`). Float (Hugging Face) weights stay mapped.
            self.out.copied_bytes += bytes.len();
            self.out.repack.push(RepackJob {
                coord,
                dtype,
                base: None,
                shape,
                map: Arc::clone(map),
                offset: *offset,
                len: bytes.len(),
                name: name.to_string(),
                file: self.file(),
            });
            return Ok(());
        }
        self.place(coord, dtype, shape, bytes, map);
        Ok(())
    }

    /// Whether matrices of `dtype` are repacked where they are placed now. Q8_0 layer
    /// matrices are not: measured on the dev machine (Zen 4, 2 threads, SmolLM2 Q8_0,
    /// tg64 interleaved with `--no-repack`, 8 rounds), decode was 0.91x with them
    /// repacked although the kernel alone is 1.5-2x faster from DRAM; Q8_0's GEMV is not
    /// compute-bound in the ggml layout (~40 GB/s hot against ~25 GB/s of DRAM per
    /// core), Q4_0's and Q5_0's are (~15 GB/s). The output matrix (vocabulary rows) is
    /// repacked in any dtype: one long product per token, faster repacked. Measured again
    /// once the weight arena had huge pages (session 6, 12 rounds): repacked Q8_0 layers
    /// 1.01x and 1.10x in two runs of 6, within noise, so they stay copied as they are.
    fn repack_kind(&self, dtype: DType) -> bool {
        dtype != DType::Q8_0 || !self.in_layers
    }

    /// `bytes` (a `shape` matrix of `dtype`) in the 8-row layout, if `dtype` has one and
    /// the rows are whole groups; `None` leaves the tensor as it is.
    fn repacked(
        &self,
        name: &str,
        dtype: DType,
        shape: [usize; 2],
        bytes: &[u8],
    ) -> Result<Option<(DType, Vec<u8>)>, LoadError> {
        let Some(r8) = dtype.repacked() else {
            return Ok(None);
        };
        let Some(base) = vtpu_runtime::common::quant_type(dtype) else {
            return Ok(None);
        };
        if !shape[0].is_multiple_of(R8_ROWS) {
            return Ok(None);
        }
        let mut out = vec![0u8; bytes.len()];
        vtpu_kernels::quant::r8::repack_r8(base, bytes, shape[0], shape[1], &mut out).map_err(
            |e| LoadError::Tensor {
                file: self.file(),
                name: name.to_string(),
                why: format!("repacking into groups of {R8_ROWS} rows: {e}"),
            },
        )?;
        Ok(Some((r8, out)))
    }

    fn place(
        &mut self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        bytes: &[u8],
        map: Option<(Arc<Mmap>, usize)>,
    ) {
        match map {
            Some((map, offset)) if (map.as_ptr() as usize + offset) % MAPPED_ALIGN == 0 => {
                self.out.mapped_bytes += bytes.len();
                self.out.mapped.push(MappedTensor {
                    coord,
                    dtype,
                    shape,
                    map,
                    offset,
                });
            }
            _ => {
                self.out.copied_bytes += bytes.len();
                self.out.placed.push(PageInit {
                    coord,
                    dtype,
                    shape,
                    bytes: Some(bytes.to_vec()),
                    read_only: true,
                    kind: PageKind::Owned,
                });
            }
        }
    }

    /// A norm scale or bias: f32, converted (exactly) from f16 / bf16.
    fn vector(&mut self, coord: Coord, name: &str, n: usize) -> Result<(), LoadError> {
        let t = self.get(name, [1, n])?;
        let f = match t.dtype {
            DType::F32 => {
                let (bytes, map) = (t.bytes, t.map.map(|(m, o)| (Arc::clone(m), o)));
                self.place(coord, DType::F32, [1, n], bytes, map);
                return Ok(());
            }
            DType::F16 => t
                .bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect::<Vec<f32>>(),
            DType::BF16 => t
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            d => {
                return Err(LoadError::DType {
                    file: self.file(),
                    name: name.to_string(),
                    dtype: format!("{d} (norm scales and biases must be f32, f16 or bf16)"),
                })
            }
        };
        let bytes: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.out.copied_bytes += bytes.len();
        self.out.placed.push(PageInit {
            coord,
            dtype: DType::F32,
            shape: [1, n],
            bytes: Some(bytes),
            read_only: true,
            kind: PageKind::Owned,
        });
        Ok(())
    }

    /// Columns `[c0, c1)` of the `rows x cols` matrix `name`, as a page of its own.
    fn columns(
        &mut self,
        coord: Coord,
        name: &str,
        shape: [usize; 2],
        c0: usize,
        c1: usize,
        repack: bool,
    ) -> Result<(), LoadError> {
        if c0 == 0 && c1 == shape[1] {
            return self.matrix_r(coord, name, shape, repack);
        }
        let t = self.get(name, shape)?;
        let dtype = t.dtype;
        if !matmul_dtype(dtype) {
            return Err(LoadError::DType {
                file: self.file(),
                name: name.to_string(),
                dtype: dtype.name().to_string(),
            });
        }
        let block = dtype.block_elems();
        if c0 % block != 0 || c1 % block != 0 {
            // The slice splits blocks (e.g. heads of 48 columns in 32-element blocks):
            // dequantize those columns, exactly, into an f32 page.
            let (rows, cols) = (shape[0], shape[1]);
            let rb = dtype.bytes_for(cols).map_err(|e| LoadError::Tensor {
                file: self.file(),
                name: name.to_string(),
                why: e.to_string(),
            })?;
            let mut row = vec![0f32; cols];
            let mut out = Vec::with_capacity(rows * (c1 - c0) * 4);
            for src in t.bytes.chunks_exact(rb) {
                vtpu_runtime::common::dequantize_row(dtype, src, &mut row).map_err(|e| {
                    LoadError::Tensor {
                        file: self.file(),
                        name: name.to_string(),
                        why: e.to_string(),
                    }
                })?;
                out.extend(row[c0..c1].iter().flat_map(|x| x.to_le_bytes()));
            }
            self.out.copied_bytes += out.len();
            self.out.placed.push(PageInit {
                coord,
                dtype: DType::F32,
                shape: [rows, c1 - c0],
                bytes: Some(out),
                read_only: true,
                kind: PageKind::Owned,
            });
            return Ok(());
        }
        let bytes_of = |n: usize| dtype.bytes_for(n).unwrap_or(0);
        let (row_bytes, b0, b1) = (bytes_of(shape[1]), bytes_of(c0), bytes_of(c1));
        let mut out = Vec::with_capacity(shape[0] * (b1 - b0));
        for row in t.bytes.chunks_exact(row_bytes) {
            out.extend_from_slice(&row[b0..b1]);
        }
        self.out.copied_bytes += out.len();
        // The slice is one sentron's whole matrix: repacked when its rows allow.
        let (dtype, out) = match repack && self.repack_kind(dtype) {
            true => match self.repacked(name, dtype, [shape[0], c1 - c0], &out)? {
                Some(r) => {
                    self.out.repacked_bytes += r.1.len();
                    r
                }
                None => (dtype, out),
            },
            false => (dtype, out),
        };
        self.out.placed.push(PageInit {
            coord,
            dtype,
            shape: [shape[0], c1 - c0],
            bytes: Some(out),
            read_only: true,
            kind: PageKind::Owned,
        });
        Ok(())
    }

    fn state(&mut self, coord: Coord, dtype: DType, shape: [usize; 2]) {
        self.out.placed.push(PageInit {
            coord,
            dtype,
            shape,
            bytes: None,
            read_only: false,
            kind: PageKind::Scratch,
        });
    }
}

/// Drops the file pages of `map[offset..offset + len]` (a tensor just repacked into a
/// copy) from this process's resident set: they were faulted in by the repacking read
/// and are not read again, so without this the tensor would count twice in the peak
/// RSS. Only whole pages inside the range; a failure only costs memory, so it is
/// ignored.
fn release_pages(map: &Mmap, offset: usize, len: usize) {
    const PAGE: usize = 4096;
    let start = offset.div_ceil(PAGE) * PAGE;
    let end = (offset + len) / PAGE * PAGE;
    if end > start && end <= map.len() {
        // SAFETY: the map is a read-only file mapping: MADV_DONTNEED only unmaps these
        // pages from this process, and any later read of them faults the same bytes back
        // in from the file (the page cache), so no value seen through the map changes.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}

/// The block size the `w_down` columns of an F split must fall on.
pub fn ffn_split_align<S: TensorSource + ?Sized>(
    src: &S,
    cfg: &ModelConfig,
) -> Result<usize, LoadError> {
    let mut align = crate::layer_program::FFN_SPLIT_ALIGN;
    for l in 0..cfg.n_layers {
        let name = tensor_name(src.naming(), Some(l), TensorKind::WDown);
        if let Some(t) = src.tensor(&name)? {
            align = align.max(t.dtype.block_elems());
        }
    }
    Ok(align)
}

/// Every page of the model for `plans` (one per layer): weights (mapped where possible),
/// the rope table, and the run state sized by `cap`.
pub fn model_pages<S: TensorSource + ?Sized>(
    src: &S,
    cfg: &ModelConfig,
    plans: &[LayerPlan],
    cap: Capacity,
    repack: Option<&[std::ops::Range<usize>]>,
) -> Result<ModelPages, LoadError> {
    let c: &LayerConfig = &cfg.layer;
    let (d, hd, f, v) = (c.dim, c.head_dim, c.ffn_dim, cfg.vocab);
    let (qd, kvd) = (c.q_dim(), c.kv_dim());
    let naming = src.naming();
    let name = |l: Option<usize>, k: TensorKind| tensor_name(naming, l, k);
    let mut b = Builder {
        src,
        cfg,
        out: ModelPages {
            placed: Vec::new(),
            mapped: Vec::new(),
            mapped_bytes: 0,
            copied_bytes: 0,
            repacked_bytes: 0,
            repack: Vec::new(),
        },
        in_layers: false,
        copy_mapped: false,
    };
    let w = |l: usize, k: TensorKind, i: usize| lc::weight(l, k, i);

    // Model-wide tensors.
    let embd = name(None, TensorKind::TokenEmbd);
    {
        // The embedding table may be any dtype DTEMBED dequantizes (every page dtype
        // the kernels know); as the tied output it must also be a matmul dtype.
        let t = b.get(&embd, [v, d])?;
        if !t.dtype.is_quantized() && !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16)
            || (t.dtype.is_quantized() && !vtpu_runtime::common::kernels_read_quant(t.dtype))
        {
            return Err(LoadError::DType {
                file: b.file(),
                name: embd.clone(),
                dtype: t.dtype.name().to_string(),
            });
        }
    }
    // Repacking (see `ModelOptions::repack`) is allowed for a matrix when every row
    // range a sentron views of it starts and ends on a group of 8 rows. `repack` holds
    // the vocabulary rows of each sentron; the output matrix is also read in chunks of
    // VOCAB_CHUNK rows.
    let on_groups = |r: &std::ops::Range<usize>| {
        r.start.is_multiple_of(R8_ROWS) && r.end.is_multiple_of(R8_ROWS)
    };
    let vocab_ok = repack.is_some_and(|rows| {
        rows.iter().all(on_groups) && super::program::VOCAB_CHUNK.is_multiple_of(R8_ROWS)
    });
    let heads_ok = repack.is_some() && hd % R8_ROWS == 0;
    // The tied table is the output matrix too (DTEMBED reads either layout); an untied
    // one is only looked up, a row per token: left as it is, mapped.
    b.copy_mapped = cfg.tied_embeddings && repack.is_some();
    b.matrix_r(
        w(0, TensorKind::TokenEmbd, 0)?,
        &embd,
        [v, d],
        cfg.tied_embeddings && vocab_ok,
    )?;
    b.vector(
        w(0, TensorKind::OutputNorm, 0)?,
        &name(None, TensorKind::OutputNorm),
        d,
    )?;
    b.copy_mapped = repack.is_some();
    if !cfg.tied_embeddings {
        b.matrix_r(
            w(0, TensorKind::Output, 0)?,
            &name(None, TensorKind::Output),
            [v, d],
            vocab_ok,
        )?;
    }
    let rope = crate::layer_pages::rope_table(c, cap.ctx);
    b.out.placed.push(PageInit {
        coord: w(0, TensorKind::RopeTable, 0)?,
        dtype: DType::F32,
        shape: [cap.ctx, hd],
        bytes: Some(rope.iter().flat_map(|x| x.to_le_bytes()).collect()),
        read_only: true,
        kind: PageKind::Owned,
    });

    b.in_layers = true;
    for plan in plans {
        let l = plan.layer;
        let n = |k| name(Some(l), k);
        b.vector(w(l, TensorKind::AttnNorm, 0)?, &n(TensorKind::AttnNorm), d)?;
        b.vector(w(l, TensorKind::FfnNorm, 0)?, &n(TensorKind::FfnNorm), d)?;
        // One of this layer's matrices, repacked if `ok` (see `Builder::matrix_r`).
        let mat = |b: &mut Builder<'_, S>, k: TensorKind, shape: [usize; 2], ok: bool| {
            b.matrix_r(w(l, k, 0)?, &n(k), shape, ok)
        };
        // Wq is viewed per attention part (whole heads), Wk / Wv per kv head.
        mat(&mut b, TensorKind::Wq, [qd, d], heads_ok)?;
        mat(&mut b, TensorKind::Wk, [kvd, d], heads_ok)?;
        mat(&mut b, TensorKind::Wv, [kvd, d], heads_ok)?;
        let ffn_ok = repack.is_some() && plan.ffn_rows.iter().all(on_groups);
        let out_ok = repack.is_some()
            && plan
                .out_rows
                .as_ref()
                .is_none_or(|rows| rows.iter().all(on_groups));
        if c.qkv_bias {
            b.vector(w(l, TensorKind::Bq, 0)?, &n(TensorKind::Bq), qd)?;
            b.vector(w(l, TensorKind::Bk, 0)?, &n(TensorKind::Bk), kvd)?;
            b.vector(w(l, TensorKind::Bv, 0)?, &n(TensorKind::Bv), kvd)?;
        }
        if c.qk_norm {
            b.vector(w(l, TensorKind::QNorm, 0)?, &n(TensorKind::QNorm), hd)?;
            b.vector(w(l, TensorKind::KNorm, 0)?, &n(TensorKind::KNorm), hd)?;
        }
        mat(&mut b, TensorKind::WGate, [f, d], ffn_ok)?;
        mat(&mut b, TensorKind::WUp, [f, d], ffn_ok)?;
        let whole_rows = plan.out_rows.is_some();
        if whole_rows {
            // Row ranges of the mapped tensors (zero-copy): see LayerPlan::out_rows.
            mat(&mut b, TensorKind::Wo, [d, qd], out_ok)?;
            mat(&mut b, TensorKind::WDown, [d, f], out_ok)?;
        }
        for part in plan.parts() {
            let (q0, q1) = (part.heads.start * hd, part.heads.end * hd);
            if !whole_rows {
                b.columns(
                    w(l, TensorKind::Wo, part.index)?,
                    &n(TensorKind::Wo),
                    [d, qd],
                    q0,
                    q1,
                    out_ok,
                )?;
            }
            for value in [false, true] {
                b.state(
                    lc::kv_cache(l, part.index, value)?,
                    cap.kv_type,
                    [cap.kv_rows(), hd],
                );
            }
        }
        for (i, rows) in plan.ffn_rows.iter().enumerate().filter(|_| !whole_rows) {
            b.columns(
                w(l, TensorKind::WDown, i)?,
                &n(TensorKind::WDown),
                [d, f],
                rows.start,
                rows.end,
                out_ok,
            )?;
        }
    }

    let mb = cap.max_batch.max(1);
    b.state(lc::args(), DType::I32, [1, 4 + 2 * mb]);
    b.state(lc::tokens(), DType::F32, [cap.max_tokens.max(mb), 1]);
    b.state(lc::logits(), DType::F32, [mb, v]);
    for i in 0..plans.first().map_or(1, |p| p.sentrons) {
        b.state(lc::hidden(i)?, DType::F32, [cap.max_tokens, d]);
        if mb > 1 {
            b.state(lc::batch_rows(i)?, DType::F32, [3 * mb, qd]);
            b.state(lc::batch_attn(i)?, DType::F32, [mb, qd]);
        }
    }
    Ok(b.out)
}

//! Model images: a model's tensors saved as a phext space (`vtpu convert`), and loaded
//! back, zero-copy, as a [`TensorSource`] (`vtpu generate -m model.phext`).
//!
//! An image is a `.phext` manifest plus its sidecar, written by `PhextSpace::save`
//! (atomic, one xxh3 checksum per page) and read by `PhextSpace::load(.., Map)` (every
//! checksum verified, every page a read-only view of the mapped sidecar). It holds:
//!
//! - **one read-only page per tensor** of the source GGUF that has a place in the
//!   coordinate scheme ([`super::names::coord_of`], ARCHITECTURE.md "Model weights and
//!   run state in phext space"): `1 . layer+1 . kind / 1.1.1 / 1.1.1`, model-wide tensors
//!   on shelf 999. Pages are whole tensors (part and tile 1: the per-sentron column
//!   slices of `wo` and `w_down` are cut at load, exactly as from a GGUF), shaped
//!   `[rows, cols]` (a 1-D tensor is `[1, n]`), in the tensor's dtype (the page dtype
//!   code is the ggml type id). Tensors without a coordinate (e.g. `rope_freqs`) are
//!   left out and reported. No rope table and no run state: those are built at load.
//! - **the metadata page** at [`metadata_coord`] (`1.999.30/1.1.1/1.1.1`), i8 `[1, n]`:
//!   the bytes of a GGUF v3 file holding the source's metadata key/values and no
//!   tensors, plus [`IMAGE_VERSION_KEY`] and [`IMAGE_TYPE_KEY`]. A GGUF inside a page
//!   keeps the image self-contained and lets the existing readers
//!   (`ModelConfig::from_gguf`, `Tokenizer::from_gguf`) work on it unchanged.
//!
//! Because the metadata GGUF has no tensors, two facts the config reader takes from
//! tensors are kept elsewhere: whether the output is tied (an image is untied iff it
//! has a page at the `output.weight` coordinate; [`ImageSource::config`] applies it:
//! use it rather than `ModelConfig::from_gguf` on the metadata alone, which would
//! always say "tied"), and the vocabulary size when the file has no tokenizer (written
//! as `{arch}.vocab_size`).
//!
//! **`--type`** ([`ImageType`]): without it every tensor is stored as the file stores it
//! (bit for bit, so a model loaded from the image computes the same logits). With it,
//! norm scales and biases become f32 (the dtype the loader turns them into anyway;
//! exact from f16/bf16), and every matrix, the token embedding and the output
//! projection included, becomes the chosen type: dequantized to f32 (exact for the
//! format), then rounded with the kernels' quantizers (ggml's reference rounding). A
//! matrix already of that type is copied unchanged. One rule for every matrix keeps it
//! simple; it is not llama.cpp's mixed recipes (which keep e.g. the embedding wider).

use super::config::{ModelConfig, ModelConfigError};
use super::gguf_source::GgufSource;
use super::load::{LoadError, SrcTensor, TensorSource};
use super::names::{coord_of, parse_gguf_name, Naming};
use crate::layer_coords::{self as lc, TensorKind};
use half::{bf16, f16};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use vtpu_modelfile::gguf::{GgufError, GgufFile, GgufWriter, MetaValue};
use vtpu_modelfile::Backing;
use vtpu_phext::{
    Coord, DType, Layout, LoadMode, Page, PageKind, PersistError, PhextSpace, MAPPED_ALIGN,
};

/// Series of the metadata page on the model shelf (tensor kinds use 1..=18).
pub const METADATA_SERIES: u32 = 30;
/// Metadata key holding the image format version.
pub const IMAGE_VERSION_KEY: &str = "vtpu.image.version";
/// The image format this build writes and reads.
pub const IMAGE_VERSION: u32 = 1;
/// Metadata key holding the `--type` the image was converted to, or `as-stored`.
pub const IMAGE_TYPE_KEY: &str = "vtpu.image.type";

/// `1.999.30/1.1.1/1.1.1`: where an image keeps its metadata GGUF.
pub fn metadata_coord() -> Coord {
    Coord::new([
        lc::MODEL_LIBRARY,
        lc::MODEL_SHELF,
        METADATA_SERIES,
        1,
        1,
        1,
        1,
        1,
        1,
    ])
    .unwrap_or(Coord::ORIGIN)
}

/// What `vtpu convert --type` converts matrices to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageType {
    Q8_0,
    Q4_0,
    F16,
    BF16,
    F32,
}

impl ImageType {
    pub const ALL: [ImageType; 5] = [
        ImageType::Q8_0,
        ImageType::Q4_0,
        ImageType::F16,
        ImageType::BF16,
        ImageType::F32,
    ];

    /// The page dtype of converted matrices.
    pub fn dtype(self) -> DType {
        match self {
            ImageType::Q8_0 => DType::Q8_0,
            ImageType::Q4_0 => DType::Q4_0,
            ImageType::F16 => DType::F16,
            ImageType::BF16 => DType::BF16,
            ImageType::F32 => DType::F32,
        }
    }

    /// `q8_0`, `q4_0`, `f16`, `bf16` or `f32`.
    pub fn name(self) -> &'static str {
        self.dtype().name()
    }

    /// One of the names above, in any case.
    pub fn parse(s: &str) -> Result<ImageType, ImageError> {
        let lower = s.to_ascii_lowercase();
        ImageType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| ImageError::UnknownType { got: s.to_string() })
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`) of a model whose matrices are
    /// all of this type, so tools that read it describe the image correctly.
    fn llama_ftype(self) -> u32 {
        match self {
            ImageType::F32 => 0,
            ImageType::F16 => 1,
            ImageType::Q4_0 => 2,
            ImageType::Q8_0 => 7,
            ImageType::BF16 => 32,
        }
    }
}

impl From<PersistError> for ImageError {
    fn from(e: PersistError) -> ImageError {
        ImageError::Persist(Box::new(e))
    }
}

impl std::str::FromStr for ImageType {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<ImageType, ImageError> {
        ImageType::parse(s)
    }
}

impl std::fmt::Display for ImageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an image cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unknown --type `{got}` (expected one of: q8_0, q4_0, f16, bf16, f32)")]
    UnknownType { got: String },
    #[error("{}: an image is written to a `.phext` manifest path (its sidecar goes beside it)", .path.display())]
    OutPath { path: PathBuf },
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Config(#[from] ModelConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{file}: tensor `{name}`: cannot convert {from} to {to}: {why}")]
    Convert {
        file: String,
        name: String,
        from: DType,
        to: DType,
        why: String,
    },
    #[error("{file}: tensor `{name}` -> page {coord}: {source}")]
    Page {
        file: String,
        name: String,
        coord: Coord,
        source: vtpu_phext::SpaceError,
    },
    #[error("{file}: the metadata GGUF: {source}")]
    MetadataWrite { file: String, source: GgufError },
    /// Boxed: the phext errors carry paths and coordinates, and keeping every
    /// `Result<_, ImageError>` small costs one allocation on the error path only.
    #[error("model image: {0}")]
    Persist(Box<PersistError>),
    #[error("{}: not a vtpu model image: {why}", .path.display())]
    NotAnImage { path: PathBuf, why: String },
}

/// How to convert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// `None`: keep every tensor's dtype.
    pub to: Option<ImageType>,
}

/// What a conversion wrote.
#[derive(Clone, Debug)]
pub struct ImageStats {
    /// Pages saved: tensors + 1 metadata page.
    pub pages: usize,
    pub tensors: usize,
    /// Tensors whose dtype changed (`--type`).
    pub converted: usize,
    /// Bytes of the tensor pages and of the metadata page.
    pub tensor_bytes: u64,
    pub metadata_bytes: u64,
    pub sidecar_bytes: u64,
    pub manifest_bytes: u64,
    pub sidecar: Option<PathBuf>,
    /// GGUF tensors with no coordinate in the scheme, left out.
    pub skipped: Vec<String>,
    /// Host time: reading and converting tensors, and the atomic save.
    pub convert_ms: f64,
    pub save_ms: f64,
}

/// Norm scales and biases: stored f32 by `--type` (what the loader reads them as).
fn is_vector_kind(k: TensorKind) -> bool {
    use TensorKind as K;
    matches!(
        k,
        K::AttnNorm | K::FfnNorm | K::QNorm | K::KNorm | K::OutputNorm | K::Bq | K::Bk | K::Bv
    )
}

/// `rows x cols` f32 elements (row-major) in `to`'s bytes, rounded by the kernels'
/// quantizers. A row of a block type must be whole blocks.
fn encode(f: &[f32], cols: usize, to: DType) -> Result<Vec<u8>, String> {
    let row_bytes = to
        .bytes_for(cols)
        .map_err(|e| format!("rows of {cols}: {e}"))?;
    let rows = f.len().checked_div(cols).unwrap_or(0);
    let mut out = vec![0u8; rows * row_bytes];
    match to {
        DType::F32 => {
            for (o, x) in out.chunks_exact_mut(4).zip(f) {
                o.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 => {
            let mut h = vec![f16::ZERO; cols];
            for (src, dst) in f.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
                vtpu_kernels::quantize_row_f16(src, &mut h).map_err(|e| e.to_string())?;
                for (o, x) in dst.chunks_exact_mut(2).zip(&h) {
                    o.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        DType::BF16 => {
            let mut h = vec![bf16::ZERO; cols];
            for (src, dst) in f.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
                vtpu_kernels::quantize_row_bf16(src, &mut h).map_err(|e| e.to_string())?;
                for (o, x) in dst.chunks_exact_mut(2).zip(&h) {
                    o.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        DType::Q8_0 | DType::Q4_0 => {
            let q = if to == DType::Q8_0 {
                vtpu_kernels::quantize_row_q8_0
            } else {
                vtpu_kernels::quantize_row_q4_0
            };
            for (src, dst) in f.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
                q(src, dst).map_err(|e| e.to_string())?;
            }
        }
        d => return Err(format!("{d} is not a --type target")),
    }
    Ok(out)
}

/// The metadata GGUF of an image of `g` (see the module docs).
fn metadata_gguf(
    g: &GgufFile,
    cfg: &ModelConfig,
    opts: &ConvertOptions,
) -> Result<Vec<u8>, GgufError> {
    let mut w = GgufWriter::new();
    let mut has_vocab_source = false;
    let vocab_key = g.arch_key("vocab_size").ok();
    for (k, v) in g.metadata() {
        if k.starts_with("vtpu.image.") {
            continue; // an image's own keys are rewritten below
        }
        if k == "general.file_type" && opts.to.is_some() {
            continue;
        }
        has_vocab_source |= k == "tokenizer.ggml.tokens" || Some(k) == vocab_key.as_deref();
        w.add_meta(k, v.clone());
    }
    if let (false, Some(key)) = (has_vocab_source, vocab_key) {
        // `from_gguf` would count the embedding's rows, which the metadata file lacks.
        w.add_meta(key, MetaValue::U64(cfg.vocab as u64));
    }
    if let Some(t) = opts.to {
        w.add_meta("general.file_type", MetaValue::U32(t.llama_ftype()));
    }
    w.add_meta(IMAGE_VERSION_KEY, MetaValue::U32(IMAGE_VERSION));
    w.add_meta(
        IMAGE_TYPE_KEY,
        MetaValue::String(opts.to.map_or("as-stored", ImageType::name).to_string()),
    );
    w.to_bytes()
}

/// Write the image of the GGUF model `src` to `out` (a `.phext` path; the sidecar goes
/// beside it). See the module docs for what it holds.
pub fn write_image(
    src: &GgufSource,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ImageStats, ImageError> {
    if !has_phext_extension(out) {
        return Err(ImageError::OutPath {
            path: out.to_path_buf(),
        });
    }
    let t0 = Instant::now();
    let g = &src.file;
    let file = src.origin();
    let cfg = ModelConfig::from_gguf(g)?;
    let space = PhextSpace::new(Layout::Insertion);
    let mut stats = ImageStats {
        pages: 0,
        tensors: 0,
        converted: 0,
        tensor_bytes: 0,
        metadata_bytes: 0,
        sidecar_bytes: 0,
        manifest_bytes: 0,
        sidecar: None,
        skipped: Vec::new(),
        convert_ms: 0.0,
        save_ms: 0.0,
    };
    for info in g.tensors() {
        let name = info.name();
        let (Some(coord), Some((_, kind))) = (coord_of(name), parse_gguf_name(name)) else {
            stats.skipped.push(name.to_string());
            continue;
        };
        let t: SrcTensor<'_> = src.tensor(name)?.ok_or_else(|| LoadError::Missing {
            file: file.clone(),
            name: name.to_string(),
        })?;
        let target = match opts.to {
            None => t.dtype,
            Some(_) if is_vector_kind(kind) => DType::F32,
            Some(ty) => ty.dtype(),
        };
        let page_err = |source| ImageError::Page {
            file: file.clone(),
            name: name.to_string(),
            coord,
            source,
        };
        let inserted = if target == t.dtype {
            match t.map {
                Some((map, offset))
                    if (map.as_ptr() as usize + offset).is_multiple_of(MAPPED_ALIGN) =>
                {
                    space.insert_mapped(coord, t.dtype, t.shape, Arc::clone(map), offset)
                }
                _ => space.insert_bytes(coord, t.dtype, t.shape, t.bytes, true, PageKind::Owned),
            }
        } else {
            let f = super::reference::tensor_f32(src, name)?;
            let bytes = encode(&f, t.shape[1], target).map_err(|why| ImageError::Convert {
                file: file.clone(),
                name: name.to_string(),
                from: t.dtype,
                to: target,
                why,
            })?;
            stats.converted += 1;
            space.insert_bytes(coord, target, t.shape, &bytes, true, PageKind::Owned)
        };
        let page = inserted.map_err(page_err)?;
        stats.tensors += 1;
        stats.tensor_bytes += page.len_bytes() as u64;
    }
    let meta = metadata_gguf(g, &cfg, opts).map_err(|source| ImageError::MetadataWrite {
        file: file.clone(),
        source,
    })?;
    let mc = metadata_coord();
    space
        .insert_bytes(mc, DType::I8, [1, meta.len()], &meta, true, PageKind::Owned)
        .map_err(|source| ImageError::Page {
            file: file.clone(),
            name: "<metadata>".to_string(),
            coord: mc,
            source,
        })?;
    stats.metadata_bytes = meta.len() as u64;
    drop(meta);
    stats.convert_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let saved = space.save(out)?;
    stats.save_ms = t1.elapsed().as_secs_f64() * 1e3;
    stats.pages = saved.pages;
    stats.sidecar_bytes = saved.sidecar_bytes;
    stats.manifest_bytes = saved.manifest_bytes;
    stats.sidecar = saved.sidecar;
    Ok(stats)
}

/// Open the GGUF file `model` and write its image to `out`.
pub fn convert(model: &Path, out: &Path, opts: &ConvertOptions) -> Result<ImageStats, ImageError> {
    let src = GgufSource::new(GgufFile::open(model)?);
    write_image(&src, out, opts)
}

/// A read-only page's bytes as a GGUF backing (zero-copy: the page keeps the map alive).
struct PageBytes(Arc<Page>);

impl AsRef<[u8]> for PageBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.view().unwrap_or(&[])
    }
}

/// A loaded model image: its tensors as zero-copy pages of the mapped sidecar.
pub struct ImageSource {
    path: PathBuf,
    cfg: ModelConfig,
    /// Tensor pages by coordinate (the metadata page excluded).
    pages: HashMap<Coord, Arc<Page>>,
    bytes: usize,
}

impl ImageSource {
    /// The model's configuration: the metadata's, with the output tied iff the image
    /// has no `output.weight` page (see the module docs).
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The manifest.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Tensor pages and their bytes.
    pub fn tensor_pages(&self) -> usize {
        self.pages.len()
    }
    pub fn tensor_bytes(&self) -> usize {
        self.bytes
    }
}

impl TensorSource for ImageSource {
    fn naming(&self) -> Naming {
        Naming::Gguf
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn tensor(&self, name: &str) -> Result<Option<SrcTensor<'_>>, LoadError> {
        let Some(page) = coord_of(name).and_then(|c| self.pages.get(&c)) else {
            return Ok(None);
        };
        // Loaded with LoadMode::Map, so every page is a read-only view of the sidecar.
        let bytes = page.view().ok_or_else(|| LoadError::Tensor {
            file: self.origin(),
            name: name.to_string(),
            why: format!(
                "page {} is writable, expected a read-only image page",
                page.coord()
            ),
        })?;
        Ok(Some(SrcTensor {
            dtype: page.dtype(),
            shape: page.shape(),
            bytes,
            map: page.mapping(),
        }))
    }
}

fn has_phext_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("phext"))
}

/// Does `path` name a model image: a `.phext` extension, or a regular file that starts
/// like a page manifest rather than with the GGUF magic.
pub fn is_image(path: &Path) -> bool {
    if has_phext_extension(path) {
        return true;
    }
    if !path.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::with_capacity(64);
    let read = std::fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut head));
    read.is_ok() && !head.starts_with(b"GGUF") && head.windows(10).any(|w| w == b"vtpu-page=")
}

/// Load the image at `path` (the manifest): verify every page's checksum, map the
/// sidecar, and read the metadata GGUF. Returns the metadata (for
/// `Tokenizer::from_gguf`; for the config use [`ImageSource::config`]) and the tensors.
pub fn open_image(path: &Path) -> Result<(GgufFile, ImageSource), ImageError> {
    let space = PhextSpace::load(path, LoadMode::Map)?;
    let not_image = |why: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        why,
    };
    let mc = metadata_coord();
    let meta_page = space
        .get(mc)
        .ok_or_else(|| not_image(format!("no metadata page at {mc}")))?;
    if meta_page.dtype() != DType::I8 || meta_page.shape()[0] != 1 || meta_page.view().is_none() {
        return Err(not_image(format!(
            "the metadata page {mc} is {} {:?}, expected read-only i8 [1, n]",
            meta_page.dtype(),
            meta_page.shape()
        )));
    }
    // Errors from the metadata name the image and the page.
    let label = PathBuf::from(format!("{} (metadata page {mc})", path.display()));
    let meta = GgufFile::from_backing(
        Backing::from_memory(Arc::new(PageBytes(Arc::clone(&meta_page)))),
        Some(label),
    )?;
    match meta.get_u32(IMAGE_VERSION_KEY)? {
        Some(IMAGE_VERSION) => {}
        Some(v) => {
            return Err(not_image(format!(
                "image format version {v}, this build reads version {IMAGE_VERSION}"
            )))
        }
        None => {
            return Err(not_image(format!(
                "the metadata page {mc} has no `{IMAGE_VERSION_KEY}`"
            )))
        }
    }
    if !meta.tensors().is_empty() {
        return Err(not_image(format!(
            "the metadata page {mc} holds {} tensors, expected none",
            meta.tensors().len()
        )));
    }
    let mut cfg = ModelConfig::from_gguf(&meta)?;
    let output = lc::weight(0, TensorKind::Output, 0).map_err(LoadError::from)?;
    let mut pages = HashMap::new();
    let mut bytes = 0;
    for p in space.pages() {
        if p.coord() != mc {
            bytes += p.len_bytes();
            pages.insert(p.coord(), p);
        }
    }
    cfg.tied_embeddings = !pages.contains_key(&output);
    Ok((
        meta,
        ImageSource {
            path: path.to_path_buf(),
            cfg,
            pages,
            bytes,
        },
    ))
}

//! The data `vtpu inspect` prints for a GGUF file, computed from the header alone.

use std::fmt;
use std::path::PathBuf;

use super::types::GgmlType;
use super::value::{MetaArray, MetaValue};
use super::GgufFile;

/// Arrays with more elements than this are shown as type, length and a short preview.
const ARRAY_SHOWN_IN_FULL: usize = 8;
/// Elements shown in the preview of a long array.
const ARRAY_PREVIEW: usize = 4;
/// Strings longer than this (in chars) are cut, with their byte length noted.
const STRING_SHOWN_IN_FULL: usize = 120;

/// Everything `vtpu inspect` prints; reads no tensor bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSummary {
    pub file: Option<PathBuf>,
    pub version: u32,
    pub file_len: u64,
    pub alignment: u64,
    pub data_offset: u64,
    /// `general.architecture`, when present and a string.
    pub architecture: Option<String>,
    /// Metadata in file order, long values shortened.
    pub metadata: Vec<MetaSummary>,
    /// Tensors in file order.
    pub tensors: Vec<TensorSummary>,
    /// Sum of the tensors' data bytes.
    pub total_tensor_bytes: u64,
    /// Sum of the tensors' element counts.
    pub parameter_count: u64,
    /// Tensor count, bytes and elements per ggml type, in type-id order.
    pub by_type: Vec<TypeTotal>,
}

/// One metadata entry as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaSummary {
    pub key: String,
    /// `u32`, `string`, `array<string>`, ...
    pub type_name: String,
    /// Element count of an array value.
    pub len: Option<usize>,
    /// The value; long strings cut, long arrays as `N elements: [a, b, ...]`.
    pub value: String,
}

/// One tensor as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSummary {
    pub name: String,
    pub ggml_type: GgmlType,
    /// Dims as stored (row length first).
    pub dims: Vec<u64>,
    /// `[rows, cols]`.
    pub rows_cols: [u64; 2],
    pub n_elements: u64,
    pub size_bytes: u64,
    /// Absolute offset of the data in the file.
    pub file_offset: u64,
}

/// Totals for one ggml type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeTotal {
    pub ggml_type: GgmlType,
    pub tensors: usize,
    pub bytes: u64,
    pub elements: u64,
}

pub(crate) fn summarize(file: &GgufFile) -> GgufSummary {
    let metadata = file
        .metadata()
        .map(|(key, value)| MetaSummary {
            key: key.to_string(),
            type_name: value.type_name(),
            len: match value {
                MetaValue::Array(a) => Some(a.len()),
                _ => None,
            },
            value: render(value),
        })
        .collect();
    let tensors: Vec<TensorSummary> = file
        .tensors()
        .iter()
        .map(|t| TensorSummary {
            name: t.name().to_string(),
            ggml_type: t.ggml_type(),
            dims: t.dims().to_vec(),
            rows_cols: t.rows_cols(),
            n_elements: t.n_elements(),
            size_bytes: t.size_bytes(),
            file_offset: t.file_offset(),
        })
        .collect();
    let mut by_type: Vec<TypeTotal> = Vec::new();
    for t in &tensors {
        match by_type.iter_mut().find(|x| x.ggml_type == t.ggml_type) {
            Some(x) => {
                x.tensors += 1;
                x.bytes = x.bytes.saturating_add(t.size_bytes);
                x.elements = x.elements.saturating_add(t.n_elements);
            }
            None => by_type.push(TypeTotal {
                ggml_type: t.ggml_type,
                tensors: 1,
                bytes: t.size_bytes,
                elements: t.n_elements,
            }),
        }
    }
    by_type.sort_by_key(|x| x.ggml_type.id());
    // Tensor ranges lie inside the file and do not overlap, so these sums are at most the
    // file length (bytes) and 2^63 x tensors (elements); saturate rather than trust that.
    let total_tensor_bytes = tensors
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.size_bytes));
    let parameter_count = tensors
        .iter()
        .fold(0u64, |a, t| a.saturating_add(t.n_elements));
    GgufSummary {
        file: file.path().map(|p| p.to_path_buf()),
        version: file.version(),
        file_len: file.file_len(),
        alignment: file.alignment(),
        data_offset: file.data_offset(),
        architecture: file.architecture().ok().map(str::to_string),
        metadata,
        tensors,
        total_tensor_bytes,
        parameter_count,
        by_type,
    }
}

fn render(value: &MetaValue) -> String {
    match value {
        MetaValue::String(s) => render_str(s),
        MetaValue::Array(a) => render_array(a),
        other => other.to_string(),
    }
}

fn render_str(s: &str) -> String {
    if s.chars().count() <= STRING_SHOWN_IN_FULL {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(STRING_SHOWN_IN_FULL).collect();
    format!("{head:?}... ({} bytes)", s.len())
}

fn render_array(a: &MetaArray) -> String {
    let shown = a.len().min(if a.len() <= ARRAY_SHOWN_IN_FULL {
        ARRAY_SHOWN_IN_FULL
    } else {
        ARRAY_PREVIEW
    });
    let mut parts = Vec::with_capacity(shown + 1);
    for i in 0..shown {
        parts.push(match (a.scalar(i), a) {
            (Some(MetaValue::String(s)), _) => render_str(&s),
            (Some(v), _) => v.to_string(),
            (None, MetaArray::Array(inner)) => match inner.get(i) {
                Some(x) => format!("array<{}>[{}]", x.elem_type().name(), x.len()),
                None => "?".to_string(),
            },
            (None, _) => "?".to_string(),
        });
    }
    if shown < a.len() {
        parts.push("...".to_string());
        format!("{} elements: [{}]", a.len(), parts.join(", "))
    } else {
        format!("[{}]", parts.join(", "))
    }
}

/// `12.3 MiB`-style sizes for people.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for GgufSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => writeln!(f, "file: {}", p.display())?,
            None => writeln!(f, "file: <memory>")?,
        }
        writeln!(
            f,
            "GGUF v{}, {} bytes ({}), alignment {}, data at byte {}",
            self.version,
            self.file_len,
            human_bytes(self.file_len),
            self.alignment,
            self.data_offset
        )?;
        if let Some(arch) = &self.architecture {
            writeln!(f, "architecture: {arch}")?;
        }
        writeln!(f, "\nmetadata ({} entries):", self.metadata.len())?;
        for m in &self.metadata {
            writeln!(f, "  {} ({}) = {}", m.key, m.type_name, m.value)?;
        }
        writeln!(f, "\ntensors ({}):", self.tensors.len())?;
        let name_w = self
            .tensors
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "  {:<name_w$}  {:<7}  {:<22}  {:>12}  {:>12}",
            "name", "type", "dims (ne0 first)", "bytes", "offset"
        )?;
        for t in &self.tensors {
            let dims = format!("{:?}", t.dims);
            writeln!(
                f,
                "  {:<name_w$}  {:<7}  {:<22}  {:>12}  {:>12}",
                t.name,
                t.ggml_type.name(),
                dims,
                t.size_bytes,
                t.file_offset
            )?;
        }
        writeln!(f, "\nby type:")?;
        for x in &self.by_type {
            writeln!(
                f,
                "  {:<7} {:>5} tensors  {:>14} elements  {:>12}",
                x.ggml_type.name(),
                x.tensors,
                x.elements,
                human_bytes(x.bytes)
            )?;
        }
        writeln!(
            f,
            "\ntotal: {} tensors, {} parameters, {} bytes ({})",
            self.tensors.len(),
            self.parameter_count,
            self.total_tensor_bytes,
            human_bytes(self.total_tensor_bytes)
        )
    }
}

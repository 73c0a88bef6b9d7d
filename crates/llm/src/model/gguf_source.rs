//! A GGUF file as a [`TensorSource`].

use super::load::{LoadError, SrcTensor, TensorSource};
use super::names::Naming;
use vtpu_modelfile::gguf::GgufFile;
use vtpu_phext::DType;

/// A parsed GGUF file whose tensors the loader maps into phext space.
pub struct GgufSource {
    pub file: GgufFile,
}

impl GgufSource {
    pub fn new(file: GgufFile) -> GgufSource {
        GgufSource { file }
    }
}

impl TensorSource for GgufSource {
    fn naming(&self) -> Naming {
        Naming::Gguf
    }

    fn origin(&self) -> String {
        self.file
            .path()
            .map_or_else(|| "<gguf>".to_string(), |p| p.display().to_string())
    }

    fn tensor(&self, name: &str) -> Result<Option<SrcTensor<'_>>, LoadError> {
        let Some(t) = self.file.tensor(name) else {
            return Ok(None);
        };
        let ty = t.ggml_type();
        // Page dtypes carry the ggml type id as their code.
        // Our own repacked layouts share the code space but are never ggml types.
        let dtype = u8::try_from(ty.id())
            .ok()
            .and_then(DType::from_code)
            .filter(|d| !d.is_repacked())
            .ok_or_else(|| LoadError::DType {
                file: self.origin(),
                name: name.to_string(),
                dtype: ty.name().to_string(),
            })?;
        if t.dims().len() > 2 {
            return Err(LoadError::Tensor {
                file: self.origin(),
                name: name.to_string(),
                why: format!(
                    "has {} dimensions; model tensors have 1 or 2",
                    t.dims().len()
                ),
            });
        }
        let [rows, cols] = t.rows_cols();
        let shape = [
            usize::try_from(rows).unwrap_or(usize::MAX),
            usize::try_from(cols).unwrap_or(usize::MAX),
        ];
        let map = self
            .file
            .mmap()
            .and_then(|m| usize::try_from(t.file_offset()).ok().map(|o| (m, o)));
        Ok(Some(SrcTensor {
            dtype,
            shape,
            bytes: self.file.tensor_bytes(t),
            map,
        }))
    }
}

//! The bytes a parsed model file refers to: a read-only memory map of the file, or an
//! in-memory buffer (tests, fuzzing, files fetched into memory). Tensors are byte
//! ranges of this backing, so keeping it in an `Arc` is what makes them zero-copy.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

/// Where a parsed file's bytes live. Cloning is cheap (an `Arc` clone).
#[derive(Clone)]
pub enum Backing {
    /// A read-only map of the whole file; hand it to `PhextSpace::insert_mapped`.
    Mmap(Arc<Mmap>),
    /// Bytes already in memory.
    Memory(Arc<dyn AsRef<[u8]> + Send + Sync>),
}

impl Backing {
    /// Map `path` read-only.
    pub fn map_file(path: &Path) -> io::Result<Backing> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only. If another process truncates or rewrites the
        // file while it is mapped, reads can fault or see the new bytes; that is the
        // standard, accepted risk of mapping model files (llama.cpp, candle and
        // safetensors do the same) and the price of zero-copy weights.
        let map = unsafe { Mmap::map(&file)? };
        Ok(Backing::Mmap(Arc::new(map)))
    }

    /// Wrap an in-memory buffer.
    pub fn from_memory<T: AsRef<[u8]> + Send + Sync + 'static>(bytes: Arc<T>) -> Backing {
        Backing::Memory(bytes)
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(map) => map,
            Backing::Memory(bytes) => (**bytes).as_ref(),
        }
    }

    /// The memory map, when the bytes come from a mapped file.
    pub fn mmap(&self) -> Option<&Arc<Mmap>> {
        match self {
            Backing::Mmap(map) => Some(map),
            Backing::Memory(_) => None,
        }
    }
}

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::Mmap(map) => write!(f, "Backing::Mmap({} bytes)", map.len()),
            Backing::Memory(bytes) => {
                write!(f, "Backing::Memory({} bytes)", (**bytes).as_ref().len())
            }
        }
    }
}

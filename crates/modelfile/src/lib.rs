//! vtpu-modelfile: readers for model files, with capped sizes and typed errors.
//!
//! # What it reads
//!
//! - [`gguf`]: GGUF v2/v3 (little-endian) over a read-only memory map or an in-memory
//!   buffer. Every metadata value type (integers, floats, bool, string, arrays, nested
//!   arrays) is parsed into [`gguf::MetaValue`]; arrays of strings live in one buffer
//!   ([`gguf::StrArray`]). Tensor infos carry name, dims (as stored: `ne[0]` = row
//!   length first), [`gguf::GgmlType`] (one table of ids, names and block layouts),
//!   byte size, and the absolute file offset, so the loader can map tensors zero-copy
//!   from [`gguf::GgufFile::mmap`]. [`gguf::GgufWriter`] writes v3 files for tests;
//!   [`gguf::GgufFile::summary`] is what `vtpu inspect` prints.
//! - [`hf`]: a Hugging Face model directory: `config.json` ([`hf::HfConfig`], the
//!   llama / qwen2 / qwen3 fields), weights in `model.safetensors` or the shards named by
//!   `model.safetensors.index.json` (F32 / F16 / BF16, each with its byte range in its
//!   mapped shard), `tokenizer.json` (path only), `tokenizer_config.json` (chat template,
//!   special tokens) and `generation_config.json`.
//! - [`fuzz`]: the mutational fuzzing harness behind `examples/fuzz_gguf.rs`,
//!   `examples/fuzz_hf.rs` and the short fuzz tests (not a loading API).
//!
//! # Caps
//!
//! Every count or length read from a file is checked against a cap and against the bytes
//! that remain (count x the element's minimum encoded size) before anything is
//! allocated for it, so a hostile file costs at most a small multiple of its own size.
//!
//! | what | cap |
//! |---|---|
//! | GGUF tensors / metadata entries | 2^20 each ([`gguf::MAX_TENSORS`], [`gguf::MAX_KV`]) |
//! | GGUF key / tensor name / string value | 65,535 B / 1 KiB / 64 MiB |
//! | GGUF array elements | 2^25 per array and 2^25 per file ([`gguf::MAX_TOTAL_ARRAY_ELEMS`]) |
//! | GGUF array nesting / tensor dims | 8 levels / 1..=4 non-zero dims, elements <= i64::MAX |
//! | GGUF `general.alignment` | a power of two, 1..=2^30 (default 32) |
//! | `config.json` / `generation_config.json` | 16 MiB / 1 MiB |
//! | `tokenizer_config.json` / index JSON | 64 MiB each |
//! | safetensors header | 100 MB (the `safetensors` crate's limit) |
//! | config sizes (`hidden_size`, ...) | 1..=2^31 |
//!
//! # Error policy
//!
//! Nothing a file can contain makes these readers panic or allocate without bound
//! (fuzzed for 10^6 inputs per reader with overflow checks on). Errors are values:
//! [`gguf::GgufError`] and [`hf::HfError`] carry the file (when read from a path) and a
//! kind that names the field, key, tensor or shard, and for GGUF the byte offset. A key
//! of the wrong type is an error naming the key, the expected and the actual type; an
//! absent key is `Ok(None)` from `get_*` and `MissingKey` from `require_*`. Files are
//! validated whole at open time (tensor ranges inside the file, aligned, not
//! overlapping; safetensors offsets inside the file before the `safetensors` crate sums
//! them), so later accessors need no checks.

pub mod backing;
pub mod fuzz;
pub mod gguf;
pub mod hf;

pub use backing::Backing;

//! GGUF fuzzing: seeds from the writer (every metadata type, several tensor types, odd
//! alignments), one derived from the real model's metadata, and optionally the real
//! file's header region; field-aware and byte-level mutations; and, for inputs that
//! parse, a write-read round trip that must reproduce them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{kind_name, mutate_bytes, FuzzReport, Rng};
use crate::gguf::{GgmlType, GgufFile, GgufWriter, MetaArray, MetaValue, StrArray};

/// What a field holds, to choose boundary values for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Version,
    Count,
    Length,
    ValueType,
    GgmlType,
    NDims,
    Dim,
    Offset,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    at: usize,
    wide: bool,
    role: Role,
}

/// A valid (or header-only) GGUF and the fields it is known to contain.
#[derive(Debug, Clone)]
pub struct GgufSeed {
    pub name: String,
    pub bytes: Vec<u8>,
    /// How often to pick this seed relative to others.
    pub weight: u32,
    fields: Vec<Field>,
}

/// Fields of a parsed file, found from the offsets the parser records.
fn fields_of(bytes: &[u8], f: &GgufFile) -> Vec<Field> {
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
            .unwrap_or(0) as usize
    };
    let mut out = vec![
        Field {
            at: 4,
            wide: false,
            role: Role::Version,
        },
        Field {
            at: 8,
            wide: true,
            role: Role::Count,
        },
        Field {
            at: 16,
            wide: true,
            role: Role::Count,
        },
    ];
    for (key, value) in f.metadata() {
        let Some(at) = f.meta_offset(key) else {
            continue;
        };
        let at = at as usize;
        out.push(Field {
            at,
            wide: true,
            role: Role::Length,
        });
        let type_at = at + 8 + key.len();
        out.push(Field {
            at: type_at,
            wide: false,
            role: Role::ValueType,
        });
        let value_at = type_at + 4;
        match value {
            MetaValue::String(_) => out.push(Field {
                at: value_at,
                wide: true,
                role: Role::Length,
            }),
            MetaValue::Array(a) => {
                out.push(Field {
                    at: value_at,
                    wide: false,
                    role: Role::ValueType,
                });
                out.push(Field {
                    at: value_at + 4,
                    wide: true,
                    role: Role::Count,
                });
                match a {
                    MetaArray::String(s) => {
                        // The first few element lengths.
                        let mut p = value_at + 12;
                        for _ in 0..s.len().min(4) {
                            out.push(Field {
                                at: p,
                                wide: true,
                                role: Role::Length,
                            });
                            p += 8 + u64_at(p);
                        }
                    }
                    MetaArray::Array(inner) if !inner.is_empty() => {
                        out.push(Field {
                            at: value_at + 12,
                            wide: false,
                            role: Role::ValueType,
                        });
                        out.push(Field {
                            at: value_at + 16,
                            wide: true,
                            role: Role::Count,
                        });
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for t in f.tensors() {
        let at = t.info_offset() as usize;
        out.push(Field {
            at,
            wide: true,
            role: Role::Length,
        });
        let nd_at = at + 8 + t.name().len();
        out.push(Field {
            at: nd_at,
            wide: false,
            role: Role::NDims,
        });
        for i in 0..t.dims().len() {
            out.push(Field {
                at: nd_at + 4 + 8 * i,
                wide: true,
                role: Role::Dim,
            });
        }
        let ty_at = nd_at + 4 + 8 * t.dims().len();
        out.push(Field {
            at: ty_at,
            wide: false,
            role: Role::GgmlType,
        });
        out.push(Field {
            at: ty_at + 4,
            wide: true,
            role: Role::Offset,
        });
    }
    out
}

fn seed_from_writer(name: &str, w: &GgufWriter, weight: u32) -> Option<GgufSeed> {
    let bytes = w.to_bytes().ok()?;
    let f = GgufFile::parse(Arc::new(bytes.clone())).ok()?;
    Some(GgufSeed {
        name: name.to_string(),
        fields: fields_of(&bytes, &f),
        bytes,
        weight,
    })
}

fn filler(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn tensor_len(dims: &[u64], t: GgmlType) -> usize {
    let rows: u64 = dims[1..].iter().product();
    t.row_bytes(dims[0]).map_or(0, |r| (r * rows) as usize)
}

/// Seeds: synthetic files from the writer and, when `real` names a readable GGUF, a
/// seed with its metadata (arrays cut to 64 entries) and tensor table (tiny dims), plus
/// its raw header region (picked rarely: it is ~2 MB).
pub fn gguf_seeds(real: Option<&Path>) -> Vec<GgufSeed> {
    let mut seeds = Vec::new();

    let mut all = GgufWriter::new();
    all.add_meta("general.architecture", MetaValue::String("llama".into()))
        .add_meta("a.u8", MetaValue::U8(1))
        .add_meta("a.i8", MetaValue::I8(-1))
        .add_meta("a.u16", MetaValue::U16(2))
        .add_meta("a.i16", MetaValue::I16(-2))
        .add_meta("a.u32", MetaValue::U32(3))
        .add_meta("a.i32", MetaValue::I32(-3))
        .add_meta("a.f32", MetaValue::F32(0.5))
        .add_meta("a.bool", MetaValue::Bool(true))
        .add_meta("a.str", MetaValue::String("text".into()))
        .add_meta("a.u64", MetaValue::U64(4))
        .add_meta("a.i64", MetaValue::I64(-4))
        .add_meta("a.f64", MetaValue::F64(0.25))
        .add_meta(
            "a.toks",
            MetaValue::Array(MetaArray::String(StrArray::from_iter([
                "<s>", "a", "Ġb", "",
            ]))),
        )
        .add_meta(
            "a.scores",
            MetaValue::Array(MetaArray::F32(vec![0.0, -1.0, 2.0])),
        )
        .add_meta("a.types", MetaValue::Array(MetaArray::I32(vec![1, 2, 3])))
        .add_meta(
            "a.flags",
            MetaValue::Array(MetaArray::Bool(vec![true, false])),
        )
        .add_meta(
            "a.bytes",
            MetaValue::Array(MetaArray::U8(vec![1, 2, 3, 4, 5])),
        )
        .add_meta(
            "a.nested",
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::U64(vec![1, 2]),
                MetaArray::String(StrArray::from_iter(["x"])),
            ])),
        );
    for (i, (name, dims, t)) in [
        ("token_embd.weight", &[64u64, 4][..], GgmlType::Q8_0),
        ("norm.weight", &[16][..], GgmlType::F32),
        ("q.weight", &[256, 2][..], GgmlType::Q4_K),
        ("k.weight", &[32, 2, 2][..], GgmlType::Q4_1),
        ("v.weight", &[4, 1, 1, 2][..], GgmlType::BF16),
        ("o.weight", &[8, 2][..], GgmlType::F16),
    ]
    .into_iter()
    .enumerate()
    {
        all.add_tensor(name, dims, t, filler(tensor_len(dims, t), i as u8));
    }
    seeds.extend(seed_from_writer("all-types", &all, 8));

    let mut aligned = GgufWriter::new();
    aligned
        .set_alignment(64)
        .add_meta("k", MetaValue::String("v".into()))
        .add_tensor("a", &[3], GgmlType::F32, filler(12, 1))
        .add_tensor("b", &[32, 3], GgmlType::Q8_0, filler(102, 2));
    seeds.extend(seed_from_writer("align-64", &aligned, 4));

    let mut quants = GgufWriter::new();
    for (i, &t) in GgmlType::ALL.iter().enumerate() {
        let dims = [t.block_elems(), 2];
        quants.add_tensor(
            format!("t{i}"),
            &dims,
            t,
            filler(tensor_len(&dims, t), i as u8),
        );
    }
    seeds.extend(seed_from_writer("every-ggml-type", &quants, 4));

    seeds.extend(seed_from_writer("empty", &GgufWriter::new(), 1));

    if let Some(real) = real.and_then(|p| GgufFile::open(p).ok()) {
        let mut w = GgufWriter::new();
        for (k, v) in real.metadata() {
            let v = match v {
                MetaValue::Array(MetaArray::String(s)) => {
                    MetaValue::Array(MetaArray::String(s.iter().take(64).collect()))
                }
                MetaValue::Array(MetaArray::F32(a)) => {
                    MetaValue::Array(MetaArray::F32(a.iter().take(64).copied().collect()))
                }
                MetaValue::Array(MetaArray::I32(a)) => {
                    MetaValue::Array(MetaArray::I32(a.iter().take(64).copied().collect()))
                }
                other => other.clone(),
            };
            w.add_meta(k, v);
        }
        for (i, t) in real.tensors().iter().enumerate() {
            let ty = t.ggml_type();
            let dims = [ty.block_elems(), 1];
            w.add_tensor(t.name(), &dims, ty, filler(tensor_len(&dims, ty), i as u8));
        }
        seeds.extend(seed_from_writer("real-metadata", &w, 6));

        let header = &real.bytes()[..real.data_offset() as usize];
        seeds.push(GgufSeed {
            name: "real-header".into(),
            bytes: header.to_vec(),
            fields: fields_of(header, &real),
            weight: 0, // picked explicitly, 1 in 500
        });
    }
    seeds
}

fn boundary(rng: &mut Rng, role: Role, current: u64, len: u64) -> u64 {
    let common = [
        0,
        1,
        current.wrapping_add(1),
        current.wrapping_sub(1),
        current.wrapping_mul(2),
        u64::MAX,
    ];
    let special: &[u64] = match role {
        Role::Version => &[1, 2, 3, 4, 0x0300_0000, 0x0200_0000],
        Role::Count => &[
            2,
            255,
            1 << 20,
            (1 << 20) + 1,
            1 << 25,
            (1 << 25) + 1,
            u32::MAX as u64,
            i64::MAX as u64,
        ],
        Role::Length => &[
            63,
            64,
            65,
            65535,
            65536,
            1024,
            1025,
            64 << 20,
            (64 << 20) + 1,
            len,
            u64::MAX - 7,
        ],
        Role::ValueType => &[7, 8, 9, 10, 12, 13, 255, u32::MAX as u64],
        Role::GgmlType => &[0, 1, 2, 4, 8, 12, 14, 30, 31, 39, 42, 43, u32::MAX as u64],
        Role::NDims => &[0, 1, 2, 3, 4, 5, u32::MAX as u64],
        Role::Dim => &[31, 32, 33, 256, 1 << 31, 1 << 32, 1 << 62, i64::MAX as u64],
        Role::Offset => &[32, 8, 64, len, len.wrapping_sub(32), u64::MAX - 31, 1 << 40],
    };
    if rng.chance(1, 8) {
        return rng.next_u64();
    }
    if rng.chance(1, 3) {
        *rng.pick(&common)
    } else {
        *rng.pick(special)
    }
}

fn mutate_field(rng: &mut Rng, b: &mut [u8], fields: &[Field]) {
    if fields.is_empty() {
        return;
    }
    let f = *rng.pick(fields);
    let width = if f.wide { 8 } else { 4 };
    let Some(slot) = b.get_mut(f.at..f.at + width) else {
        return;
    };
    let mut cur = [0u8; 8];
    cur[..width].copy_from_slice(slot);
    let v = boundary(rng, f.role, u64::from_le_bytes(cur), b.len() as u64);
    let Some(slot) = b.get_mut(f.at..f.at + width) else {
        return;
    };
    slot.copy_from_slice(&v.to_le_bytes()[..width]);
}

/// Drive the API on a parsed file the way a loader would, and check a write-read round
/// trip reproduces it. Any failure here panics: it is a reader bug, not an input error.
fn exercise(f: &GgufFile) {
    let s = f.summary();
    let _ = s.to_string();
    for (key, _) in f.metadata() {
        let _ = f.get_str(key);
        let _ = f.get_u64(key);
        let _ = f.get_u32(key);
        let _ = f.get_i64(key);
        let _ = f.get_f32(key);
        let _ = f.get_bool(key);
        let _ = f.get_str_array(key).map(|a| a.map(|a| a.iter().count()));
        let _ = f.get_f32_array(key);
        let _ = f.get_i32_array(key);
    }
    let _ = f.architecture();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.add_meta(k, v.clone());
    }
    for t in f.tensors() {
        let data = f.tensor_bytes(t);
        assert_eq!(
            data.len() as u64,
            t.size_bytes(),
            "tensor {} bytes",
            t.name()
        );
        assert!(t.file_offset() + t.size_bytes() <= f.file_len());
        assert_eq!(t.rows_cols()[0] * t.rows_cols()[1], t.n_elements());
        w.add_tensor(t.name(), t.dims(), t.ggml_type(), data.to_vec());
    }
    let bytes = w.to_bytes().expect("a parsed file can be written back");
    let g = GgufFile::parse(Arc::new(bytes)).expect("a written file parses");
    // Debug text compares NaN payload-insensitively, which is what we want here.
    let meta = |f: &GgufFile| format!("{:?}", f.metadata().collect::<Vec<_>>());
    assert_eq!(meta(f), meta(&g), "metadata changed in a round trip");
    assert_eq!(f.tensors().len(), g.tensors().len());
    for (a, b) in f.tensors().iter().zip(g.tensors()) {
        assert_eq!(
            (a.name(), a.dims(), a.ggml_type()),
            (b.name(), b.dims(), b.ggml_type())
        );
        assert_eq!(
            f.tensor_bytes(a),
            g.tensor_bytes(b),
            "tensor {} bytes",
            a.name()
        );
    }
}

/// Run `n` mutated inputs. `progress` is called every 100,000 inputs.
pub fn fuzz_gguf(
    seeds: &[GgufSeed],
    n: u64,
    rng_seed: u64,
    mut progress: impl FnMut(&FuzzReport),
) -> FuzzReport {
    let t0 = Instant::now();
    let mut rng = Rng::new(rng_seed);
    let mut report = FuzzReport::new("gguf");
    let donors: Vec<&[u8]> = seeds.iter().map(|s| s.bytes.as_slice()).collect();
    let total_weight: u32 = seeds.iter().map(|s| s.weight).sum();
    let heavy: Vec<&GgufSeed> = seeds.iter().filter(|s| s.weight == 0).collect();
    if seeds.is_empty() {
        return report;
    }
    for i in 0..n {
        let seed = if !heavy.is_empty() && rng.chance(1, 500) {
            *rng.pick(&heavy)
        } else {
            let mut x = rng.below(total_weight.max(1) as usize) as u32;
            seeds
                .iter()
                .find(|s| {
                    if x < s.weight {
                        true
                    } else {
                        x -= s.weight;
                        false
                    }
                })
                .unwrap_or(&seeds[0])
        };
        let mut b = seed.bytes.clone();
        for _ in 0..1 + rng.below(4) {
            if rng.chance(1, 2) {
                mutate_field(&mut rng, &mut b, &seed.fields);
            } else {
                mutate_bytes(&mut rng, &mut b, &donors);
            }
        }
        let input = Arc::new(b);
        let keep = Arc::clone(&input);
        report.run(&keep, move || match GgufFile::parse(input) {
            Ok(f) => {
                exercise(&f);
                Ok(())
            }
            Err(e) => Err(kind_name(&format!("{:?}", e.kind()))),
        });
        if (i + 1) % 100_000 == 0 {
            report.elapsed = t0.elapsed();
            progress(&report);
        }
    }
    report.elapsed = t0.elapsed();
    report
}

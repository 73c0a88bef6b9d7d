//! Shape rules, causal visibility and flop counts of the transformer-layer ops, shared
//! by both executors so that they trap on exactly the same inputs and count exactly
//! the same virtual flops (an FMA counts 2; exp, silu and rsqrt count one per element):
//!
//! | op | flops |
//! |---|---|
//! | DTMM, DTMMN | `2 m n k` |
//! | DTRMSNORM | 4 per element (square-accumulate 2, the two products 2) |
//! | DTROPE, DTROPEH | 3 per element (one product and one fma per output) |
//! | DTSOFTMAX | 4 per visible element (max, exp, sum, divide) |
//! | DTSWIGLU | 2 per element (silu, product) |
//! | DTADDR | 1 per element |
//! | DTATTN | `4 Hd` per visible (query row, key) pair (score and value FMAs) |

use crate::error::TrapKind;
use crate::state::{Tile, TileSlice};
use vtpu_isa::{Opcode, MAX_TILE_DIM, MAX_TILE_ELEMS};
use vtpu_kernels::attention::KvRows;
use vtpu_phext::{DType, Page};

pub const RMSNORM_FLOPS: u64 = 4;
pub const ROPE_FLOPS: u64 = 3;
pub const SOFTMAX_FLOPS: u64 = 4;
pub const SWIGLU_FLOPS: u64 = 2;

fn shape(msg: String) -> TrapKind {
    TrapKind::Shape(msg)
}

/// `2 m n k` (an FMA counts 2).
pub fn mm_flops(m: u32, n: u32, k: u32) -> u64 {
    2 * m as u64 * n as u64 * k as u64
}

/// DTMM: `ta` is m x k, `tb` is n x k.
pub fn check_mm(a: u8, b: u8, (m, k): (u32, u32), (n, kb): (u32, u32)) -> Result<(), TrapKind> {
    if k != kb {
        return Err(shape(format!(
            "DTMM: t{a} is {m}x{k} but t{b} is {n}x{kb} (needs {k} columns)"
        )));
    }
    check_elems("DTMM", m, n)
}

/// DTMMN: `ta` is m x k, `tb` is k x n.
pub fn check_mmn(a: u8, b: u8, (m, k): (u32, u32), (kb, n): (u32, u32)) -> Result<(), TrapKind> {
    if k != kb {
        return Err(shape(format!(
            "DTMMN: t{a} is {m}x{k} but t{b} is {kb}x{n} (needs {k} rows)"
        )));
    }
    check_elems("DTMMN", m, n)
}

/// A result tile of `rows x cols` must stay within the tile element cap.
fn check_elems(op: &str, rows: u32, cols: u32) -> Result<(), TrapKind> {
    let n = rows as u64 * cols as u64;
    if n > MAX_TILE_ELEMS {
        return Err(shape(format!(
            "{op}: a {rows}x{cols} result exceeds the tile limit of {MAX_TILE_ELEMS} elements"
        )));
    }
    Ok(())
}

/// DTRMSNORM: `ta` (n elements) is normalised in groups of `group` = len(tb) elements.
/// Returns the number of groups.
pub fn check_groups(op: &str, a: u8, b: u8, n: usize, group: usize) -> Result<usize, TrapKind> {
    if group == 0 || !n.is_multiple_of(group) {
        return Err(shape(format!(
            "{op}: t{a} has {n} elements, not a whole number of groups of len(t{b}) = {group}"
        )));
    }
    Ok(n / group)
}

/// Where DTROPE reads its table: rows `first .. first + rows(ta)`.
pub struct RopePlan {
    pub first: usize,
}

/// DTROPE / DTROPEH: `ta` is rows x cols with cols a multiple of Hd = cols(tb) (even);
/// row r rotates for position `pos + r`, which must be a row of the table `tb`.
pub fn check_rope(
    code: Opcode,
    a: u8,
    b: u8,
    (rows, cols): (u32, u32),
    (trows, hd): (u32, u32),
    pos: i64,
) -> Result<RopePlan, TrapKind> {
    let name = if code == Opcode::DTRope {
        "DTROPE"
    } else {
        "DTROPEH"
    };
    if !hd.is_multiple_of(2) || !cols.is_multiple_of(hd) {
        return Err(shape(format!(
            "{name}: the rope table t{b} is {trows}x{hd}: Hd must be even and divide the {cols} columns of t{a}"
        )));
    }
    let last = pos.checked_add(rows as i64 - 1);
    match last {
        Some(last) if pos >= 0 && last < trows as i64 => Ok(RopePlan {
            first: pos as usize,
        }),
        _ => Err(shape(format!(
            "{name}: positions {pos}..{} of t{a} are outside the rope table's {trows} positions",
            pos.saturating_add(rows as i64)
        ))),
    }
}

/// DTSOFTMAX: the row-to-position divisor must be at least 1.
pub fn check_softmax(per: i64) -> Result<(), TrapKind> {
    if per < 1 {
        return Err(shape(format!(
            "DTSOFTMAX: rows per position must be >= 1, got {per}"
        )));
    }
    Ok(())
}

/// Columns row `r` of a DTSOFTMAX sees: `0..=last + r / per`, clamped to `0..=cols`.
pub fn visible(last: i64, per: i64, r: usize, cols: usize) -> usize {
    let v = last
        .saturating_add((r as i64) / per.max(1))
        .saturating_add(1);
    v.clamp(0, cols as i64) as usize
}

/// Two operands of the same shape.
pub fn check_same(op: &str, a: u8, b: u8, sa: (u32, u32), sb: (u32, u32)) -> Result<(), TrapKind> {
    if sa != sb {
        return Err(shape(format!(
            "{op}: t{a} is {}x{} but t{b} is {}x{}",
            sa.0, sa.1, sb.0, sb.1
        )));
    }
    Ok(())
}

/// DTADDR: `tb` holds exactly cols(ta) elements.
pub fn check_addr(a: u8, b: u8, cols: u32, blen: usize) -> Result<(), TrapKind> {
    if blen != cols as usize {
        return Err(shape(format!(
            "DTADDR: t{b} has {blen} elements but the rows of t{a} have {cols}"
        )));
    }
    Ok(())
}

/// DTRESHAPE: `elems` elements read as rows of `cols`.
pub fn check_reshape(a: u8, elems: usize, cols: i64) -> Result<(u32, u32), TrapKind> {
    let ok = cols >= 1 && cols <= MAX_TILE_DIM as i64 && elems.is_multiple_of(cols as usize);
    let rows = if ok { elems / cols as usize } else { 0 };
    if !ok || rows == 0 || rows > MAX_TILE_DIM as usize {
        return Err(shape(format!(
            "DTRESHAPE: t{a} has {elems} elements, not a whole number of rows of {cols} (each dimension 1..={MAX_TILE_DIM})"
        )));
    }
    Ok((rows as u32, cols as u32))
}

/// SGATHERV / SWINDOW: rows from a register, cols from the immediate.
pub fn check_gatherv(rows: i64, cols: i64) -> Result<(u32, u32), TrapKind> {
    let dim = 1..=MAX_TILE_DIM as i64;
    if !dim.contains(&rows) || !dim.contains(&cols) || rows * cols > MAX_TILE_ELEMS as i64 {
        return Err(shape(format!(
            "a {rows}x{cols} tile (each dimension 1..={MAX_TILE_DIM}, at most {MAX_TILE_ELEMS} elements)"
        )));
    }
    Ok((rows as u32, cols as u32))
}

/// SWINDOW: the page must hold f32 or f16 elements (a KV cache of either `--kv-type`);
/// the window takes the page's dtype. Returns the bytes per element.
pub fn check_window_page(page: &Page) -> Result<usize, TrapKind> {
    match page.dtype() {
        DType::F32 => Ok(4),
        DType::F16 => Ok(2),
        d => Err(TrapKind::BadDType(format!(
            "SWINDOW opens f32 or f16 pages, this one holds {}",
            d.name()
        ))),
    }
}

/// SSCATTR: the f32 elements `data` into the writable f32 or f16 page from element
/// `offset`. An f16 page receives each value rounded to the nearest f16, ties to even
/// (`half::f16::from_f32`: too large becomes +-inf, NaN stays NaN); this is how an f16
/// KV cache is filled. Shared by both executors so they write the same bits. Returns
/// the bytes written.
pub fn scatter(page: &Page, offset: i64, data: &[f32]) -> Result<u64, TrapKind> {
    if page.is_read_only() {
        return Err(TrapKind::ReadOnly);
    }
    let width = match page.dtype() {
        DType::F32 => 4,
        DType::F16 => 2,
        d => {
            return Err(TrapKind::BadDType(format!(
                "scatter into a {} page (f32 or f16 only)",
                d.name()
            )))
        }
    };
    let off = crate::common::check_range(offset, data.len(), page.elems())?;
    let page_err = |e: vtpu_phext::PageError| TrapKind::Shape(e.to_string());
    if width == 4 {
        page.write_f32(off, data).map_err(page_err)?;
    } else {
        let written = page
            .write(|bytes| {
                let dst = bytes.get_mut(off * 2..(off + data.len()) * 2)?;
                // Page buffers are aligned, so the f16 view is too; the bulk conversion
                // (F16C four at a time where the CPU has it) rounds as `from_f32` does,
                // at a fraction of its per-element cost (an f16 KV cache takes every
                // prompt's keys and values through here).
                match bytemuck::try_cast_slice_mut::<u8, half::f16>(dst) {
                    Ok(h) if cfg!(target_endian = "little") => {
                        use half::slice::HalfFloatSliceExt;
                        h.convert_from_f32_slice(data);
                    }
                    _ => {
                        for (d, &v) in dst.chunks_exact_mut(2).zip(data) {
                            d.copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                        }
                    }
                }
                Some(())
            })
            .map_err(page_err)?;
        // In range by `check_range` (an f16 page holds 2 bytes per element).
        written.ok_or(TrapKind::OutOfBounds {
            offset,
            end: offset.saturating_add(data.len() as i64),
            page_elems: page.elems(),
        })?;
    }
    Ok((width * data.len()) as u64)
}

/// The trap text for a window handed to an op that does not read windows.
pub fn window_use(i: u8) -> String {
    format!(
        "t{i} is a window onto a page (SWINDOW); only the second operand of DTMM and DTMMN and the keys and values of DTATTN read windows"
    )
}

/// SLOAD: element `index` of an i32 page, sign-extended.
pub fn load_i32(page: &Page, index: i64) -> Result<i64, TrapKind> {
    if page.dtype() != DType::I32 {
        return Err(TrapKind::BadDType(format!(
            "SLOAD reads i32 pages, this one holds {}",
            page.dtype().name()
        )));
    }
    let i = crate::common::check_range(index, 1, page.elems())?;
    let v = page.read(|bytes| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    });
    v.map(i64::from).ok_or(TrapKind::OutOfBounds {
        offset: index,
        end: index.saturating_add(1),
        page_elems: page.elems(),
    })
}

/// DTRESHAPE of a quantized view: its rows must stay whole blocks.
pub fn check_reshape_view(a: u8, dtype: DType, cols: u32) -> Result<(), TrapKind> {
    if dtype.is_repacked() {
        return Err(shape(format!(
            "DTRESHAPE: t{a} views a {} page, whose rows are interleaved in groups of 8: it keeps its shape",
            dtype.name()
        )));
    }
    let block = dtype.block_elems();
    if cols as usize % block != 0 {
        return Err(shape(format!(
            "DTRESHAPE: t{a} views {} blocks of {block} elements; rows of {cols} would split them",
            dtype.name()
        )));
    }
    Ok(())
}

/// DTEMBED: the output shape `[n, cols(tb)]` for `n` ids and a `vocab x cols` table.
pub fn check_embed(a: u8, n: usize, (_, cols): (u32, u32)) -> Result<(u32, u32), TrapKind> {
    if n == 0 || n > MAX_TILE_DIM as usize {
        return Err(shape(format!(
            "DTEMBED: t{a} holds {n} ids (1..={MAX_TILE_DIM})"
        )));
    }
    check_elems("DTEMBED", n as u32, cols)?;
    Ok((n as u32, cols))
}

/// DTEMBED: the row named by id `i` of `ta`: an integral value in `0..vocab`.
pub fn embed_row(a: u8, i: usize, id: f32, vocab: u32) -> Result<usize, TrapKind> {
    if id.fract() != 0.0 || !(0.0..vocab as f32).contains(&id) {
        return Err(shape(format!(
            "DTEMBED: id {i} of t{a} is {id}, not a row of the {vocab}-row table"
        )));
    }
    Ok(id as usize)
}

/// DTEMBED: `out[r] = table[ids[r]]` as f32, the table being any viewable slice of
/// `vocab x cols` elements (quantized rows are dequantized with the kernels' exact
/// block formula, the same at every level). Shared by both executors, so they agree
/// bit for bit.
pub fn embed(
    out: &mut [f32],
    a: u8,
    ids: &[f32],
    table: &crate::state::TileSlice<'_>,
    (vocab, cols): (u32, u32),
) -> Result<(), TrapKind> {
    use crate::state::TileSlice;
    let cols = cols as usize;
    for (i, (&id, row)) in ids.iter().zip(out.chunks_exact_mut(cols)).enumerate() {
        let r = embed_row(a, i, id, vocab)?;
        match table {
            TileSlice::F32(t) => row.copy_from_slice(&t[r * cols..(r + 1) * cols]),
            TileSlice::F16(t) => {
                for (o, x) in row.iter_mut().zip(&t[r * cols..(r + 1) * cols]) {
                    *o = x.to_f32();
                }
            }
            TileSlice::BF16(t) => {
                for (o, x) in row.iter_mut().zip(&t[r * cols..(r + 1) * cols]) {
                    *o = x.to_f32();
                }
            }
            TileSlice::Quant { dtype, bytes } => {
                let rb = dtype.bytes_for(cols).map_err(|e| shape(e.to_string()))?;
                if bytes.len() < (r + 1).saturating_mul(rb) {
                    return Err(shape(format!("DTEMBED: row {r} is outside the table")));
                }
                // Either layout (a table repacked in groups of 8 rows, as a tied output
                // matrix is, gathers the row from its group).
                crate::common::dequantize_row_of(*dtype, bytes, r, row)?;
            }
        }
    }
    Ok(())
}

/// DTATTN: the keys or values operand as rows for the attention kernel: a window
/// (under its page's read lock) or a plain tile, f32 or f16. `None` for anything else.
fn kv_rows(s: TileSlice<'_>) -> Option<KvRows<'_>> {
    match s {
        TileSlice::F32(x) => Some(KvRows::F32(x)),
        TileSlice::F16(x) => Some(KvRows::F16(x)),
        _ => None,
    }
}

fn with_kv_rows<R>(t: &Tile, f: impl FnOnce(KvRows<'_>) -> R) -> Option<R> {
    let rows = kv_rows;
    if t.is_window() {
        t.with_window(|s| rows(s).map(f)).flatten()
    } else {
        t.slice().and_then(rows).map(f)
    }
}

/// DTATTN: run `f` on the keys `tb` and values `tc` (see [`with_kv_rows`]).
pub fn with_kv<R>(tb: &Tile, tc: &Tile, f: impl FnOnce(KvRows<'_>, KvRows<'_>) -> R) -> Option<R> {
    with_kv_rows(tb, |k| with_kv_rows(tc, |v| f(k, v))).flatten()
}

/// DTATTN: the shape checks the kernel does not make (register-level messages), and
/// the flops: `4 Hd` per visible (query row, key) pair.
pub fn check_attn(
    a: u8,
    b: u8,
    c: u8,
    (rows, hd): (u32, u32),
    kshape: (u32, u32),
    vshape: (u32, u32),
    per: i64,
) -> Result<u64, TrapKind> {
    if kshape != vshape || kshape.1 != hd {
        return Err(shape(format!(
            "DTATTN: queries t{a} are {rows}x{hd}, keys t{b} {}x{}, values t{c} {}x{} (keys and values must be S x {hd})",
            kshape.0, kshape.1, vshape.0, vshape.1
        )));
    }
    if per < 1 || per > rows as i64 || rows as i64 % per != 0 {
        return Err(shape(format!(
            "DTATTN: {rows} query rows are not a whole number of tokens of {per} rows"
        )));
    }
    let (rows, per, s) = (rows as usize, per as usize, kshape.0 as usize);
    if rows / per > s {
        return Err(shape(format!(
            "DTATTN: {} query tokens but only {s} keys (the tokens end the cache)",
            rows / per
        )));
    }
    let pairs: u64 = (0..rows)
        .map(|r| vtpu_kernels::attention::visible_keys(r, rows, per, s) as u64)
        .sum();
    Ok(4 * hd as u64 * pairs)
}

/// DTATTN: a kernel refusal or a keys/values operand of the wrong kind.
pub fn attn_error(b: u8, c: u8, e: Option<vtpu_kernels::attention::AttnShapeError>) -> TrapKind {
    match e {
        Some(e) => shape(format!("DTATTN: {e}")),
        None => TrapKind::BadDType(format!(
            "DTATTN: keys t{b} and values t{c} must both be f32 or both f16 (tiles or SWINDOW windows)"
        )),
    }
}

/// DTPLACE: `ta` (`rows x cols`) placed at column `at` of a `rows x width` zero tile.
pub fn check_place(
    a: u8,
    (rows, cols): (u32, u32),
    at: i64,
    width: i64,
) -> Result<usize, TrapKind> {
    if width < 1 || width > MAX_TILE_DIM as i64 || at < 0 || at + cols as i64 > width {
        return Err(shape(format!(
            "DTPLACE: t{a} ({rows}x{cols}) at column {at} does not fit {width} columns (1..={MAX_TILE_DIM})"
        )));
    }
    check_elems("DTPLACE", rows, width as u32)?;
    Ok(at as usize)
}

/// DTPLACE: write `x` (`rows x cols`) into `out` (`rows x width`, zeroed here).
pub fn place(out: &mut [f32], x: &[f32], cols: usize, width: usize, at: usize) {
    out.fill(0.0);
    if cols == 0 {
        return;
    }
    for (o, r) in out.chunks_exact_mut(width).zip(x.chunks_exact(cols)) {
        o[at..at + cols].copy_from_slice(r);
    }
}

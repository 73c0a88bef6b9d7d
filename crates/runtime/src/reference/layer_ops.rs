//! The specification of the transformer-layer ops (DTMM, DTMMN, DTRMSNORM,
//! DTROPE/DTROPEH, DTSOFTMAX, DTSWIGLU, DTADDR, DTRESHAPE; SGATHERV, SLOAD), written
//! for obviousness with the kernels' scalar references (f64 inside, rounded once):
//!
//! - `DTMM td, ta, tb`: `td = ta x tb^T`, ta m x k f32, tb n x k f32/f16/bf16.
//! - `DTMMN td, ta, tb`: `td = ta x tb`, ta m x k f32, tb k x n f32 (or an f16 window).
//! - `DTRMSNORM td, ta, tb, eps`: ta read as groups of len(tb) consecutive elements; each
//!   group `g -> g / sqrt(mean(g^2) + eps) * tb` (tb f32).
//! - `DTROPE td, ta, tb, rc` (interleaved pairs) / `DTROPEH` (half-split pairs): tb is a
//!   rope table whose row p is `cos | sin` of position p (Hd = cols(tb) columns); row r
//!   of ta holds cols(ta) / Hd heads and is rotated for position `rc + r`.
//! - `DTSOFTMAX td, ta, rb, rc, scale`: row r of `scale * ta` sees columns
//!   `0..=rb + r / rc` (clamped), softmax over those, the rest 0 (causal attention with
//!   `rc` rows per position: query heads of one kv group are rows t*G + g).
//! - `DTSWIGLU td, ta, tb`: `silu(ta) * tb`. `DTADDR td, ta, tb`: tb added to every row.
//! - `DTRESHAPE td, ta, cols`: the same elements as rows of `cols`.
//! - `SGATHERV td, ca, rb, rc, cols`: like SGATHERS with `rc` rows from a register.
//! - `SWINDOW td, ca, rb, rc, cols`: like SGATHERV but nothing is copied: `td` is a
//!   live window onto the f32 or f16 page (the window has the page's dtype), read (under
//!   the page's lock) by the op that uses it, which must be DTMM or DTMMN (as their
//!   second operand; f16 elements are widened exactly); every other op traps.
//! - `SSCATTR` (in `reference.rs`) into an f16 page rounds each f32 to nearest even
//!   (`crate::layer_ops::scatter`).
//! - `SLOAD rd, ca, rb`: element rb of an i32 page.

use super::{f32_of, gather_tile, page_of, tk, zeros, RefSentron, R};
use crate::common::check_range;
use crate::error::TrapKind;
use crate::layer_ops as spec;
use crate::state::{Regs, Tile, TileData, TileSlice};
use vtpu_isa::{Op, Opcode};
use vtpu_kernels::{scalar as ks, scalar_matmul_nn, scalar_matmul_nn_f16, BinOp};
use vtpu_phext::PhextSpace;

fn trap<T>(r: Result<T, TrapKind>) -> R<T> {
    r.map_err(|k| (k, None))
}

/// Execute a D-pipe layer op on `r`; returns the flops it did.
pub(super) fn exec_d(r: &mut Regs, op: &Op) -> R<u64> {
    let [d, a, b, c] = op.args;
    let (tile, flops) = match op.code {
        Opcode::DTMm if r.t[b as usize].is_window() => {
            let (x, m, k) = f32_of(r, a)?;
            let tb = &r.t[b as usize];
            let n = tb.rows;
            trap(spec::check_mm(a, b, (m, k), (n, tb.cols)))?;
            let mut out = zeros(m as usize * n as usize)?;
            // An f32 or f16 window reads like weights of its dtype.
            tb.with_window(|w| {
                let w = crate::common::kernel_weights(w)?;
                ks::matmul_bt_rows(&mut out, x, w, m as usize, k as usize, 0, n as usize);
                Some(())
            })
            .flatten()
            .ok_or((TrapKind::Shape(spec::window_use(b)), None))?;
            (Tile::from_f32(m, n, out), spec::mm_flops(m, n, k))
        }
        Opcode::DTMm => {
            let (x, m, k) = f32_of(r, a)?;
            let tb = &r.t[b as usize];
            if tb.is_empty() {
                return tk(TrapKind::EmptyTile(b));
            }
            let w = match tb.slice().and_then(crate::common::kernel_weights) {
                Some(w) => w,
                None => {
                    return tk(TrapKind::BadDType(format!(
                        "t{b} holds {}, supported: f32, f16, bf16",
                        tb.dtype.name()
                    )))
                }
            };
            let n = tb.rows;
            trap(spec::check_mm(a, b, (m, k), (n, tb.cols)))?;
            let mut out = zeros(m as usize * n as usize)?;
            ks::matmul_bt_rows(&mut out, x, w, m as usize, k as usize, 0, n as usize);
            (Tile::from_f32(m, n, out), spec::mm_flops(m, n, k))
        }
        Opcode::DTMmN => {
            let (x, m, k) = f32_of(r, a)?;
            let tb = &r.t[b as usize];
            let (kb, n) = if tb.is_window() {
                (tb.rows, tb.cols)
            } else {
                f32_of(r, b).map(|(_, r, c)| (r, c))?
            };
            trap(spec::check_mmn(a, b, (m, k), (kb, n)))?;
            let mut out = zeros(m as usize * n as usize)?;
            let (mu, ku, nu) = (m as usize, k as usize, n as usize);
            if tb.is_window() {
                tb.with_window(|y| {
                    match y {
                        TileSlice::F32(y) => scalar_matmul_nn(&mut out, x, y, mu, ku, nu),
                        TileSlice::F16(y) => scalar_matmul_nn_f16(&mut out, x, y, mu, ku, nu),
                        _ => return None,
                    }
                    Some(())
                })
                .flatten()
                .ok_or((TrapKind::Shape(spec::window_use(b)), None))?;
            } else {
                scalar_matmul_nn(&mut out, x, f32_of(r, b)?.0, mu, ku, nu);
            }
            (Tile::from_f32(m, n, out), spec::mm_flops(m, n, k))
        }
        Opcode::DTAttn => {
            let (q, rows, hd) = f32_of(r, a)?;
            let (tb, tc) = (&r.t[b as usize], &r.t[c as usize]);
            let flops = trap(spec::check_attn(
                a,
                b,
                c,
                (rows, hd),
                (tb.rows, tb.cols),
                (tc.rows, tc.cols),
                op.imm_i64(),
            ))?;
            let mut out = zeros(rows as usize * hd as usize)?;
            let (n, h, s, per) = (
                rows as usize,
                hd as usize,
                tb.rows as usize,
                op.imm_i64() as usize,
            );
            let shape = vtpu_kernels::attention::AttnShape {
                rows: n,
                hd: h,
                s,
                per,
            };
            spec::with_kv(tb, tc, |k, v| {
                vtpu_kernels::attention::attention_scalar(&mut out, q, k, v, shape)
            })
            .ok_or(())
            .and_then(|r| r.map_err(|_| ()))
            .map_err(|_| {
                let e = spec::with_kv(tb, tc, |k, v| {
                    vtpu_kernels::attention::check_shapes(n * h, q.len(), &k, &v, shape).err()
                })
                .flatten();
                (spec::attn_error(b, c, e), None)
            })?;
            (Tile::from_f32(rows, hd, out), flops)
        }
        Opcode::DTRmsNorm => {
            let (x, rows, cols) = f32_of(r, a)?;
            let (w, _, _) = f32_of(r, b)?;
            let groups = trap(spec::check_groups("DTRMSNORM", a, b, x.len(), w.len()))?;
            let mut out = zeros(x.len())?;
            ks::rmsnorm(&mut out, x, w, groups, w.len(), op.imm_f32());
            let flops = spec::RMSNORM_FLOPS * x.len() as u64;
            (Tile::from_f32(rows, cols, out), flops)
        }
        Opcode::DTRope | Opcode::DTRopeH => {
            let (x, rows, cols) = f32_of(r, a)?;
            let (table, trows, hd) = f32_of(r, b)?;
            let pos = r.s[c as usize];
            let plan = trap(spec::check_rope(
                op.code,
                a,
                b,
                (rows, cols),
                (trows, hd),
                pos,
            ))?;
            let mut out = zeros(x.len())?;
            out.copy_from_slice(x);
            let (hd, cols) = (hd as usize, cols as usize);
            for (i, row) in out.chunks_exact_mut(cols).enumerate() {
                let t = &table[(plan.first + i) * hd..(plan.first + i + 1) * hd];
                let (cos, sin) = t.split_at(hd / 2);
                if op.code == Opcode::DTRope {
                    ks::rope_interleaved(row, cols / hd, hd, 0, cos, sin);
                } else {
                    ks::rope_halfsplit(row, cols / hd, hd, 0, cos, sin);
                }
            }
            let flops = spec::ROPE_FLOPS * out.len() as u64;
            (Tile::from_f32(rows, cols as u32, out), flops)
        }
        Opcode::DTSoftmax => {
            let (x, rows, cols) = f32_of(r, a)?;
            let (last, per) = (r.s[b as usize], r.s[c as usize]);
            trap(spec::check_softmax(per))?;
            let mut out = zeros(x.len())?;
            ks::scale(&mut out, x, op.imm_f32());
            let mut seen_total = 0u64;
            for (i, row) in out.chunks_exact_mut((cols as usize).max(1)).enumerate() {
                let vis = spec::visible(last, per, i, cols as usize);
                seen_total += vis as u64;
                let (seen, hidden) = row.split_at_mut(vis);
                ks::softmax_rows(seen, 1, vis);
                hidden.fill(0.0);
            }
            let flops = spec::SOFTMAX_FLOPS * seen_total;
            (Tile::from_f32(rows, cols, out), flops)
        }
        Opcode::DTSwiglu => {
            let (g, rows, cols) = f32_of(r, a)?;
            let (u, rb, cb) = f32_of(r, b)?;
            trap(spec::check_same("DTSWIGLU", a, b, (rows, cols), (rb, cb)))?;
            let mut out = zeros(g.len())?;
            ks::swiglu(&mut out, g, u);
            let flops = spec::SWIGLU_FLOPS * out.len() as u64;
            (Tile::from_f32(rows, cols, out), flops)
        }
        Opcode::DTPlace => {
            let (x, rows, cols) = f32_of(r, a)?;
            let width = op.imm_i64();
            let at = trap(spec::check_place(a, (rows, cols), r.s[b as usize], width))?;
            let mut out = zeros(rows as usize * width as usize)?;
            spec::place(&mut out, x, cols as usize, width as usize, at);
            (Tile::from_f32(rows, width as u32, out), 0)
        }
        Opcode::DTAddR => {
            let (x, rows, cols) = f32_of(r, a)?;
            let (bias, _, _) = f32_of(r, b)?;
            trap(spec::check_addr(a, b, cols, bias.len()))?;
            let mut out = zeros(x.len())?;
            let cu = cols as usize;
            for (o, xr) in out.chunks_exact_mut(cu).zip(x.chunks_exact(cu)) {
                ks::binary(BinOp::Add, o, xr, bias);
            }
            let flops = out.len() as u64;
            (Tile::from_f32(rows, cols, out), flops)
        }
        Opcode::DTReshape => {
            let t = &r.t[a as usize];
            if t.is_empty() {
                return tk(TrapKind::EmptyTile(a));
            }
            let (rows, cols) = trap(spec::check_reshape(a, t.elems(), op.imm_i64()))?;
            if t.dtype.is_quantized() && !t.is_window() {
                trap(spec::check_reshape_view(a, t.dtype, cols))?;
            }
            let mut t = t.clone();
            t.rows = rows;
            t.cols = cols;
            (t, 0)
        }
        Opcode::DTEmbed => {
            let (ids, _, _) = f32_of(r, a)?;
            let t = &r.t[b as usize];
            if t.is_empty() {
                return tk(TrapKind::EmptyTile(b));
            }
            let (vocab, cols) = (t.rows, t.cols);
            let (rows, cols) = trap(spec::check_embed(a, ids.len(), (vocab, cols)))?;
            let table = t.slice().ok_or((
                TrapKind::BadDType(format!("DTEMBED: t{b} holds {}", t.dtype.name())),
                None,
            ))?;
            let mut out = zeros(rows as usize * cols as usize)?;
            trap(spec::embed(&mut out, a, ids, &table, (vocab, cols)))?;
            (Tile::from_f32(rows, cols, out), 0)
        }
        _ => return Ok(0),
    };
    r.t[d as usize] = tile;
    Ok(flops)
}

/// Execute an S-pipe layer op (SGATHERV, SLOAD) on `r`.
pub(super) fn exec_s(r: &mut Regs, op: &Op, s: &mut RefSentron, space: &PhextSpace) -> R<()> {
    let [d, a, b, c] = op.args;
    let coord = r.c[a as usize];
    match op.code {
        Opcode::SGatherV => {
            let (rows, cols) =
                spec::check_gatherv(r.s[c as usize], op.imm_i64()).map_err(|k| (k, Some(coord)))?;
            let page = page_of(s, space, coord)?;
            let n = rows as usize * cols as usize;
            let off =
                check_range(r.s[b as usize], n, page.elems()).map_err(|k| (k, Some(coord)))?;
            r.t[d as usize] = gather_tile(s, &page, coord, off, rows, cols)?;
        }
        Opcode::SWindow => {
            let (rows, cols) =
                spec::check_gatherv(r.s[c as usize], op.imm_i64()).map_err(|k| (k, Some(coord)))?;
            let page = page_of(s, space, coord)?;
            let n = rows as usize * cols as usize;
            let off =
                check_range(r.s[b as usize], n, page.elems()).map_err(|k| (k, Some(coord)))?;
            let width = spec::check_window_page(&page).map_err(|k| (k, Some(coord)))?;
            s.counters.bytes_gathered += (width * n) as u64;
            r.t[d as usize] = Tile {
                rows,
                cols,
                dtype: page.dtype(),
                data: TileData::Window {
                    page,
                    byte_off: off * width,
                },
            };
        }
        Opcode::SLoad => {
            let page = page_of(s, space, coord)?;
            r.s[d as usize] =
                spec::load_i32(&page, r.s[b as usize]).map_err(|k| (k, Some(coord)))?;
        }
        _ => {}
    }
    Ok(())
}

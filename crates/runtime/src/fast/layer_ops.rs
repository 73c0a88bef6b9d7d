//! The fast executor's transformer-layer ops (DTMM, DTMMN, DTRMSNORM, DTROPE/DTROPEH,
//! DTSOFTMAX, DTSWIGLU, DTADDR, DTRESHAPE; SGATHERV, SLOAD): SIMD kernels on whole
//! tiles. Semantics are those of `reference/layer_ops.rs` (the specification); the
//! shape rules and flop counts are shared with it through `crate::layer_ops`.

use super::{at, kerr, trap_at, FastSentron, Fault};
use crate::common::{check_range, is_viewable, kernel_weights, translate, view_bytes};
use crate::error::TrapKind;
use crate::fabric::Transport;
use crate::layer_ops as spec;
use crate::state::{Tile, TileData, TileSlice};
use std::sync::Arc;
use vtpu_isa::{Op, Opcode};
use vtpu_kernels::{self as k};
use vtpu_phext::DType;

impl<T: Transport> FastSentron<'_, T> {
    /// A weight-like operand (f32, f16 or bf16 elements) with its shape.
    fn weights_of(&self, i: u8) -> Result<(k::Weights<'_>, u32, u32), Fault> {
        let t = &self.regs.t[i as usize];
        if t.is_empty() {
            return Err(TrapKind::EmptyTile(i).into());
        }
        let w = match t.slice().and_then(kernel_weights) {
            Some(w) => w,
            None => {
                return Err(TrapKind::BadDType(format!(
                    "t{i} holds {}, supported: f32, f16, bf16",
                    t.dtype.name()
                ))
                .into())
            }
        };
        Ok((w, t.rows, t.cols))
    }

    /// The D-pipe layer ops; `op.code` is one of them.
    pub(super) fn exec_d_layer(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, c] = op.args;
        match op.code {
            Opcode::DTMm => {
                let (m, kk) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let window = self.regs.t[b as usize].is_window();
                let (n, kb) = if window {
                    let t = &self.regs.t[b as usize];
                    (t.rows, t.cols)
                } else {
                    self.weights_of(b).map(|(_, r, c)| (r, c))?
                };
                spec::check_mm(a, b, (m, kk), (n, kb))?;
                let mut out = self.take_spare(m as usize * n as usize)?;
                out.fill(0.0);
                let r = {
                    let kern = self.kern;
                    let (x, _, _) = self.f32_tile(a)?;
                    let (m, n, kk) = (m as usize, n as usize, kk as usize);
                    if window {
                        // An f32 or f16 window (KV cache) is read like weights of
                        // that dtype.
                        self.regs.t[b as usize]
                            .with_window(|w| {
                                Some(kern.matmul_bt(&mut out, x, kernel_weights(w)?, m, n, kk))
                            })
                            .flatten()
                            .ok_or_else(|| TrapKind::Shape(spec::window_use(b)))?
                    } else {
                        let (w, _, _) = self.weights_of(b)?;
                        kern.matmul_bt(&mut out, x, w, m, n, kk)
                    }
                };
                r.map_err(kerr)?;
                self.counters.flops += spec::mm_flops(m, n, kk);
                self.commit_tile(d, m, n, out);
            }
            Opcode::DTMmN => {
                let (m, kk) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let window = self.regs.t[b as usize].is_window();
                let (kb, n) = if window {
                    let t = &self.regs.t[b as usize];
                    (t.rows, t.cols)
                } else {
                    self.f32_tile(b).map(|(_, r, c)| (r, c))?
                };
                spec::check_mmn(a, b, (m, kk), (kb, n))?;
                let mut out = self.take_spare(m as usize * n as usize)?;
                out.fill(0.0);
                let r = {
                    let kern = self.kern;
                    let (x, _, _) = self.f32_tile(a)?;
                    let (m, n, kk) = (m as usize, n as usize, kk as usize);
                    if window {
                        self.regs.t[b as usize]
                            .with_window(|y| match y {
                                TileSlice::F32(y) => Some(kern.matmul_nn(&mut out, x, y, m, kk, n)),
                                TileSlice::F16(y) => {
                                    Some(kern.matmul_nn_f16(&mut out, x, y, m, kk, n))
                                }
                                _ => None,
                            })
                            .flatten()
                            .ok_or_else(|| TrapKind::Shape(spec::window_use(b)))?
                    } else {
                        let (y, _, _) = self.f32_tile(b)?;
                        kern.matmul_nn(&mut out, x, y, m, kk, n)
                    }
                };
                r.map_err(kerr)?;
                self.counters.flops += spec::mm_flops(m, n, kk);
                self.commit_tile(d, m, n, out);
            }
            Opcode::DTPlace => {
                let (rows, cols) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let width = op.imm_i64();
                let at = spec::check_place(a, (rows, cols), self.regs.s[b as usize], width)?;
                let mut out = self.take_spare(rows as usize * width as usize)?;
                {
                    let (x, _, _) = self.f32_tile(a)?;
                    spec::place(&mut out, x, cols as usize, width as usize, at);
                }
                self.commit_tile(d, rows, width as u32, out);
            }
            Opcode::DTAttn => {
                let (rows, hd) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let (kshape, vshape) = {
                    let (tb, tc) = (&self.regs.t[b as usize], &self.regs.t[c as usize]);
                    ((tb.rows, tb.cols), (tc.rows, tc.cols))
                };
                let per = op.imm_i64();
                let flops = spec::check_attn(a, b, c, (rows, hd), kshape, vshape, per)?;
                let (n, h, s, per) = (rows as usize, hd as usize, kshape.0 as usize, per as usize);
                let mut out = self.take_spare(n * h)?;
                let simd = self.kern.level() != k::KernelLevel::Scalar;
                let r = {
                    let (q, _, _) = self.f32_tile(a)?;
                    let (tb, tc) = (&self.regs.t[b as usize], &self.regs.t[c as usize]);
                    spec::with_kv(tb, tc, |kr, vr| {
                        k::attention::attention(
                            &mut out,
                            q,
                            kr,
                            vr,
                            k::attention::AttnShape {
                                rows: n,
                                hd: h,
                                s,
                                per,
                            },
                            simd,
                        )
                    })
                };
                match r {
                    Some(Ok(())) => {}
                    Some(Err(e)) => return Err(spec::attn_error(b, c, Some(e)).into()),
                    None => return Err(spec::attn_error(b, c, None).into()),
                }
                self.counters.flops += flops;
                self.commit_tile(d, rows, hd, out);
            }
            Opcode::DTRmsNorm => {
                let (rows, cols, n) = self.f32_tile(a).map(|(x, r, c)| (r, c, x.len()))?;
                let group = self.f32_tile(b).map(|(w, _, _)| w.len())?;
                let groups = spec::check_groups("DTRMSNORM", a, b, n, group)?;
                let mut out = self.take_spare(n)?;
                let r = {
                    let (x, _, _) = self.f32_tile(a)?;
                    let (w, _, _) = self.f32_tile(b)?;
                    self.kern
                        .rmsnorm(&mut out, x, w, groups, group, op.imm_f32())
                };
                r.map_err(kerr)?;
                self.counters.flops += spec::RMSNORM_FLOPS * n as u64;
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DTRope | Opcode::DTRopeH => {
                let (rows, cols) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let (trows, hd) = self.f32_tile(b).map(|(_, r, c)| (r, c))?;
                let pos = self.regs.s[c as usize];
                let plan = spec::check_rope(op.code, a, b, (rows, cols), (trows, hd), pos)?;
                let mut out = std::mem::take(&mut self.spare);
                out.clear();
                out.extend_from_slice(self.f32_tile(a)?.0);
                let (table, _, _) = self.f32_tile(b)?;
                let (hd, heads, cols) = (hd as usize, cols as usize / hd as usize, cols as usize);
                for (r, row) in out.chunks_exact_mut(cols).enumerate() {
                    let t = &table[(plan.first + r) * hd..(plan.first + r + 1) * hd];
                    let (cos, sin) = t.split_at(hd / 2);
                    let res = if op.code == Opcode::DTRope {
                        self.kern.rope_interleaved_with(row, heads, hd, cos, sin)
                    } else {
                        self.kern.rope_halfsplit_with(row, heads, hd, cos, sin)
                    };
                    res.map_err(kerr)?;
                }
                self.counters.flops += spec::ROPE_FLOPS * out.len() as u64;
                self.commit_tile(d, rows, cols as u32, out);
            }
            Opcode::DTSoftmax => {
                let (rows, cols) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let (last, per) = (self.regs.s[b as usize], self.regs.s[c as usize]);
                spec::check_softmax(per)?;
                let mut out = self.take_spare(rows as usize * cols as usize)?;
                let scale = op.imm_f32();
                self.kern
                    .scale(&mut out, self.f32_tile(a)?.0, scale)
                    .map_err(kerr)?;
                let cols_u = cols as usize;
                let mut visible_total = 0u64;
                for (r, row) in out.chunks_exact_mut(cols_u.max(1)).enumerate() {
                    let vis = spec::visible(last, per, r, cols_u);
                    visible_total += vis as u64;
                    let (seen, hidden) = row.split_at_mut(vis);
                    self.kern.softmax_rows(seen, 1, vis).map_err(kerr)?;
                    hidden.fill(0.0);
                }
                self.counters.flops += spec::SOFTMAX_FLOPS * visible_total;
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DTSwiglu => {
                let (rows, cols) = self.f32_tile(a).map(|(_, r, c)| (r, c))?;
                let shape_b = self.f32_tile(b).map(|(_, r, c)| (r, c))?;
                spec::check_same("DTSWIGLU", a, b, (rows, cols), shape_b)?;
                let n = rows as usize * cols as usize;
                let mut out = self.take_spare(n)?;
                let r = {
                    let (g, _, _) = self.f32_tile(a)?;
                    let (u, _, _) = self.f32_tile(b)?;
                    self.kern.swiglu(&mut out, g, u)
                };
                r.map_err(kerr)?;
                self.counters.flops += spec::SWIGLU_FLOPS * n as u64;
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DTAddR => {
                let (rows, cols, n) = self.f32_tile(a).map(|(x, r, c)| (r, c, x.len()))?;
                let blen = self.f32_tile(b).map(|(v, _, _)| v.len())?;
                spec::check_addr(a, b, cols, blen)?;
                let mut out = self.take_spare(n)?;
                {
                    let (x, _, _) = self.f32_tile(a)?;
                    let (bias, _, _) = self.f32_tile(b)?;
                    let cols = cols as usize;
                    for (o, xr) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                        self.kern.add(o, xr, bias).map_err(kerr)?;
                    }
                }
                self.counters.flops += n as u64;
                self.commit_tile(d, rows, cols, out);
            }
            Opcode::DTReshape => {
                let src = &self.regs.t[a as usize];
                if src.is_empty() {
                    return Err(TrapKind::EmptyTile(a).into());
                }
                let (rows, cols) = spec::check_reshape(a, src.elems(), op.imm_i64())?;
                match &src.data {
                    // A view of a read-only page, a window or a collective's shared
                    // result: the same bytes under another shape (the reference
                    // executor reshapes windows too).
                    TileData::View { .. } | TileData::Window { .. } | TileData::Shared(_) => {
                        if src.dtype.is_quantized() {
                            spec::check_reshape_view(a, src.dtype, cols)?;
                        }
                        let mut t = src.clone();
                        t.rows = rows;
                        t.cols = cols;
                        self.regs.t[d as usize] = t;
                    }
                    _ if d == a => {
                        let t = &mut self.regs.t[d as usize];
                        t.rows = rows;
                        t.cols = cols;
                    }
                    _ => {
                        let mut out = std::mem::take(&mut self.spare);
                        out.clear();
                        out.extend_from_slice(self.f32_tile(a)?.0);
                        self.commit_tile(d, rows, cols, out);
                    }
                }
            }
            Opcode::DTEmbed => {
                let n = self.f32_tile(a).map(|(x, _, _)| x.len())?;
                let t = &self.regs.t[b as usize];
                if t.is_empty() {
                    return Err(TrapKind::EmptyTile(b).into());
                }
                let (vocab, cols) = (t.rows, t.cols);
                let (rows, cols) = spec::check_embed(a, n, (vocab, cols))?;
                let mut out = self.take_spare(rows as usize * cols as usize)?;
                {
                    let (ids, _, _) = self.f32_tile(a)?;
                    let t = &self.regs.t[b as usize];
                    let table = t.slice().ok_or_else(|| {
                        TrapKind::BadDType(format!("DTEMBED: t{b} holds {}", t.dtype.name()))
                    })?;
                    spec::embed(&mut out, a, ids, &table, (vocab, cols))?;
                }
                self.commit_tile(d, rows, cols, out);
            }
            _ => unreachable!("validated: {:?} is not a layer D op", op.code),
        }
        Ok(())
    }

    /// The S-pipe layer ops: SGATHERV, SWINDOW and SLOAD.
    pub(super) fn exec_s_layer(&mut self, op: &Op) -> Result<(), Fault> {
        let [d, a, b, c] = op.args;
        let coord = self.regs.c[a as usize];
        match op.code {
            Opcode::SGatherV => {
                let offset = self.regs.s[b as usize];
                let (rows, cols) = spec::check_gatherv(self.regs.s[c as usize], op.imm_i64())
                    .map_err(at(coord))?;
                let n = rows as usize * cols as usize;
                let page =
                    Arc::clone(translate(&mut self.tlb, self.space, coord).map_err(at(coord))?);
                let off = check_range(offset, n, page.elems()).map_err(at(coord))?;
                let dtype = page.dtype();
                match is_viewable(dtype) {
                    true if page.is_read_only() => {
                        let (byte_off, len) = view_bytes(dtype, off, rows, cols, page.shape()[1])
                            .map_err(at(coord))?;
                        self.counters.bytes_gathered += len as u64;
                        let old = self.regs.t[d as usize].take_buffer();
                        self.recycle(old);
                        self.regs.t[d as usize] = Tile {
                            rows,
                            cols,
                            dtype,
                            data: TileData::View { page, byte_off },
                        };
                    }
                    _ if dtype == DType::F32 => {
                        // One bulk copy under the page's read lock (the KV cache is read
                        // this way every step, so this is the attention's copy cost).
                        let mut out = std::mem::take(&mut self.spare);
                        if out.capacity() < n && !self.pool.is_empty() {
                            out = self.swap_from_pool(out, n);
                        }
                        self.reserve_checked(&mut out, n)?;
                        out.clear();
                        let copied = page.read(|bytes| {
                            let src = bytes.get(off * 4..(off + n) * 4)?;
                            let src: &[f32] = bytemuck::try_cast_slice(src).ok()?;
                            out.extend_from_slice(src);
                            Some(())
                        });
                        if copied.is_none() {
                            out.clear();
                            out.resize(n, 0.0);
                            page.read_f32(off, &mut out).map_err(|e| {
                                trap_at(TrapKind::Shape(e.to_string()), Some(coord))
                            })?;
                        }
                        self.counters.bytes_gathered += 4 * n as u64;
                        self.counters.bytes_copied += 4 * n as u64;
                        self.commit_tile(d, rows, cols, out);
                    }
                    _ => {
                        return Err(trap_at(
                            TrapKind::BadDType(format!(
                                "gather of a writable {} page (tiles copy f32 only)",
                                dtype.name()
                            )),
                            Some(coord),
                        ))
                    }
                }
            }
            Opcode::SWindow => {
                let offset = self.regs.s[b as usize];
                let (rows, cols) = spec::check_gatherv(self.regs.s[c as usize], op.imm_i64())
                    .map_err(at(coord))?;
                let n = rows as usize * cols as usize;
                let page =
                    Arc::clone(translate(&mut self.tlb, self.space, coord).map_err(at(coord))?);
                let off = check_range(offset, n, page.elems()).map_err(at(coord))?;
                let width = spec::check_window_page(&page).map_err(at(coord))?;
                self.counters.bytes_gathered += (width * n) as u64;
                let old = self.regs.t[d as usize].take_buffer();
                self.recycle(old);
                self.regs.t[d as usize] = Tile {
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
                let page = translate(&mut self.tlb, self.space, coord).map_err(at(coord))?;
                let v = spec::load_i32(page, self.regs.s[b as usize]).map_err(at(coord))?;
                self.regs.s[d as usize] = v;
            }
            _ => unreachable!("validated: {:?} is not a layer S op", op.code),
        }
        Ok(())
    }
}

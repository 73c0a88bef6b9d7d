//! Tiled GEMV over pages of a large weight matrix: y = W x, W of N x K f32.
//!
//! Pages: W is cut into bands of TR rows; each band into H column blocks; page (b, h)
//! holds the TR x (K / H) block, **tile-major**: T tiles of TR x TK one after the other
//! (tile j = columns j*TK .. (j+1)*TK of the block), so that one SGATHERS of TR*TK
//! contiguous elements is one tile, viewed zero-copy (the pages are read-only). Page
//! (b, h) sits at coordinate `1.1.1/1.1.1/1.(b+1).(h+1)`: section = row band, scroll =
//! column block.
//!
//! Each of S sentrons takes a contiguous range of bands; one loop iteration is one band:
//! its H page coordinates (SINDEXI), the prefetch of each page (inserted by the
//! compiler, one iteration ahead when pipelined), and for each of the H*T tiles a gather
//! of the W tile, a gather of the matching 1 x TK slice of x and an in-place DTMATMUL
//! into the band's 1 x TR accumulator, which is then scattered to y.
//!
//! x is laid out like W's tiles: one read-only page per column block h, with slice j of
//! that block at element offset j * TR * TK, the offset of tile j in a W page. So the T
//! tile offsets, kept in loop-invariant registers, address both W and x, and the loop
//! needs no per-tile offset arithmetic (which would need more scalar registers than a
//! sentron has once the loop is pipelined). The cost is padding: x takes TR times its
//! size in phext space, of which only the slices are ever read.
//!
//! Every W page is translated once per band (its prefetch, a miss) and then hit by its
//! T tile gathers; the x and y pages stay in the translation cache.

use super::Workload;
use crate::error::{CompileError, Result};
use crate::graph::{Graph, Value};
use vtpu_isa::{PageDecl, PageInitData};
use vtpu_phext::{Coord, DType, PageInit, PageKind, PhextSpace};

/// Sizes of the GEMV.
#[derive(Clone, Copy, Debug)]
pub struct GemvParams {
    /// Rows N and columns K of W.
    pub rows: u32,
    pub cols: u32,
    /// Tile rows TR and columns TK.
    pub tile_rows: u32,
    pub tile_cols: u32,
    /// Column blocks (pages) per band, H.
    pub col_blocks: u32,
    pub sentrons: u32,
}

impl Default for GemvParams {
    fn default() -> Self {
        // 4096 x 4096 f32 = 64 MiB; pages of 16 x 2048 (128 KiB, 16 tiles of 16 x 128).
        GemvParams {
            rows: 4096,
            cols: 4096,
            tile_rows: 16,
            tile_cols: 128,
            col_blocks: 2,
            sentrons: 2,
        }
    }
}

impl GemvParams {
    pub fn bands(&self) -> u32 {
        self.rows / self.tile_rows
    }
    pub fn tiles_per_page(&self) -> u32 {
        self.cols / self.col_blocks / self.tile_cols
    }
    pub fn weight_bytes(&self) -> u64 {
        4 * u64::from(self.rows) * u64::from(self.cols)
    }
}

/// Coordinate of W page (band b, column block h).
pub fn w_coord(b: u32, h: u32) -> Coord {
    Coord::new([1, 1, 1, 1, 1, 1, 1, b + 1, h + 1]).unwrap_or(Coord::ORIGIN)
}
/// Coordinates of x (column block h) and y.
pub fn x_coord(h: u32) -> Coord {
    Coord::new([1, 1, 2, 1, 1, 1, 1, 1, h + 1]).unwrap_or(Coord::ORIGIN)
}
pub fn y_coord() -> Coord {
    Coord::new([1, 1, 3, 1, 1, 1, 1, 1, 1]).unwrap_or(Coord::ORIGIN)
}

/// W[r][c] and x[c]: deterministic values in [-1, 1).
pub fn w_at(r: u32, c: u32) -> f32 {
    let h = (r.wrapping_mul(0x9E37_79B1) ^ c.wrapping_mul(0x85EB_CA77)).wrapping_mul(0xC2B2_AE3D);
    (h >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
}
pub fn x_at(c: u32) -> f32 {
    ((c * 7 + 3) % 29) as f32 / 14.5 - 1.0
}

/// The bytes of W page (b, h), tile-major.
fn page_bytes(p: &GemvParams, b: u32, h: u32) -> Vec<u8> {
    let (tr, tk, t) = (p.tile_rows, p.tile_cols, p.tiles_per_page());
    let mut out = Vec::with_capacity((4 * tr * tk * t) as usize);
    for j in 0..t {
        for r in 0..tr {
            for c in 0..tk {
                let col = h * t * tk + j * tk + c;
                out.extend_from_slice(&w_at(b * tr + r, col).to_le_bytes());
            }
        }
    }
    out
}

/// Build the GEMV graph and its weight pages.
// `u32::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub fn build(p: GemvParams) -> Result<Workload> {
    let bad = |what: String| CompileError::Structure {
        at: "gemv".into(),
        what,
    };
    let (tr, tk, h_blocks, s) = (p.tile_rows, p.tile_cols, p.col_blocks, p.sentrons.max(1));
    if tr == 0 || tk == 0 || h_blocks == 0 || p.rows % tr != 0 || p.cols % (h_blocks * tk) != 0 {
        return Err(bad(format!(
            "rows ({}) must be a multiple of the tile rows ({tr}) and cols ({}) of column blocks x tile cols ({h_blocks} x {tk})",
            p.rows, p.cols
        )));
    }
    let bands = p.bands();
    if bands % s != 0 || bands > 999 || h_blocks > 999 {
        return Err(bad(format!(
            "{bands} bands must split evenly over {s} sentrons and be at most 999"
        )));
    }
    let t = p.tiles_per_page();
    let mut g = Graph::new();
    let mut data = Vec::with_capacity((bands * h_blocks) as usize);
    for b in 0..bands {
        for h in 0..h_blocks {
            // Declared without data (the program text stays small); the workload runner
            // creates them with their bytes, placed by the chosen curve.
            g.page(PageDecl {
                coord: w_coord(b, h),
                dtype: DType::F32,
                shape: [t * tr, tk],
                kind: PageKind::Owned,
                read_only: true,
                init: PageInitData::Zero,
            });
            data.push(PageInit {
                coord: w_coord(b, h),
                dtype: DType::F32,
                shape: [(t * tr) as usize, tk as usize],
                bytes: Some(page_bytes(&p, b, h)),
                read_only: true,
                kind: PageKind::Owned,
            });
        }
    }
    for h in 0..h_blocks {
        let mut xs = vec![0f32; (t * tr * tk) as usize];
        for j in 0..t {
            for c in 0..tk {
                xs[(j * tr * tk + c) as usize] = x_at(h * t * tk + j * tk + c);
            }
        }
        g.page(PageDecl {
            coord: x_coord(h),
            dtype: DType::F32,
            shape: [t, tr * tk],
            kind: PageKind::Owned,
            read_only: true,
            init: PageInitData::Zero,
        });
        data.push(PageInit {
            coord: x_coord(h),
            dtype: DType::F32,
            shape: [t as usize, (tr * tk) as usize],
            bytes: Some(xs.iter().flat_map(|v| v.to_le_bytes()).collect()),
            read_only: true,
            kind: PageKind::Owned,
        });
    }
    g.page(PageDecl {
        coord: y_coord(),
        dtype: DType::F32,
        shape: [1, p.rows],
        kind: PageKind::Owned,
        read_only: false,
        init: PageInitData::Zero,
    });
    let per = bands / s;
    for id in 0..s {
        let sg = g.sentron(id)?;
        let cx: Vec<Value> = (0..h_blocks)
            .map(|h| sg.scli(x_coord(h)))
            .collect::<Result<_>>()?;
        let cy = sg.scli(y_coord())?;
        // Tile offsets inside a page: loop-invariant.
        let woff: Vec<Value> = (0..t)
            .map(|j| sg.li(i64::from(j * tr * tk)))
            .collect::<Result<_>>()?;
        let cw0 = sg.scli(w_coord(id * per, 0))?;
        let y0 = sg.li(i64::from(id * per * tr))?;
        sg.begin_loop(u64::from(per))?;
        let cw = sg.carried(cw0)?;
        let yoff = sg.carried(y0)?;
        let mut pages = vec![cw];
        for h in 1..h_blocks {
            pages.push(sg.sindexi(cw, 8, i64::from(h))?);
        }
        let mut acc = sg.tzero(1, tr)?;
        for (h, &page) in pages.iter().enumerate() {
            for &wo in &woff {
                let tw = sg.gathers(page, wo, tr, tk)?;
                let tx = sg.gathers(cx[h], wo, 1, tk)?;
                acc = sg.matmul(acc, tx, tw)?;
            }
        }
        sg.scatter(acc, cy, yoff)?;
        let cw_next = sg.sindexi(cw, 7, 1)?;
        let y_next = sg.addi(yoff, i64::from(tr))?;
        sg.set_next(cw, cw_next)?;
        sg.set_next(yoff, y_next)?;
        sg.end_loop()?;
    }
    let (rows, cols) = (p.rows, p.cols);
    Ok(Workload {
        name: "gemv".into(),
        description: format!(
            "y = W x, W {rows} x {cols} f32 ({:.1} MiB) in {} pages of {tr} x {} ({} KiB, {t} tiles of {tr} x {tk}), {s} sentrons x {per} bands",
            p.weight_bytes() as f64 / (1 << 20) as f64,
            bands * h_blocks,
            cols / h_blocks,
            4 * tr * (cols / h_blocks) / 1024,
        ),
        graph: g,
        sentrons: s as usize,
        data_pages: data,
        check: Box::new(move |space: &PhextSpace| check(space, rows, cols)),
    })
}

fn check(space: &PhextSpace, rows: u32, cols: u32) -> std::result::Result<String, String> {
    let page = space.get(y_coord()).ok_or("no y page")?;
    let mut y = vec![0f32; rows as usize];
    page.read_f32(0, &mut y).map_err(|e| e.to_string())?;
    let mut worst = 0f64;
    for (r, &got) in y.iter().enumerate() {
        let (mut want, mut mag) = (0f64, 0f64);
        for c in 0..cols {
            let term = f64::from(w_at(r as u32, c)) * f64::from(x_at(c));
            want += term;
            mag += term.abs();
        }
        // f32 accumulation over K terms: error bounded by K * eps * sum |w x|.
        let tol = f64::from(cols) * f64::from(f32::EPSILON) * mag + 1e-6;
        let err = (f64::from(got) - want).abs();
        if err > tol {
            return Err(format!(
                "y[{r}] = {got}, reference {want} (error {err:.3e} > tolerance {tol:.3e})"
            ));
        }
        worst = worst.max(err / tol);
    }
    Ok(format!("all {rows} outputs within tolerance of an f64 reference (worst error {:.1}% of its K*eps*sum|wx| bound)", 100.0 * worst))
}

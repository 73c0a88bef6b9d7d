//! Pages repacked in groups of 8 rows (`q4_0r8`, `q5_0r8`, `q8_0r8`): tiles view them
//! only in whole groups of their own rows, never reshape them, and their rows
//! dequantize as the ggml layout's do.

use vtpu_kernels::quant::r8::repack_r8;
use vtpu_kernels::{quantize_row, QuantType};
use vtpu_phext::DType;
use vtpu_runtime::common::{dequantize_row_of, view_bytes};
use vtpu_runtime::layer_ops::check_reshape_view;
use vtpu_runtime::TrapKind;

#[test]
fn repacked_pages_are_viewed_in_whole_groups_of_their_rows() {
    let cols = 64usize;
    for d in [DType::Q4_0R8, DType::Q5_0R8, DType::Q8_0R8] {
        let row = d.bytes_for(cols).unwrap();
        // Whole page, and groups 1..3 of a 24-row page.
        assert_eq!(
            view_bytes(d, 0, 16, cols as u32, cols).unwrap(),
            (0, 16 * row)
        );
        assert_eq!(
            view_bytes(d, 8 * cols, 16, cols as u32, cols).unwrap(),
            (8 * row, 16 * row)
        );
        // From row 4, 12 rows, or rows of another width: each splits a group.
        for (off, rows, c) in [(4 * cols, 8, cols), (0, 12, cols), (0, 16, cols / 2)] {
            let e = view_bytes(d, off, rows, c as u32, cols).unwrap_err();
            match e {
                TrapKind::Shape(msg) => assert!(msg.contains("whole groups"), "{d}: {msg}"),
                other => panic!("{d}: {other:?}"),
            }
        }
        // The ggml types keep their block rule only (a view from row 4 is fine).
        let base = match d {
            DType::Q4_0R8 => DType::Q4_0,
            DType::Q5_0R8 => DType::Q5_0,
            _ => DType::Q8_0,
        };
        assert_eq!(base.repacked(), Some(d));
        assert!(view_bytes(base, 4 * cols, 8, cols as u32, cols).is_ok());
        assert!(check_reshape_view(0, d, cols as u32).is_err());
        assert!(check_reshape_view(0, base, cols as u32).is_ok());
    }
}

#[test]
fn repacked_rows_dequantize_as_the_ggml_rows() {
    let (rows, cols) = (16usize, 64usize);
    for (q, d, r8) in [
        (QuantType::Q4_0, DType::Q4_0, DType::Q4_0R8),
        (QuantType::Q5_0, DType::Q5_0, DType::Q5_0R8),
        (QuantType::Q8_0, DType::Q8_0, DType::Q8_0R8),
    ] {
        let rb = q.row_bytes(cols).unwrap();
        let mut w = vec![0u8; rows * rb];
        for (i, row) in w.chunks_exact_mut(rb).enumerate() {
            let x: Vec<f32> = (0..cols)
                .map(|j| ((i * 31 + j * 7) % 23) as f32 - 11.0)
                .collect();
            quantize_row(q, &x, row).unwrap();
        }
        let mut w8 = vec![0u8; w.len()];
        repack_r8(q, &w, rows, cols, &mut w8).unwrap();
        assert_ne!(w, w8, "{d}: the layouts differ");
        for i in 0..rows {
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            dequantize_row_of(d, &w, i, &mut a).unwrap();
            dequantize_row_of(r8, &w8, i, &mut b).unwrap();
            assert_eq!(a, b, "{r8} row {i}");
        }
    }
}

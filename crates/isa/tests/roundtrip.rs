//! Round trips on random VALID programs generated from the op table:
//! binary encoding, container, and text assembly all return exactly what went in.

mod common;

use common::{arb_program, arb_word};
use proptest::prelude::*;
use vtpu_isa::{
    assemble, decode_program, decode_word, disassemble, encode_program, encode_word, validate,
    ValidateOptions,
};

proptest! {
    #![proptest_config(common::proptest_config(512))]

    #[test]
    fn word_encoding_round_trips(w in arb_word(64)) {
        let b = encode_word(&w);
        prop_assert_eq!(decode_word(&b), Ok(w));
        prop_assert_eq!(decode_word(&b).map(|w| encode_word(&w)), Ok(b));
    }

    #[test]
    fn program_round_trips((p, n) in arb_program()) {
        let opts = ValidateOptions { sentrons: Some(n), ..ValidateOptions::default() };
        if let Err(errs) = validate(&p, &opts) {
            let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            prop_assert!(false, "generated program is invalid: {:#?}", shown);
        }
        let bytes = encode_program(&p);
        let decoded = decode_program(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&p));
        let text = disassemble(&p);
        match assemble(&text) {
            Ok(q) => prop_assert_eq!(&q, &p, "text:\n{}", text),
            Err(e) => prop_assert!(false, "{}\ntext:\n{}", e, text),
        }
        // Canonical text is a fixed point.
        prop_assert_eq!(disassemble(&assemble(&text).unwrap()), text);
    }
}

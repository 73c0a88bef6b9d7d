//! The text forms of operand values, printed by the disassembler and parsed by the
//! assembler. Both sides live here, next to each other, so they cannot disagree.
//!
//! Everything is driven by the operand kind ([`Operand`]), never by the op.

use crate::word::{GROUP_ALL, KIND_OWNED, KIND_SCRATCH, REDUCE_NAMES};
use crate::{Op, Operand, RegFile, MAX_SENTRONS, MAX_TILE_DIM};
use vtpu_phext::{Coord, CoordKey, DType, DIM_NAMES, MAX_PART_LIMIT};

/// One operand value as the assembler understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    /// Goes into the next `args` byte.
    Small(u8),
    /// Goes into `imm`.
    Big(u128),
    /// A branch target by name, resolved when its stream ends.
    Label(String),
}

/// A raw operand as written: one atom, or a braced list (a group).
#[derive(Clone, Debug)]
pub(crate) enum Raw<'a> {
    Atom(&'a str),
    List(Vec<&'a str>),
}

/// What an operand of this kind looks like, for "expected ..." messages.
pub(crate) fn describe(kind: Operand) -> String {
    if let Some(file) = kind.reg_file() {
        let what = match file {
            RegFile::Scalar => "scalar",
            RegFile::Tile => "tile",
            RegFile::Coord => "coordinate",
        };
        let p = file.prefix();
        return format!("a {what} register {p}0..{p}{}", file.count() - 1);
    }
    match kind {
        Operand::Dim => format!("a dimension ({} or 0..8)", DIM_NAMES.join(", ")),
        Operand::DType => {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            format!("a dtype ({})", names.join(", "))
        }
        Operand::Kind => "a page kind (owned or scratch)".into(),
        Operand::Sentron => format!("a sentron @0..@{}", MAX_SENTRONS - 1),
        Operand::Reduce => format!("a reduction ({})", REDUCE_NAMES.join(", ")),
        Operand::I64 => "a 64-bit integer (decimal or 0x hex)".into(),
        Operand::F32 => "a finite f32 literal (or f32:0xBITS)".into(),
        Operand::Shape => format!("a shape ROWSxCOLS, each 1..={MAX_TILE_DIM}"),
        Operand::CoordImm => "a phext coordinate like 1.1.1/1.1.1/1.1.1".into(),
        Operand::Group => format!(
            "a group: all or a list like {{0,1,5}} of sentrons 0..{}",
            MAX_SENTRONS - 1
        ),
        Operand::Label => "a label name".into(),
        _ => format!("{kind:?}"),
    }
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Unsigned decimal, no sign, at most 10 digits.
pub(crate) fn parse_dec_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decimal with an optional sign, or `0x` hex (1..=16 digits, the 64-bit pattern).
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok().map(|v| v as i64);
    }
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A finite decimal float literal, or `f32:0xBITS` for any bit pattern.
pub(crate) fn parse_f32(s: &str) -> Option<f32> {
    if let Some(hex) = s
        .strip_prefix("f32:0x")
        .or_else(|| s.strip_prefix("F32:0x"))
    {
        if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u32::from_str_radix(hex, 16).ok().map(f32::from_bits);
    }
    // Only digits, signs, '.', and exponents: no "inf", "nan" or "infinity".
    if !s.bytes().any(|b| b.is_ascii_digit())
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    s.parse::<f32>().ok().filter(|v| v.is_finite())
}

/// The canonical text of an f32: the shortest decimal that reads back to the same bits,
/// or the bit form for infinities and NaNs.
pub(crate) fn fmt_f32(v: f32) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("f32:{:#010x}", v.to_bits())
    }
}

/// `ROWSxCOLS`, each `1..=MAX_TILE_DIM`.
pub(crate) fn parse_shape(s: &str) -> Option<(u32, u32)> {
    let (r, c) = s.split_once(['x', 'X'])?;
    let (r, c) = (parse_dec_u32(r)?, parse_dec_u32(c)?);
    let ok = |d: u32| (1..=MAX_TILE_DIM).contains(&d);
    (ok(r) && ok(c)).then_some((r, c))
}

/// The value of one raw operand of kind `kind`, or what was expected instead.
pub(crate) fn parse_operand(kind: Operand, raw: &Raw<'_>) -> Result<Val, String> {
    let fail = || Err(describe(kind));
    let atom = match raw {
        Raw::Atom(a) => *a,
        Raw::List(items) => {
            if kind != Operand::Group {
                return fail();
            }
            return parse_group_list(items).map(|m| Val::Big(Op::encode_group(m)));
        }
    };
    let lower = atom.to_ascii_lowercase();
    if let Some(file) = kind.reg_file() {
        let n = lower
            .strip_prefix(file.prefix())
            .and_then(parse_dec_u32)
            .filter(|&n| (n as usize) < file.count());
        return n.map(|n| Val::Small(n as u8)).ok_or_else(|| describe(kind));
    }
    let small = |v: Option<usize>| v.map(|v| Val::Small(v as u8)).ok_or_else(|| describe(kind));
    let big = |v: Option<u128>| v.map(Val::Big).ok_or_else(|| describe(kind));
    match kind {
        Operand::Dim => small(
            DIM_NAMES
                .iter()
                .position(|n| *n == lower)
                .or_else(|| parse_dec_u32(&lower).map(|d| d as usize).filter(|&d| d < 9)),
        ),
        Operand::DType => small(DType::parse(&lower).map(|d| d.code() as usize)),
        Operand::Kind => small(match lower.as_str() {
            "owned" => Some(KIND_OWNED as usize),
            "scratch" => Some(KIND_SCRATCH as usize),
            _ => None,
        }),
        Operand::Sentron => small(
            lower
                .strip_prefix('@')
                .and_then(parse_dec_u32)
                .map(|n| n as usize)
                .filter(|&n| n < MAX_SENTRONS),
        ),
        Operand::Reduce => small(REDUCE_NAMES.iter().position(|n| *n == lower)),
        Operand::I64 => big(parse_i64(atom).map(Op::encode_i64)),
        Operand::F32 => big(parse_f32(atom).map(Op::encode_f32)),
        Operand::Shape => big(parse_shape(atom).map(|(r, c)| Op::encode_shape(r, c))),
        Operand::CoordImm => match Coord::parse_with_limit(atom, MAX_PART_LIMIT) {
            Ok(c) => Ok(Val::Big(Op::encode_coord(c))),
            Err(e) => Err(format!("{} ({e})", describe(kind))),
        },
        Operand::Group => big((lower == "all").then_some(Op::encode_group(GROUP_ALL))),
        Operand::Label => {
            if is_ident(atom) {
                Ok(Val::Label(atom.to_string()))
            } else {
                fail()
            }
        }
        _ => fail(),
    }
}

fn parse_group_list(items: &[&str]) -> Result<u64, String> {
    if items.is_empty() {
        return Err(format!(
            "{} (a group needs at least one sentron)",
            describe(Operand::Group)
        ));
    }
    let mut mask = 0u64;
    for item in items {
        let n = parse_dec_u32(item)
            .filter(|&n| (n as usize) < MAX_SENTRONS)
            .ok_or_else(|| describe(Operand::Sentron).replace('@', ""))?;
        if mask & (1 << n) != 0 {
            return Err(format!("sentron {n} listed once in the group"));
        }
        mask |= 1 << n;
    }
    Ok(mask)
}

/// The text of operand `kind` whose small value is `arg` and big value `imm`. Values the
/// validator would reject are printed in a raw form the assembler rejects, so nothing is
/// silently changed.
pub(crate) fn fmt_operand(
    kind: Operand,
    arg: u8,
    imm: u128,
    label: &dyn Fn(u32) -> String,
) -> String {
    if let Some(file) = kind.reg_file() {
        return format!("{}{arg}", file.prefix());
    }
    let op = Op::new(crate::Opcode::DNop, [0; 4], imm);
    match kind {
        Operand::Dim => DIM_NAMES
            .get(arg as usize)
            .map_or_else(|| arg.to_string(), |n| n.to_string()),
        Operand::DType => {
            DType::from_code(arg).map_or_else(|| format!("dtype:{arg}"), |d| d.name().to_string())
        }
        Operand::Kind => match arg {
            KIND_OWNED => "owned".into(),
            KIND_SCRATCH => "scratch".into(),
            _ => format!("kind:{arg}"),
        },
        Operand::Sentron => format!("@{arg}"),
        Operand::Reduce => REDUCE_NAMES
            .get(arg as usize)
            .map_or_else(|| format!("reduce:{arg}"), |n| n.to_string()),
        Operand::I64 => op.imm_i64().to_string(),
        Operand::F32 => fmt_f32(op.imm_f32()),
        Operand::Shape => {
            let (r, c) = op.imm_shape();
            format!("{r}x{c}")
        }
        Operand::CoordImm => Coord::from_key(CoordKey(imm))
            .map_or_else(|_| format!("coord:{imm:#x}"), |c| c.to_string()),
        Operand::Group => {
            let mask = op.imm_group();
            if mask == GROUP_ALL {
                "all".into()
            } else {
                let ids: Vec<String> = (0..64)
                    .filter(|i| mask >> i & 1 == 1)
                    .map(|i: u32| i.to_string())
                    .collect();
                format!("{{{}}}", ids.join(","))
            }
        }
        Operand::Label => label(op.imm_label()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_text_round_trips() {
        for v in [0.0f32, -0.0, 1.0, 0.1, 1e-45, 3.4028235e38, -2.5e-7, 42.0] {
            let t = fmt_f32(v);
            assert_eq!(parse_f32(&t).map(f32::to_bits), Some(v.to_bits()), "{t}");
        }
        for bits in [0x7fc0_0000u32, 0x7f80_0000, 0xff80_0000, 0x7fa0_0001] {
            let t = fmt_f32(f32::from_bits(bits));
            assert_eq!(parse_f32(&t).map(f32::to_bits), Some(bits), "{t}");
        }
        for bad in [
            "inf",
            "nan",
            "NaN",
            "1e50",
            "",
            "e",
            "-",
            "f32:0x",
            "f32:0x123456789",
        ] {
            assert_eq!(parse_f32(bad), None, "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64("-5"), Some(-5));
        assert_eq!(parse_i64("+5"), Some(5));
        assert_eq!(parse_i64("0xffffffffffffffff"), Some(-1));
        assert_eq!(parse_i64("9223372036854775808"), None);
        assert_eq!(parse_i64("-0x1"), None);
        assert_eq!(parse_i64("1_000"), None);
    }
}

//! Compiler errors: typed, each naming where (sentron, op, loop) and what is wrong.
//! Bad input is always one of these, never a panic.

use thiserror::Error;

/// Everything the compiler can reject.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CompileError {
    /// An op got the wrong number of operands.
    #[error("{at}: {code} takes {expected} operand(s) besides its results ({syntax}), got {got}")]
    Arity {
        at: String,
        code: &'static str,
        expected: usize,
        got: usize,
        syntax: String,
    },
    /// An operand of the wrong kind or register file, or out of range.
    #[error("{at}: operand {index} of {code}: expected {expected}, got {got}")]
    Operand {
        at: String,
        code: &'static str,
        index: usize,
        expected: String,
        got: String,
    },
    /// An op placed in a slot of another pipe.
    #[error("{at}: {code} is a {op_pipe}-pipe op and cannot go in the {slot} slot")]
    WrongPipe {
        at: String,
        code: &'static str,
        op_pipe: &'static str,
        slot: &'static str,
    },
    /// A value used where it is not defined (another loop, another sentron, unknown).
    #[error("{at}: value %{value} cannot be used here: {why}")]
    Scope { at: String, value: u32, why: String },
    /// A value read after an in-place (read-write operand) op overwrote its register.
    #[error("{at}: value %{value} was overwritten in place by op {by}; it cannot be read afterwards (copy it first)")]
    UseAfterInPlace { at: String, value: u32, by: u32 },
    /// Misuse of the graph structure: nested loops, control-flow ops, unfinished loops.
    #[error("{at}: {what}")]
    Structure { at: String, what: String },
    /// A cycle of dependencies (explicit ordering edges that contradict each other).
    #[error("{at}: dependency cycle: {ops}")]
    Cycle { at: String, ops: String },
    /// The coordination ops of the sentrons can never all complete.
    #[error("message deadlock: {0}")]
    Deadlock(String),
    /// More values of one register file live at once than the file has registers.
    #[error("{at}: unsatisfiable register pressure: {needed} {file} registers needed at once, the sentron has {available}")]
    RegisterPressure {
        at: String,
        file: &'static str,
        needed: usize,
        available: usize,
    },
    /// A graph or its compiled form beyond a documented limit.
    #[error("{what} is {got}, above the limit of {limit}")]
    TooLarge { what: String, got: u64, limit: u64 },
    /// The input program does not validate.
    #[error("the input program is invalid:\n{0}")]
    Invalid(String),
    /// An assembly (text) input that does not assemble.
    #[error("{0}")]
    Asm(String),
    /// The .vasm input is outside the subset the graph frontend accepts (the caller falls
    /// back to in-place scheduling of basic blocks).
    #[error("{0}")]
    Unsupported(String),
    /// A bug in the compiler (the output failed its own checks).
    #[error("internal compiler error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, CompileError>;

/// Register file name for messages.
pub fn file_name(f: vtpu_isa::RegFile) -> &'static str {
    match f {
        vtpu_isa::RegFile::Scalar => "scalar",
        vtpu_isa::RegFile::Tile => "tile",
        vtpu_isa::RegFile::Coord => "coordinate",
    }
}

//! The instruction set, written once, as data.
//!
//! Every op of the machine is one row of the `isa!` table below: its mnemonic, its
//! stable binary opcode, its pipe, its operands (each with a role: read, write or both),
//! its memory effect, whether it can trap, its latency class and, for the few ops that
//! open, forward or read page windows (SWINDOW), its window role. The `Opcode` enum, the
//! `OPS` property table, the encoder/decoder, the assembler, the disassembler and the
//! validator are all driven by this one list; the scheduler asks these properties and
//! never an op's name.
//!
//! Operand placement in an encoded slot: "small" operands (registers, dimension, dtype,
//! page kind, sentron, reduce op) fill `args[0..]` in table order; the single "big"
//! operand an op may have (64-bit integer, f32, shape, coordinate, group, label) lives
//! in the 128-bit `imm` field. A unit test checks every row fits (<= 4 small, <= 1 big).

use crate::Pipe;

/// What one operand is and how the op uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// Scalar register, written.
    SW,
    /// Scalar register, read.
    SR,
    /// Scalar register, read and written.
    SRW,
    /// Tile register, written.
    TW,
    /// Tile register, read.
    TR,
    /// Tile register, read and written (accumulators).
    TRW,
    /// Coordinate register, written.
    CW,
    /// Coordinate register, read.
    CR,
    /// Dimension of a coordinate, 0..9 (library .. scroll). Small.
    Dim,
    /// Element type of a page. Small.
    DType,
    /// Page kind for SALLOC: owned (persisted) or scratch (not persisted). Small.
    Kind,
    /// A sentron id, 0..MAX_SENTRONS. Small.
    Sentron,
    /// Reduction operator of CREDUCE: sum, max or cat (all-gather). Small.
    Reduce,
    /// Signed 64-bit integer immediate. Big.
    I64,
    /// f32 immediate (bit pattern). Big.
    F32,
    /// Tile or page shape `ROWSxCOLS`, each 1..=MAX_TILE_DIM. Big.
    Shape,
    /// Phext coordinate immediate (packed key). Big.
    CoordImm,
    /// A group of sentrons (bit mask, `all` = every sentron of the machine). Big.
    Group,
    /// Branch target: a word index in the same stream. Big.
    Label,
}

impl Operand {
    /// True when the operand lives in the 128-bit `imm` field.
    pub const fn is_big(self) -> bool {
        matches!(
            self,
            Operand::I64
                | Operand::F32
                | Operand::Shape
                | Operand::CoordImm
                | Operand::Group
                | Operand::Label
        )
    }

    /// How many low bits of the 128-bit `imm` field a big operand uses; the other bits
    /// are zero in canonical form (the decoder enforces it). 0 for small operands.
    pub const fn imm_bits(self) -> u32 {
        match self {
            Operand::I64 | Operand::Shape | Operand::Group => 64,
            Operand::F32 | Operand::Label => 32,
            Operand::CoordImm => 128,
            _ => 0,
        }
    }

    /// How the operand is written in assembly, for documentation and error messages.
    pub const fn syntax(self) -> &'static str {
        match self {
            Operand::SW => "rD",
            Operand::SR => "rA",
            Operand::SRW => "rA!",
            Operand::TW => "tD",
            Operand::TR => "tA",
            Operand::TRW => "tA!",
            Operand::CW => "cD",
            Operand::CR => "cA",
            Operand::Dim => "DIM",
            Operand::DType => "DTYPE",
            Operand::Kind => "owned|scratch",
            Operand::Sentron => "@N",
            Operand::Reduce => "sum|max|cat",
            Operand::I64 => "I64",
            Operand::F32 => "F32",
            Operand::Shape => "RxC",
            Operand::CoordImm => "COORD",
            Operand::Group => "GROUP",
            Operand::Label => "LABEL",
        }
    }

    /// The register file this operand names, if it is a register.
    pub const fn reg_file(self) -> Option<RegFile> {
        match self {
            Operand::SW | Operand::SR | Operand::SRW => Some(RegFile::Scalar),
            Operand::TW | Operand::TR | Operand::TRW => Some(RegFile::Tile),
            Operand::CW | Operand::CR => Some(RegFile::Coord),
            _ => None,
        }
    }

    /// Does the op read this (register) operand?
    pub const fn reads(self) -> bool {
        matches!(
            self,
            Operand::SR | Operand::SRW | Operand::TR | Operand::TRW | Operand::CR
        )
    }

    /// Does the op write this (register) operand?
    pub const fn writes(self) -> bool {
        matches!(
            self,
            Operand::SW | Operand::SRW | Operand::TW | Operand::TRW | Operand::CW
        )
    }
}

/// The three register files of a sentron.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegFile {
    Scalar,
    Tile,
    Coord,
}

impl RegFile {
    /// Number of registers in this file.
    pub const fn count(self) -> usize {
        match self {
            RegFile::Scalar => crate::NUM_SCALAR_REGS,
            RegFile::Tile => crate::NUM_TILE_REGS,
            RegFile::Coord => crate::NUM_COORD_REGS,
        }
    }
    /// Assembly prefix: `r3`, `t1`, `c0`.
    pub const fn prefix(self) -> char {
        match self {
            RegFile::Scalar => 'r',
            RegFile::Tile => 't',
            RegFile::Coord => 'c',
        }
    }
}

/// What an op does to phext space (pages), for the scheduler's memory dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mem {
    None,
    /// Reads the page named by its coordinate operand.
    Read,
    /// Writes the page named by its coordinate operand.
    Write,
    /// Creates the page at its coordinate operand.
    Alloc,
    /// Removes the page at its coordinate operand.
    Free,
    /// Touches the page's cache lines; no architectural effect.
    Prefetch,
}

/// How an op takes part in *windows*: tile registers that are live views of a writable
/// page (SWINDOW). A window copies nothing; the ops that accept one read the page when
/// they run, so for the scheduler such a read is a page read of the page the window was
/// opened on, at the reading op, not at the SWINDOW. Every op not marked here traps on a
/// window operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    None,
    /// Its tile result is a window onto the page at its coordinate operand. It checks the
    /// page (it is `Mem::Read` for that) but reads none of its elements.
    Opens,
    /// Its tile result names its tile operand's elements (a copy of the descriptor, a
    /// new shape): a window stays a window onto the same page.
    Forwards,
    /// Reads the page behind its operand number `n` (0-based, in table order; a read tile
    /// register) when that operand is a window, at the time the op runs.
    Reads(u8),
    /// Reads the pages behind two operands (attention: keys and values).
    ReadsTwo(u8, u8),
}

impl Window {
    /// The indices (into `OpInfo::operands`) of the operands whose windows this op reads.
    pub const fn read_operands(self) -> [Option<usize>; 2] {
        match self {
            Window::Reads(n) => [Some(n as usize), None],
            Window::ReadsTwo(a, b) => [Some(a as usize), Some(b as usize)],
            _ => [None, None],
        }
    }

    /// Whether the op reads a page through a window operand.
    pub const fn reads_windows(self) -> bool {
        matches!(self, Window::Reads(_) | Window::ReadsTwo(..))
    }
}

/// Coordination behaviour of an op (C pipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coord {
    None,
    /// Sends a message (never blocks).
    Send,
    /// Receives a message (blocks until one arrives).
    Recv,
    /// Rendezvous of a group: barrier, reduction, broadcast (blocks until all arrive).
    Collective,
    /// Memory fence.
    Fence,
    /// Changes the program counter (jump, branch, loop).
    Branch,
    /// Stops the sentron.
    Halt,
}

/// Latency class, for the scheduler's cost model and for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// No operation.
    Nop,
    /// One scalar integer or coordinate operation.
    Scalar,
    /// Elementwise or reduction work over a tile.
    Tile,
    /// Tile matrix multiply.
    Matmul,
    /// Moves page bytes (gather, scatter).
    Memory,
    /// Page management (alloc, free, prefetch).
    Page,
    /// Coordination with other sentrons.
    Sync,
    /// Control flow.
    Control,
}

/// The properties of one op: one row of the table.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    pub opcode: Opcode,
    /// Assembly mnemonic. Several ops may share one (e.g. scalar and tile CSEND); the
    /// assembler picks the row whose operand kinds match.
    pub name: &'static str,
    /// Stable binary opcode (format version 1).
    pub code: u16,
    pub pipe: Pipe,
    pub operands: &'static [Operand],
    pub mem: Mem,
    pub coord: Coord,
    /// Can this op stop the machine with a trap at run time?
    pub traps: bool,
    pub class: Class,
    /// Window behaviour (see [`Window`]); `Window::None` for most ops.
    pub window: Window,
    /// One line for people: what the op computes.
    pub doc: &'static str,
}

/// The `window` clause of a table row; a row without one is `Window::None`.
macro_rules! window_of {
    () => {
        Window::None
    };
    ($w:ident) => {
        Window::$w
    };
    ($w:ident($($n:literal),+)) => {
        Window::$w($($n),+)
    };
}

macro_rules! isa {
    ($( $variant:ident = $code:literal, $name:literal, $pipe:ident, [$($opnd:ident),*],
        mem $mem:ident, coord $crd:ident, traps $traps:literal, $class:ident,
        $(window $win:ident $(($($wn:literal),+))?,)? $doc:literal; )*) => {
        /// Every op of the machine. Generated from the `isa!` table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Opcode { $( $variant, )* }

        /// The property table, indexed by `Opcode as usize`.
        pub static OPS: &[OpInfo] = &[ $( OpInfo {
            opcode: Opcode::$variant,
            name: $name,
            code: $code,
            pipe: Pipe::$pipe,
            operands: &[$(Operand::$opnd),*],
            mem: Mem::$mem,
            coord: Coord::$crd,
            traps: $traps,
            class: Class::$class,
            window: window_of!($($win $(($($wn),+))?)?),
            doc: $doc,
        }, )* ];

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$variant, )* ];
        }
    };
}

isa! {
    // ---------------------------------------------------------------- D pipe: dense compute
    DNop     = 0x0000, "DNOP",     D, [],               mem None, coord None, traps false, Nop,    "no D-pipe operation";
    DLi      = 0x0001, "DLI",      D, [SW, I64],        mem None, coord None, traps false, Scalar, "rd = imm";
    DAdd     = 0x0002, "DADD",     D, [SW, SR, SR],     mem None, coord None, traps false, Scalar, "rd = ra + rb (wrapping)";
    DSub     = 0x0003, "DSUB",     D, [SW, SR, SR],     mem None, coord None, traps false, Scalar, "rd = ra - rb (wrapping)";
    DMul     = 0x0004, "DMUL",     D, [SW, SR, SR],     mem None, coord None, traps false, Scalar, "rd = ra * rb (wrapping)";
    DDiv     = 0x0005, "DDIV",     D, [SW, SR, SR],     mem None, coord None, traps true,  Scalar, "rd = ra / rb, truncating; traps on division by zero or overflow";
    DRem     = 0x0006, "DREM",     D, [SW, SR, SR],     mem None, coord None, traps true,  Scalar, "rd = ra % rb; traps on division by zero or overflow";
    DAddi    = 0x0007, "DADDI",    D, [SW, SR, I64],    mem None, coord None, traps false, Scalar, "rd = ra + imm (wrapping)";
    DMuli    = 0x0008, "DMULI",    D, [SW, SR, I64],    mem None, coord None, traps false, Scalar, "rd = ra * imm (wrapping)";
    DSid     = 0x0009, "DSID",     D, [SW],             mem None, coord None, traps false, Scalar, "rd = this sentron's id";
    DNsen    = 0x000a, "DNSEN",    D, [SW],             mem None, coord None, traps false, Scalar, "rd = number of sentrons in the machine";
    DTZero   = 0x0010, "DTZERO",   D, [TW, Shape],      mem None, coord None, traps false, Tile,   "td = zero f32 tile of the given shape";
    DMov     = 0x0011, "DMOV",     D, [TW, TR],         mem None, coord None, traps false, Tile,   window Forwards, "td = ta (a copy; a window stays a window onto the same page)";
    DTAdd    = 0x0012, "DTADD",    D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = ta + tb elementwise (f32, same shape)";
    DTSub    = 0x0013, "DTSUB",    D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = ta - tb elementwise";
    DTMul    = 0x0014, "DTMUL",    D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = ta * tb elementwise";
    DTMax    = 0x0015, "DTMAX",    D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = max(ta, tb) elementwise";
    DTFma    = 0x0016, "DTFMA",    D, [TRW, TR, TR],    mem None, coord None, traps true,  Tile,   "td += ta * tb elementwise";
    DTScale  = 0x0017, "DTSCALE",  D, [TW, TR, F32],    mem None, coord None, traps true,  Tile,   "td = ta * imm";
    DTRSum   = 0x0018, "DTRSUM",   D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td (rows x 1) = sum of each row of ta";
    DTRMax   = 0x0019, "DTRMAX",   D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td (rows x 1) = max of each row of ta";
    DTRSsq   = 0x001a, "DTRSSQ",   D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td (rows x 1) = sum of squares of each row of ta";
    DTExp    = 0x001b, "DTEXP",    D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td = exp(ta) elementwise";
    DTSilu   = 0x001c, "DTSILU",   D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td = ta * sigmoid(ta) elementwise";
    DTRsqrt  = 0x001d, "DTRSQRT",  D, [TW, TR],         mem None, coord None, traps true,  Tile,   "td = 1 / sqrt(ta) elementwise";
    DTSplat  = 0x001e, "DTSPLAT",  D, [TW, SR, Shape],  mem None, coord None, traps false, Tile,   "td = f32 tile of the given shape, every element ra converted to f32 (round to nearest)";
    DTMatmul = 0x0020, "DTMATMUL", D, [TRW, TR, TR],    mem None, coord None, traps true,  Matmul, "td (m x n) += ta (m x k, f32) x tb^T (tb: n x k, f32/f16/bf16)";
    // Transformer-layer tile ops (issue 4). Each does a whole tile's work per SIW.
    DTMm     = 0x0021, "DTMM",     D, [TW, TR, TR],     mem None, coord None, traps true,  Matmul, window Reads(2), "td (m x n) = ta (m x k, f32) x tb^T (tb: n x k, f32/f16/bf16); no accumulator";
    DTMmN    = 0x0022, "DTMMN",    D, [TW, TR, TR],     mem None, coord None, traps true,  Matmul, window Reads(2), "td (m x n) = ta (m x k, f32) x tb (tb: k x n, f32, or an f16 window), e.g. attention probabilities x values";
    DTRmsNorm = 0x0030, "DTRMSNORM", D, [TW, TR, TR, F32], mem None, coord None, traps true, Tile,  "td = ta in groups of len(tb) elements, each x / sqrt(mean(x^2) + imm) * tb (tb f32)";
    DTRope   = 0x0031, "DTROPE",   D, [TW, TR, TR, SR], mem None, coord None, traps true,  Tile,   "td = ta with row r rotated for position rc + r, interleaved pairs (2i, 2i+1); tb: rope table [positions, Hd] = cos | sin";
    DTRopeH  = 0x0032, "DTROPEH",  D, [TW, TR, TR, SR], mem None, coord None, traps true,  Tile,   "as DTROPE with half-split pairs (i, i + Hd/2) (Hugging Face rotate_half)";
    DTSoftmax = 0x0033, "DTSOFTMAX", D, [TW, TR, SR, SR, F32], mem None, coord None, traps true, Tile, "td = row softmax of imm * ta; row r sees columns 0..=rb + r / rc (causal), the rest are 0";
    DTSwiglu = 0x0034, "DTSWIGLU", D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = silu(ta) * tb elementwise";
    DTAddR   = 0x0035, "DTADDR",   D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td = ta + tb on every row of ta (tb: cols(ta) f32 elements, e.g. a bias)";
    DTReshape = 0x0036, "DTRESHAPE", D, [TW, TR, I64],  mem None, coord None, traps true,  Tile,   window Forwards, "td = ta read as rows of imm columns (same elements, row-major; a window stays a window onto the same page)";
    // Real models (issue 7).
    DTAttn   = 0x0038, "DTATTN",   D, [TW, TR, TR, TR, I64], mem None, coord None, traps true, Matmul, window ReadsTwo(2, 3), "td (rows x Hd) = causal attention of the query rows ta (row t*imm + h: imm rows per token) over the keys tb and values tc ([S, Hd] windows or tiles, both f32 or both f16); the T = rows/imm tokens end the S-key cache; scale 1/sqrt(Hd); llama.cpp's flash-attention arithmetic";
    DTPlace  = 0x0039, "DTPLACE",  D, [TW, TR, SR, I64], mem None, coord None, traps true, Tile,   "td (rows(ta) x imm) = zeros with ta's columns at rb..rb+cols(ta) (e.g. tiles side by side: DTADD of disjoint placements)";
    DTEmbed  = 0x0037, "DTEMBED",  D, [TW, TR, TR],     mem None, coord None, traps true,  Tile,   "td (n x cols(tb)) = rows ta[0..n] of the table tb (any page dtype, dequantized to f32); ta holds n integral row ids";
    // ---------------------------------------------------------------- S pipe: pages in phext space
    SNop     = 0x0100, "SNOP",     S, [],               mem None,     coord None, traps false, Nop,    "no S-pipe operation";
    SCli     = 0x0101, "SCLI",     S, [CW, CoordImm],   mem None,     coord None, traps false, Scalar, "cd = coordinate immediate";
    SIndex   = 0x0102, "SINDEX",   S, [CW, CR, Dim, SR],mem None,     coord None, traps true,  Scalar, "cd = ca with part DIM += rb; traps outside 1..=limit";
    SIndexi  = 0x0103, "SINDEXI",  S, [CW, CR, Dim, I64],mem None,    coord None, traps true,  Scalar, "cd = ca with part DIM += imm; traps outside 1..=limit";
    SGather  = 0x0104, "SGATHER",  S, [TW, CR],         mem Read,     coord None, traps true,  Memory, "td = the whole page at ca (zero-copy view if read-only)";
    SGathers = 0x0105, "SGATHERS", S, [TW, CR, SR, Shape], mem Read,  coord None, traps true,  Memory, "td = ROWSxCOLS elements of the page at ca from element offset rb";
    SScatter = 0x0106, "SSCATTR",  S, [TR, CR, SR],     mem Write,    coord None, traps true,  Memory, "page at ca, from element offset rb = ta (visible at word end); an f16 page gets each value rounded to nearest even";
    SPrefch  = 0x0107, "SPREFCH",  S, [CR],             mem Prefetch, coord None, traps true,  Page,   "prefetch every cache line of the page at ca";
    SAlloc   = 0x0108, "SALLOC",   S, [CR, DType, Kind, Shape], mem Alloc, coord None, traps true, Page, "create a zeroed page of DTYPE and shape at ca";
    SFree    = 0x0109, "SFREE",    S, [CR],             mem Free,     coord None, traps true,  Page,   "remove the page at ca";
    SGatherV = 0x010a, "SGATHERV", S, [TW, CR, SR, SR, I64], mem Read, coord None, traps true, Memory, "td = rc rows x imm cols elements of the page at ca from element offset rb (rows from a register)";
    SLoad    = 0x010b, "SLOAD",    S, [SW, CR, SR],     mem Read,     coord None, traps true,  Memory, "rd = element rb of the i32 page at ca, sign-extended (program arguments)";
    SWindow  = 0x010c, "SWINDOW",  S, [TW, CR, SR, SR, I64], mem Read, coord None, traps true, Memory, window Opens, "td = a live window onto rc rows x imm cols of the f32 or f16 page at ca from element offset rb: no copy; DTMM / DTMMN read it (second operand) when they run";
    // ---------------------------------------------------------------- C pipe: coordination and control
    CNop     = 0x0200, "CNOP",     C, [],               mem None, coord None,       traps false, Nop,     "no C-pipe operation";
    CSendR   = 0x0201, "CSEND",    C, [Sentron, SR],    mem None, coord Send,       traps true,  Sync,    "send scalar ra to sentron @N (never blocks)";
    CSendT   = 0x0202, "CSEND",    C, [Sentron, TR],    mem None, coord Send,       traps true,  Sync,    "send a copy of tile ta to sentron @N (never blocks)";
    CRecvR   = 0x0203, "CRECV",    C, [SW, Sentron],    mem None, coord Recv,       traps true,  Sync,    "rd = next scalar message from sentron @N (blocks)";
    CRecvT   = 0x0204, "CRECV",    C, [TW, Sentron],    mem None, coord Recv,       traps true,  Sync,    "td = next tile message from sentron @N (blocks)";
    CBar     = 0x0205, "CBAR",     C, [Group],          mem None, coord Collective, traps true,  Sync,    "barrier: wait until every member of the group arrives";
    CReduce  = 0x0206, "CREDUCE",  C, [TRW, Reduce, Group], mem None, coord Collective, traps true, Sync, "all-reduce: td = sum/max of td over the group, in sentron order; cat: the members' td side by side (same rows, columns in sentron order: an all-gather)";
    CCast    = 0x0207, "CCAST",    C, [TRW, Sentron, Group], mem None, coord Collective, traps true, Sync, "broadcast: td = td of the root sentron @N, for every member";
    CFence   = 0x0208, "CFENCE",   C, [],               mem None, coord Fence,      traps false, Sync,    "order all earlier page writes before all later ones";
    CJmp     = 0x0210, "CJMP",     C, [Label],          mem None, coord Branch,     traps false, Control, "jump to label";
    CBeq     = 0x0211, "CBEQ",     C, [SR, SR, Label],  mem None, coord Branch,     traps false, Control, "branch if ra == rb";
    CBne     = 0x0212, "CBNE",     C, [SR, SR, Label],  mem None, coord Branch,     traps false, Control, "branch if ra != rb";
    CBlt     = 0x0213, "CBLT",     C, [SR, SR, Label],  mem None, coord Branch,     traps false, Control, "branch if ra < rb (signed)";
    CBge     = 0x0214, "CBGE",     C, [SR, SR, Label],  mem None, coord Branch,     traps false, Control, "branch if ra >= rb (signed)";
    CLoop    = 0x0215, "CLOOP",    C, [SRW, Label],     mem None, coord Branch,     traps false, Control, "ra -= 1; branch if ra != 0";
    CHalt    = 0x0220, "CHALT",    C, [],               mem None, coord Halt,       traps false, Control, "stop this sentron";
}

impl Opcode {
    /// This op's row of the property table.
    #[inline]
    pub fn info(self) -> &'static OpInfo {
        &OPS[self as usize]
    }
    /// Assembly mnemonic.
    #[inline]
    pub fn name(self) -> &'static str {
        self.info().name
    }
    #[inline]
    pub fn pipe(self) -> Pipe {
        self.info().pipe
    }
    /// The NOP of a pipe.
    pub const fn nop(pipe: Pipe) -> Opcode {
        match pipe {
            Pipe::D => Opcode::DNop,
            Pipe::S => Opcode::SNop,
            Pipe::C => Opcode::CNop,
        }
    }
    #[inline]
    pub fn is_nop(self) -> bool {
        matches!(self, Opcode::DNop | Opcode::SNop | Opcode::CNop)
    }
    /// Decode a binary opcode.
    pub fn from_code(code: u16) -> Option<Opcode> {
        // Codes are sparse; the table is small, a linear scan only runs at load time.
        OPS.iter().find(|i| i.code == code).map(|i| i.opcode)
    }
    /// The ops sharing a mnemonic (case-insensitive).
    pub fn by_name(name: &str) -> impl Iterator<Item = Opcode> + '_ {
        OPS.iter()
            .filter(move |i| i.name.eq_ignore_ascii_case(name))
            .map(|i| i.opcode)
    }
    /// The big operand of this op, if any.
    pub fn big_operand(self) -> Option<Operand> {
        self.info().operands.iter().copied().find(|o| o.is_big())
    }
    /// The small operands in `args` order.
    pub fn small_operands(self) -> impl Iterator<Item = Operand> {
        self.info().operands.iter().copied().filter(|o| !o.is_big())
    }
}

/// The Window column of the op table: "-" for ops that trap on windows.
fn window_cell(w: Window) -> String {
    match w {
        Window::None => "-".into(),
        Window::Opens => "opens".into(),
        Window::Forwards => "forwards".into(),
        // 1-based, as people count operands (and as the validator's messages do).
        Window::Reads(n) => format!("reads operand {}", n + 1),
        Window::ReadsTwo(a, b) => format!("reads operands {} and {}", a + 1, b + 1),
    }
}

/// The op table as a Markdown table, one row per op in table order. `docs/ISA.md`
/// contains this text verbatim (a test checks it), so the document cannot drift.
pub fn op_table_markdown() -> String {
    let mut out = String::from(
        "| Mnemonic | Code | Pipe | Operands | Memory | Window | Coordination | Traps | Class | What it does |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for info in OPS {
        let operands: Vec<&str> = info.operands.iter().map(|o| o.syntax()).collect();
        let operands = if operands.is_empty() {
            "-".to_string()
        } else {
            // A '|' inside a table cell must be escaped, even in a code span.
            format!("`{}`", operands.join(", ").replace('|', "\\|"))
        };
        out.push_str(&format!(
            "| `{}` | `{:#06x}` | {} | {} | {:?} | {} | {:?} | {} | {:?} | {} |\n",
            info.name,
            info.code,
            info.pipe.name(),
            operands,
            info.mem,
            window_cell(info.window),
            info.coord,
            if info.traps { "yes" } else { "no" },
            info.class,
            info.doc.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut codes = std::collections::HashSet::new();
        for (i, info) in OPS.iter().enumerate() {
            assert_eq!(info.opcode as usize, i, "{} out of order", info.name);
            assert!(codes.insert(info.code), "duplicate code {:#x}", info.code);
            let small = info.operands.iter().filter(|o| !o.is_big()).count();
            let big = info.operands.iter().filter(|o| o.is_big()).count();
            assert!(small <= 4, "{} has {small} small operands", info.name);
            assert!(big <= 1, "{} has {big} big operands", info.name);
            assert_eq!(info.code >> 8, info.pipe as u16, "{} code/pipe", info.name);
            for o in info.operands {
                assert_eq!(o.is_big(), o.imm_bits() > 0, "{:?} imm bits", o);
                assert!(o.reg_file().is_some() || !(o.reads() || o.writes()));
            }
            assert_eq!(Opcode::from_code(info.code), Some(info.opcode));
            if matches!(info.coord, Coord::Branch) {
                assert_eq!(info.pipe, Pipe::C, "control flow lives in the C pipe");
            }
            window_row_is_consistent(info);
        }
    }

    /// What the compiler and validator assume of a `window` clause.
    fn window_row_is_consistent(info: &OpInfo) {
        let count = |f: fn(&Operand) -> bool| info.operands.iter().filter(|o| f(o)).count();
        let tile_w = count(|o| o.reg_file() == Some(RegFile::Tile) && o.writes());
        let tile_r = count(|o| o.reg_file() == Some(RegFile::Tile) && o.reads());
        let coord_r = count(|o| *o == Operand::CR);
        match info.window {
            Window::None => {}
            Window::Opens => {
                // One window result onto the page of the one coordinate operand.
                assert_eq!((tile_w, coord_r), (1, 1), "{}: opens a window", info.name);
                assert_eq!(
                    info.mem,
                    Mem::Read,
                    "{}: opening checks the page",
                    info.name
                );
            }
            Window::Forwards => {
                // Result = the one tile operand: no page of its own.
                assert_eq!((tile_w, tile_r), (1, 1), "{}: forwards a window", info.name);
                assert_eq!(info.mem, Mem::None, "{}", info.name);
            }
            Window::Reads(_) | Window::ReadsTwo(..) => {
                for n in info.window.read_operands().into_iter().flatten() {
                    let o = info.operands.get(n).copied();
                    assert_eq!(o, Some(Operand::TR), "{}: window operand {n}", info.name);
                }
                // No coordinate of its own: the page comes from the window.
                assert_eq!(info.mem, Mem::None, "{}", info.name);
            }
        }
    }

    #[test]
    fn overloaded_mnemonics_differ_in_operands() {
        for a in OPS {
            for b in OPS {
                if a.code != b.code && a.name == b.name {
                    assert_ne!(a.operands, b.operands, "{} ambiguous", a.name);
                }
            }
        }
    }
}

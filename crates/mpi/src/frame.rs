//! Frames: everything one rank tells another, as bytes.
//!
//! All frames between two ranks travel on one MPI tag, so MPI's non-overtaking rule makes
//! them arrive in the order they were sent. Two things rely on that: the messages of one
//! sentron pair stay FIFO, and a rank's `Done` / `Bye` come after everything it sent
//! before them.
//!
//! Little-endian, one kind byte first. Decoding trusts nothing: every count is checked
//! against the bytes that are really there and against the machine's limits before
//! anything is allocated.

use crate::error::FrameError;
use std::sync::Arc;
use vtpu_runtime::fabric::{CollKind, CollTile, Message};
use vtpu_runtime::Counters;

/// Most bytes one frame may have: a tile message or collective tile is capped by the
/// fabric's mailbox limit (256 MiB); the rest is headers.
pub const MAX_FRAME_BYTES: usize = vtpu_runtime::fabric::MAX_MAILBOX_BYTES as usize + 4096;

/// Most bytes of text (error reports, op names) a frame carries.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// What a sentron is doing, as the heartbeat reports it to the deadlock monitor.
#[derive(Clone, Debug, PartialEq)]
pub enum SentronStatus {
    Running,
    /// Blocked in CRECV on a message from `from`.
    Recv {
        from: u32,
    },
    /// Blocked in generation `gen` of a collective of group `members`.
    Coll {
        members: u64,
        kind: CollKind,
        gen: u64,
    },
    Halted,
    Failed,
}

/// One sentron's line in a status frame.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusEntry {
    pub sentron: u32,
    pub status: SentronStatus,
    /// Where it waits (blocked states only).
    pub pc: u32,
    /// The op it waits in, as assembly text (blocked states only; else empty).
    pub op: String,
    /// Waits it has finished so far: if this moves, the sentron is not stuck.
    pub progress: u64,
}

/// A page a rank was asked to show: this rank's copy of its f32 values, or a note
/// (`<no page>`, `<f16 page, 4x4>`) when it has none to give.
#[derive(Clone, Debug, PartialEq)]
pub struct ShownPage {
    pub coord: String,
    pub note: String,
    pub values: Vec<f32>,
}

/// What a rank reports at the end: its sentrons' counters, the pages asked for, and
/// what its transport sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankReport {
    pub rank: u32,
    pub counters: Vec<Counters>,
    pub pages: Vec<ShownPage>,
    /// Host: frames and bytes this rank handed to MPI (all kinds), and those that were
    /// CSEND messages.
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub msg_frames_sent: u64,
    pub msg_bytes_sent: u64,
    /// Host: this rank's wall time from the start of its sentrons to its report.
    pub host_wall_ns: u64,
}

/// Outcome of one collective generation, sent by the group's leader rank.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done(Option<Arc<CollTile>>),
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A CSEND between sentrons of different ranks.
    Msg { from: u32, to: u32, msg: Message },
    /// Sentron `sentron` entered generation `gen` of the collective of `members` (sent
    /// to the group's leader rank).
    Arrive {
        members: u64,
        gen: u64,
        sentron: u32,
        kind: CollKind,
        tile: Option<CollTile>,
    },
    /// The leader completed generation `gen` of `members`.
    Result {
        members: u64,
        gen: u64,
        outcome: Outcome,
    },
    /// Heartbeat (every rank to every rank); to rank 0 with the sentrons' status.
    Status {
        rank: u32,
        entries: Vec<StatusEntry>,
    },
    /// The machine must stop: `text` says why (a trap, deadlock or lost rank seen by
    /// `rank`).
    Abort { rank: u32, text: String },
    /// To rank 0: every sentron of this rank finished; its report.
    Done(Box<RankReport>),
    /// From rank 0: every rank is done; send `Bye` and nothing else.
    Finish,
    /// The last frame a rank sends to another.
    Bye { rank: u32 },
    /// From rank 0 of a stepped machine (`machine.rs`): run program `program` once, with
    /// these bytes in the step's input pages (in the order the machine was given them).
    Step {
        seq: u64,
        program: u32,
        inputs: Vec<Vec<u8>>,
    },
    /// To rank 0: this rank's sentrons finished step `seq`; their counters, and the
    /// bytes of the output page they wrote.
    StepDone {
        seq: u64,
        counters: Vec<Counters>,
        output: Vec<u8>,
        /// Host: bytes this rank handed to MPI during the step, this frame excluded.
        sent: u64,
    },
}

const K_MSG: u8 = 1;
const K_ARRIVE: u8 = 2;
const K_RESULT: u8 = 3;
const K_STATUS: u8 = 4;
const K_ABORT: u8 = 5;
const K_DONE: u8 = 6;
const K_FINISH: u8 = 7;
const K_BYE: u8 = 8;
const K_STEP: u8 = 9;
const K_STEP_DONE: u8 = 10;

fn kind_code(k: CollKind) -> (u8, u32) {
    match k {
        CollKind::Barrier => (0, 0),
        CollKind::Reduce(op) => (1, op as u32),
        CollKind::Cast(root) => (2, root),
    }
}

/// Runs of non-zero elements of `data`: (first index, length). Zero is the bit
/// pattern of +0.0 only (-0.0 is kept as a value), and gaps of fewer than 3 zeros stay
/// inside a run (a run costs 8 bytes of header).
fn nonzero_runs(data: &[f32]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, x) in data.iter().enumerate() {
        if x.to_bits() == 0 {
            continue;
        }
        match runs.last_mut() {
            Some((start, len)) if i - (*start + *len) < 3 => *len = i + 1 - *start,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// A tile: rows, cols, then either every element (mode 0) or, when that is smaller,
/// only its runs of non-zero elements (mode 1: run count, then per run its first index,
/// length and elements). The all-gathers of the whole-row split reduce tiles that are
/// zero outside the contributing sentron's rows, so a rank sends about 1/R of each.
fn put_tile(out: &mut Vec<u8>, rows: u32, cols: u32, data: &[f32]) {
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&cols.to_le_bytes());
    let runs = nonzero_runs(data);
    let sparse: usize = 4 + runs.iter().map(|&(_, l)| 8 + 4 * l).sum::<usize>();
    if sparse < 4 * data.len() && runs.len() <= u32::MAX as usize {
        out.push(1);
        out.reserve(sparse);
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (start, len) in runs {
            out.extend_from_slice(&(start as u32).to_le_bytes());
            out.extend_from_slice(&(len as u32).to_le_bytes());
            for x in &data[start..start + len] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    } else {
        out.push(0);
        out.reserve(data.len() * 4);
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    // Cut at a character boundary so the receiver always gets valid UTF-8.
    let mut end = s.len().min(MAX_TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_counters(out: &mut Vec<u8>, c: &Counters) {
    out.extend_from_slice(&c.sentron.to_le_bytes());
    let vals = [
        c.siws,
        c.ops[0],
        c.ops[1],
        c.ops[2],
        c.nops[0],
        c.nops[1],
        c.nops[2],
        c.ppt_lookups,
        c.ppt_hits,
        c.ppt_misses,
        c.bytes_gathered,
        c.bytes_scattered,
        c.bytes_copied,
        c.msg_bytes,
        c.msgs_sent,
        c.flops,
        c.host_blocked_ns,
        c.host_ns,
    ];
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}
const COUNTER_BYTES: usize = 4 + 18 * 8;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(64);
        match self {
            Frame::Msg { from, to, msg } => {
                o.push(K_MSG);
                o.extend_from_slice(&from.to_le_bytes());
                o.extend_from_slice(&to.to_le_bytes());
                match msg {
                    Message::Scalar(v) => {
                        o.push(0);
                        o.extend_from_slice(&v.to_le_bytes());
                    }
                    Message::Tile { rows, cols, data } => {
                        o.push(1);
                        put_tile(&mut o, *rows, *cols, data);
                    }
                }
            }
            Frame::Arrive {
                members,
                gen,
                sentron,
                kind,
                tile,
            } => {
                o.push(K_ARRIVE);
                o.extend_from_slice(&members.to_le_bytes());
                o.extend_from_slice(&gen.to_le_bytes());
                o.extend_from_slice(&sentron.to_le_bytes());
                let (k, arg) = kind_code(*kind);
                o.push(k);
                o.extend_from_slice(&arg.to_le_bytes());
                match tile {
                    None => o.push(0),
                    Some(t) => {
                        o.push(1);
                        put_tile(&mut o, t.rows, t.cols, &t.data);
                    }
                }
            }
            Frame::Result {
                members,
                gen,
                outcome,
            } => {
                o.push(K_RESULT);
                o.extend_from_slice(&members.to_le_bytes());
                o.extend_from_slice(&gen.to_le_bytes());
                match outcome {
                    Outcome::Done(None) => o.push(0),
                    Outcome::Done(Some(t)) => {
                        o.push(1);
                        put_tile(&mut o, t.rows, t.cols, &t.data);
                    }
                    Outcome::Failed(text) => {
                        o.push(2);
                        put_text(&mut o, text);
                    }
                }
            }
            Frame::Status { rank, entries } => {
                o.push(K_STATUS);
                o.extend_from_slice(&rank.to_le_bytes());
                o.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for e in entries {
                    o.extend_from_slice(&e.sentron.to_le_bytes());
                    o.extend_from_slice(&e.pc.to_le_bytes());
                    o.extend_from_slice(&e.progress.to_le_bytes());
                    match e.status {
                        SentronStatus::Running => o.push(0),
                        SentronStatus::Recv { from } => {
                            o.push(1);
                            o.extend_from_slice(&from.to_le_bytes());
                        }
                        SentronStatus::Coll { members, kind, gen } => {
                            o.push(2);
                            o.extend_from_slice(&members.to_le_bytes());
                            let (k, arg) = kind_code(kind);
                            o.push(k);
                            o.extend_from_slice(&arg.to_le_bytes());
                            o.extend_from_slice(&gen.to_le_bytes());
                        }
                        SentronStatus::Halted => o.push(3),
                        SentronStatus::Failed => o.push(4),
                    }
                    put_text(&mut o, &e.op);
                }
            }
            Frame::Abort { rank, text } => {
                o.push(K_ABORT);
                o.extend_from_slice(&rank.to_le_bytes());
                put_text(&mut o, text);
            }
            Frame::Done(r) => {
                o.push(K_DONE);
                o.extend_from_slice(&r.rank.to_le_bytes());
                for v in [
                    r.frames_sent,
                    r.bytes_sent,
                    r.msg_frames_sent,
                    r.msg_bytes_sent,
                    r.host_wall_ns,
                ] {
                    o.extend_from_slice(&v.to_le_bytes());
                }
                o.extend_from_slice(&(r.counters.len() as u32).to_le_bytes());
                for c in &r.counters {
                    put_counters(&mut o, c);
                }
                o.extend_from_slice(&(r.pages.len() as u32).to_le_bytes());
                for p in &r.pages {
                    put_text(&mut o, &p.coord);
                    put_text(&mut o, &p.note);
                    o.extend_from_slice(&(p.values.len() as u64).to_le_bytes());
                    for v in &p.values {
                        o.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            Frame::Finish => o.push(K_FINISH),
            Frame::Bye { rank } => {
                o.push(K_BYE);
                o.extend_from_slice(&rank.to_le_bytes());
            }
            Frame::Step {
                seq,
                program,
                inputs,
            } => {
                o.push(K_STEP);
                o.extend_from_slice(&seq.to_le_bytes());
                o.extend_from_slice(&program.to_le_bytes());
                o.extend_from_slice(&(inputs.len() as u32).to_le_bytes());
                for b in inputs {
                    put_bytes(&mut o, b);
                }
            }
            Frame::StepDone {
                seq,
                counters,
                output,
                sent,
            } => {
                o.push(K_STEP_DONE);
                o.extend_from_slice(&seq.to_le_bytes());
                o.extend_from_slice(&sent.to_le_bytes());
                o.extend_from_slice(&(counters.len() as u32).to_le_bytes());
                for c in counters {
                    put_counters(&mut o, c);
                }
                put_bytes(&mut o, output);
            }
        }
        o
    }

    /// Decode a frame of a machine of `sentrons` sentrons.
    pub fn decode(bytes: &[u8], sentrons: usize) -> Result<Frame, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(bytes.len()));
        }
        let mut r = Reader { b: bytes, at: 0 };
        let sentron = |r: &mut Reader, what: &'static str| -> Result<u32, FrameError> {
            let s = r.u32()?;
            if s as usize >= sentrons {
                return Err(FrameError::Bad(format!(
                    "{what} {s} of a machine of {sentrons} sentrons"
                )));
            }
            Ok(s)
        };
        let f = match r.u8()? {
            K_MSG => {
                let from = sentron(&mut r, "sender")?;
                let to = sentron(&mut r, "receiver")?;
                let msg = match r.u8()? {
                    0 => Message::Scalar(r.u64()? as i64),
                    1 => {
                        let (rows, cols, data) = r.tile()?;
                        Message::Tile { rows, cols, data }
                    }
                    k => return Err(FrameError::Bad(format!("message kind {k}"))),
                };
                Frame::Msg { from, to, msg }
            }
            K_ARRIVE => {
                let members = r.u64()?;
                let gen = r.u64()?;
                let s = sentron(&mut r, "member")?;
                let kind = r.kind(sentrons)?;
                let tile = match r.u8()? {
                    0 => None,
                    1 => {
                        let (rows, cols, data) = r.tile()?;
                        Some(CollTile { rows, cols, data })
                    }
                    k => return Err(FrameError::Bad(format!("tile flag {k}"))),
                };
                if members & (1u64 << s) == 0 {
                    return Err(FrameError::Bad(format!(
                        "sentron {s} arrived at a group it is not in"
                    )));
                }
                Frame::Arrive {
                    members,
                    gen,
                    sentron: s,
                    kind,
                    tile,
                }
            }
            K_RESULT => {
                let members = r.u64()?;
                let gen = r.u64()?;
                let outcome = match r.u8()? {
                    0 => Outcome::Done(None),
                    1 => {
                        let (rows, cols, data) = r.tile()?;
                        Outcome::Done(Some(Arc::new(CollTile { rows, cols, data })))
                    }
                    2 => Outcome::Failed(r.text()?),
                    k => return Err(FrameError::Bad(format!("outcome {k}"))),
                };
                Frame::Result {
                    members,
                    gen,
                    outcome,
                }
            }
            K_STATUS => {
                let rank = r.u32()?;
                let n = r.u32()? as usize;
                if n > sentrons {
                    return Err(FrameError::Bad(format!(
                        "status of {n} sentrons in a machine of {sentrons}"
                    )));
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = sentron(&mut r, "sentron")?;
                    let pc = r.u32()?;
                    let progress = r.u64()?;
                    let status = match r.u8()? {
                        0 => SentronStatus::Running,
                        1 => SentronStatus::Recv {
                            from: sentron(&mut r, "sender")?,
                        },
                        2 => {
                            let members = r.u64()?;
                            let kind = r.kind(sentrons)?;
                            let gen = r.u64()?;
                            SentronStatus::Coll { members, kind, gen }
                        }
                        3 => SentronStatus::Halted,
                        4 => SentronStatus::Failed,
                        k => return Err(FrameError::Bad(format!("status {k}"))),
                    };
                    let op = r.text()?;
                    entries.push(StatusEntry {
                        sentron: s,
                        status,
                        pc,
                        op,
                        progress,
                    });
                }
                Frame::Status { rank, entries }
            }
            K_ABORT => {
                let rank = r.u32()?;
                Frame::Abort {
                    rank,
                    text: r.text()?,
                }
            }
            K_DONE => {
                let rank = r.u32()?;
                let mut rep = RankReport {
                    rank,
                    frames_sent: r.u64()?,
                    bytes_sent: r.u64()?,
                    msg_frames_sent: r.u64()?,
                    msg_bytes_sent: r.u64()?,
                    host_wall_ns: r.u64()?,
                    ..Default::default()
                };
                let n = r.u32()? as usize;
                if n > sentrons || n * COUNTER_BYTES > r.left() {
                    return Err(FrameError::Bad(format!("{n} counter sets")));
                }
                for _ in 0..n {
                    let id = sentron(&mut r, "sentron")?;
                    rep.counters.push(r.counters(id)?);
                }
                let pages = r.u32()? as usize;
                // Each page takes at least 16 bytes (three lengths).
                if pages > r.left() / 16 {
                    return Err(FrameError::Bad(format!("{pages} pages")));
                }
                for _ in 0..pages {
                    let coord = r.text()?;
                    let note = r.text()?;
                    let n = r.u64()?;
                    let values = r.f32s(n)?;
                    rep.pages.push(ShownPage {
                        coord,
                        note,
                        values,
                    });
                }
                Frame::Done(Box::new(rep))
            }
            K_FINISH => Frame::Finish,
            K_BYE => Frame::Bye { rank: r.u32()? },
            K_STEP => {
                let seq = r.u64()?;
                let program = r.u32()?;
                let n = r.u32()? as usize;
                // Each input takes at least its 8-byte length.
                if n > r.left() / 8 {
                    return Err(FrameError::Bad(format!("{n} step inputs")));
                }
                let mut inputs = Vec::with_capacity(n);
                for _ in 0..n {
                    inputs.push(r.bytes()?);
                }
                Frame::Step {
                    seq,
                    program,
                    inputs,
                }
            }
            K_STEP_DONE => {
                let seq = r.u64()?;
                let sent = r.u64()?;
                let n = r.u32()? as usize;
                if n > sentrons || n * COUNTER_BYTES > r.left() {
                    return Err(FrameError::Bad(format!("{n} counter sets")));
                }
                let mut counters = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = sentron(&mut r, "sentron")?;
                    counters.push(r.counters(id)?);
                }
                let output = r.bytes()?;
                Frame::StepDone {
                    seq,
                    counters,
                    output,
                    sent,
                }
            }
            k => return Err(FrameError::Bad(format!("frame kind {k}"))),
        };
        if r.left() != 0 {
            return Err(FrameError::Bad(format!(
                "{} bytes after the end of a frame",
                r.left()
            )));
        }
        Ok(f)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if n > self.left() {
            return Err(FrameError::Short {
                at: self.at,
                need: n,
                have: self.left(),
            });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// Bytes with a u64 length before them (checked against what is there).
    fn bytes(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.u64()?;
        if n > self.left() as u64 {
            return Err(FrameError::Bad(format!(
                "{n} bytes in {} left",
                self.left()
            )));
        }
        Ok(self.take(n as usize)?.to_vec())
    }
    fn counters(&mut self, sentron: u32) -> Result<Counters, FrameError> {
        let mut c = Counters::new(sentron);
        let mut v = [0u64; 18];
        for x in v.iter_mut() {
            *x = self.u64()?;
        }
        c.siws = v[0];
        c.ops = [v[1], v[2], v[3]];
        c.nops = [v[4], v[5], v[6]];
        c.ppt_lookups = v[7];
        c.ppt_hits = v[8];
        c.ppt_misses = v[9];
        c.bytes_gathered = v[10];
        c.bytes_scattered = v[11];
        c.bytes_copied = v[12];
        c.msg_bytes = v[13];
        c.msgs_sent = v[14];
        c.flops = v[15];
        c.host_blocked_ns = v[16];
        c.host_ns = v[17];
        Ok(c)
    }
    fn text(&mut self) -> Result<String, FrameError> {
        let n = self.u32()? as usize;
        if n > MAX_TEXT_BYTES {
            return Err(FrameError::Bad(format!("text of {n} bytes")));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::Bad("text is not UTF-8".into()))
    }
    fn kind(&mut self, sentrons: usize) -> Result<CollKind, FrameError> {
        let k = self.u8()?;
        let arg = self.u32()?;
        match k {
            0 => Ok(CollKind::Barrier),
            1 if arg <= u32::from(vtpu_isa::word::REDUCE_CAT) => Ok(CollKind::Reduce(arg as u8)),
            2 if (arg as usize) < sentrons => Ok(CollKind::Cast(arg)),
            _ => Err(FrameError::Bad(format!("collective kind {k} ({arg})"))),
        }
    }
    fn f32s(&mut self, n: u64) -> Result<Vec<f32>, FrameError> {
        let bytes = n
            .checked_mul(4)
            .filter(|&b| b <= self.left() as u64)
            .ok_or_else(|| FrameError::Bad(format!("{n} values in {} bytes", self.left())))?;
        Ok(self
            .take(bytes as usize)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn tile(&mut self) -> Result<(u32, u32, Vec<f32>), FrameError> {
        let rows = self.u32()?;
        let cols = self.u32()?;
        let n = (rows as u64) * (cols as u64);
        match self.u8()? {
            0 => {
                // The element count must fit the bytes that are there before anything
                // is allocated (a frame's length is already capped).
                let bytes = n
                    .checked_mul(4)
                    .filter(|&b| b <= self.left() as u64)
                    .ok_or_else(|| {
                        FrameError::Bad(format!("a {rows}x{cols} tile in {} bytes", self.left()))
                    })?;
                let b = self.take(bytes as usize)?;
                let data = b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Ok((rows, cols, data))
            }
            1 => {
                // Mostly zeros: the tile may be larger than the frame, but never
                // larger than a frame could hold dense.
                if n.checked_mul(4).is_none_or(|b| b > MAX_FRAME_BYTES as u64) {
                    return Err(FrameError::Bad(format!(
                        "a {rows}x{cols} tile (at most {MAX_FRAME_BYTES} bytes)"
                    )));
                }
                let count = self.u32()? as usize;
                if count > self.left() / 8 {
                    return Err(FrameError::Bad(format!(
                        "{count} runs in {} bytes",
                        self.left()
                    )));
                }
                let mut data = vec![0f32; n as usize];
                let mut end = 0usize;
                for _ in 0..count {
                    let start = self.u32()? as usize;
                    let len = self.u32()? as usize;
                    if start < end || len == 0 || start + len > data.len() {
                        return Err(FrameError::Bad(format!(
                            "a run of {len} at {start} in a tile of {n} (previous run ends at {end})"
                        )));
                    }
                    let vals = self.f32s(len as u64)?;
                    data[start..start + len].copy_from_slice(&vals);
                    end = start + len;
                }
                Ok((rows, cols, data))
            }
            m => Err(FrameError::Bad(format!("tile encoding {m}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let b = f.encode();
        assert_eq!(Frame::decode(&b, 8).unwrap(), f);
        // Every strict prefix is refused, never a panic.
        for cut in 0..b.len() {
            assert!(
                Frame::decode(&b[..cut], 8).is_err(),
                "prefix {cut} of {f:?}"
            );
        }
    }

    #[test]
    fn frames_round_trip_and_prefixes_are_refused() {
        round_trip(Frame::Msg {
            from: 0,
            to: 7,
            msg: Message::Scalar(-5),
        });
        round_trip(Frame::Msg {
            from: 3,
            to: 1,
            msg: Message::Tile {
                rows: 2,
                cols: 2,
                data: vec![1.0, -0.0, f32::MAX, 1e-40],
            },
        });
        round_trip(Frame::Arrive {
            members: 0b1011,
            gen: 9,
            sentron: 3,
            kind: CollKind::Reduce(1),
            tile: Some(CollTile {
                rows: 1,
                cols: 1,
                data: vec![2.5],
            }),
        });
        round_trip(Frame::Arrive {
            members: 0b11,
            gen: 2,
            sentron: 1,
            kind: CollKind::Reduce(vtpu_isa::word::REDUCE_CAT),
            tile: Some(CollTile {
                rows: 2,
                cols: 1,
                data: vec![1.5, -2.0],
            }),
        });
        round_trip(Frame::Result {
            members: 3,
            gen: 1,
            outcome: Outcome::Failed("mismatch ü".into()),
        });
        round_trip(Frame::Status {
            rank: 1,
            entries: vec![StatusEntry {
                sentron: 2,
                status: SentronStatus::Coll {
                    members: 6,
                    kind: CollKind::Cast(1),
                    gen: 4,
                },
                pc: 17,
                op: "CCAST t0, @1, {1,2}".into(),
                progress: 12,
            }],
        });
        round_trip(Frame::Done(Box::new(RankReport {
            rank: 2,
            counters: vec![Counters {
                siws: 5,
                ops: [1, 2, 3],
                host_ns: 77,
                ..Counters::new(4)
            }],
            pages: vec![ShownPage {
                coord: "1.1.1/1.1.1/1.1.1".into(),
                note: String::new(),
                values: vec![47.0, -0.0],
            }],
            frames_sent: 3,
            bytes_sent: 300,
            msg_frames_sent: 1,
            msg_bytes_sent: 20,
            host_wall_ns: 9,
        })));
        round_trip(Frame::Finish);
        round_trip(Frame::Bye { rank: 1 });
        round_trip(Frame::Step {
            seq: 41,
            program: 2,
            inputs: vec![vec![1, 2, 3], Vec::new(), vec![0xff; 9]],
        });
        round_trip(Frame::StepDone {
            seq: 41,
            counters: vec![Counters {
                siws: 5,
                host_blocked_ns: 8,
                ..Counters::new(7)
            }],
            output: vec![9; 12],
            sent: 4096,
        });
    }

    #[test]
    fn mostly_zero_tiles_travel_as_runs_and_keep_every_bit() {
        // A whole-row all-gather contribution: one rank's rows, zeros elsewhere, with a
        // -0.0 (a value, not a zero) and short zero gaps inside the run.
        let mut data = vec![0.0f32; 576];
        for (i, x) in data[192..384].iter_mut().enumerate() {
            *x = if i % 50 == 7 {
                0.0
            } else {
                i as f32 * 0.5 - 3.0
            };
        }
        data[500] = -0.0;
        let f = Frame::Arrive {
            members: 0b11,
            gen: 1,
            sentron: 1,
            kind: CollKind::Reduce(0),
            tile: Some(CollTile {
                rows: 1,
                cols: 576,
                data: data.clone(),
            }),
        };
        let b = f.encode();
        assert!(b.len() < 576 * 4 / 2, "{} bytes", b.len());
        let Frame::Arrive { tile: Some(t), .. } = Frame::decode(&b, 8).unwrap() else {
            panic!("not an arrival")
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&t.data), bits(&data));
        round_trip(f);
        // Dense tiles stay dense.
        round_trip(Frame::Result {
            members: 3,
            gen: 2,
            outcome: Outcome::Done(Some(Arc::new(CollTile {
                rows: 2,
                cols: 3,
                data: vec![1.0, 2.0, 0.0, 4.0, 5.0, 6.0],
            }))),
        });
    }

    #[test]
    fn hostile_sparse_tiles_are_refused() {
        let arrive = |body: &[u8]| {
            let mut b = vec![K_ARRIVE];
            b.extend_from_slice(&1u64.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.push(1);
            b.extend_from_slice(&0u32.to_le_bytes());
            b.push(1);
            b.extend_from_slice(body);
            Frame::decode(&b, 4)
        };
        let tile = |rows: u32, cols: u32, runs: &[(u32, u32)], vals: usize| {
            let mut b = Vec::new();
            b.extend_from_slice(&rows.to_le_bytes());
            b.extend_from_slice(&cols.to_le_bytes());
            b.push(1);
            b.extend_from_slice(&(runs.len() as u32).to_le_bytes());
            for &(s, l) in runs {
                b.extend_from_slice(&s.to_le_bytes());
                b.extend_from_slice(&l.to_le_bytes());
                b.extend(std::iter::repeat_n(0x3f, 4 * vals));
            }
            b
        };
        assert!(arrive(&tile(1, 8, &[(2, 3)], 3)).is_ok());
        // A 2^32 x 2^32 tile of no runs: refused before allocating it.
        assert!(arrive(&tile(u32::MAX, u32::MAX, &[], 0)).is_err());
        // A run past the end, overlapping runs, an empty run, values missing.
        assert!(arrive(&tile(1, 8, &[(6, 3)], 3)).is_err());
        assert!(arrive(&tile(1, 8, &[(2, 3), (3, 1)], 3)).is_err());
        assert!(arrive(&tile(1, 8, &[(2, 0)], 0)).is_err());
        assert!(arrive(&tile(1, 8, &[(2, 3)], 2)).is_err());
    }

    #[test]
    fn step_frames_with_lying_lengths_are_refused() {
        // A step claiming 2^32-1 inputs in a few bytes.
        let mut b = vec![K_STEP];
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        assert!(matches!(Frame::decode(&b, 4), Err(FrameError::Bad(_))));
        // An input claiming more bytes than follow.
        let mut b = vec![K_STEP];
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(matches!(Frame::decode(&b, 4), Err(FrameError::Bad(_))));
        // Counters of a sentron beyond the machine.
        let b = Frame::StepDone {
            seq: 1,
            counters: vec![Counters::new(5)],
            output: Vec::new(),
            sent: 0,
        }
        .encode();
        assert!(matches!(Frame::decode(&b, 4), Err(FrameError::Bad(_))));
    }

    #[test]
    fn hostile_frames_are_refused() {
        // A sentron beyond the machine.
        let b = Frame::Msg {
            from: 0,
            to: 7,
            msg: Message::Scalar(1),
        }
        .encode();
        assert!(matches!(Frame::decode(&b, 4), Err(FrameError::Bad(_))));
        // A tile header claiming 2^32 x 2^32 elements with 4 bytes behind it.
        let mut b = vec![K_MSG];
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(Frame::decode(&b, 4).is_err());
        // Trailing bytes, unknown kinds.
        let mut b = Frame::Finish.encode();
        b.push(0);
        assert!(Frame::decode(&b, 4).is_err());
        assert!(Frame::decode(&[99], 4).is_err());
        // A status frame claiming more sentrons than the machine has.
        let mut b = vec![K_STATUS];
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1000u32.to_le_bytes());
        assert!(Frame::decode(&b, 4).is_err());
    }
}

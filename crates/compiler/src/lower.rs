//! The compiler driver: a [`Graph`] to a [`Program`], packed or unpacked.
//!
//! Per stream: normalise (a block before every loop; a copy where a carried value's
//! initial value is also needed elsewhere), insert prefetches (packed), build the
//! dependency graph of every region, schedule loops (modulo, else list) and blocks
//! (list with a register-pressure guard), emit words (prologue / kernel / epilogue),
//! allocate registers. If a pipelined loop makes registers run out, that loop is
//! scheduled without pipelining and the stream is lowered again. The result is checked
//! by the ISA validator before it is returned.
//!
//! The unpacked form is the same graph, one op per word in graph order, loops not
//! pipelined, no inserted prefetches: the baseline every report compares against.

use std::collections::{HashMap, HashSet};

use crate::coords::CoordInfo;
use crate::deps::{self, DepGraph};
use crate::error::{CompileError, Result};
use crate::graph::{Graph, LoopId, NodeId, Place, Region, SentronGraph, ValueDef};
use crate::modulo::{self, ModSched};
use crate::pipeline::{self, EWord, LoopPlan};
use crate::regalloc::{self, LoopAlloc, LoopClasses, LoopColors, MAX_UNROLL};
use crate::schedule::{self, Pressure};
use vtpu_isa::{Opcode, Pipe, Program, RegFile, Siw, Stream};

/// Packed (scheduled) or unpacked (one op per word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Packed,
    Unpacked,
}

/// What the compiler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    pub mode: Mode,
    /// Insert SPREFCH ahead of gathers (packed only).
    pub prefetch: bool,
    /// Software-pipeline loops (packed only).
    pub pipeline: bool,
    /// Pipeline every loop that has a modulo schedule, even when the plain loop would
    /// be shorter (for testing the pipelined code paths).
    pub pipeline_always: bool,
}

impl CompileOptions {
    pub fn packed() -> CompileOptions {
        CompileOptions {
            mode: Mode::Packed,
            prefetch: true,
            pipeline: true,
            pipeline_always: false,
        }
    }
    pub fn unpacked() -> CompileOptions {
        CompileOptions {
            mode: Mode::Unpacked,
            prefetch: false,
            pipeline: false,
            pipeline_always: false,
        }
    }
}

/// How one loop was compiled.
#[derive(Clone, Debug)]
pub struct LoopReport {
    pub trip: u64,
    pub body_ops: usize,
    pub pipelined: bool,
    pub ii: u32,
    pub stages: u32,
    pub unroll: u32,
    pub res_mii: u32,
    pub rec_mii: u32,
    pub kernel_trips: u64,
    pub why_not: Option<String>,
}

/// How one stream was compiled.
#[derive(Clone, Debug)]
pub struct StreamReport {
    pub sentron: Option<u32>,
    /// "graph", "vasm (renamed)" or "vasm (in place)".
    pub frontend: String,
    pub ops: usize,
    pub words: usize,
    pub prefetches: usize,
    pub copies: usize,
    pub loops: Vec<LoopReport>,
}

/// A compiled program and how it was made.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub program: Program,
    pub streams: Vec<StreamReport>,
}

/// Compile a graph.
pub fn compile(g: &Graph, opts: &CompileOptions) -> Result<Compiled> {
    crate::messages::check(g)?;
    let sizes: HashMap<vtpu_phext::Coord, u64> = g
        .pages
        .iter()
        .map(|p| {
            let n = p.shape[0] as usize * p.shape[1] as usize;
            (p.coord, p.dtype.bytes_for(n).unwrap_or(0) as u64)
        })
        .collect();
    let mut streams = Vec::new();
    let mut reports = Vec::new();
    for sg in &g.streams {
        let (words, rep) = lower_stream(sg, opts, &sizes)?;
        streams.push(Stream {
            sentron: sg.sentron,
            words,
        });
        reports.push(rep);
    }
    let program = Program {
        pages: g.pages.clone(),
        streams,
    };
    check_output(&program)?;
    Ok(Compiled {
        program,
        streams: reports,
    })
}

/// The compiler's own output must validate (a failure is a compiler bug).
pub fn check_output(p: &Program) -> Result<()> {
    let opts = vtpu_isa::ValidateOptions {
        sentrons: None,
        part_limit: vtpu_phext::MAX_PART_LIMIT,
    };
    vtpu_isa::validate(p, &opts).map_err(|errs| {
        let text: Vec<String> = errs.iter().take(5).map(|e| e.to_string()).collect();
        CompileError::Internal(format!("the compiled program does not validate: {}", text.join("; ")))
    })
}

/// Lower one stream. `sizes`: bytes of the program's declared pages (prefetch cost).
pub fn lower_stream(
    sg_in: &SentronGraph,
    opts: &CompileOptions,
    sizes: &HashMap<vtpu_phext::Coord, u64>,
) -> Result<(Vec<Siw>, StreamReport)> {
    if let Some(l) = sg_in.in_loop() {
        return Err(CompileError::Structure {
            at: sg_in.name(),
            what: format!("loop {} is still open (end_loop)", l.0),
        });
    }
    let mut sg = sg_in.clone();
    let copies = normalize(&mut sg);
    let ci = CoordInfo::analyze(&sg);
    let packed = opts.mode == Mode::Packed;
    let prefetches = if packed && opts.prefetch {
        crate::prefetch::insert(&mut sg, &ci, sizes)
    } else {
        0
    };
    let readers = sg.readers();
    let pos = deps::positions(&sg);
    // Loops not to pipeline, and the smallest II to try for the others.
    let mut no_pipe: HashSet<LoopId> = HashSet::new();
    let mut no_ahead: HashSet<LoopId> = HashSet::new();
    let mut min_ii: HashMap<LoopId, u32> = HashMap::new();
    let mut in_order = false;
    loop {
        match try_lower(&sg, &ci, &readers, &pos, opts, &no_pipe, &min_ii, &no_ahead, in_order) {
            Ok((words, loops)) => {
                let report = StreamReport {
                    sentron: sg.sentron,
                    frontend: "graph".into(),
                    ops: sg.nodes.len(),
                    words: words.len(),
                    prefetches,
                    copies,
                    loops,
                };
                return Ok((words, report));
            }
            Err((e @ CompileError::RegisterPressure { .. }, plans)) => {
                if std::env::var_os("VTPU_COMPILER_DEBUG").is_some() {
                    eprintln!("retrying after: {e}");
                }
                // Give the hungriest pipelined loop a longer II (slack lets the sink pass
                // shorten lifetimes); past the plain body's length, stop pipelining it.
                let victim = plans
                    .iter()
                    .filter(|p| p.pipelined && !no_pipe.contains(&p.lp))
                    .max_by_key(|p| p.stages * p.unroll);
                match victim {
                    Some(p) if p.stages == 2 && p.why_not.is_some() => {
                        // A prefetch-ahead plan: drop the look-ahead.
                        no_ahead.insert(p.lp);
                    }
                    Some(p) => {
                        let next = p.ii + (p.ii / 8).max(1);
                        if min_ii.get(&p.lp).is_some_and(|&m| m > p.ii) || min_ii.len() > 64 * plans.len().max(1) {
                            no_pipe.insert(p.lp);
                        } else {
                            min_ii.insert(p.lp, next);
                        }
                    }
                    // Then stop reordering blocks (which can only lengthen lifetimes).
                    None if packed && !in_order => in_order = true,
                    None => return Err(e),
                }
            }
            Err((e, _)) => return Err(e),
        }
    }
}

type TryResult = std::result::Result<(Vec<Siw>, Vec<LoopReport>), (CompileError, Vec<LoopPlan>)>;

fn try_lower(
    sg: &SentronGraph,
    ci: &CoordInfo,
    readers: &[Vec<NodeId>],
    pos: &[u32],
    opts: &CompileOptions,
    no_pipe: &HashSet<LoopId>,
    min_ii: &HashMap<LoopId, u32>,
    no_ahead: &HashSet<LoopId>,
    in_order: bool,
) -> TryResult {
    let packed = opts.mode == Mode::Packed;
    let mut plans: Vec<LoopPlan> = Vec::new();
    let mut classes: HashMap<LoopId, (LoopClasses, LoopColors)> = HashMap::new();
    for (li, info) in sg.loops.iter().enumerate() {
        let lp = LoopId(li as u32);
        let dg = deps::build(sg, &info.body, Place::Loop(lp), ci, readers, pos).map_err(|e| (e, Vec::new()))?;
        let allow_pipe = packed && opts.pipeline && !no_pipe.contains(&lp);
        let first_ii = min_ii.get(&lp).copied().unwrap_or(0);
        let mut plan = plan_loop(sg, lp, &dg, packed, allow_pipe, opts.pipeline_always, in_order, first_ii);
        if packed && allow_pipe && !in_order && !plan.pipelined && !no_ahead.contains(&lp) {
            if let Some(p) = prefetch_ahead(&dg, &plan) {
                plan = p;
            }
        }
        if packed && !in_order {
            crate::sink::sink(sg, lp, &dg, &mut plan.time, plan.ii, plan.full_prefetch, readers);
            let probe = plan.clone();
            let eval = |t: &[u32]| {
                let mut p = probe.clone();
                p.time = t.to_vec();
                let cl = regalloc::loop_classes(sg, &p, pos, readers);
                (regalloc::unroll_needed(&cl, p.ii), regalloc::total_lifetime(&cl))
            };
            crate::sink::improve(&dg, &mut plan.time, plan.ii, plan.full_prefetch, &eval);
        }
        let mut cl = regalloc::loop_classes(sg, &plan, pos, readers);
        let mut u = regalloc::unroll_needed(&cl, plan.ii);
        if u > MAX_UNROLL && plan.pipelined {
            plan = plan_loop(sg, lp, &dg, packed, false, false, in_order, 0);
            plan.why_not = Some(format!("register lifetimes would need {u} kernel copies (limit {MAX_UNROLL})"));
            cl = regalloc::loop_classes(sg, &plan, pos, readers);
            u = regalloc::unroll_needed(&cl, plan.ii);
        }
        if u > MAX_UNROLL {
            return Err((
                CompileError::TooLarge {
                    what: format!("{}: kernel unroll for register rotation of loop {li}", sg.name()),
                    got: u.into(),
                    limit: MAX_UNROLL.into(),
                },
                plans,
            ));
        }
        plan.unroll = u;
        if std::env::var_os("VTPU_COMPILER_DEBUG").is_some() && plan.pipelined {
            let mut order: Vec<usize> = (0..dg.len()).collect();
            order.sort_by_key(|&i| plan.time[i]);
            for i in order {
                eprintln!("  t {:4} {}", plan.time[i], sg.describe(dg.nodes[i]));
            }
        }
        check_plan(sg, &dg, &plan).map_err(|e| (e, plans.clone()))?;
        let colors = regalloc::color_loop(&cl, plan.ii, u);
        classes.insert(lp, (cl, colors));
        plans.push(plan);
    }
    let pressure_info = if packed { Some(PressureInfo::new(sg)) } else { None };
    let mut words: Vec<EWord> = Vec::new();
    let mut spans = Vec::new();
    for (r, region) in sg.regions.iter().enumerate() {
        match region {
            Region::Block(nodes) => {
                let dg = deps::build(sg, nodes, Place::Block(r as u32), ci, readers, pos)
                    .map_err(|e| (e, plans.clone()))?;
                let time = match &pressure_info {
                    Some(_) if in_order => schedule::in_order(&dg),
                    Some(pi) => schedule::list_schedule(&dg, Some(&pi.block(sg, r, &dg, readers))),
                    None => schedule::sequential(&dg),
                };
                let counter = match sg.regions.get(r + 1) {
                    Some(Region::Loop(l)) => plans
                        .get(l.0 as usize)
                        .filter(|p| p.needs_counter())
                        .map(|p| (*l, p.kernel_trips())),
                    _ => None,
                };
                pipeline::emit_block(&mut words, sg, nodes, &time, counter, !packed);
            }
            Region::Loop(l) => {
                let plan = &plans[l.0 as usize];
                spans.push(pipeline::emit_loop(&mut words, sg, plan, pos, readers));
            }
        }
        if words.len() > vtpu_isa::MAX_STREAM_WORDS {
            return Err((
                CompileError::TooLarge {
                    what: format!("the word count of {}", sg.name()),
                    got: words.len() as u64,
                    limit: vtpu_isa::MAX_STREAM_WORDS as u64,
                },
                plans,
            ));
        }
    }
    let allocs: HashMap<LoopId, LoopAlloc<'_>> = plans
        .iter()
        .map(|p| {
            let (cl, co) = &classes[&p.lp];
            (
                p.lp,
                LoopAlloc {
                    plan: p,
                    classes: cl,
                    colors: co,
                },
            )
        })
        .collect();
    let siws = match regalloc::allocate(sg, &words, &spans, &allocs) {
        Ok(s) => s,
        Err(e) => return Err((e, plans.clone())),
    };
    let reports = plans
        .iter()
        .map(|p| LoopReport {
            trip: p.trip,
            body_ops: sg.lp(p.lp).body.len(),
            pipelined: p.pipelined,
            ii: p.ii,
            stages: p.stages,
            unroll: p.unroll,
            res_mii: p.res_mii,
            rec_mii: p.rec_mii,
            kernel_trips: p.kernel_trips(),
            why_not: p.why_not.clone(),
        })
        .collect();
    Ok((siws, reports))
}

/// A loop schedule must respect every dependency and use each (pipe, row) slot once,
/// leaving the loop branch's C slot free when the kernel loops; a failure here is a
/// compiler bug, reported instead of miscompiling.
fn check_plan(sg: &SentronGraph, dg: &DepGraph, plan: &LoopPlan) -> Result<()> {
    let ii = plan.ii.max(1);
    for e in &dg.edges {
        let (a, b) = (i64::from(plan.time[e.from as usize]), i64::from(plan.time[e.to as usize]));
        if b + i64::from(ii) * i64::from(e.dist) < a + e.lat.get(ii, plan.full_prefetch) {
            return Err(CompileError::Internal(format!(
                "{}: loop schedule breaks a dependency from {} to {}",
                sg.name(),
                sg.describe(dg.nodes[e.from as usize]),
                sg.describe(dg.nodes[e.to as usize])
            )));
        }
    }
    let mut used = vec![[false; 3]; ii as usize];
    if plan.needs_counter() {
        used[ii as usize - 1][2] = true;
    }
    for (i, &t) in plan.time.iter().enumerate() {
        let slot = &mut used[(t % ii) as usize][dg.pipe[i] as usize];
        if *slot {
            return Err(CompileError::Internal(format!(
                "{}: two ops in one slot of the loop schedule ({})",
                sg.name(),
                sg.describe(dg.nodes[i])
            )));
        }
        *slot = true;
    }
    Ok(())
}

/// Words a tile may wait between the op that makes it and the op that reads it, in a
/// pipelined loop (tiles are the scarcest registers).
pub const TILE_GAP: u32 = 8;

/// Lifetime limits for every tile passed from one op to another in the loop body.
fn tile_limits(sg: &SentronGraph, dg: &DepGraph) -> Vec<modulo::Limit> {
    dg.edges
        .iter()
        .filter(|e| e.dist == 0 && e.lat == deps::Lat::Fixed(1))
        .filter(|e| {
            let (p, c) = (sg.node(dg.nodes[e.from as usize]), sg.node(dg.nodes[e.to as usize]));
            p.defs.iter().any(|d| sg.value(*d).file == RegFile::Tile && c.uses.contains(d))
        })
        .map(|e| modulo::Limit {
            consumer: e.to,
            producer: e.from,
            gap: TILE_GAP,
        })
        .collect()
}

/// Schedule one loop body: modulo if allowed and shorter, else list (or sequential).
fn plan_loop(
    sg: &SentronGraph,
    lp: LoopId,
    dg: &DepGraph,
    packed: bool,
    allow_pipe: bool,
    always: bool,
    in_order: bool,
    first_ii: u32,
) -> LoopPlan {
    let trip = sg.lp(lp).trip;
    let n = dg.len() as u32;
    let base = |time: Vec<u32>, ii: u32, why: Option<String>| LoopPlan {
        lp,
        trip,
        ii,
        time,
        stages: 1,
        unroll: 1,
        pipelined: false,
        res_mii: modulo::res_mii(dg, true),
        rec_mii: 0,
        full_prefetch: false,
        why_not: why,
    };
    if !packed {
        return base(schedule::sequential(dg), n + 1, Some("unpacked".into()));
    }
    let time = if in_order {
        schedule::in_order(dg)
    } else {
        schedule::list_schedule(dg, None)
    };
    let len = time.iter().max().map_or(0, |&t| t + 1);
    let c_last = (0..dg.len()).any(|i| dg.pipe[i] == Pipe::C && time[i] + 1 == len);
    let ii_list = len + u32::from(c_last);
    if !allow_pipe || in_order {
        return base(time, ii_list, Some("pipelining disabled for this loop (registers)".into()));
    }
    let max_ii = if always { ii_list.saturating_mul(2) } else { ii_list };
    if first_ii > max_ii {
        return base(time, ii_list, Some("registers ran out at every II up to the plain body's".into()));
    }
    let limits = tile_limits(sg, dg);
    let ms: Option<ModSched> = modulo::modulo_schedule(dg, true, first_ii, max_ii, &limits);
    match ms {
        Some(ms) if u64::from(ms.stages) <= trip => {
            let piped = (trip + u64::from(ms.stages) - 1) * u64::from(ms.ii);
            let plain = trip * u64::from(ii_list);
            // A body with prefetches is worth pipelining at the same steady-state rate:
            // only then does a prefetch run an iteration ahead of its gather.
            let prefetching = ms.full_prefetch && ms.stages > 1 && dg.prefetch.iter().any(|&p| p) && ms.ii <= ii_list;
            if piped <= plain || always || prefetching {
                LoopPlan {
                    lp,
                    trip,
                    ii: ms.ii,
                    time: ms.time,
                    stages: ms.stages,
                    unroll: 1,
                    pipelined: ms.stages > 1 || ms.ii < ii_list,
                    res_mii: ms.res_mii,
                    rec_mii: ms.rec_mii,
                    full_prefetch: ms.full_prefetch,
                    why_not: None,
                }
            } else {
                base(time, ii_list, Some("the pipelined loop would be longer".into()))
            }
        }
        Some(ms) => base(
            time,
            ii_list,
            Some(format!("{} iteration(s), fewer than the {} stages", trip, ms.stages)),
        ),
        None => base(time, ii_list, Some("no modulo schedule shorter than the plain body".into())),
    }
}

/// The plain body schedule as a two-stage pipeline in which only the prefetches (and
/// the address computations feeding them) run one iteration ahead: same words per
/// iteration, each page fetched a whole iteration before its gathers. None if the loop
/// has no prefetch, too few iterations, or a dependency would break.
fn prefetch_ahead(dg: &DepGraph, plan: &LoopPlan) -> Option<LoopPlan> {
    if !dg.prefetch.iter().any(|&p| p) || plan.trip < 2 || plan.stages != 1 {
        return None;
    }
    let n = dg.len();
    // Prefetches and everything they depend on (in this iteration or, through carried
    // values, the one before) stay in stage 0.
    let mut early = vec![false; n];
    let mut stack: Vec<usize> = (0..n).filter(|&i| dg.prefetch[i]).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut early[i], true) {
            continue;
        }
        for &e in &dg.pred[i] {
            stack.push(dg.edges[e as usize].from as usize);
        }
    }
    if (0..n).all(|i| early[i]) {
        return None;
    }
    let ii = plan.ii;
    let time: Vec<u32> = (0..n).map(|i| plan.time[i] + if early[i] { 0 } else { ii }).collect();
    let ok = dg.edges.iter().all(|e| {
        let (a, b) = (i64::from(time[e.from as usize]), i64::from(time[e.to as usize]));
        b + i64::from(ii) * i64::from(e.dist) >= a + e.lat.get(ii, true)
    });
    ok.then(|| LoopPlan {
        time,
        stages: 2,
        pipelined: true,
        full_prefetch: true,
        why_not: Some("two stages: prefetches one iteration ahead of the plain body".into()),
        ..plan.clone()
    })
}

/// Give every loop a block before it, and give every carried value an initial value
/// of its own (a copy when the value is also used elsewhere). Returns the copies made.
fn normalize(sg: &mut SentronGraph) -> usize {
    for l in 0..sg.loops.len() {
        sg.block_before(LoopId(l as u32));
    }
    let readers = sg.readers();
    // Uses of each value as an op operand or as a carried value's initial value.
    let mut uses: HashMap<crate::graph::Value, usize> = HashMap::new();
    for l in &sg.loops {
        for p in &l.phis {
            *uses.entry(p.init).or_default() += 1;
        }
    }
    let mut copies = 0;
    for l in 0..sg.loops.len() {
        let lp = LoopId(l as u32);
        for k in 0..sg.loops[l].phis.len() {
            let init = sg.loops[l].phis[k].init;
            let shared = uses.get(&init).copied().unwrap_or(0) + readers[init.0 as usize].len() > 1;
            if !shared {
                continue;
            }
            let file = sg.value(init).file;
            let pre = sg.block_before(lp);
            let code = match file {
                RegFile::Tile => Opcode::DMov,
                RegFile::Scalar => Opcode::DAddi,
                RegFile::Coord => Opcode::SIndexi,
            };
            let (_, c) = sg.insert_synthetic(code, vec![init], Some(file), Place::Block(pre), None);
            if let Some(c) = c {
                sg.loops[l].phis[k].init = c;
                copies += 1;
            }
        }
    }
    copies
}

/// Region-level liveness for the block scheduler's register-pressure guard.
struct PressureInfo {
    region_of: Vec<u32>,
    /// Per value: region of its last use.
    last_region: Vec<u32>,
    /// Per region: values of each file live into it from earlier regions.
    reserved: Vec<[usize; 3]>,
}

fn fidx(f: RegFile) -> usize {
    match f {
        RegFile::Scalar => 0,
        RegFile::Tile => 1,
        RegFile::Coord => 2,
    }
}

impl PressureInfo {
    fn new(sg: &SentronGraph) -> PressureInfo {
        let mut loop_region = vec![0u32; sg.loops.len()];
        for (r, reg) in sg.regions.iter().enumerate() {
            if let Region::Loop(l) = reg {
                loop_region[l.0 as usize] = r as u32;
            }
        }
        let region_of: Vec<u32> = sg
            .nodes
            .iter()
            .map(|n| match n.place {
                Place::Block(r) => r,
                Place::Loop(l) => loop_region[l.0 as usize],
            })
            .collect();
        let nv = sg.values.len();
        let mut def_region = vec![0u32; nv];
        for (i, v) in sg.values.iter().enumerate() {
            def_region[i] = match v.def {
                ValueDef::Node { node, .. } => region_of[node.0 as usize],
                ValueDef::Phi { lp, .. } | ValueDef::Output { lp, .. } => loop_region[lp.0 as usize],
            };
        }
        let mut last_region = def_region.clone();
        for (i, n) in sg.nodes.iter().enumerate() {
            for u in &n.uses {
                let lr = &mut last_region[u.0 as usize];
                *lr = (*lr).max(region_of[i]);
            }
        }
        for (l, info) in sg.loops.iter().enumerate() {
            for p in &info.phis {
                let lr = &mut last_region[p.init.0 as usize];
                *lr = (*lr).max(loop_region[l]);
            }
        }
        let nr = sg.regions.len();
        let mut diff = vec![[0i64; 3]; nr + 2];
        for (i, v) in sg.values.iter().enumerate() {
            if v.scope.is_some() {
                continue;
            }
            let (d, u) = (def_region[i] as usize, last_region[i] as usize);
            if u > d {
                diff[d + 1][fidx(v.file)] += 1;
                diff[u + 1][fidx(v.file)] -= 1;
            }
        }
        let mut reserved = vec![[0usize; 3]; nr];
        let mut acc = [0i64; 3];
        for (r, res) in reserved.iter_mut().enumerate() {
            for f in 0..3 {
                acc[f] += diff[r][f];
                res[f] = acc[f].max(0) as usize;
            }
        }
        PressureInfo {
            region_of,
            last_region,
            reserved,
        }
    }

    fn block(&self, sg: &SentronGraph, r: usize, dg: &DepGraph, readers: &[Vec<NodeId>]) -> Pressure {
        let sizes = [vtpu_isa::NUM_SCALAR_REGS, vtpu_isa::NUM_TILE_REGS, vtpu_isa::NUM_COORD_REGS];
        let mut p = Pressure::default();
        for f in 0..3 {
            p.limit[f] = sizes[f].saturating_sub(self.reserved[r][f]).max(2);
        }
        let mut local: HashMap<crate::graph::Value, u32> = HashMap::new();
        for &n in &dg.nodes {
            let mut adds = [0u8; 3];
            for &d in &sg.node(n).defs {
                let escapes = self.last_region[d.0 as usize] as usize > r;
                let local_readers = readers[d.0 as usize]
                    .iter()
                    .filter(|y| self.region_of[y.0 as usize] as usize == r)
                    .count() as u32;
                if local_readers == 0 && !escapes {
                    continue;
                }
                let f = fidx(sg.value(d).file);
                adds[f] = adds[f].saturating_add(1);
                local.insert(d, p.remaining.len() as u32);
                p.remaining.push(local_readers);
                p.file.push(f as u8);
                p.escapes.push(escapes);
            }
            p.adds.push(adds);
        }
        for &n in &dg.nodes {
            let mut reads: Vec<u32> = sg.node(n).uses.iter().filter_map(|u| local.get(u).copied()).collect();
            reads.sort_unstable();
            reads.dedup();
            p.reads.push(reads);
        }
        p
    }
}

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
use crate::deps;
use crate::error::{CompileError, Result};
use crate::graph::{Graph, LoopId, NodeId, Place, Region, SentronGraph};
use crate::pipeline::{self, EWord, LoopPlan};
use crate::plan::{check_plan, improve_lifetimes, plan_loop, prefetch_ahead, PlanMode};
use crate::pressure::PressureInfo;
use crate::regalloc::{self, LoopAlloc, LoopClasses, LoopColors, MAX_UNROLL};
use crate::schedule;
use vtpu_isa::{Opcode, Program, RegFile, Siw, Stream};

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
    /// Words the fast executor must run with a copy of the register file (a host cost,
    /// see `deps::reads_late`).
    pub buffered_words: usize,
}

/// Words of a stream the fast executor runs through its slow exact path.
pub fn buffered_words(words: &[Siw]) -> usize {
    words
        .iter()
        .filter(|w| {
            vtpu_runtime::fast::PreWord::new(w).order == vtpu_runtime::fast::Order::Buffered
        })
        .count()
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
        CompileError::Internal(format!(
            "the compiled program does not validate: {}",
            text.join("; ")
        ))
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
    // What the retries relax: loops not to pipeline (or not to prefetch ahead), the
    // smallest II for the others, and regions scheduled in order.
    let mut relax = Relax::default();
    let mut cache = PlanCache::new();
    loop {
        match try_lower(&sg, &ci, &readers, &pos, opts, &relax, &mut cache) {
            Ok((words, loops)) => {
                let report = StreamReport {
                    sentron: sg.sentron,
                    frontend: "graph".into(),
                    ops: sg.nodes.len(),
                    words: words.len(),
                    prefetches,
                    copies,
                    loops,
                    buffered_words: buffered_words(&words),
                };
                return Ok((words, report));
            }
            Err(f) if packed && matches!(f.error, CompileError::RegisterPressure { .. }) => {
                if std::env::var_os("VTPU_COMPILER_DEBUG").is_some() {
                    eprintln!("retrying after: {}", f.error);
                }
                if !relax.step(&f, &sg) {
                    return Err(f.error);
                }
            }
            Err(f) => return Err(f.error),
        }
    }
}

/// A failed lowering attempt: the error, the loop plans it used, and where registers
/// ran out (word, and the loop region or block region holding it).
struct Fail {
    error: CompileError,
    plans: Vec<LoopPlan>,
    region: Option<usize>,
}

/// Progressive relaxations after running out of registers.
#[derive(Default)]
struct Relax {
    no_pipe: HashSet<LoopId>,
    no_ahead: HashSet<LoopId>,
    min_ii: HashMap<LoopId, u32>,
    /// Regions (blocks or loop bodies) scheduled in op order.
    in_order: HashSet<usize>,
    all_in_order: bool,
}

impl Relax {
    /// Relax what failed; false when nothing is left to relax.
    fn step(&mut self, f: &Fail, sg: &SentronGraph) -> bool {
        let loop_at = |r: usize| match sg.regions.get(r) {
            Some(Region::Loop(l)) => Some(*l),
            _ => None,
        };
        let plan = f
            .region
            .and_then(loop_at)
            .and_then(|l| f.plans.iter().find(|p| p.lp == l));
        match (f.region, plan) {
            (Some(_), Some(p))
                if p.pipelined
                    && p.stages == 2
                    && p.why_not.is_some()
                    && !self.no_ahead.contains(&p.lp) =>
            {
                // A prefetch-ahead plan: drop the look-ahead.
                self.no_ahead.insert(p.lp);
                true
            }
            (Some(_), Some(p)) if p.pipelined && !self.no_pipe.contains(&p.lp) => {
                // A longer II gives the lifetime passes slack; past the plain body's
                // length, stop pipelining the loop.
                if self.min_ii.get(&p.lp).is_some_and(|&m| m > p.ii) {
                    self.no_pipe.insert(p.lp);
                } else {
                    self.min_ii.insert(p.lp, p.ii + (p.ii / 8).max(1));
                }
                true
            }
            (Some(r), _) if !self.in_order.contains(&r) => {
                self.in_order.insert(r);
                true
            }
            _ if !self.all_in_order => {
                self.all_in_order = true;
                true
            }
            _ => false,
        }
    }
    fn in_order(&self, r: usize) -> bool {
        self.all_in_order || self.in_order.contains(&r)
    }
}

/// Loop plans of earlier attempts, by loop, with the relaxation state they were made
/// under (a retry that only changes block scheduling reuses them).
type PlanCache = HashMap<
    LoopId,
    (
        (bool, bool, Option<u32>, bool),
        LoopPlan,
        LoopClasses,
        LoopColors,
    ),
>;

type TryResult = std::result::Result<(Vec<Siw>, Vec<LoopReport>), Box<Fail>>;

fn fail(error: CompileError, plans: &[LoopPlan]) -> Box<Fail> {
    Box::new(Fail {
        error,
        plans: plans.to_vec(),
        region: None,
    })
}

fn try_lower(
    sg: &SentronGraph,
    ci: &CoordInfo,
    readers: &[Vec<NodeId>],
    pos: &[u32],
    opts: &CompileOptions,
    relax: &Relax,
    cache: &mut PlanCache,
) -> TryResult {
    let packed = opts.mode == Mode::Packed;
    let mut plans: Vec<LoopPlan> = Vec::new();
    let mut classes: HashMap<LoopId, (LoopClasses, LoopColors)> = HashMap::new();
    let region_of_loop: HashMap<LoopId, usize> = sg
        .regions
        .iter()
        .enumerate()
        .filter_map(|(r, x)| match x {
            Region::Loop(l) => Some((*l, r)),
            Region::Block(_) => None,
        })
        .collect();
    let pressure_info = if packed {
        Some(PressureInfo::new(sg))
    } else {
        None
    };
    for (li, info) in sg.loops.iter().enumerate() {
        let lp = LoopId(li as u32);
        let region = region_of_loop.get(&lp).copied().unwrap_or(0);
        let key = (
            relax.no_pipe.contains(&lp),
            relax.no_ahead.contains(&lp),
            relax.min_ii.get(&lp).copied(),
            relax.in_order(region),
        );
        if let Some((k, plan, cl, colors)) = cache.get(&lp) {
            if *k == key {
                classes.insert(lp, (cl.clone(), colors.clone()));
                plans.push(plan.clone());
                continue;
            }
        }
        let dg = deps::build(sg, &info.body, Place::Loop(lp), ci, readers, pos)
            .map_err(|e| fail(e, &[]))?;
        // Registers held across this loop by straight-line values (+1 scalar for the
        // loop counter): the loop's own colours must fit beside them.
        let held = pressure_info
            .as_ref()
            .map(|pi| pi.reserved[region])
            .unwrap_or([0; 3]);
        let fits = |c: &LoopColors| {
            let sizes = [
                vtpu_isa::NUM_SCALAR_REGS,
                vtpu_isa::NUM_TILE_REGS,
                vtpu_isa::NUM_COORD_REGS,
            ];
            (0..3).all(|f| c.count[f] + held[f] + usize::from(f == 0) <= sizes[f])
        };
        // Candidate plans, most packed first; the first whose registers fit is kept
        // (the last one regardless: the global allocation then decides).
        let in_order = relax.in_order(region);
        let allow_pipe = packed && opts.pipeline && !relax.no_pipe.contains(&lp) && !in_order;
        let first_ii = relax.min_ii.get(&lp).copied().unwrap_or(0);
        let mut candidates: Vec<LoopPlan> = Vec::new();
        let plain = plan_loop(
            sg,
            lp,
            &dg,
            PlanMode {
                packed,
                in_order,
                ..PlanMode::default()
            },
        );
        if allow_pipe {
            let p = plan_loop(
                sg,
                lp,
                &dg,
                PlanMode {
                    packed,
                    pipeline: true,
                    always: opts.pipeline_always,
                    in_order: false,
                    first_ii,
                },
            );
            if p.pipelined {
                candidates.push(p);
            }
            if !relax.no_ahead.contains(&lp) {
                candidates.extend(prefetch_ahead(&dg, &plain));
            }
        }
        candidates.push(plain);
        if packed && !in_order {
            candidates.push(plan_loop(
                sg,
                lp,
                &dg,
                PlanMode {
                    packed,
                    in_order: true,
                    ..PlanMode::default()
                },
            ));
        }
        let last = candidates.len() - 1;
        let mut chosen = None;
        for (k, mut plan) in candidates.into_iter().enumerate() {
            if packed
                && plan.why_not.as_deref() != Some("pipelining disabled for this loop (registers)")
            {
                improve_lifetimes(sg, &dg, &mut plan, pos, readers);
            }
            let cl = regalloc::loop_classes(sg, &plan, pos, readers);
            let u = regalloc::unroll_needed(&cl, plan.ii);
            if u > MAX_UNROLL && k < last {
                continue;
            }
            if u > MAX_UNROLL {
                return Err(fail(
                    CompileError::TooLarge {
                        what: format!(
                            "{}: kernel unroll for register rotation of loop {li}",
                            sg.name()
                        ),
                        got: u.into(),
                        limit: MAX_UNROLL.into(),
                    },
                    &plans,
                ));
            }
            plan.unroll = u;
            let colors = regalloc::color_loop(&cl, plan.ii, u);
            if fits(&colors) || k == last || (opts.pipeline_always && plan.pipelined) {
                chosen = Some((plan, cl, colors));
                break;
            }
        }
        let Some((plan, cl, colors)) = chosen else {
            return Err(fail(CompileError::Internal("no loop plan".into()), &plans));
        };
        check_plan(sg, &dg, &plan).map_err(|e| fail(e, &plans))?;
        cache.insert(lp, (key, plan.clone(), cl.clone(), colors.clone()));
        classes.insert(lp, (cl, colors));
        plans.push(plan);
    }
    let mut words: Vec<EWord> = Vec::new();
    let mut spans = Vec::new();
    let mut region_start: Vec<usize> = Vec::new();
    for (r, region) in sg.regions.iter().enumerate() {
        region_start.push(words.len());
        match region {
            Region::Block(nodes) => {
                let dg = deps::build(sg, nodes, Place::Block(r as u32), ci, readers, pos)
                    .map_err(|e| fail(e, &plans))?;
                let time = match &pressure_info {
                    Some(_) if relax.in_order(r) => schedule::in_order(&dg),
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
            return Err(fail(
                CompileError::TooLarge {
                    what: format!("the word count of {}", sg.name()),
                    got: words.len() as u64,
                    limit: vtpu_isa::MAX_STREAM_WORDS as u64,
                },
                &plans,
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
    let mut site = None;
    let siws = match regalloc::allocate(sg, &words, &spans, &allocs, &mut site) {
        Ok(s) => s,
        Err(e) => {
            let region = site.map(|s| match s.lp {
                Some(l) => region_of_loop.get(&l).copied().unwrap_or(0),
                None => region_start
                    .iter()
                    .rposition(|&st| st <= s.word)
                    .unwrap_or(0),
            });
            return Err(Box::new(Fail {
                error: e,
                plans: plans.clone(),
                region,
            }));
        }
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

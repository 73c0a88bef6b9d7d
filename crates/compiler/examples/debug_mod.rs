use vtpu_compiler::random::{random_graph, RandomSpec};
use vtpu_compiler::graph::Place;
use vtpu_compiler::*;
fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let n: u32 = std::env::args().nth(2).map(|x| x.parse().unwrap()).unwrap_or(1);
    let spec = RandomSpec { seed, sentrons: n, messages: n > 1, max_trip: 9, chains: seed % 2 == 0, ..RandomSpec::default() };
    let g = random_graph(&spec).unwrap();
    for sg in &g.streams {
    let ci = coords::CoordInfo::analyze(sg);
    let readers = sg.readers();
    let pos = deps::positions(sg);
    for (i, l) in sg.loops.iter().enumerate() {
        let dg = deps::build(sg, &l.body, Place::Loop(LoopId(i as u32)), &ci, &readers, &pos).unwrap();
        let t = schedule::list_schedule(&dg, None);
        let len = t.iter().max().unwrap() + 1;
        let res = modulo::res_mii(&dg, true);
        let ms = modulo::modulo_schedule(&dg, true, 0, len * 2, &[]);
        println!("loop {i}: n {} edges {} list {len} res {res} -> {:?}", dg.len(), dg.edges.len(), ms.as_ref().map(|m| (m.ii, m.stages, m.rec_mii)));
        if ms.is_none() {
            for e in &dg.edges { if e.dist >= 0 { println!("   carried {} -> {} lat {:?} d {}", sg.describe(dg.nodes[e.from as usize]), sg.describe(dg.nodes[e.to as usize]), e.lat, e.dist); } }
        }
    }
}
}

//! Deadlock detection on the wait-for graph, shared by the fabric (fast executor and
//! sessions) and the reference executor.
//!
//! Every C-pipe wait names exactly who can end it: a CRECV waits for one sender, a
//! collective for the members that have not arrived yet. A waiter needs *all* of them
//! (a collective completes only when every member came), so a blocked sentron can never
//! proceed as soon as one sentron it waits for can never act again: one that finished
//! (halted or failed), or one that is itself stuck. A cycle of blocked sentrons is stuck
//! because nobody outside the cycle can wake any of its members. Sentrons that are
//! running may still do anything, so whoever waits only for running sentrons (directly
//! or through other waiters) is never reported: that would need to predict the future
//! of a running program (it may spin for ever; the word limit is the guard for that).
//!
//! So the stuck set is what is left of the blocked sentrons after removing, until
//! nothing changes, every one whose waits all point at running or removed sentrons. It
//! is checked whenever a sentron blocks or finishes, so a deadlock among some sentrons
//! is found the moment its last edge appears, while other sentrons keep running.
//!
//! Everything is a bit mask over at most 64 sentrons (the machine's limit), so a check
//! costs a few dozen word operations and allocates nothing.

/// Most sentrons a graph can hold (one bit each in a `u64`).
pub const MAX_NODES: usize = 64;

/// The state of every sentron of one machine, as the deadlock check sees it.
#[derive(Clone, Debug)]
pub struct WaitGraph {
    n: usize,
    running: u64,
    blocked: u64,
    /// For a blocked sentron: the sentrons it waits for (bit i = sentron i).
    on: [u64; MAX_NODES],
}

/// Why a stuck set can never proceed, as a path through the wait-for graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witness {
    /// Sentrons that wait for each other in this order; the last waits for the first.
    Cycle(Vec<u32>),
    /// Each sentron waits for the next; the last one finished (halted or failed).
    Chain(Vec<u32>),
}

impl Witness {
    /// `0 -> 1 -> 0` for a cycle, `1 -> 0` for a chain.
    pub fn text(&self) -> String {
        let ids: Vec<String> = match self {
            Witness::Cycle(c) => c.iter().chain(c.first()).map(u32::to_string).collect(),
            Witness::Chain(c) => c.iter().map(u32::to_string).collect(),
        };
        ids.join(" -> ")
    }
}

fn bit(i: usize) -> u64 {
    1u64 << i
}

impl WaitGraph {
    /// `n` sentrons (at most [`MAX_NODES`]; more are clamped), all finished until told
    /// otherwise.
    pub fn new(n: usize) -> WaitGraph {
        WaitGraph {
            n: n.min(MAX_NODES),
            running: 0,
            blocked: 0,
            on: [0; MAX_NODES],
        }
    }

    fn all(&self) -> u64 {
        if self.n == MAX_NODES {
            u64::MAX
        } else {
            bit(self.n) - 1
        }
    }

    pub fn set_running(&mut self, i: usize) {
        if i < self.n {
            self.running |= bit(i);
            self.blocked &= !bit(i);
        }
    }

    /// Sentron `i` waits until every sentron in `on` has acted (a mask; bits of
    /// sentrons that do not exist count as finished ones: nobody will ever come).
    pub fn set_blocked(&mut self, i: usize, on: u64) {
        if i < self.n {
            self.blocked |= bit(i);
            self.running &= !bit(i);
            self.on[i] = on;
        }
    }

    /// Halted or failed: it will never act again.
    pub fn set_finished(&mut self, i: usize) {
        if i < self.n {
            self.running &= !bit(i);
            self.blocked &= !bit(i);
        }
    }

    pub fn running(&self) -> u64 {
        self.running
    }

    /// Blocked sentrons that may still be woken: all they wait for is running or
    /// waits, in turn, only for running sentrons.
    fn may_proceed(&self) -> u64 {
        let mut free = self.running;
        loop {
            let mut grew = false;
            let mut rest = self.blocked & !free;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                if self.on[i] & !free == 0 {
                    free |= bit(i);
                    grew = true;
                }
            }
            if !grew {
                return free;
            }
        }
    }

    /// The blocked sentrons that can never proceed (a mask; 0 if there are none).
    pub fn stuck(&self) -> u64 {
        self.blocked & !self.may_proceed()
    }

    /// A path that shows why the sentrons in `stuck` (from [`WaitGraph::stuck`]) can
    /// never proceed, starting at the lowest one; `None` if `stuck` is empty.
    pub fn witness(&self, stuck: u64) -> Option<Witness> {
        if stuck == 0 {
            return None;
        }
        let free = self.may_proceed();
        let finished = !(self.running | self.blocked);
        let mut path: Vec<u32> = Vec::new();
        let mut cur = stuck.trailing_zeros() as usize;
        // Each step visits a new stuck sentron, so at most 64 steps.
        for _ in 0..MAX_NODES {
            path.push(cur as u32);
            let dead = self.on[cur] & !free;
            if dead & finished != 0 {
                // Waiting for a sentron that will never act again: the chain ends there.
                let f = (dead & finished).trailing_zeros();
                path.push(f);
                return Some(Witness::Chain(path));
            }
            // A stuck sentron waits for at least one sentron that is not free; it is not
            // finished, so it is stuck too.
            let next = (dead & stuck).trailing_zeros() as usize;
            if next >= MAX_NODES {
                break;
            }
            if let Some(at) = path.iter().position(|&p| p as usize == next) {
                return Some(Witness::Cycle(path.split_off(at)));
            }
            cur = next;
        }
        // Unreachable for a `stuck` computed by this graph; a caller's mask that is not
        // closed still gets a path rather than a panic.
        Some(Witness::Chain(path))
    }

    /// Ids of the sentrons in `mask`, lowest first.
    pub fn ids(&self, mask: u64) -> Vec<u32> {
        (0..self.n as u32)
            .filter(|&i| mask & self.all() & bit(i as usize) != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, running: &[usize], blocked: &[(usize, &[usize])]) -> WaitGraph {
        let mut g = WaitGraph::new(n);
        for &i in running {
            g.set_running(i);
        }
        for &(i, on) in blocked {
            g.set_blocked(i, on.iter().fold(0, |m, &j| m | bit(j)));
        }
        g
    }

    #[test]
    fn two_cycle_beside_a_running_sentron_is_stuck() {
        let g = graph(3, &[2], &[(0, &[1]), (1, &[0])]);
        assert_eq!(g.stuck(), 0b011);
        assert_eq!(g.witness(g.stuck()), Some(Witness::Cycle(vec![0, 1])));
        assert_eq!(g.witness(g.stuck()).unwrap().text(), "0 -> 1 -> 0");
    }

    #[test]
    fn waiting_for_a_running_sentron_is_not_stuck() {
        // 0 waits for 1, 1 waits for 2, 2 runs: 2 may send and free them both.
        let g = graph(3, &[2], &[(0, &[1]), (1, &[2])]);
        assert_eq!(g.stuck(), 0);
        assert_eq!(g.witness(0), None);
    }

    #[test]
    fn waiting_for_a_finished_sentron_is_stuck_and_so_are_its_waiters() {
        // 2 halted; 1 waits for 2; 0 waits for 1; 3 runs.
        let g = graph(4, &[3], &[(0, &[1]), (1, &[2])]);
        assert_eq!(g.stuck(), 0b011);
        assert_eq!(g.witness(g.stuck()), Some(Witness::Chain(vec![0, 1, 2])));
    }

    #[test]
    fn a_collective_needs_every_missing_member() {
        // 0 in a barrier waits for 1 and 2; 1 waits for a message from 0; 2 runs.
        // 2 arriving cannot help: 1 never gets its message.
        let g = graph(3, &[2], &[(0, &[1, 2]), (1, &[0])]);
        assert_eq!(g.stuck(), 0b011);
        // Both waiting on a running member only: fine.
        let g = graph(3, &[2], &[(0, &[2]), (1, &[2])]);
        assert_eq!(g.stuck(), 0);
    }

    #[test]
    fn self_wait_is_a_cycle_of_one() {
        let g = graph(2, &[1], &[(0, &[0])]);
        assert_eq!(g.witness(g.stuck()), Some(Witness::Cycle(vec![0])));
    }

    #[test]
    fn waits_for_sentrons_outside_the_machine_count_as_finished() {
        let g = graph(2, &[1], &[(0, &[40])]);
        assert_eq!(g.stuck(), 0b01);
    }

    #[test]
    fn sixty_four_sentrons_in_one_ring() {
        let mut g = WaitGraph::new(64);
        for i in 0..64 {
            g.set_blocked(i, bit((i + 1) % 64));
        }
        assert_eq!(g.stuck(), u64::MAX);
        match g.witness(g.stuck()) {
            Some(Witness::Cycle(c)) => assert_eq!(c.len(), 64),
            other => panic!("{other:?}"),
        }
        // One member running breaks it (everyone transitively waits on it).
        g.set_running(63);
        assert_eq!(g.stuck(), 0);
    }

    #[test]
    fn a_long_chain_toward_running_is_freed_in_any_order() {
        // i waits for i - 1, sentron 0 runs: freed whatever the scan order.
        let mut g = WaitGraph::new(64);
        g.set_running(0);
        for i in 1..64 {
            g.set_blocked(i, bit(i - 1));
        }
        assert_eq!(g.stuck(), 0);
        let mut g = WaitGraph::new(64);
        g.set_running(63);
        for i in 0..63 {
            g.set_blocked(i, bit(i + 1));
        }
        assert_eq!(g.stuck(), 0);
    }
}

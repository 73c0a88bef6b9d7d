#!/usr/bin/env python3
"""The cost of tensor-parallel decoding over MPI, measured on one machine, and what it
predicts for 2, 4 and 8 machines. Called by scripts/bench_mpi.sh with its measurements;
prints a markdown section (measurements, the model and its assumptions, the table).

The model, per generated token, for R machines like this one (each runs its share of
the sentrons: the whole-row split gives every machine 1/R of every weight matrix, of the
heads and of the vocabulary):

    t(R) = (t1 - C*a_loc) / R          compute: each machine streams 1/R of the weights
         + C*a_loc                     in-machine synchronisation, as measured in process
         + C*(2*alpha + (R-1)*(1 + 1/R)*b/B)
                                       C collectives across machines, each: the R-1
                                       members' tiles into the leader (alpha, and each
                                       sends only its rows, b/R: zeros are not sent),
                                       then the whole result from the leader to the R-1
                                       others, one after the other (alpha + (R-1)*b/B)
         + 2*alpha + 4*V*(R-1)/(R*B)   the step broadcast, and the logits blocks that
                                       come back to rank 0 (V f32 over R ranks)

t1: one machine's time per token in process (both sentrons, measured); C: collectives
across ranks per token and b: bytes one rank sends per collective (both measured under
mpirun); a_loc: one in-process collective of a 1 x dim tile (measured); alpha, B: the
network's one-way latency and bandwidth (assumed per network, named in the table;
"shared memory" uses this machine's measured MPI collective latency).
"""
import argparse
import json
import re
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--summary", required=True, help="bench_mpi.sh's summary.jsonl")
    p.add_argument("--creduce-mpi", required=True, help="vtpu-mpi run --report output")
    p.add_argument("--creduce-local", required=True, help="vtpu run --report output")
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--loops", type=int, default=2000, help="collectives in the loop")
    p.add_argument("--cpu", default="", help="the CPU, for the header")
    p.add_argument("--revision", default="", help="vtpu's git revision, for the header")
    p.add_argument("--load", default="", help="load averages before / after the run")
    p.add_argument("--write", metavar="BENCHMARKS.md",
                   help="replace the section between the bench-mpi markers of this file "
                        "(appended if missing) instead of printing it")
    return p.parse_args()


BEGIN = "<!-- BEGIN bench-mpi: written by `bash scripts/bench_mpi.sh --write` -->"
END = "<!-- END bench-mpi -->"


def write_section(path, md):
    text = open(path).read()
    block = f"{BEGIN}\n{md}\n{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        i, j = text.index(BEGIN), text.index(END) + len(END)
        text = text[:i] + block + text[j:]
    elif BEGIN in text or END in text:
        sys.exit(f"mpi_cost_model: {path} has only one of the bench-mpi markers")
    else:
        text = text.rstrip("\n") + "\n\n## Scale-out: tensor-parallel generation over MPI\n\n" + block + "\n"
    open(path, "w").write(text)


def wall_ms(path, pattern):
    m = re.search(pattern, open(path).read())
    if not m:
        sys.exit(f"mpi_cost_model: no wall time in {path}")
    return float(m.group(1))


# (name, one-way latency in seconds, bandwidth in bytes/s); None: this machine's MPI.
NETWORKS = [
    ("10 GbE, MPI over TCP (alpha 25 us, 1.1 GB/s)", 25e-6, 1.1e9),
    ("100 Gb/s InfiniBand or RoCE (alpha 2 us, 11 GB/s)", 2e-6, 11e9),
]


def predict(rec, r, alpha, bw, a_loc):
    t1 = 1.0 / rec["single2_tg"]
    w = rec["ranks2_wire"]
    c = w["collectives_per_token"] or 0.0
    # Bytes of one collective's result: rank 0's bytes per token (it leads every group:
    # one result frame to the other rank per collective) over the collectives.
    b = w["bytes_per_token"][0] / c if c else 0.0
    v = rec["vocab"]
    t = (t1 - c * a_loc) / r + c * a_loc
    if r > 1:
        t += c * (2 * alpha + (r - 1) * (1 + 1 / r) * b / bw) + 2 * alpha + 4 * v * (r - 1) / (r * bw)
    return 1.0 / t, c, b


def main():
    a = parse_args()
    recs = [json.loads(l) for l in open(a.summary) if l.strip()]
    mpi_us = wall_ms(a.creduce_mpi, r"rank 0 .*?host: ([\d.]+) ms wall") * 1e3 / a.loops
    loc_us = wall_ms(a.creduce_local, r"host wall time of the run: ([\d.]+) ms") * 1e3 / a.loops
    a_loc = loc_us * 1e-6
    out = []
    w = out.append
    w(f"Command: `bash scripts/bench_mpi.sh --write` (REPS={a.reps}, tg{a.tokens}; medians of "
      f"{a.reps} after a warm-up), {__import__('datetime').datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
      f"vtpu {a.revision}. Machine: {a.cpu}. Open MPI from Debian, `mpirun --oversubscribe`, "
      "release build with `--features mpi`. Load averages before / after the run: "
      f"{a.load} (on 2 CPUs, above ~0.5 means other work shared the machine).")
    w("")
    w("### Measured on this machine")
    w("")
    w("Every rank on "
      "this one machine: 2 ranks x 1 sentron use the same 2 cores and memory as 1 process "
      "x 2 sentrons, plus each rank's pump thread, so these rows measure the cost of the "
      "MPI path, not a speed-up (compute cannot scale on one machine).")
    w("")
    w("| model | tokens 1 = 2 = 3 ranks | tg t/s: 1 proc x1 / x2 | 2 ranks x1 | 3 ranks x1 | "
      "collectives per token | bytes sent per token, per rank (2 ranks) | blocked ms per token, per rank (2 ranks) | "
      "peak RSS MB: 1 proc / per rank at 2 / at 3 |")
    w("|---|---|---|---|---|---|---|---|---|")
    for rec in recs:
        w2 = rec["ranks2_wire"]
        w(f"| {rec['model']} | {'equal' if rec['tokens_equal'] else '**differ**'} | "
          f"{rec['single1_tg']:.1f} / {rec['single2_tg']:.1f} | {rec['ranks2_tg']:.1f} | "
          f"{rec['ranks3_tg']:.1f} | {w2['collectives_per_token']:.0f} | "
          f"{' / '.join(f'{x / 1e3:.0f} kB' for x in w2['bytes_per_token'])} | "
          f"{' / '.join(f'{x:.2f}' for x in w2['blocked_ms_per_token'])} | "
          f"{' / '.join(f'{x:.0f}' for x in rec['rss_single_mb'])} / "
          f"{' + '.join(f'{x:.0f}' for x in rec['rss_ranks2_mb'])} / "
          f"{' + '.join(f'{x:.0f}' for x in rec['rss_ranks3_mb'])} |")
    w("")
    w(f"One all-reduce of a 1 x {a.dim} f32 tile ({a.loops} in a loop, 2 sentrons): "
      f"{mpi_us:.1f} us across 2 ranks over MPI (shared memory, pumps polling), "
      f"{loc_us:.2f} us in process.")
    w("")
    w("### The model and its prediction")
    w("")
    w("Per token, R machines like this one (2 cores each), whole-row split over R x 2 "
      "sentrons: `t(R) = (t1 - C a_loc)/R + C a_loc + C (2 alpha + (R-1)(1 + 1/R) b/B) + "
      "2 alpha + 4 V (R-1)/(R B)`: compute streams 1/R of the weights per machine; every one "
      "of the C collectives costs a hop into the leader (the R-1 members' rows, b/R each: "
      "zeros are not sent) and one back (the whole result, b, to each of the R-1 others, "
      "one after the other); the logits blocks return to rank 0. t1, C, b (bytes rank 0, "
      "the leader, sends per collective) and a_loc are measured above; alpha and B are "
      "the network's (assumed, named per row). Assumptions: weights read at the same "
      "bandwidth on every machine; no overlap of communication with compute (the "
      "programs wait for each all-gather); b stays as measured (the all-gathers send "
      "whole results: a ring or recursive-doubling all-gather would send (R-1)/R b per rank "
      "instead of (R-1) b from the leader).")
    w("")
    hdr = "| model | network | " + " | ".join(f"{r} machine{'s' if r > 1 else ''}" for r in (1, 2, 4, 8)) + " |"
    w(hdr)
    w("|---|---|" + "---|" * 4)
    for rec in recs:
        for name, alpha, bw in NETWORKS:
            cells = []
            for r in (1, 2, 4, 8):
                ts, c, b = predict(rec, r, alpha, bw, a_loc)
                cells.append(f"{ts:.0f} t/s")
            w(f"| {rec['model']} | {name} | " + " | ".join(cells) + " |")
    w("")
    for rec in recs:
        _, c, b = predict(rec, 2, 0, 1e9, a_loc)
        # A check of the collective term on this machine: 2 ranks share its cores, so
        # compute stays t1 and each collective costs the measured MPI all-reduce instead
        # of the in-process one.
        t_check = 1.0 / rec["single2_tg"] + c * (mpi_us - loc_us) * 1e-6
        w(f"- {rec['model']}: t1 = {1e3 / rec['single2_tg']:.2f} ms, C = {c:.0f}, "
          f"b = {b:.0f} bytes, V = {rec['vocab']}. Check on this machine (2 ranks on its 2 "
          f"cores: t1 + C x (MPI all-reduce - in-process one)): predicted "
          f"{1 / t_check:.1f} t/s, measured {rec['ranks2_tg']:.1f} t/s.")
    md = "\n".join(out) + "\n"
    if a.write:
        write_section(a.write, md)
        print(f"mpi_cost_model: wrote the bench-mpi section of {a.write}", file=sys.stderr)
    else:
        print(md, end="")


if __name__ == "__main__":
    main()

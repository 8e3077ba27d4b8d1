"""Randomized (torch.svd_lowrank) vs exact (torch.linalg.svd) truncated SVD of a 4096 x 14336 residual.

Measured side by side in one run on the same matrix: wall time ratio, and each method's rank-r
residual divided by the Eckart-Young optimum sqrt(||E||_F^2 - sum_{i<=r} sigma_i^2) (1.0 = optimal). The matrix is
a real-like quantization residual: W = heavy-tailed random (Student-t, 4 dof) 4096 x 14336 (a Mixtral
expert's shape), 3-bit group-128 quantized, E = W - W_hat. Usage:
    python benchmarks/svd_exact_vs_randomized.py [--rows 4096] [--cols 14336] [--ranks 16 64 256]
"""

from __future__ import annotations

import argparse
import time

import torch

from simulator.accuracy.lowrank import truncated_svd
from simulator.accuracy.quantize import quantize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=14336)
    ap.add_argument("--ranks", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--niter", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    w = torch.distributions.StudentT(4.0).sample((args.rows, args.cols)) * 0.02
    e = w - quantize(w, 3, 128).dequantize()
    del w
    print(f"matrix {args.rows} x {args.cols}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    u, s, vh = torch.linalg.svd(e, full_matrices=False)
    t_exact = time.perf_counter() - t0
    print(f"exact torch.linalg.svd: {t_exact:.1f} s (all ranks at once)")
    print(f"{'rank':>6} {'t_rand s':>9} {'time ratio exact/rand':>22} {'exact/opt':>10} {'rand/opt':>9}")
    e64 = e.double()
    total = float(e64.pow(2).sum())
    for r in args.ranks:
        # optimum from the exact spectrum, anchored on ||E||_F^2 in float64 (fp32 tail sums drift ~0.5%)
        opt = max(total - float(s[:r].double().pow(2).sum()), 0.0) ** 0.5
        exact = float((e64 - ((u[:, :r] * s[:r]) @ vh[:r]).double()).norm())
        t0 = time.perf_counter()
        ru, rs, rv = truncated_svd(e, r, "randomized", seed=0, niter=args.niter)
        t_rand = time.perf_counter() - t0
        rand = float((e64 - ((ru * rs) @ rv.T).double()).norm())
        print(f"{r:>6} {t_rand:>9.2f} {t_exact / t_rand:>22.1f} {exact / opt:>10.5f} {rand / opt:>9.5f}")


if __name__ == "__main__":
    main()

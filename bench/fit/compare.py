"""Prints the Rust and scipy benchmark results side by side (bench/fit/run.sh)."""

import json
import sys

rust = json.loads(sys.argv[1])
py = json.loads(sys.argv[2])

rust_grid = {g["threads"]: g["wall_s"] for g in rust["grid_wall_s"]}
rust_cpu = {g["threads"]: g["cpu_s"] for g in rust["grid_wall_s"]}
scipy_wall = py["wall_s"] * (4500 / py["starts"])
scipy_cpu = py["cpu_s"] * (4500 / py["starts"])
estimated = py["starts"] != 4500

rows = [
    ("starts", rust["starts"], py["starts"]),
    ("objective evaluations", rust["evals"], py["evals"]),
    ("objective", f'{rust["objective"]:.16e}', f'{py["objective"]:.16e}'),
]
for name in ["A", "B", "E", "alpha", "beta"]:
    rows.append((name, f"{rust[name]:.6f}", f"{py[name]:.6f}"))
rows.append(("starts within 1e-6", rust["within_1e-6"], py["within_1e-6"]))
for t, s in sorted(rust_grid.items()):
    rows.append((f"grid wall time, {t} thread(s) [s]", f"{s:.3f}", ""))
    rows.append((f"grid CPU time, {t} thread(s) [s]", f"{rust_cpu[t]:.2f}", ""))
rows.append(
    (
        "grid wall time, scipy [s]",
        "",
        f"{scipy_wall:.1f}" + (f" (from {py['starts']} starts)" if estimated else ""),
    )
)
rows.append(
    (
        "grid CPU time, scipy [s]",
        "",
        f"{scipy_cpu:.1f}" + (f" (from {py['starts']} starts)" if estimated else ""),
    )
)
width = max(len(r[0]) for r in rows)
print(f"{'':<{width}}  {'scalepipe':>26}  {'scipy L-BFGS-B':>26}")
for name, a, b in rows:
    print(f"{name:<{width}}  {str(a):>26}  {str(b):>26}")

rel = abs(rust["objective"] - py["objective"]) / abs(py["objective"])
print()
print(f"objective relative difference: {rel:.2e} (goal <= 1e-9)")
for t, s in sorted(rust_grid.items()):
    print(
        f"speed-up, {t} thread(s): {scipy_wall / s:.0f}x in wall time, "
        f"{scipy_cpu / rust_cpu[t]:.0f}x in CPU time (goal >= 100x)"
    )
b = rust["bootstrap"]
print(
    f"bootstrap: {b['replicates']} refits x {b['starts_per_replicate']} starts "
    f"on {b['threads']} thread(s): {b['wall_s']:.2f} s wall, {b['cpu_s']:.2f} s CPU"
    f" (alpha 95% CI {b['alpha_ci'][0]:.4f}..{b['alpha_ci'][1]:.4f},"
    f" beta {b['beta_ci'][0]:.4f}..{b['beta_ci'][1]:.4f})"
)

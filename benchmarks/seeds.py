"""One seed can lie: the demo recipe (``make demo``) run for N seeds, one after the other, drawn as a band.

Each seed is a full ``python -m grpo_helpers.demo --seed S`` in its own process (same recipe, same machine, only the
seed differs), written to ``runs/seeds/seed-S/``. Then, over the seeds: the reward curve per step (trailing mean of
5 steps) and the held-out format rate before, after SFT priming and after GRPO, each as median and range; where the
shipped seed (the recorded demo run's) ranks; the GRPO doctor's verdict on every seed's run folder; the times.

Writes ``<out>/seeds.json`` (what ``grpo_helpers.plotting.recorded_seeds`` loads), ``<out>/seeds.csv`` (seed, step,
reward), ``<out>/band.png`` and prints the markdown for ``benchmarks/RESULTS.md``. ``--record`` writes into the
package (``grpo_helpers/recorded_seeds/``), so notebooks can draw the band without training.

Run (on the shared course machine each seed takes the CPU lock in turn, so other jobs can run between seeds):
``HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 python benchmarks/seeds.py --seeds 3407 1 2 3 4 --lock /tmp/cpu.lock --record``.
A short check: ``python benchmarks/seeds.py --seeds 1 2 --out /tmp/seeds -- --steps 3 --prime-steps 2 --eval-rows 4``
(arguments after ``--`` go to every demo run). ``--reuse`` keeps finished seed folders of the same command.
``--time-doctor`` only times ``doctor.diagnose`` on the recorded demo run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGE_OUT = ROOT / "grpo_helpers" / "recorded_seeds"
STAGE_KEYS = {"before": "before", "after priming": "after_priming", "after GRPO": "after"}


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python benchmarks/seeds.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds to run (default: the demo's seed and 1 2 3 4)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "seeds"))
    p.add_argument("--out", default=None, help="where seeds.json/csv/band.png go (default: the runs dir)")
    p.add_argument("--record", action="store_true", help=f"write the result into the package ({PACKAGE_OUT})")
    p.add_argument("--lock", default=None, help="run each seed under `flock LOCK` (the shared machine's CPU lock)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each demo run")
    p.add_argument("--reuse", action="store_true", help="keep a seed's finished run folder made by the same command")
    p.add_argument("--time-doctor", action="store_true", help="only time doctor.diagnose on the recorded demo run")
    return p.parse_args(argv), extra


def demo_command(seed: int, args, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "grpo_helpers.demo", "--seed", str(seed), "--name", f"seed-{seed}",
            "--runs-dir", args.runs_dir, "--overwrite", "--no-assets", "--no-sums", "--threads", str(args.threads),
            *extra]  # the format stage only: the band is of its reward curve


def finished(folder: Path, wanted: dict) -> bool:
    """A seed's run folder holds a finished demo run made with the same arguments (what --reuse keeps)."""
    marker = folder.parent / f"{folder.name}.args.json"
    settings = folder / "settings.json"
    if not marker.is_file() or not settings.is_file() or not (folder / "metrics.csv").is_file():
        return False
    return json.loads(marker.read_text()) == wanted and "results" in json.loads(settings.read_text())


def run_seed(seed: int, args, extra: list[str]) -> dict:
    """Run (or reuse) one seed's demo; its numbers, the doctor's verdict and the times as a dict."""
    from grpo_helpers.doctor import diagnose
    from grpo_helpers.plotting import read_metrics_csv

    folder = Path(args.runs_dir) / f"seed-{seed}"
    wanted = {"extra": extra, "threads": args.threads}
    wall = None
    if args.reuse and finished(folder, wanted):
        print(f"seed {seed}: reusing {folder}", flush=True)
    else:
        cmd = demo_command(seed, args, extra)
        if args.lock:
            cmd = ["flock", args.lock, *cmd]
        print(f"seed {seed}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.time() - t0  # includes any wait for the lock; the demo's own total_seconds does not
        (folder.parent / f"seed-{seed}.log").write_text(out.stdout)
        if out.returncode != 0:
            raise SystemExit(f"seed {seed} failed (exit {out.returncode}); log: {folder.parent}/seed-{seed}.log\n"
                             + out.stdout[-2000:])
        (folder.parent / f"seed-{seed}.args.json").write_text(json.dumps(wanted))
    settings = json.loads((folder / "settings.json").read_text())
    results = settings["results"]
    rows = read_metrics_csv(folder / "metrics.csv")
    t0 = time.perf_counter()
    verdict = diagnose(folder)
    doctor_seconds = time.perf_counter() - t0
    evals = {stage: results.get(key) for stage, key in STAGE_KEYS.items()}
    return {
        "seed": seed, "command": settings["command"], "reward": [r["reward"] for r in rows], "steps": len(rows),
        "format_rate": {s: e["format_rate"] for s, e in evals.items() if e},
        "strict_accuracy": {s: e.get("strict_accuracy", e.get("accuracy")) for s, e in evals.items() if e},
        "eval_n": (evals["after GRPO"] or {}).get("n"),
        "first_last_10": results["first_last_10"]["total"],
        "total_seconds": results["total_seconds"], "wall_seconds": round(wall, 1) if wall is not None else None,
        "doctor": {"healthy": verdict.healthy, "codes": verdict.codes(), "seconds": round(doctor_seconds, 4),
                   "errors_and_warnings": [f.title for f in verdict.findings if f.severity != "info"]},
    }


def rank_of(value: float, values: list[float]) -> int:
    """1 = the highest of ``values`` (ties share the better rank)."""
    return 1 + sum(v > value for v in values)


def typicality(runs: list[dict], shipped: int) -> dict:
    """Where the shipped seed stands among the seeds: its numbers, rank, the median and the range."""
    if shipped not in [r["seed"] for r in runs]:
        return {}
    me = next(r for r in runs if r["seed"] == shipped)
    out = {"seed": shipped, "n": len(runs)}
    for name, get in (("last_10_reward", lambda r: r["first_last_10"][1]),
                      ("format_after_grpo", lambda r: r["format_rate"].get("after GRPO")),
                      ("format_after_priming", lambda r: r["format_rate"].get("after priming"))):
        values = [get(r) for r in runs if get(r) is not None]
        if get(me) is None or not values:
            continue
        out[name] = {"value": get(me), "rank": rank_of(get(me), values), "median": statistics.median(values),
                     "low": min(values), "high": max(values)}
    return out


def caption(result: dict) -> str:
    """The sentence saying how typical the shipped run is (for the README caption)."""
    t = result["typical"]
    if not t:
        return "The shipped seed was not among the seeds run."
    f, r = t.get("format_after_grpo"), t.get("last_10_reward")
    parts = []
    if f:
        parts.append(f"held-out format rate after GRPO {f['value']:.0%} (rank {f['rank']} of {t['n']}; median of "
                     f"{t['n']} seeds {f['median']:.0%}, range {f['low']:.0%}-{f['high']:.0%})")
    if r:
        parts.append(f"mean reward of the last 10 steps {r['value']:.2f} (rank {r['rank']} of {t['n']}; median "
                     f"{r['median']:.2f}, range {r['low']:.2f}-{r['high']:.2f})")
    return f"The shipped run is seed {t['seed']}: " + "; ".join(parts) + "."


def markdown(result: dict) -> str:
    """The RESULTS.md section: one row per seed, the band, the shipped seed's place, the times."""
    lines = ["| seed | reward first 10 -> last 10 | format after priming | format after GRPO | strict accuracy "
             "after GRPO | demo s | doctor |", "|---:|---|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        a, b = r["first_last_10"]
        fmt = r["format_rate"]
        verdict = "healthy" if r["doctor"]["healthy"] else "; ".join(r["doctor"]["errors_and_warnings"])
        notes = [c for c in r["doctor"]["codes"] if c not in ("loss-near-zero",)]
        if r["doctor"]["healthy"] and notes:
            verdict += f" (notes: {', '.join(notes)})"
        mark = " (shipped)" if r["seed"] == result["shipped_seed"] else ""
        acc = r["strict_accuracy"].get("after GRPO")
        lines.append(f"| {r['seed']}{mark} | {a:.3f} -> {b:.3f} | {fmt.get('after priming', float('nan')):.0%} | "
                     f"{fmt.get('after GRPO', float('nan')):.0%} | {acc:.0%} | {r['total_seconds']:.0f} | {verdict} |")
    fb = result["format_band"]
    band = "; ".join(f"{s} median {m:.0%} (range {lo:.0%}-{hi:.0%})"
                     for s, m, lo, hi in zip(fb["stage"], fb["median"], fb["low"], fb["high"]))
    rb = result["band"]
    lines += ["", f"Held-out format rate over {len(result['runs'])} seeds: {band}.",
              f"Reward (trailing mean of {rb['smooth']} steps) at step {rb['step'][-1]}: median {rb['median'][-1]:.2f}, "
              f"range {rb['low'][-1]:.2f}-{rb['high'][-1]:.2f}.", "", caption(result), "",
              f"Time: {result['seconds']['demo_total']:.0f} s of demo runs ({result['seconds']['per_seed_median']:.0f} s "
              f"median per seed, the demo's own total_seconds), {result['seconds']['benchmark_wall']:.0f} s wall for "
              "the whole benchmark (with lock waits). The doctor on each seed's run folder: median "
              f"{result['seconds']['doctor_median'] * 1000:.0f} ms."]
    return "\n".join(lines)


def write(result: dict, out: Path) -> None:
    from grpo_helpers.plotting import plot_seed_band, save_figure

    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(out / "seeds.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "step", "reward"])
        for r in result["runs"]:
            writer.writerows([r["seed"], i + 1, v] for i, v in enumerate(r["reward"]))
    save_figure(plot_seed_band(result), out / "band.png")


def time_doctor(repeats: int = 20) -> dict:
    """Seconds of ``diagnose(recorded_run())`` (median and max of ``repeats``), and of the first call."""
    t0 = time.perf_counter()
    from grpo_helpers.demo import recorded_run
    from grpo_helpers.doctor import diagnose

    diagnose(recorded_run())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        diagnose(recorded_run())
        times.append(time.perf_counter() - t)
    return {"first_call_with_imports_s": first, "median_s": statistics.median(times), "max_s": max(times),
            "repeats": repeats}


def main(argv=None) -> int:
    args, extra = parse_args(argv)
    if args.time_doctor:
        print(json.dumps(time_doctor(), indent=1))
        return 0
    from grpo_helpers.demo import SEED, recorded_run
    from grpo_helpers.plotting import seed_band, stage_band

    shipped = recorded_run().settings["seed"]
    seeds = args.seeds or [SEED, 1, 2, 3, 4]
    t0 = time.time()
    runs = [run_seed(s, args, extra) for s in seeds]
    wall = time.time() - t0
    command = runs[0]["command"].replace(f"--seed {seeds[0]} ", "--seed <seed> ")
    result = {
        "command": command, "extra_args": extra, "seeds": seeds, "shipped_seed": shipped,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "runs": runs,
        "band": seed_band({r["seed"]: r["reward"] for r in runs}),
        "format_band": stage_band({r["seed"]: r["format_rate"] for r in runs}),
        "seconds": {"demo_total": sum(r["total_seconds"] for r in runs),
                    "per_seed_median": statistics.median(r["total_seconds"] for r in runs),
                    "benchmark_wall": wall,
                    "doctor_median": statistics.median(r["doctor"]["seconds"] for r in runs)},
    }
    result["typical"] = typicality(runs, shipped)
    out = PACKAGE_OUT if args.record else Path(args.out or args.runs_dir)
    write(result, out)
    print(f"\nwrote {out}/seeds.json, seeds.csv, band.png\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

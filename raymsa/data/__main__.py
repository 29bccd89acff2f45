"""python -m raymsa.data: inspect MMSA files and write the synthetic default.

    python -m raymsa.data check PATH [--dataset mosi|mosei|sims]
    python -m raymsa.data synth --like mosi --out PATH [--seed 0] [--scale 1.0] [--aligned]
    python -m raymsa.data ceiling --like mosi --scenario intra [--levels 0 0.5 0.9] [--seed 1111] --out F.csv
    python -m raymsa.data probe (PATH | --like mosi [--seed 0] [--scale 1.0])

Errors in the data or the arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from raymsa.data.mmsa import DATASETS, KNOWN_FILES, guess_dataset, load_mmsa, sha256_file
from raymsa.data.synth import LIKES, linear_probe, reconstruction_r2, synthesize, write_synth
from raymsa.data.types import SPLITS, DataError, MMSAData, Split

MODALITIES = ("text", "audio", "vision")


def _length_line(split: Split, m: str) -> str:
    x, lengths = getattr(split, m), split.lengths(m)
    steps = x.shape[1]
    short = np.flatnonzero(lengths < steps)
    # right padding is what length-based masks assume; report how far the file agrees
    zero_past = sum(not x[i, lengths[i] :].any() for i in short)
    padding = f", zeros past length in {100 * zero_past / short.size:.1f}% of shorter samples" if short.size else ""
    return (
        f"lengths min {lengths.min()} / median {np.median(lengths):g} / max {lengths.max()}, "
        f"{100 * np.mean(lengths == steps):.1f}% at full length{padding}"
    )


def _print_split(name: str, split: Split) -> None:
    print(f"split {name}: {len(split)} samples")
    for m in MODALITIES:
        x = getattr(split, m)
        print(f"  {m:<10} {str(x.shape):<18} {x.dtype}  {_length_line(split, m)}")
    if split.text_bert is not None:
        print(f"  {'text_bert':<10} {str(split.text_bert.shape):<18} {split.text_bert.dtype}")
    if split.ids:
        print(f"  {'id':<10} {len(split.ids):<18} str      e.g. {split.ids[0]!r}")
    y = split.labels
    print(
        f"  {'labels':<10} {str(y.shape):<18} {y.dtype}  mean {y.mean():.3f} std {y.std():.3f} "
        f"min {y.min():.3f} max {y.max():.3f}, exact zeros {100 * np.mean(y == 0):.1f}%"
    )


def cmd_check(args: argparse.Namespace) -> None:
    path = Path(args.path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    digest = sha256_file(path)
    known = KNOWN_FILES.get(digest)
    print(f"file     {path} ({path.stat().st_size:,} bytes)")
    print(f"sha256   {digest}")
    if known:
        print(f"official yes: {known[1]} (SHA-256 listed in the MMSA README)")
    else:
        print(f"official no: not one of the {len(KNOWN_FILES)} official MMSA feature files")
    dataset = args.dataset or (known[0] if known else None)
    data = load_mmsa(path, dataset=dataset)
    if args.dataset:
        why = "given"
    elif known:
        why = "official file"
    else:
        why = "guessed: " + guess_dataset(path, data.splits)[1]
    print(f"dataset  {data.dataset} ({why})")
    for name in SPLITS:
        _print_split(name, data[name])


def cmd_synth(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    path = write_synth(args.out, args.like, args.seed, args.scale, aligned=args.aligned, test_size=args.test_size)
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes, {args.like}-like, seed {args.seed}, "
        f"scale {args.scale:g}{', aligned' if args.aligned else ''}"
        f"{f', {args.test_size} test samples' if args.test_size else ''}) in {time.perf_counter() - start:.1f} s"
    )


def _test_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {n}")
    return n


def _level(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # a modality subset ('la')


def cmd_ceiling(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from raymsa.data.ceiling import ceiling_rows, synthetic_test_split, write_rows
    from raymsa.missing import ScenarioConfig

    start = time.perf_counter()
    try:
        levels = None if args.levels is None else [_level(x) for x in args.levels]
        scenario = ScenarioConfig(kind=args.scenario, levels=levels)
    except ValidationError as e:
        first = e.errors()[0]
        flag = {"kind": "scenario", "levels": "levels"}.get(str(first["loc"][0]) if first["loc"] else "", "scenario")
        raise DataError(f"ceiling: --{flag}: {first['msg']}") from None
    gen = synthetic_test_split(args.like, args.synth_seed, args.scale, args.aligned, args.max_eval, args.test_size)
    rows = ceiling_rows(gen, scenario, args.seed)
    path = write_rows(rows, args.out)
    print(f"wrote {path}: Bayes-optimal test metrics of synth:{args.like}:seed={args.synth_seed} under "
          f"{scenario.kind}, {len(scenario.levels)} levels, eval mask seed {args.seed} "
          f"({time.perf_counter() - start:.1f} s)")
    for r in rows:
        if r["metric"] in ("MAE", "Corr", "Mult_acc_7"):
            print(f"  {r['level']:>5} {r['metric']:<11} {r['value']:.4f}")


def cmd_probe(args: argparse.Namespace) -> None:
    data: MMSAData
    if args.path:
        data = load_mmsa(args.path, dataset=args.dataset)
    else:
        data = synthesize(args.like, args.seed, args.scale)
    print(f"{data.source}: test-set Pearson r of linear probes on frame means (see docs/data.md)")
    print(f"{'frames kept':<12} {'text':>6} {'audio':>6} {'vision':>6} {'all':>6}")
    for keep in (1.0, 0.5, 0.1):
        row = [linear_probe(data, [m], keep) for m in MODALITIES] + [linear_probe(data, MODALITIES, keep)]
        print(f"{f'{keep:.0%}':<12} " + " ".join(f"{r:>6.3f}" for r in row))
    r2 = reconstruction_r2(data, "text", ["audio", "vision"])
    print(f"text frame means from audio+vision frame means: test R^2 = {r2:.3f}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raymsa.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="hash, identify and summarise an MMSA feature pickle")
    c.add_argument("path")
    c.add_argument("--dataset", choices=DATASETS, help="label convention (default: guessed)")
    c.set_defaults(run=cmd_check)

    s = sub.add_parser("synth", help="write the synthetic dataset in the MMSA format")
    s.add_argument("--like", choices=list(LIKES), required=True)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=float, default=1.0, help="shrink split sizes (0, 1]; shapes stay")
    s.add_argument("--aligned", action="store_true", help="every modality at the text length (aligned_50)")
    s.add_argument("--test-size", type=_test_size, default=None,
                   help="samples in the test split (default: the real dataset's; data.test_size)")
    s.set_defaults(run=cmd_synth)

    b = sub.add_parser("ceiling", help="Bayes-optimal test metrics of the synthetic data under a scenario")
    b.add_argument("--like", choices=list(LIKES), required=True)
    b.add_argument("--scenario", required=True, help="missingness kind: intra, inter, subset, mixed, burst")
    b.add_argument("--levels", nargs="+", help="levels of the grid (default: the kind's default grid)")
    b.add_argument("--seed", type=int, default=1111, help="the run seed whose test masks to use (eval mask seed)")
    b.add_argument("--synth-seed", type=int, default=0, help="seed of the synthetic dataset")
    b.add_argument("--scale", type=float, default=1.0)
    b.add_argument("--aligned", action="store_true")
    b.add_argument("--max-eval", type=int, default=None, help="only the first N test samples (data.max_eval)")
    b.add_argument("--test-size", type=_test_size, default=None,
                   help="the synthetic data's test-split size (data.test_size; default: the real dataset's)")
    b.add_argument("--out", required=True, type=Path)
    b.set_defaults(run=cmd_ceiling)

    q = sub.add_parser("probe", help="linear-probe correlations of a file or of the synthetic data")
    q.add_argument("path", nargs="?", help="an MMSA pickle (default: synthesize --like)")
    q.add_argument("--dataset", choices=DATASETS)
    q.add_argument("--like", choices=list(LIKES), default="mosi")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--scale", type=float, default=1.0)
    q.set_defaults(run=cmd_probe)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        args.run(args)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

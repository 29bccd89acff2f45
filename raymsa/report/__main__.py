"""python -m raymsa.report DIR: (re)build DIR/report/ and print where it is and a short summary.
python -m raymsa.report plan DIR --margin 0.02: what the study's test set and seeds can resolve (plan.py).

Exit codes: 0 built; 2 the folder is not a study, has no results, or holds a malformed file
(one line on stderr naming the path).
"""

from __future__ import annotations

import argparse
import sys

from raymsa.report.load import ReportError, load_study


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "plan":
        from raymsa.report.plan import main_plan

        return main_plan(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m raymsa.report",
                                 description="Build DIR/report/ (results.csv, summary.csv, plots, "
                                             "report.md, report.html) from a study folder's stored results.")
    ap.add_argument("dir", help="study folder: <storage>/<study_name>/ (holds study.json)")
    args = ap.parse_args(argv)
    try:
        res = load_study(args.dir)
        # heavy imports (matplotlib, torch via raymsa.metrics) only once the folder is known good
        from raymsa.report.build import build_from
        from raymsa.report.render import table_markdown
        from raymsa.report.stats import Cube
        from raymsa.report.tables import terminal_table

        out = build_from(res)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the study folder is read-only
        print(f"error: {e.filename or args.dir}: cannot write the report: {e.strerror}", file=sys.stderr)
        return 2
    print(f"report: {out / 'report.html'}")
    print(f"        {out / 'report.md'}")
    print()
    print("test MAE, mean ± std over seeds (mean over levels; subset scenarios: Avg of incomplete subsets)")
    print(table_markdown(terminal_table(res, Cube(res, "test"))))
    if res.missing:
        print(f"\nmissing: {len(res.missing)} item(s), listed in the report ('What is missing')")
    return 0


if __name__ == "__main__":
    sys.exit(main())

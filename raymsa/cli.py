"""The `raymsa` console script: one entry point beside the `python -m raymsa.<stage>` forms.

    raymsa study NAME [...]     = python -m raymsa.study NAME [...]
    raymsa report DIR [...]     = python -m raymsa.report DIR [...]
    raymsa data check F [...]   = python -m raymsa.data check F [...]
    raymsa train CONFIG [...]   = python -m raymsa.train CONFIG [...]

Each subcommand hands the rest of the command line, untouched, to that module's main().
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "study": ("raymsa.study.__main__", "run a study: search, retrain, test, report"),
    "report": ("raymsa.report.__main__", "rebuild a study's report from its stored results"),
    "data": ("raymsa.data.__main__", "check, synthesise or probe MMSA feature files"),
    "train": ("raymsa.train.__main__", "one training run from a config"),
}


def usage() -> str:
    lines = ["usage: raymsa {" + ",".join(COMMANDS) + "} ...", ""]
    lines += [f"  {name:<7} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`raymsa COMMAND --help` shows a command's own options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"raymsa: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())

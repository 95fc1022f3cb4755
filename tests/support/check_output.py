#!/usr/bin/python3
"""Runs a program and checks its exit status and its whole standard output.

    check_output.py EXPECTED_FILE [--status N] -- PROGRAM [ARGS...]

EXPECTED_FILE holds the output line for line. Each line is literal except the placeholder {*},
which stands for any text (timings, counts that depend on the machine). The run fails when the
program exits with another status than N (default 0), prints a different number of lines, or a
line differs; the report shows both outputs. Every run is bounded (60 s).
"""
import re
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    status = 0
    if "--" not in args or args.index("--") < 1:
        print(__doc__, file=sys.stderr)
        return 2
    split = args.index("--")
    expected_file, options, command = args[0], args[1:split], args[split + 1:]
    if options[:1] == ["--status"] and len(options) == 2:
        status = int(options[1])
    elif options:
        print(__doc__, file=sys.stderr)
        return 2
    with open(expected_file, encoding="utf-8") as f:
        expected = f.read().splitlines()
    try:
        run = subprocess.run(command, stdout=subprocess.PIPE, timeout=60)
    except subprocess.TimeoutExpired:
        print(f"{command[0]}: no exit within 60 s", file=sys.stderr)
        return 1
    actual = run.stdout.decode("utf-8", errors="replace").splitlines()
    problems = []
    if run.returncode != status:
        problems.append(f"exit status {run.returncode}, expected {status}")
    if len(actual) != len(expected):
        problems.append(f"{len(actual)} lines, expected {len(expected)}")
    for number, (want, got) in enumerate(zip(expected, actual), 1):
        pattern = ".*".join(re.escape(part) for part in want.split("{*}"))
        if not re.fullmatch(pattern, got):
            problems.append(f"line {number}: {got!r}, expected {want!r}")
            break
    if not problems:
        return 0
    print(f"{command[0]}: " + "; ".join(problems), file=sys.stderr)
    print("--- expected\n" + "\n".join(expected) + "\n--- actual\n" + "\n".join(actual), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

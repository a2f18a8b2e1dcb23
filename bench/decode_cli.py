#!/usr/bin/env python3
"""`cdc-orchestrator decode FILE` against bench/decode_lines.py side by side, as bench.py's `decode_cli` measures
them (the same input, best of three, CPU = user + system of the child), with the ratio of the CPU times.
Usage: decode_cli.py BINARY [LINES] [WORKDIR]; WORKDIR keeps the input between runs (made when missing)."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main():
    binary = Path(sys.argv[1]).resolve()
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    workdir = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp(prefix="decode-cli-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Writing 248 MB of input takes longer than the runs; a WORKDIR given again keeps the first one's.
    result = bench.decode_cli(binary, workdir, lines, reuse_input=True)
    result["cpu_ratio"] = result["python_cpu_s"] / result["rust_cpu_s"]
    print(json.dumps(result))
    print(f"rust {result['rust_cpu_s']:.3f} s CPU, python {result['python_cpu_s']:.3f} s CPU: "
          f"{result['cpu_ratio']:.2f}x", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks the import graph between the crate's top-level modules (src/<module>/ or src/<module>.rs).

For each module it collects the other modules it names as `crate::<module>` (and, inside the module itself,
`super::` paths stay inside it), after stripping comments, doc comments and string literals. It prints the graph,
then fails (exit 1) on a cycle or on an arrow the table below does not allow. The table is the one in src/lib.rs's
"Which folder may import which": keep the two in step.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Who may import whom: the table of src/lib.rs ("Which folder may import which"). A module missing here may import
# nothing of the crate.
BELOW_CONTROLLER = {"model", "auth", "backoff", "logging", "http_client", "shutdown", "telemetry", "config", "decoder", "sql", "policy",
                    "kafka", "flink", "lease"}
ALLOWED = {
    "model": set(),
    "backoff": set(),
    "logging": set(),
    "http_client": set(),
    "shutdown": {"logging"},
    "telemetry": {"model", "logging"},
    "config": {"model", "logging"},
    "decoder": {"model"},
    "sql": {"config", "model", "logging"},
    "lease": {"config", "model", "logging", "backoff", "shutdown", "http_client", "telemetry"},
    "policy": {"model", "backoff", "config"},
    "auth": {"config", "model", "logging", "backoff", "http_client"},
    "kafka": {"auth", "config", "decoder", "model", "telemetry", "backoff", "logging", "shutdown"},
    "flink": {"config", "sql", "lease", "model", "telemetry", "backoff", "logging", "shutdown", "http_client"},
    "scaffold": {"config", "sql", "model", "logging"},
    "controller": BELOW_CONTROLLER,
    "http": {"controller", "lease", "policy", "telemetry", "config", "model", "logging", "shutdown"},
    "app": BELOW_CONTROLLER | {"controller", "http"},
    "cli": BELOW_CONTROLLER | {"controller", "http", "app", "scaffold"},
}

# What http may take from controller: its control types only (the channel, commands and snapshots).
HTTP_FROM_CONTROLLER = {
    "ControlCommand", "ControlError", "ControlRequest", "TablesSnapshot", "ReloadRequest", "ReloadReport",
}

TOKEN = re.compile(
    r"""//[^\n]*                       # line comment, doc comment included
      | /\*.*?\*/                        # block comment (not nested: none in this crate are)
      | b?r(\#*)".*?"\1                  # raw string
      | b?"(?:\\.|[^"\\])*"              # string
      | b?'(?:\\.|[^'\\])'               # character (before lifetimes, which the next rule leaves alone)
    """,
    re.S | re.X,
)


def strip(source):
    """The source without comments, doc comments and string or character literals."""
    return TOKEN.sub(lambda m: " " if m.group(0).startswith(("/", "b/")) else '""', source)


def modules():
    """Each top-level module and its files."""
    found = {}
    for entry in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, entry)
        if os.path.isdir(path):
            files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".rs")]
            found.setdefault(entry, []).extend(files)
        elif entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            name = entry[:-3]
            found.setdefault(name, []).append(path)
    return found


CRATE_PATH = re.compile(r"\bcrate::(\w+)(::)?")


def named_items(text, at):
    """The names in the path or `{...}` group that starts at `at` (nested groups included)."""
    if text.startswith("{", at):
        depth, end = 0, at
        while end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
            if depth == 0:
                break
        return set(re.findall(r"\w+", text[at:end]))
    m = re.match(r"\w+", text[at:])
    return {m.group(0)} if m else set()


def imports(files):
    """The top-level modules named as `crate::<module>` in `files`, with the items named from each."""
    named = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        for m in CRATE_PATH.finditer(text):
            items = named.setdefault(m.group(1), set())
            if m.group(2):
                items.update(named_items(text, m.end()))
    return named


def cycles(graph):
    """Every elementary cycle found by a depth-first walk, each once."""
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            elif len(path) < len(graph):
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def main():
    mods = modules()
    graph, problems = {}, []
    for name, files in sorted(mods.items()):
        named = imports(files)
        named.pop(name, None)
        unknown = set(named) - set(mods)
        for other in sorted(unknown):
            named.pop(other)
        graph[name] = set(named)
        allowed = ALLOWED.get(name, set())
        for other in sorted(named):
            if other not in allowed:
                problems.append(f"forbidden arrow: {name} -> {other}")
        if name == "http" and "controller" in named:
            extra = named["controller"] - HTTP_FROM_CONTROLLER
            if extra:
                problems.append(f"forbidden arrow: http -> controller ({', '.join(sorted(extra))}: not a control type)")
    for name in sorted(ALLOWED):
        if name not in mods:
            problems.append(f"the table names a module src/ lacks: {name}")
    for name in sorted(mods):
        if name not in ALLOWED:
            problems.append(f"a module the table does not name: {name} (add it to ALLOWED and to src/lib.rs)")

    width = max(map(len, graph))
    for name in sorted(graph):
        print(f"{name:<{width}} -> {', '.join(sorted(graph[name])) or '(nothing)'}")
    for cycle in cycles(graph):
        problems.append("cycle: " + " -> ".join(cycle))
    sys.stdout.flush()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("layers: no cycle, no forbidden arrow")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Validates a compose file against the Compose Specification JSON schema and prints it resolved, as JSON.

Usage: check-compose.py COMPOSE_FILE SCHEMA_FILE

What `docker compose config` does before validating is reproduced here: YAML merge keys (<<) are applied by
PyYAML, and ${VAR}, ${VAR:-default} and $$ are interpolated from the environment. Exit 0 and the resolved
file on stdout when it is valid; exit 1 with every schema error (path and message) on stderr otherwise.
Needs PyYAML and jsonschema (scripts/install-tools.sh installs both into .tools/lint).
"""
import json
import os
import re
import sys

import jsonschema
import yaml

VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value):
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, str):
        def substitute(match):
            if match.group(0) == "$$":
                return "$"
            name = match.group("braced") or match.group("bare")
            found = os.environ.get(name)
            if found:
                return found
            return match.group("default") or ""
        return VARIABLE.sub(substitute, value)
    return value


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as file:
        compose = yaml.safe_load(file)
    with open(sys.argv[2], encoding="utf-8") as file:
        schema = json.load(file)
    compose = interpolate(compose)
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    for error in errors:
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        print(f"{sys.argv[1]}: {path}: {error.message}", file=sys.stderr)
    if errors:
        return 1
    json.dump(compose, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

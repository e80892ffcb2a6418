#!/usr/bin/env python3
"""Check schema/event.v1.schema.json against the examples in schema/examples/.

- the schema itself must be a valid JSON Schema draft 2020-12 document;
- every schema/examples/valid/*.json must validate;
- every case in schema/examples/invalid.json with "semantic": false must fail,
  and some error in the full error tree must point at the case's "path";
- every case with "semantic": true must PASS the schema (those defects are only
  caught by the Rust validator).

Prints one line per file/case, then "N passed, M failed"; exits 1 on any
failure, 2 if the jsonschema package is missing.
"""
import glob
import json
import os
import sys

try:
    from jsonschema import Draft202012Validator
except ImportError:
    print("schema_check.py: the Python package 'jsonschema' is required "
          "(pip install jsonschema)", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "schema", "event.v1.schema.json")
VALID_DIR = os.path.join(ROOT, "schema", "examples", "valid")
INVALID = os.path.join(ROOT, "schema", "examples", "invalid.json")


def pointer(parts):
    """RFC 6901 JSON Pointer from a sequence of keys/indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def walk(errors):
    """All errors, including the nested ones of anyOf/oneOf/if-then etc."""
    for err in errors:
        yield err
        if err.context:
            yield from walk(err.context)


def error_pointers(err):
    """Pointers an error can be said to name."""
    base = pointer(err.absolute_path)
    out = [base]
    if err.validator == "required" and isinstance(err.instance, dict):
        for prop in err.validator_value:
            if prop not in err.instance:
                out.append(base + "/" + pointer([prop])[1:])
    if err.validator == "dependentRequired" and isinstance(err.instance, dict):
        for props in err.validator_value.values():
            for prop in props:
                if prop not in err.instance:
                    out.append(base + "/" + pointer([prop])[1:])
    return out


def main():
    passed = failed = 0

    def report(ok, label, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {label}" + (f" -- {detail}" if detail else ""))

    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    try:
        Draft202012Validator.check_schema(schema)
        report(True, "schema: event.v1.schema.json is a valid 2020-12 schema")
    except Exception as e:  # SchemaError
        report(False, "schema: event.v1.schema.json is a valid 2020-12 schema", str(e).splitlines()[0])
        print(f"{passed} passed, {failed} failed")
        return 1
    validator = Draft202012Validator(schema)

    valid_files = sorted(glob.glob(os.path.join(VALID_DIR, "*.json")))
    if not valid_files:
        report(False, "valid: no examples found in " + VALID_DIR)
    for path in valid_files:
        label = "valid: " + os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                event = json.load(f)
        except ValueError as e:
            report(False, label, f"not JSON: {e}")
            continue
        errs = list(validator.iter_errors(event))
        detail = "; ".join(f"{pointer(e.absolute_path) or '/'}: {e.message}" for e in errs[:3])
        report(not errs, label, detail)

    with open(INVALID, encoding="utf-8") as f:
        cases = json.load(f)
    if not isinstance(cases, list) or not cases:
        report(False, "invalid.json: expected a non-empty array")
        cases = []
    for i, case in enumerate(cases):
        name = case.get("name", f"#{i}")
        want = case.get("path")
        semantic = bool(case.get("semantic", False))
        errs = list(validator.iter_errors(case.get("event")))
        if semantic:
            label = f"semantic: {name} [{want}] passes the schema"
            detail = "; ".join(f"{pointer(e.absolute_path) or '/'}: {e.message}" for e in errs[:3])
            report(not errs, label, detail)
            continue
        label = f"invalid: {name} [{want}]"
        if not errs:
            report(False, label, "schema accepted it")
            continue
        seen = set()
        for e in walk(errs):
            seen.update(error_pointers(e))
        if want in seen:
            report(True, label)
        else:
            top = "; ".join(f"{pointer(e.absolute_path) or '/'}: {e.message[:80]}" for e in errs[:3])
            report(False, label, f"no error at {want}; got {top}")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Checks that every repository path docs/architecture.md names exists.

    python3 tests/doc_paths_check.py [DOC]

DOC defaults to docs/architecture.md. Paths are relative to the repository
root (the parent of this script's directory), whatever the working directory.

A path is a word inside inline code (`...`) that contains a `/` or ends in
one of EXTENSIONS. A word like `actlog-query/src/bundle.rs` is also tried
under `crates/`. Not paths, so not checked:
- URLs (`https://...`) and absolute paths, which covers HTTP routes
  (`/v1/...`, `/tlog/...`, `/ui/...`, `/healthz`);
- Rust paths (`a::b`), media types (`application/json`) and domain-rooted
  names (`c2sp.org/tlog-proof@v1`, `golang.org/x/mod/...`);
- globs (`*`, `?`, `[...]`) and placeholders: `<...>`, `{...}`, `...`,
  `date=...`, `$VAR`, and the words in PLACEHOLDERS (`DIR`, `FILE`, `NNNNN`).
So a file that is not in the repository (a bundle's `manifest.json`, the data
directory's `db/LOCK`) must be written with a placeholder, as
`<bundle>/manifest.json` or `<data>/db/LOCK`, or the check reports it.

Prints each missing path with its line and exits 1; otherwise prints how
many paths were checked and exits 0. A doc in which no path is found fails
too, since that means the extraction is broken.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DOC = os.path.join("docs", "architecture.md")

EXTENSIONS = (".rs", ".md", ".py", ".sh", ".toml", ".json", ".go", ".slt", ".lock", ".txt", ".yml", ".yaml")
PLACEHOLDERS = {"DIR", "FILE", "NNNNN", "TARGET", "N", "NAME", "PATH", "BIN", "DATA", "DATA_DIR", "OUT", "YYYY-MM-DD"}
MEDIA_TYPES = ("application/", "text/", "image/", "audio/", "video/", "multipart/")
TOP_LEVEL_DOMAINS = {"org", "com", "net", "dev", "io", "local", "example"}

INLINE_CODE = re.compile(r"(`+)(.+?)\1")
FENCE = re.compile(r"^\s*(```|~~~)")


def is_placeholder(word):
    if any(c in word for c in "<>{}*?[]=$|…") or "..." in word:
        return True
    return any(seg in PLACEHOLDERS or "YYYY" in seg or "NNNNN" in seg for seg in word.split("/"))


def is_domain_rooted(word):
    first = word.split("/", 1)[0]
    labels = first.split(".")
    return len(labels) >= 2 and all(labels) and labels[-1].lower() in TOP_LEVEL_DOMAINS


def path_of(word):
    """The repository path `word` names, or None when it names none."""
    word = word.strip("(),;:'\"")
    if not word or word.startswith(("/", "-")) or "://" in word or "::" in word:
        return None
    if word.startswith(MEDIA_TYPES) or is_placeholder(word) or is_domain_rooted(word):
        return None
    if "/" not in word and not word.endswith(EXTENSIONS):
        return None
    return word


def exists(path):
    """Whether `path` (or, for a crate-relative path, `crates/path`) exists
    inside the repository."""
    for candidate in (path, os.path.join("crates", path)):
        full = os.path.normpath(os.path.join(ROOT, candidate))
        if os.path.commonpath([ROOT, full]) != ROOT:
            continue
        if path.endswith("/") and os.path.isdir(full):
            return True
        if not path.endswith("/") and os.path.exists(full):
            return True
    return False


def named_paths(text):
    """(line number, path) for every path named in inline code."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for m in INLINE_CODE.finditer(line):
            for word in m.group(2).split():
                path = path_of(word)
                if path is not None:
                    yield number, path


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, DEFAULT_DOC)
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    full = os.path.abspath(doc)
    shown = os.path.relpath(full, ROOT) if os.path.commonpath([ROOT, full]) == ROOT else doc
    found = list(named_paths(text))
    if not found:
        print(f"doc_paths_check: no repository path found in {shown}; the extraction is broken")
        return 1
    missing = [(n, p) for n, p in found if not exists(p)]
    for n, p in missing:
        print(f"{shown}:{n}: missing path: {p}")
    distinct = len({p for _, p in found})
    if missing:
        print(f"doc_paths_check: {len(missing)} of {len(found)} path mentions in {shown} name nothing in the repository")
        return 1
    print(f"doc_paths_check: {len(found)} path mentions ({distinct} distinct) in {shown}, all exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())

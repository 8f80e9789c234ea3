"""Docs name real files: every repository path a tracked markdown file names (in backticks,
or in a fenced code block) is a file or folder of the repository.

A path is a token with a `/` that ends in `/` (a folder) or whose last part has an extension
(`crm_common/messaging/rpc.py`). It is looked up from the repository root and from the
markdown file's own folder (a service README names `store.py`'s neighbours as
`providers/twilio.py`). `<placeholder>` and `*` match one path part, `{a,b}` must exist for
each choice. URLs, absolute paths (HTTP routes, /dev/shm) and git-ignored runtime paths
(`.logs/`) are not repository paths. Unit-level: git and the working tree only.
"""
import functools
import itertools
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LEADING = "\"'(["  # prose punctuation around a path inside a code span
TRAILING = "\"')],;:.!?"
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,6}$")
PLACEHOLDER = re.compile(r"<[^<>/]*>")
BRACES = re.compile(r"\{([^{}/]*,[^{}/]*)\}")


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


@functools.lru_cache(maxsize=None)
def tracked():
    """(files, folders) in git, paths relative to the root with / separators."""
    files = set(git("ls-files", "-z").split("\0")) - {""}
    folders = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    return files, folders


def markdown_files():
    return sorted(f for f in tracked()[0] if f.endswith(".md"))


def looks_like_path(token):
    if "/" not in token or "://" in token or token.startswith(("/", "~", "$")):
        return False
    if token.endswith("/"):
        return len(token) > 1
    return bool(EXTENSION.search(token.rsplit("/", 1)[-1]))


def tokens_of(text):
    """Candidate paths named in a markdown text: (line number, token)."""
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        chunks = [line] if fenced else [m.group(2) for m in CODE_SPAN.finditer(line)]
        for chunk in chunks:
            for token in chunk.split():
                token = token.split("::", 1)[0].lstrip(LEADING)  # tests/test_x.py::test_y
                if not token.endswith("/"):
                    token = token.rstrip(TRAILING)
                if looks_like_path(token):
                    found.append((number, token))
    return found


def expansions(token):
    """`a/{b,c}.py` -> `a/b.py`, `a/c.py`."""
    parts = BRACES.split(token)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def pattern_of(path):
    """A regex for a path whose placeholders and * match one path part."""
    path = PLACEHOLDER.sub("\0", path).replace("*", "\0")
    return re.compile("".join("[^/]+" if c == "\0" else re.escape(c) for c in path))


def exists(path, base):
    files, folders = tracked()
    folder = path.endswith("/")
    wanted = path.rstrip("/")
    candidates = [wanted] + ([f"{base}/{wanted}"] if base else [])
    pool = folders if folder else files | folders
    for candidate in candidates:
        candidate = os.path.normpath(candidate).replace(os.sep, "/")
        if "\0" not in PLACEHOLDER.sub("\0", candidate) and "*" not in candidate:
            if candidate in pool:
                return True
            continue
        pattern = pattern_of(candidate)
        if any(pattern.fullmatch(p) for p in pool):
            return True
    return False


def ignored(path):
    """A git-ignored runtime path (`.logs/`, `.data/mongo`): not expected in the repository."""
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path.rstrip("/") + "/x"],
                            cwd=ROOT, capture_output=True)
    return result.returncode == 0


def missing_paths(name, text):
    base = os.path.dirname(name)
    missing = []
    for number, token in tokens_of(text):
        for path in expansions(token):
            if not exists(path, base) and not ignored(path):
                missing.append(f"{name}:{number}: `{path}`" + (f" (from `{token}`)" if path != token else ""))
    return missing


@pytest.mark.parametrize("name", markdown_files())
def test_every_path_a_doc_names_exists(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        missing = missing_paths(name, handle.read())
    assert not missing, "paths named in the docs that the repository does not have:\n" + "\n".join(missing)


def test_the_checker_finds_what_it_should():
    text = "\n".join([
        "Real: `crm_common/messaging/rpc.py`, `services/*/README.md`, `contracts/<service>.py`,",
        "`crm_common/messaging/{rpc,outbox}.py`, `bench/`, `.logs/`, `/api/v1/contacts`,",
        "`https://example.com/a.html`, `application/json`, `PJSIP/{extension}`.",
        "Moved: `gateway/rpc.py` and `crm_common/{rpc,outbox}.py`.",
        "```",
        ".venv/bin/python bench/bench_gateway.py     # runs",
        ".venv/bin/python bench/no_such_bench.py",
        "```",
    ])
    missing = missing_paths("README.md", text)
    assert missing == [
        "README.md:4: `gateway/rpc.py`",
        "README.md:4: `crm_common/rpc.py` (from `crm_common/{rpc,outbox}.py`)",
        "README.md:4: `crm_common/outbox.py` (from `crm_common/{rpc,outbox}.py`)",
        "README.md:7: `bench/no_such_bench.py`",
    ]
    # relative to the doc's own folder
    assert missing_paths("services/telephony/README.md", "`providers/{twilio,zadarma}.py`") == []

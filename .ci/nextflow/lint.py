"""Offline lint of the Nextflow modules in nextflow/ (run by lint.sh with nf-core's own venv).

1. Validates every module's meta.yml and environment.yml against the nf-core JSON schemas kept
   in nextflow/schemas/ (copies of nf-core/modules' modules/*.json; see its README).
2. Runs `nf-core modules lint --all --passed --plain-text` on a copy of nextflow/, offline:
   - the modules repository that lint always clones is a local bare git repository built here
     (.nf-core.yml with repository_type: modules and org_path, modules/ with the two schemas);
   - lint calls `nextflow config` and `nextflow -v`: a stand-in `nextflow` on PATH answers
     those two and refuses everything else (so `nextflow inspect` fails, as it would without
     Nextflow);
   - HOME and XDG_* point to a scratch folder, NFCORE_NO_VERSION_CHECK=1.
3. Reads the report and fails on every warning and failure except the checks in ALLOWED, which
   cannot pass on a machine without Nextflow, nf-test and the internet. It also fails when a
   module is missing from the report, when a key check did not pass for each module, when the
   report's own counts disagree with what was parsed, or when lint changed a file.

Prints a closing line "nf-core-lint: N passed, N failed, N skipped" (skipped: the allowed
failures). Exit status 0 only when nothing unexpected was found.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
NEXTFLOW = REPO / "nextflow"
SCHEMAS = NEXTFLOW / "schemas"
CACHE = REPO / ".ci-cache"
WORK = CACHE / "nf-core-lint"  # rebuilt on every run; the venv next to it is reused
VENV_BIN = Path(sys.executable).parent

# (test name, regex the message must match, why it cannot pass here)
ALLOWED = [
    (
        "docker_tag",
        r"^Unable to resolve docker container$",
        "resolved with `nextflow inspect -profile docker`: needs Nextflow",
    ),
    (
        "singularity_tag",
        r"^Unable to resolve singularity container$",
        "resolved with `nextflow inspect -profile singularity`: needs Nextflow",
    ),
    (
        "test_snapshot_exists",
        r"^snapshot file `main\.nf\.test\.snap` does not exist$",
        "the snapshot is written by running nf-test, which cannot be installed here",
    ),
    (
        "bioconda_version",
        r"^Could not find Conda dependency using the Anaconda API",
        "asks anaconda.org, which cannot be reached",
    ),
]

# Checks that must have passed for every module: a guard against lint silently checking less.
REQUIRED_PASSES = [
    "meta_yml_valid",
    "meta_name",
    "correct_meta_inputs",
    "correct_meta_outputs",
    "correct_meta_topics",
    "environment_yml_valid",
    "environment_yml_sorted",
    "main_nf_version_topic",
    "wrong_version_output",
    "when_condition",
    "process_standard_label",
    "container_links",
    "test_main_tags",
]

STANDIN_NEXTFLOW = """#!/bin/sh
# Stand-in for Nextflow, for `nf-core modules lint` only: answers the two calls lint needs.
case "$1" in
    -v|-version|--version) echo "nextflow version 25.10.0.10289"; exit 0 ;;
    config) echo "{}"; exit 0 ;;
    *) echo "stand-in nextflow: '$*' needs the real Nextflow" >&2; exit 1 ;;
esac
"""


def modules() -> list[str]:
    """Module names (tool/subtool) under nextflow/modules/<org_path>/."""
    org = yaml.safe_load((NEXTFLOW / ".nf-core.yml").read_text())["org_path"]
    base = NEXTFLOW / "modules" / org
    return sorted(str(p.parent.relative_to(base)) for p in base.glob("**/main.nf"))


def validate_schemas() -> tuple[int, list[str]]:
    """meta.yml and environment.yml of every module against the kept nf-core schemas."""
    passed, problems = 0, []
    pairs = {"meta.yml": "meta-schema.json", "environment.yml": "environment-schema.json"}
    org = yaml.safe_load((NEXTFLOW / ".nf-core.yml").read_text())["org_path"]
    for name in modules():
        for file_name, schema_name in pairs.items():
            path = NEXTFLOW / "modules" / org / name / file_name
            schema = json.loads((SCHEMAS / schema_name).read_text())
            validator = Draft202012Validator(schema)
            errors = sorted(validator.iter_errors(yaml.safe_load(path.read_text())), key=str)
            if errors:
                for error in errors:
                    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                    problems.append(f"{path.relative_to(REPO)}: {where}: {error.message}")
            else:
                passed += 1
                print(f"schema ok: {path.relative_to(REPO)} against nextflow/schemas/{schema_name}")
    shared = REPO.parent / "shared" / "schemas" / "nf-core"
    if shared.is_dir():  # informational: the copies came from there
        for schema_name in pairs.values():
            other = shared / schema_name
            if other.is_file() and other.read_bytes() != (SCHEMAS / schema_name).read_bytes():
                print(f"note: nextflow/schemas/{schema_name} differs from {other}")
    return passed, problems


def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    ident = [
        "-c",
        "user.name=ci",
        "-c",
        "user.email=ci@localhost",
        "-c",
        "init.defaultBranch=master",
    ]
    subprocess.run(["git", *ident, *args], cwd=cwd, env=env, check=True, capture_output=True)


def set_up() -> tuple[Path, dict[str, str]]:
    """Scratch HOME, the local modules remote, the stand-in nextflow and a copy of nextflow/."""
    if WORK.exists():
        shutil.rmtree(WORK)
    home, bin_dir, src = WORK / "home", WORK / "bin", WORK / "remote-src"
    for folder in (home, bin_dir, src / "modules"):
        folder.mkdir(parents=True)
    org = yaml.safe_load((NEXTFLOW / ".nf-core.yml").read_text())["org_path"]
    (src / ".nf-core.yml").write_text(f"repository_type: modules\norg_path: {org}\n")
    for schema in ("meta-schema.json", "environment-schema.json"):
        shutil.copy(SCHEMAS / schema, src / "modules" / schema)
    git("init", "-q", cwd=src)
    git("add", "-A", cwd=src)
    git("commit", "-q", "-m", "schemas for an offline nf-core modules lint", cwd=src)
    git("clone", "-q", "--bare", str(src), str(WORK / "remote.git"), cwd=WORK)
    standin = bin_dir / "nextflow"
    standin.write_text(STANDIN_NEXTFLOW)
    standin.chmod(0o755)
    tree = WORK / "tree"
    shutil.copytree(NEXTFLOW, tree)
    env = {
        "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "NXF_HOME": str(home / ".nextflow"),
        "NFCORE_NO_VERSION_CHECK": "1",
        "NF_CORE_MODULES_REMOTE": f"file://{WORK / 'remote.git'}",
        "HIDE_PROGRESS": "1",
        "COLUMNS": "400",  # no wrapped lines in the report
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    return tree, env


SECTION = re.compile(r"^\[(.)\]\s+(\d+) Module Tests? (Passed|Warnings?|Failed)\s*$")
SUMMARY = re.compile(r"^\[(.)\]\s+(\d+) Tests? (Passed|Warnings?|Failed)\s*$")


def parse_report(text: str, names: list[str]) -> tuple[dict[str, list], dict[str, int]]:
    """{'passed'|'warned'|'failed': [(module, test, message)]} and the summary's counts."""
    results: dict[str, list] = {"passed": [], "warned": [], "failed": []}
    summary: dict[str, int] = {}
    kind, block = None, []
    head = re.compile(r"^(" + "|".join(re.escape(n) for n in names) + r") (\w+)\s*$")

    def flush() -> None:
        if kind and block:
            module, test = head.match(block[0]).groups()
            # head, [file], [documentation URL], message (one line or more)
            urls = [i for i, text in enumerate(block) if text.startswith("https://nf-co.re/")]
            body = block[urls[0] + 1 :] if urls else block[-1:] if len(block) > 1 else []
            message = " ".join(text.strip() for text in body)
            results[kind].append((module, test, message))

    in_summary = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.strip() == "LINT RESULTS SUMMARY":
            flush()
            kind, block, in_summary = None, [], True
            continue
        if in_summary:
            if m := SUMMARY.match(line.strip()):
                summary[{"P": "passed", "W": "warned", "F": "failed"}[m.group(3)[0]]] = int(
                    m.group(2)
                )
            continue
        if m := SECTION.match(line.strip()):
            flush()
            kind = {"P": "passed", "W": "warned", "F": "failed"}[m.group(3)[0]]
            block = []
            continue
        if kind is None:
            continue
        if head.match(line):
            flush()
            block = [line]
        elif line.strip() and block:
            block.append(line)
    flush()
    return results, summary


def allowed(test: str, message: str) -> str | None:
    for name, pattern, why in ALLOWED:
        if test == name and re.search(pattern, message):
            return why
    return None


def main() -> int:
    names = modules()
    print(f"modules: {', '.join(names)}")
    schema_passed, problems = validate_schemas()

    tree, env = set_up()
    command = [
        str(VENV_BIN / "nf-core"),
        "--hide-progress",
        "modules",
        "lint",
        "--all",
        "--passed",
        "--plain-text",
        "--dir",
        str(tree),
    ]
    run = subprocess.run(command, env=env, cwd=WORK, capture_output=True, text=True)
    report = run.stdout
    (WORK / "report.txt").write_text(report + "\n--- stderr ---\n" + run.stderr)
    if run.returncode not in (0, 1):
        print(report, run.stderr, sep="\n")
        problems.append(f"nf-core modules lint exited {run.returncode}")
    results, summary = parse_report(report, names)

    for kind in ("passed", "warned", "failed"):
        if summary.get(kind) != len(results[kind]):
            problems.append(
                f"report parse: the summary says {summary.get(kind)} {kind}, "
                f"{len(results[kind])} parsed"
            )
    for name in names:
        passed_here = {test for module, test, _ in results["passed"] if module == name}
        if not passed_here:
            problems.append(f"{name}: not in the lint report")
        for test in REQUIRED_PASSES:
            if test not in passed_here:
                problems.append(f"{name}: required check {test} did not pass")

    skipped = 0
    for kind in ("warned", "failed"):
        for module, test, message in results[kind]:
            why = allowed(test, message) if kind == "failed" else None
            if why:
                skipped += 1
                print(f"allowed {kind[:-2]}: {module} {test}: {message} ({why})")
            else:
                problems.append(f"{kind[:-2]}: {module} {test}: {message}")

    # lint rewrites environment.yml when its dependencies are unsorted: nothing may change
    comparison = filecmp.dircmp(NEXTFLOW, tree)
    changed: list[str] = []

    def walk(cmp: filecmp.dircmp, prefix: str) -> None:
        changed.extend(prefix + n for n in cmp.diff_files + cmp.left_only + cmp.right_only)
        for sub, sub_cmp in cmp.subdirs.items():
            walk(sub_cmp, f"{prefix}{sub}/")

    walk(comparison, "nextflow/")
    problems.extend(f"lint changed or added {path}" for path in changed)

    lint_passed = len(results["passed"])
    print(
        f"nf-core modules lint {lint_passed} passed, {len(results['warned'])} warnings, "
        f"{len(results['failed'])} failed ({skipped} of them allowed); report: "
        f"{(WORK / 'report.txt').relative_to(REPO)}"
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    total = lint_passed + schema_passed
    print(f"nf-core-lint: {total} passed, {len(problems)} failed, {skipped} skipped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

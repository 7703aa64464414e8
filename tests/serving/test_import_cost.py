"""`bentoml serve` imports the service in its supervisor before any worker starts.

What only a worker needs (scikit-learn to unpickle the model, the drift scheduler) must
not be imported by the modules the supervisor reads the model's metadata with.
"""

from __future__ import annotations

import subprocess
import sys

SUPERVISOR_MODULES = ("model.store", "serving.metrics", "serving.drift_schedule")
WORKER_ONLY = ("sklearn", "scipy", "joblib", "apscheduler")


def test_choosing_the_model_imports_no_worker_only_package():
    code = (
        f"import sys; import {', '.join(SUPERVISOR_MODULES)}; "
        f"print(' '.join(m for m in {WORKER_ONLY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == []

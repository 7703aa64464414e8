"""`python -m train export`: a version's ONNX model and its feature schema, for devices.

The `.onnx` file runs with onnxruntime alone; the `.json` beside it says what each input
is (name, dtype, how a gap is written, categories), what the outputs are and the class
labels, in the order of the probability columns. docs/edge.md shows both in use.
"""

from __future__ import annotations

import json
from pathlib import Path

from model import store
from model.compiled import graph_contract


def export_onnx(tag: str, out: Path) -> tuple[Path, Path]:
    """Writes `out` (the ONNX model) and `out` with `.json` (its schema); returns both."""
    # refuses a version whose ONNX did not pass parity
    model = store.load(tag, runtime="onnx", pipeline_when_used=True)
    schema_path = out.with_suffix(".json")
    description = {
        "model": model.tag,
        **graph_contract(model.schema).to_json(model.schema),
        "parity": (model.metadata.get("onnx") or {}).get("parity"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(Path(store.onnx_path(tag)).read_bytes())
    schema_path.write_text(json.dumps(description, indent=2) + "\n")
    return out, schema_path

"""Model lifecycle: data, pipeline, evaluation and quality gate, model store I/O."""

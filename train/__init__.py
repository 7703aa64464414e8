"""Model lifecycle: data, pipeline, evaluation and quality gate, training, offline scoring."""

"""Model monitoring: data and prediction drift against a model's reference sample."""

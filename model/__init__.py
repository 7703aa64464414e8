"""The base layer: feature schema, model store, values, outputs, tables and settings."""

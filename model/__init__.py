"""The base layer: feature schema, model store, values, outputs, tables and settings."""

# the project's version (pyproject.toml reads it from here): a built Bento has the code,
# not the installed package, and the v2 server metadata reports it
__version__ = "0.1.0"

"""The pure verification core: bytes and trusted state in, a verdict or a typed error out.

Nothing in this package performs I/O, reads a clock, or touches the network or a database;
an import-linter contract (see pyproject.toml) fails the build if it does.
"""

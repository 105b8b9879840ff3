"""Judicial cross-chain relay: light-client verified answers from partner chains, with evidence."""

__version__ = "0.1.0"

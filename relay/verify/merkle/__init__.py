"""Merkle proof verifiers, one module per published format."""

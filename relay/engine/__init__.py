"""Per-chain sync, query planning and evidence assembly (DESIGN.md: relay/engine/).

Empty until the relay service issue lands; it exists now so that the purity contract on
relay.verify can name it.
"""

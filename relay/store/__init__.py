"""Persistent light-client state (DESIGN.md: relay/store/). Empty until the relay service issue lands; it exists now so the purity contract on relay.verify can name it."""

"""gRPC servicers and interceptors (DESIGN.md: relay/service/).

Empty until the relay service issue lands; it exists now so that the purity contract on
relay.verify can name it.
"""

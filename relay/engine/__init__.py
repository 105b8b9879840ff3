"""Per-chain sync, query planning and evidence assembly (DESIGN.md: relay/engine/).

The service layer uses :class:`relay.engine.engine.Engine`; the modules are: ``errors``
(RelayError), ``settings`` (EngineSettings), ``adapters`` (adapter clients, entry points),
``clients`` (light-client wrappers and stored formats), ``sync`` (per-chain runtime and sync
tasks), ``queries`` (planning and verification of answers), ``evidence`` (assembly and the
relay's signature). Only this package reads the clock, through an injected callable.
"""

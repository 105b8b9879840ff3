"""Wiring of the access layer into the relay process (relay/service/app.py calls
:func:`setup_access` when the config has an ``access:`` section)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from relay.access.control import (
    AccessGuard,
    AccessInterceptor,
    RateLimiter,
    engine_domain_resolver,
    grants_from_config,
)
from relay.access.proposals import AccessRecords, Onboarding
from relay.config import ConfigError, RelayConfig

log = logging.getLogger("relay.access")


@dataclass(frozen=True, slots=True)
class AccessSetup:
    """What the servers need: the interceptor (first in the chain), the guard, the
    onboarding backend, and the records (tests read the admin record from it)."""

    interceptor: AccessInterceptor
    guard: AccessGuard
    onboarding: Onboarding
    records: AccessRecords


def setup_access(
    config: RelayConfig, *, engine: Any, store: Any, insecure_dev: bool = False
) -> AccessSetup:
    """Build the access layer. With TLS, client certificates from ``tls.client_ca`` are
    required (mutual TLS) whatever ``tls.require_client_cert`` says."""
    access = config.access
    if access is None:
        raise ConfigError(["access: missing"])
    if config.tls is not None and config.tls.client_ca is None:
        raise ConfigError(
            ["tls.client_ca: required with access: (the CA of court, partner and operator "
             "certificates)"]
        )  # fmt: skip
    if config.tls is None:
        log.warning(
            "--insecure-dev with access control: callers name themselves in the "
            "x-relay-dev-identity header (role:code:name); nothing authenticates them"
        )
    rate = access.rate
    records = AccessRecords(store)
    interceptor = AccessInterceptor(
        limiter=RateLimiter(rate.per_second, rate.burst, rate.max_in_flight),
        insecure_dev=insecure_dev,
        record=records.record_action,
    )
    guard = AccessGuard(
        grants=grants_from_config(access),
        resolver=engine_domain_resolver(engine),
        insecure_dev=insecure_dev,
        approvals_required=access.approvals_required,
    )
    onboarding = Onboarding(engine=engine, records=records, config=access)
    return AccessSetup(interceptor, guard, onboarding, records)

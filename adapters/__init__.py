"""Reference partner deployments: four partner institutions, each running its own system and
an adapter built on :mod:`relay.sdk`, as separate processes with persisted state.

=============  ====================  ===========================================  ==========
deployment     system                data                                         crypto
=============  ====================  ===========================================  ==========
``realestate`` BFT chain, 4 vals     parcels and flats: owners, shares,           Ed25519,
                                     mortgages, seizures                          SHA-256
``ip``         transparency log +    patents with assignments and licences        Ed25519,
               2 witness processes                                                SHA-256
``credit``     BFT chain, 4 vals     dishonest-debtor listings, consumption       SM2, SM3
                                     restrictions
``bank``       BFT chain, 4 vals     accounts, balances, freezes by court order   Ed25519,
                                                                                  SHA-256
=============  ====================  ===========================================  ==========

Run one with ``python -m adapters.<name> --listen HOST:PORT --state DIR --tls-cert ...
--tls-key ... [--tls-client-ca CA] [--witness VKEY@URL ...] [--descriptor-out FILE]`` (the
other flags of ``python -m relay.testing.partner_server`` apply); a witness with ``python
-m adapters.witness``. ``python -m adapters`` lists the deployments. Parties are keyed by
salted hashes of their identifiers (record schema 1), never raw IDs. Keys are development
keys derived from names: never production.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deployment:
    """One partner institution's system and adapter."""

    name: str
    kind: str  # "bft" or "tlog"
    chain_id: str
    domain: str  # real-estate, ip, credit, bank
    hash: str
    sig: str
    validators: int = 4
    origin: str = ""
    witnesses: int = 0
    quorum: int = 0
    about: str = ""

    def server_args(self) -> list[str]:
        """The ``relay.testing.partner_server`` flags that make this deployment."""
        args = ["--kind", self.kind, "--chain-id", self.chain_id, "--domain", self.domain]
        args += ["--hash", self.hash, "--sig", self.sig]
        if self.kind == "bft":
            args += ["--validators", str(self.validators)]
        else:
            args += ["--origin", self.origin, "--quorum", str(self.quorum)]
        return args

    def log_vkey(self) -> str:
        """The log's verifier key (what its witnesses trust); logs only."""
        from relay.testing.tlog import ed25519_signer, sm2_signer

        make = sm2_signer if self.sig == "sm2" else ed25519_signer
        return make(self.origin, seed=f"{self.origin}/log").vkey


DEPLOYMENTS: dict[str, Deployment] = {
    d.name: d
    for d in (
        Deployment(
            "realestate",
            "bft",
            "cn-bj-chaoyang-realestate",
            "real-estate",
            "sha256",
            "ed25519",
            about="Beijing Chaoyang real-estate registry (BFT chain, Ed25519)",
        ),
        Deployment(
            "ip",
            "tlog",
            "cn-cnipa-patents",
            "ip",
            "sha256",
            "ed25519",
            origin="cnipa.example.cn/patent-register",
            witnesses=2,
            quorum=2,
            about="CNIPA patent register (transparency log, 2 witnesses)",
        ),
        Deployment(
            "credit",
            "bft",
            "cn-credit-dishonest-debtors",
            "credit",
            "sm3",
            "sm2",
            about="National dishonest-debtor list (BFT chain, SM2/SM3)",
        ),
        Deployment(
            "bank",
            "bft",
            "cn-icbc-bj-accounts",
            "bank",
            "sha256",
            "ed25519",
            about="ICBC Beijing accounts (BFT chain, Ed25519)",
        ),
    )
}

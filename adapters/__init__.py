"""Reference partner deployments: four partner institutions, each running its own system (a
node process) and an adapter built on :mod:`relay.sdk` (another process reading that node),
with persisted state.

=============  ====================  ===========================================  ==========
deployment     system                data                                         crypto
=============  ====================  ===========================================  ==========
``realestate`` BFT chain, 4 vals     parcels and flats: owners, shares,           Ed25519,
                                     mortgages, seizures, transfer histories      SHA-256
``ip``         transparency log +    patents, trademarks, copyrights: holders,    Ed25519,
               2 witness processes   assignments, licences, pledges, freezes      SHA-256
``credit``     BFT chain, 4 vals     dishonest-debtor listings, consumption       SM2, SM3
                                     restrictions (no assets)
``bank``       BFT chain, 4 vals     accounts, balances, freezes by court order   Ed25519,
                                                                                  SHA-256
=============  ====================  ===========================================  ==========

Run one as two processes: the node, ``python -m adapters.node --deployment NAME --state DIR
--listen 127.0.0.1:PORT [--seed-data] [--activity] [--witness VKEY@URL ...] [--info-out F]``
(the system itself: blocks or checkpoints, journal, fault switches, its native HTTP API), and
the adapter, ``python -m adapters.<name> --node http://127.0.0.1:PORT --listen HOST:PORT
--tls-cert ... --tls-key ... [--tls-client-ca CA] [--descriptor-out FILE]`` (the key mapping
in ``adapters/<name>.py``, the node client in :mod:`adapters.adapter`); a witness with
``python -m adapters.witness``. ``python -m adapters`` lists the deployments. Parties are
keyed by salted hashes of their identifiers (record schema 1), never raw IDs. Keys are
development keys derived from names: never production.
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
        """The chain flags (``adapters.node``, ``relay.testing.partner_server``) that make
        this deployment."""
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
            about="National IP register: patents, trademarks, copyrights (log, 2 witnesses)",
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

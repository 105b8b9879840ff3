"""``relay demo``: the whole system on one machine, and a court session against it (issue 6).

It generates a development PKI, starts the four reference partner deployments (``adapters``:
real-estate registry, IP register of patents, trademarks and copyrights with two witness
processes, credit platform, bank; each a node process and an adapter process) and the relay
(embedded SQLite) as child processes, registers the chains, waits until the relay has
verified every chain's head, then asks what a court asks: who owns a flat, what a debtor
holds across all four systems (absence proven where nothing is held), the debtor's credit
status, the freezes on the debtor's accounts and an IP right's assignment history. Every
answer is printed, its evidence written to ``OUT/evidence/`` and checked offline against
``OUT/anchors.yaml`` (the trust anchors a court would hold) and the relay's public key.

The judicial chain (issue 7) runs too, as a fifth process (``python -m adapters.judicial``):
the relay publishes its signed audit checkpoints there. After the session the demo checks
the audit (:func:`check_audit`): every query of the session is in the log with the digest
of each evidence, the court proves each of its entries' inclusion, the log is exported to
``OUT/audit-export.jsonl`` and verified end to end, and the checkpoint covering the session
is read back from the judicial chain and verified from that chain's trust anchor.

Without ``--once`` it keeps everything running until Ctrl-C (printing how to ask with
``relay query``); with ``--once`` it stops everything and exits 0. Every child runs in its
own process group and is stopped with SIGTERM, then SIGKILL: nothing is left behind.
Development only: keys are throwaway, derived from names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1

AUDIENCE = "relay-demo"
COURT_IDENTITY = "court-bj-chaoyang"
OPERATORS = ("operator-1", "operator-2")
CASE = {
    "court": "京0105",
    "case_number": "(2026)京0105执1234号",
    "officer": "执行法官 王敏",
}


def _import_adapters() -> Any:
    """The ``adapters`` package of the source checkout next to this package."""
    try:
        import adapters.launch
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent
        if not (root / "adapters" / "__init__.py").exists():
            raise RuntimeError(
                "relay demo needs the reference deployments (the adapters/ folder of the "
                "source checkout)"
            ) from None
        sys.path.insert(0, str(root))
        import adapters.launch
    return adapters.launch


# --------------------------------------------------------------------------- the data


@dataclass
class Picks:
    """What the court session asks about, chosen from the deployments' synthetic data."""

    flat: Any  # pb.AssetRef
    debtor: Any  # samples.Party
    accounts: list[Any] = field(default_factory=list)  # pb.AssetRef
    patent: Any = None  # pb.AssetRef with an assignment in its history
    debtor_domains: set[int] = field(default_factory=set)


def choose(deployments: dict[str, Any]) -> Picks:
    """Recompute the deployments' deterministic sample data (with stand-in party keys) and
    pick: a flat with a seizure or mortgage, a listed debtor holding in some systems but not
    all, the debtor's accounts and a patent that was assigned."""
    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.testing import samples
    from relay.testing.partners import PROFILES

    people = samples.population()
    keys: dict[bytes, samples.Party | None] = {}
    by_id = {(p.id_type, p.id): p for p in people.everyone}

    def key(id_type: int, party_id: str) -> bytes:
        k = hashlib.sha256(f"{id_type}|{party_id}".encode()).digest()
        keys[k] = by_id.get((id_type, party_id))  # None: an institution, not a party here
        return k

    held: dict[str, set[int]] = {}
    accounts: dict[str, list[Any]] = {}
    flats: list[Any] = []
    patents: list[tuple[int, Any]] = []
    frozen: list[Any] = []
    listed: list[samples.Party] = []
    domains = {d.domain for d in deployments.values()}
    for name, domain in (
        ("real-estate", pb.DOMAIN_REAL_ESTATE),
        ("ip", pb.DOMAIN_IP),
        ("credit", pb.DOMAIN_CREDIT),
        ("bank", pb.DOMAIN_BANK),
    ):
        if name not in domains:
            continue
        generated = samples.generate(
            domain=domain,
            registry_codes=PROFILES[domain].registry_codes or ("CREDIT",),
            party_key=key,
            people=people,
        )
        for _, record in generated.records:
            if isinstance(record, pb.OwnershipRecord):
                for owner in record.owners:
                    if (who := keys.get(owner.party.party_key)) is not None:
                        held.setdefault(who.id, set()).add(domain)
                if domain == pb.DOMAIN_REAL_ESTATE and record.encumbrances:
                    flats.append(record.asset)
            elif isinstance(record, pb.AccountRecord):
                if (who := keys.get(record.holder.party_key)) is not None:
                    held.setdefault(who.id, set()).add(domain)
                    accounts.setdefault(who.id, []).append(record.account)
                if record.freezes:
                    frozen.append(record.account)
            elif isinstance(record, pb.CreditRecord):
                if (who := keys.get(record.party.party_key)) is not None:
                    listed.append(who)
            elif isinstance(record, pb.AssetHistory) and domain == pb.DOMAIN_IP:
                # Assignments first, then licences: the richest history of a patent.
                score = sum(
                    2 if e.kind == pb.HISTORY_EVENT_KIND_ASSIGNMENT else 1
                    for e in record.entries
                    if e.kind != pb.HISTORY_EVENT_KIND_REGISTRATION
                )
                patents.append((score, record.asset))
    # A listed debtor who holds something somewhere but not everywhere: the session then
    # shows both found holdings and proven absence.
    debtor = max(
        listed,
        key=lambda p: (0 < len(held.get(p.id, ())) < 3, p.id in accounts, len(held.get(p.id, ()))),
    )
    mine = accounts.get(debtor.id, [])
    # The debtor's accounts, and an account frozen by a court if none of them is.
    extra = [a for a in frozen[:1] if a not in mine]
    return Picks(
        flat=flats[0],
        debtor=debtor,
        accounts=mine + extra,
        patent=max(patents, key=lambda p: p[0])[1] if patents else None,
        debtor_domains=held.get(debtor.id, set()),
    )


# --------------------------------------------------------------------------- the stack


class Demo:
    """The running processes and how to reach the relay."""

    def __init__(self, out: Path, *, block_interval: float = 1.0) -> None:
        self.out = out.resolve()
        self.run_dir = self.out / "run"
        self.block_interval = block_interval
        self.launch = _import_adapters()
        self.partners: dict[str, Any] = {}
        self.relay: Any = None
        self.setup: Any = None
        # https:// base URLs of the ops port and the verification page (the relay's
        # certificate, issued by the demo CA for localhost).
        self.ops_url = ""
        self.web_url = ""
        self.access_pki: Any = None
        self.institutions: dict[str, str] = {}
        # The judicial chain (issue 7): its process and its descriptor file.
        self.judicial: Any = None
        self.judicial_descriptor = self.run_dir / "judicial" / "descriptor.json"

    def children(self) -> list[Any]:
        out = [c for p in self.partners.values() for c in p.children()]
        if self.judicial is not None:
            out.append(self.judicial)
        return [*out, self.relay] if self.relay is not None else out

    def start(
        self,
        say: Callable[[str], None],
        *,
        names: Sequence[str] | None = None,
        relay_overrides: dict[str, Any] | None = None,
    ) -> None:
        """Start the deployments ``names`` (default: all four) and the relay, then register
        every chain the way a partner does: a signed proposal, approved by two operators."""
        from relay.service.devconfig import free_port, write_dev_setup

        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        names = tuple(names or self.launch.DEPLOYMENTS)
        pki = self.write_pki(names)
        say(f"development PKI (court, partner, operator certificates) in {pki.directory}")
        ops_port, web_port, judicial_port = free_port(), free_port(), free_port()
        self.setup = write_dev_setup(
            self.run_dir / "relay",
            pki=pki,
            overrides={
                "listen": {"ops": f"127.0.0.1:{ops_port}", "web": f"127.0.0.1:{web_port}"},
                "sync": {"interval": "200ms"},
                # Quick recovery when an adapter comes back (a demo, not production tuning).
                "adapters": {"deadline": "3s", "retries": 1, "breaker_reset": "1s"},
                "access": self.access_config(),
                "audit": self.audit_config(pki, judicial_port),
                **(relay_overrides or {}),
            },
        )
        # The judicial chain starts while the partners do (it only needs the relay's key).
        self.start_judicial(pki, judicial_port, wait=False)
        self.partners = self.launch.start_partners(
            self.run_dir / "partners", pki, block_interval=self.block_interval, names=names
        )
        for p in self.partners.values():
            witnesses = f", {len(p.witnesses)} witness processes" if p.witnesses else ""
            say(f"started {p.deployment.name:<10} {p.chain_id} (mutual TLS{witnesses})")
        self.launch.wait_for_file(self.judicial_descriptor, self.judicial, timeout_s=30.0)
        say(
            f"started judicial   {self.judicial_chain_id()} (audit checkpoints of the relay, "
            "mutual TLS)"
        )
        self.start_relay()
        say(f"relay serving on {self.setup.grpc_address} (SQLite {self.run_dir}/relay/relay.db)")
        if "listen" not in (relay_overrides or {}):
            self.ops_url = f"https://localhost:{ops_port}"
            self.web_url = f"https://localhost:{web_port}/"
            say(f"verification page on {self.web_url}, metrics on {self.ops_url}/metrics")
        self.onboard(say)

    # --- access: identities and onboarding ---

    def write_pki(self, names: Sequence[str]) -> Any:
        """The development PKI with roles: the relay, a court, two operators and one partner
        identity (certificate and proposal-signing key) per deployment's institution."""
        from relay.pb.relay.v1 import types_pb2 as pb
        from relay.testing.partners import PROFILES
        from relay.testing.pki import DevPki, write_access_pki

        domains = {
            "real-estate": pb.DOMAIN_REAL_ESTATE,
            "ip": pb.DOMAIN_IP,
            "credit": pb.DOMAIN_CREDIT,
            "bank": pb.DOMAIN_BANK,
        }
        self.institutions = {
            n: PROFILES[domains[self.launch.DEPLOYMENTS[n].domain]].institution for n in names
        }
        identities = [
            (COURT_IDENTITY, "court", CASE["court"]),
            *((op, "operator", "") for op in OPERATORS),
            *((f"partner-{n}", "partner", inst) for n, inst in self.institutions.items()),
        ]
        self.access_pki = write_access_pki(self.run_dir / "pki", identities=identities)
        court_cert, court_key = self.access_pki.clients[COURT_IDENTITY]
        return DevPki(
            self.access_pki.directory,
            self.access_pki.ca_cert,
            self.access_pki.server_cert,
            self.access_pki.server_key,
            court_cert,
            court_key,
        )

    def signer(self, institution: str) -> Any:
        from relay.access.proposals import InstitutionSigner

        return InstitutionSigner.from_seed_file(
            key_id=f"{institution}-k1", path=self.access_pki.institution_keys[institution]
        )

    def access_config(self) -> dict[str, Any]:
        from relay.config import ACCESS_DOMAINS, ACCESS_QUERY_KINDS

        return {
            "audience": AUDIENCE,
            "grants": {
                CASE["court"]: {
                    "domains": list(ACCESS_DOMAINS),
                    "queries": list(ACCESS_QUERY_KINDS),
                }
            },
            "institution_keys": [
                self.signer(inst).config_entry(inst) for inst in set(self.institutions.values())
            ],
            "approvals_required": len(OPERATORS),
            "operators": list(OPERATORS),
        }

    def onboard(self, say: Callable[[str], None]) -> None:
        """Each partner proposes its chain (ProposeChain, signed with its institution key,
        over its own partner certificate); each operator approves; the relay registers the
        chain when the last approval arrives."""
        from google.protobuf import json_format

        from relay.access.proposals import make_proposal, sign_proposal
        from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc
        from relay.pb.relay.v1 import types_pb2 as pb

        for name, partner in self.partners.items():
            institution = self.institutions[name]
            descriptor = json_format.Parse(partner.descriptor.read_text(), pb.ChainDescriptor())
            proposal = make_proposal(
                institution=institution, audience=AUDIENCE, register=descriptor
            )
            signed = sign_proposal(proposal, self.signer(institution))
            with self.channel(f"partner-{name}") as ch:
                admin = admin_pb2_grpc.AdminServiceStub(ch)  # type: ignore[no-untyped-call]
                info = admin.ProposeChain(admin_pb2.ProposeChainRequest(signed=signed), timeout=30)
            proposal_id = info.proposal.proposal_id
            for operator in OPERATORS:
                with self.channel(operator) as ch:
                    admin = admin_pb2_grpc.AdminServiceStub(ch)  # type: ignore[no-untyped-call]
                    approved = admin.ApproveProposal(
                        admin_pb2.ApproveProposalRequest(
                            proposal_id=proposal_id, comment="relay demo"
                        ),
                        timeout=30,
                    )
            state = admin_pb2.ProposalState.Name(approved.proposal.state)
            say(
                f"onboarded {partner.chain_id}: proposal {proposal_id[:12]}… by partner-{name}, "
                f"approved by {' and '.join(OPERATORS)}: {state}"
            )
            if approved.proposal.state != admin_pb2.PROPOSAL_STATE_APPLIED:
                raise RuntimeError(
                    f"proposal of {partner.chain_id} not applied: {approved.proposal}"
                )

    # --- the judicial chain (issue 7) ---

    def audit_config(self, pki: Any, port: int) -> dict[str, Any]:
        """The relay's audit section: a checkpoint every second (a demo, not production
        tuning), published to the judicial chain process on ``port``."""
        return {
            "checkpoint_interval": "1s",
            "sink": {
                "endpoint": f"localhost:{port}",
                "tls_ca": str(pki.ca_cert),
                "tls_cert": str(pki.server_cert),
                "tls_key": str(pki.server_key),
            },
        }

    def relay_signer(self) -> Any:
        from relay.engine.evidence import RelaySigner

        return RelaySigner.ed25519(key_id=self.setup.key_id, seed=self.setup.signing_seed)

    def start_judicial(
        self, pki: Any, port: int, *, wait: bool = True, timeout_s: float = 30.0
    ) -> None:
        """Start the judicial chain (``python -m adapters.judicial``) on ``port``, taking the
        checkpoints signed with the relay's key only; with ``wait``, until it serves."""
        from relay.audit.sink import relay_vkey

        directory = self.judicial_descriptor.parent
        directory.mkdir(parents=True, exist_ok=True)
        self.judicial_descriptor.unlink(missing_ok=True)
        vkey = relay_vkey(self.relay_signer().relay_key())
        args = ["-m", "adapters.judicial", "--state", str(directory / "state")]
        args += ["--listen", f"127.0.0.1:{port}", "--server-name", "localhost"]
        args += ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
        args += ["--tls-ca", str(pki.ca_cert), "--tls-client-ca", str(pki.ca_cert)]
        args += ["--relay-vkey", vkey, "--block-interval", str(self.block_interval)]
        args += ["--descriptor-out", str(self.judicial_descriptor)]
        self.judicial = self.launch.Child("judicial", args, directory / "judicial.log").start()
        if wait:
            self.launch.wait_for_file(self.judicial_descriptor, self.judicial, timeout_s=timeout_s)

    def judicial_chain_id(self) -> str:
        from adapters.judicial import CHAIN_ID

        return CHAIN_ID

    def start_relay(self, *, timeout_s: float = 60.0) -> None:
        from relay.service.devconfig import wait_serving

        log = self.run_dir / "relay.log"
        self.relay = self.launch.Child(
            "relay", ["-m", "relay.cli", "serve", "--config", str(self.setup.config)], log
        ).start()
        wait_serving(self.setup.health_address, timeout_s=timeout_s, process=self.relay.process)

    def stop(self) -> None:
        # The relay first: its last audit checkpoint still reaches the judicial chain.
        if self.relay is not None:
            self.launch.terminate([self.relay])
        self.launch.terminate(self.children())

    # --- talking to the relay ---

    def channel(self, identity: str = "") -> Any:
        """A channel to the relay with ``identity``'s certificate (default: the court)."""
        from relay.service.client import ClientTls, channel

        cert, key = self.access_pki.clients[identity or COURT_IDENTITY]
        tls = ClientTls.from_files(
            ca=self.access_pki.ca_cert, cert=cert, key=key, server_name="localhost"
        )
        return channel(self.setup.grpc_address, tls)

    def wait_synced(self, *, timeout_s: float = 60.0) -> list[Any]:
        """Wait until the relay verified every chain (status ACTIVE); the chain infos."""
        from relay.pb.relay.v1 import query_pb2, query_pb2_grpc
        from relay.pb.relay.v1 import types_pb2 as pb

        end = time.monotonic() + timeout_s
        with self.channel() as ch:
            stub = query_pb2_grpc.QueryServiceStub(ch)  # type: ignore[no-untyped-call]
            while True:
                infos = list(stub.ListChains(query_pb2.ListChainsRequest(), timeout=5).chains)
                if len(infos) == len(self.partners) and all(
                    i.status == pb.CHAIN_STATUS_ACTIVE and i.trusted_height > i.anchor_height
                    for i in infos
                ):
                    return infos
                if time.monotonic() > end:
                    raise TimeoutError(f"chains not all verified within {timeout_s} s: {infos}")
                if not self.relay.running:
                    raise RuntimeError(f"the relay exited:\n{self.relay.tail()}")
                time.sleep(0.1)

    def anchors(self) -> Any:
        """The anchor set a court holds: every chain's descriptor anchor, the relay key."""
        from google.protobuf import json_format

        from relay.pb.relay.v1 import types_pb2 as pb
        from relay.verify.anchors import anchor_set

        descriptors = [
            json_format.Parse(p.descriptor.read_text(), pb.ChainDescriptor())
            for p in self.partners.values()
        ]
        return anchor_set(descriptors, relay_keys=[self.relay_signer().relay_key()])


# --------------------------------------------------------------------------- the session


@dataclass
class Answer:
    title: str
    text: str
    evidence: list[tuple[str, Any]]  # (file name, pb.Evidence)
    method: str = ""  # the QueryService method that answered (one call per answer)


def court_session(demo: Demo, picks: Picks) -> Iterator[Answer]:
    """Ask the relay what the court asks; yield each answer with its evidence."""
    from relay.pb.relay.v1 import query_pb2 as q
    from relay.pb.relay.v1 import query_pb2_grpc
    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.service import render

    def case(purpose: int) -> Any:
        return pb.CaseRef(purpose=purpose, **CASE)  # type: ignore[arg-type]

    debtor = pb.PartyRef(
        kind=picks.debtor.kind,
        id_type=picks.debtor.id_type,
        id=picks.debtor.id,
    )
    with demo.channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)  # type: ignore[no-untyped-call]
        own = stub.GetOwnership(
            q.GetOwnershipRequest(asset=picks.flat, case_ref=case(pb.CASE_PURPOSE_ENFORCEMENT)),
            timeout=30,
        )
        yield Answer(
            f"1. Who owns flat {picks.flat.registry}/{picks.flat.id}?",
            render.ownership_answer(own),
            [("01-flat-ownership.json", own.evidence)] if own.HasField("evidence") else [],
            "GetOwnership",
        )
        holdings = list(
            stub.ListHoldings(
                q.ListHoldingsRequest(party=debtor, case_ref=case(pb.CASE_PURPOSE_INVESTIGATION)),
                timeout=30,
            )
        )
        files = []
        for a in holdings:
            if a.HasField("index_evidence"):
                files.append((f"02-holdings-{a.chain_id}-index.json", a.index_evidence))
            for i, h in enumerate(a.holdings, 1):
                files.append((f"02-holdings-{a.chain_id}-{i}.json", h.evidence))
        yield Answer(
            f"2. What does debtor {picks.debtor.name} ({picks.debtor.id}) hold, in every system?",
            "\n\n".join(render.holdings_answer(a) for a in holdings),
            files,
            "ListHoldings",
        )
        credit = stub.GetCreditStatus(
            q.GetCreditStatusRequest(party=debtor, case_ref=case(pb.CASE_PURPOSE_INVESTIGATION)),
            timeout=30,
        )
        yield Answer(
            f"3. Is {picks.debtor.name} a listed dishonest debtor?",
            render.credit_answer(credit),
            [
                (f"03-credit-{f.chain_id}.json", f.evidence)
                for f in credit.findings
                if f.HasField("evidence")
            ],
            "GetCreditStatus",
        )
        for n, account in enumerate(picks.accounts, 1):
            acc = stub.GetAccount(
                q.GetAccountRequest(account=account, case_ref=case(pb.CASE_PURPOSE_PRESERVATION)),
                timeout=30,
            )
            yield Answer(
                f"4.{n} Balance and court freezes of account {account.registry}/{account.id}",
                render.account_answer(acc),
                [(f"04-account-{n}.json", acc.evidence)] if acc.HasField("evidence") else [],
                "GetAccount",
            )
        if picks.patent is not None:
            hist = stub.GetHistory(
                q.GetHistoryRequest(
                    asset=picks.patent, case_ref=case(pb.CASE_PURPOSE_TRIAL_EVIDENCE)
                ),
                timeout=30,
            )
            yield Answer(
                f"5. Assignment and licence history of "
                f"{render.enum_name(pb.AssetKind, picks.patent.kind).lower()} {picks.patent.id}",
                render.history_answer(hist),
                [("05-patent-history.json", hist.evidence)] if hist.HasField("evidence") else [],
                "GetHistory",
            )


def run_session(
    demo: Demo,
    picks: Picks,
    *,
    say: Callable[[str], None],
    answers: list[Answer] | None = None,
) -> tuple[int, int]:
    """Run the session, write and check every evidence file; (files written, files that
    failed the offline check). Each answer is also appended to ``answers``."""
    from google.protobuf import json_format

    from relay.verify.evidence import verify_evidence

    anchors = demo.anchors()
    evidence_dir = demo.out / "evidence"
    if evidence_dir.exists():
        shutil.rmtree(evidence_dir)
    evidence_dir.mkdir(parents=True)
    written = failed = 0
    for answer in court_session(demo, picks):
        if answers is not None:
            answers.append(answer)
        say("\n" + "=" * 78 + f"\n{answer.title}\n" + "-" * 78 + f"\n{answer.text}")
        for name, evidence in answer.evidence:
            path = evidence_dir / name
            path.write_text(json_format.MessageToJson(evidence, indent=2) + "\n", "utf-8")
            report = verify_evidence(
                evidence, anchors=anchors.anchors, relay_keys=dict(anchors.relay_keys)
            )
            written += 1
            if report.ok:
                say(f"   evidence {path.relative_to(demo.out)}: verified offline")
            else:
                failed += 1
                bad = [c for c in report.checks if not c.passed]
                say(f"   evidence {path.relative_to(demo.out)}: FAILED offline check: {bad}")
    return written, failed


def write_anchors_file(demo: Demo) -> Path:
    from relay.offline import write_anchors

    path = demo.out / "anchors.yaml"
    write_anchors(demo.anchors(), path)
    return path


# --------------------------------------------------------------------------- the audit


def _court_entries(audit: Any) -> list[Any]:
    """Every audit entry of the demo court (AuditService.ListMyEntries, page by page)."""
    from relay.pb.relay.v1 import audit_pb2

    entries: list[Any] = []
    start = 0
    while True:
        page = audit.ListMyEntries(
            audit_pb2.ListMyAuditEntriesRequest(start_index=start, page_size=1000), timeout=10
        )
        entries += page.entries
        if not page.next_index:
            return entries
        start = page.next_index


def check_audit(
    demo: Demo, answers: Sequence[Answer], *, say: Callable[[str], None], timeout_s: float = 60.0
) -> dict[str, Any]:
    """After the court session (issue 7): every query of the session is in the relay's audit
    log, with the digest of every evidence the court got, and the court proves each entry's
    inclusion in a signed checkpoint covering the session; the log is exported into the
    output folder and checked end to end (``relay audit export`` / ``relay audit verify``
    against ``anchors.yaml``); the checkpoint is read back from the judicial chain process
    and verified from that chain's trust anchor (validator-signed header, ICS-23 proof,
    relay signature). Returns the audit summary; ``problems`` lists what failed."""
    import argparse
    import asyncio

    import grpc
    from google.protobuf import json_format

    from relay.audit.checkpoint import TREE_HASHER, open_checkpoint
    from relay.audit.entry import decode_entry
    from relay.audit.export import cmd_export, cmd_verify
    from relay.audit.sink import NotPublishedError, read_published_checkpoint
    from relay.pb.relay.v1 import audit_pb2, audit_pb2_grpc
    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.service.client import ClientTls
    from relay.verify.errors import VerificationError
    from relay.verify.merkle.rfc6962 import verify_inclusion

    say("\n" + "=" * 78 + "\nAudit: the session in the relay's tamper-evident log\n" + "-" * 78)
    problems: list[str] = []
    relay_key = demo.relay_signer().relay_key()
    asked = [a.method for a in answers]
    end = time.monotonic() + timeout_s
    with demo.channel() as ch:
        audit = audit_pb2_grpc.AuditServiceStub(ch)  # type: ignore[no-untyped-call]
        session = [
            (e, d)
            for e in _court_entries(audit)
            if (d := decode_entry(e.entry))["kind"] == "query"
            and d["case_number"] == CASE["case_number"]
        ]
        recorded = [str(d["method"]).rsplit("/", 1)[1] for _, d in session]
        if recorded != asked:
            problems.append(f"the log records the queries {recorded}, the court asked {asked}")
        digests = {x for _, d in session for x in d["evidence_digests"]}
        evidence = [
            hashlib.sha256(e.SerializeToString(deterministic=True)).hexdigest()
            for a in answers
            for _, e in a.evidence
        ]
        unrecorded = [x for x in evidence if x not in digests]
        if unrecorded:
            problems.append(f"{len(unrecorded)} evidence digests are not in the log")
        last = max((e.index for e, _ in session), default=0)
        while True:  # a checkpoint covering the session (one is signed every second)
            try:
                cp = audit.GetCheckpoint(audit_pb2.GetAuditCheckpointRequest(), timeout=10)
                if cp.size > last:
                    break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            if time.monotonic() > end:
                raise TimeoutError(f"no audit checkpoint covered the session in {timeout_s} s")
            time.sleep(0.2)
        checkpoint = open_checkpoint(cp.note, relay_key=relay_key)
        proven = 0
        for e, _ in session:
            proof = audit.GetInclusionProof(
                audit_pb2.GetAuditInclusionProofRequest(index=e.index, tree_size=checkpoint.size),
                timeout=10,
            )
            try:
                if proof.entry != e.entry:
                    raise VerificationError("the proven entry is not the listed one")
                verify_inclusion(
                    hasher=TREE_HASHER,
                    index=proof.index,
                    size=checkpoint.size,
                    leaf_hash=TREE_HASHER.hash_leaf(proof.entry),
                    proof=list(proof.hashes),
                    root=checkpoint.root_hash,
                )
                proven += 1
            except VerificationError as err:
                problems.append(f"inclusion proof of entry {e.index}: {err.message}")
    say(
        f"   {len(recorded)} queries of case {CASE['case_number']} in the log "
        f"({len(asked)} asked), {len(evidence) - len(unrecorded)} of {len(evidence)} evidence "
        f"digests recorded"
    )
    say(
        f"   the court proved each of its {proven} entries in checkpoint {checkpoint.size} "
        f"(RFC 6962 inclusion, signed by relay key {relay_key.key_id})"
    )
    export = demo.out / "audit-export.jsonl"
    anchors = demo.out / "anchors.yaml"
    say(f"   $ relay audit export --config {demo.setup.config} --out {export}")
    if cmd_export(argparse.Namespace(config=str(demo.setup.config), out=str(export))) != 0:
        problems.append("relay audit export failed")
    say(f"   $ relay audit verify --export {export} --anchors {anchors}")
    verified = cmd_verify(argparse.Namespace(export=str(export), anchors=str(anchors))) == 0
    if not verified:
        problems.append("relay audit verify failed")
    descriptor = json_format.Parse(demo.judicial_descriptor.read_text(), pb.ChainDescriptor())
    cert, key = demo.access_pki.clients[COURT_IDENTITY]
    tls = ClientTls.from_files(ca=demo.access_pki.ca_cert, cert=cert, key=key)
    published = None
    while published is None:
        try:
            published = asyncio.run(
                read_published_checkpoint(
                    descriptor=descriptor, size=checkpoint.size, relay_key=relay_key, tls=tls
                )
            )
        except (NotPublishedError, grpc.RpcError) as err:
            if time.monotonic() > end:
                problems.append(f"checkpoint {checkpoint.size} not on the judicial chain: {err}")
                break
            time.sleep(0.2)
        except VerificationError as err:
            problems.append(f"checkpoint on the judicial chain does not verify: {err.message}")
            break
    if published is not None:
        say(
            f"   checkpoint {published.size} is on the judicial chain {descriptor.chain_id} at "
            f"height {published.height}: header verified from the chain's validators, ICS-23 "
            "proof and relay signature verified"
        )
    for problem in problems:
        say(f"   AUDIT PROBLEM: {problem}")
    return {
        "session_queries": len(asked),
        "recorded_queries": len(recorded),
        "inclusion_proofs_verified": proven,
        "evidence_digests": len(evidence),
        "evidence_digests_recorded": len(evidence) - len(unrecorded),
        "checkpoint_size": checkpoint.size,
        "export": str(export),
        "export_verified": verified,
        "judicial_chain": descriptor.chain_id,
        "judicial_height": published.height if published is not None else None,
        "judicial_descriptor": str(demo.judicial_descriptor),
        "problems": problems,
    }


# --------------------------------------------------------------------------- the command


def instructions(demo: Demo, picks: Picks) -> str:
    config = demo.setup.config
    case = (
        f"--case-court {CASE['court']} --case-number '{CASE['case_number']}' "
        "--case-purpose investigation"
    )
    flat = picks.flat
    return "\n".join(
        [
            "",
            "Everything keeps running. Ask the relay yourself, for example:",
            f"  relay chains list --config {config}",
            f"  relay query ownership --config {config} {case} \\",
            f"      --asset-kind real-estate --registry {flat.registry} --id '{flat.id}'",
            f"  relay query holdings --config {config} {case} --id {picks.debtor.id}",
            f"  relay query credit --config {config} {case} --id {picks.debtor.id}",
            f"  relay verify --anchors {demo.out / 'anchors.yaml'} {demo.out / 'evidence'}/*.json",
            f"  relay audit export --config {config} --out {demo.out / 'audit-export.jsonl'}",
            f"  relay audit verify --export {demo.out / 'audit-export.jsonl'} "
            f"--anchors {demo.out / 'anchors.yaml'}",
            *(
                [
                    f"  curl --cacert {demo.setup.pki.ca_cert} {demo.ops_url}/metrics",
                    f"Upload evidence files at {demo.web_url} (the certificate is issued by "
                    f"the demo CA {demo.setup.pki.ca_cert}).",
                ]
                if demo.ops_url
                else []
            ),
            "Press Ctrl-C to stop everything.",
        ]
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Start partner systems, adapters and the relay; run a court session."""
    out = Path(args.out or "relay-demo")
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    demo = Demo(out, block_interval=args.block_interval)
    try:
        picks = choose(demo.launch.DEPLOYMENTS)
        demo.start(say)
        infos = demo.wait_synced()
        say(f"relay verified all {len(infos)} chains in {time.monotonic() - started:.1f} s:")
        for i in infos:
            say(f"   {i.chain_id:<28} verified height {i.trusted_height}")
        anchors_path = write_anchors_file(demo)
        say(f"trust anchors written to {anchors_path}")
        answers: list[Answer] = []
        written, failed = run_session(demo, picks, say=say, answers=answers)
        audit = check_audit(demo, answers, say=say)
        summary = {
            "evidence_files": written,
            "failed_offline_checks": failed,
            "audit": audit,
            "out": str(demo.out),
            "seconds": round(time.monotonic() - started, 1),
        }
        (demo.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        say(
            f"\n{written} evidence files in {demo.out / 'evidence'}, "
            f"{written - failed} verified offline against {anchors_path.name}"
        )
        if failed or audit["problems"]:
            return EXIT_FAILED
        if args.once:
            return EXIT_OK
        say(instructions(demo, picks))
        while not stop.is_set():
            for child in demo.children():
                if not child.running:
                    say(f"{child.name} exited unexpectedly; its log: {child.log}")
                    return EXIT_FAILED
            stop.wait(1.0)
        return EXIT_OK
    except KeyboardInterrupt:
        say("\nstopping...")
        return EXIT_OK
    except (RuntimeError, TimeoutError, OSError) as e:
        say(f"relay demo: {e}")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        say("all processes stopped")


def add_command(sub: Any) -> None:
    """Register ``relay demo`` on the CLI's subparsers."""
    p = sub.add_parser(
        "demo",
        help="run partner chains, adapters and the relay locally, and a court session",
        description=cmd_demo.__doc__,
    )
    p.add_argument("--once", action="store_true", help="stop everything after the session")
    p.add_argument("--out", help="output folder (default ./relay-demo)")
    p.add_argument(
        "--block-interval", type=float, default=1.0, help="seconds between blocks (default 1)"
    )
    p.set_defaults(func=cmd_demo)

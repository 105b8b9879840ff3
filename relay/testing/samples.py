"""Realistic synthetic registry data for test partner chains and demos.

Deterministic (seeded) and entirely fictitious: a population of persons and organisations with
well-formed identifiers (18-character resident ID numbers with their GB 11643 check digit,
unified social credit codes with their GB 32100 check character), Chinese names, and the
records partner chains hold about them under record schema 1 (see
:mod:`relay.verify.records`): flats with owners, shares, mortgages and court seizures;
patents, trademarks and copyrights with assignments, licences and pledges;
dishonest-debtor listings and consumption restrictions; bank accounts with freezes. Case
numbers follow the national format ("(2026)京0105执1234号"),
patent numbers the CNIPA format with check digit ("ZL202310123456.X"), card numbers the Luhn
rule.

Records name parties only by their per-chain party keys (salted hashes, computed with the
chain's :class:`~relay.pb.relay.v1.types_pb2.PartyKeySpec`); raw identifiers stay in the
:class:`Party` values a test or demo uses to ask the relay.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from relay.pb.relay.v1 import types_pb2 as pb

PartyKeyFn = Callable[[int, str], bytes]
"""``(id_type, raw id) -> party key`` of one chain."""

DAY = 86_400
_EPOCH_2015 = 1_420_070_400  # 2015-01-01T00:00:00Z
_RECENT = 1_780_272_000  # 2026-06-01T00:00:00Z: the newest registered event


# --- identifiers with check digits -----------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def resident_id_check(body: str) -> str:
    """The check character of the first 17 digits of a resident ID (ISO 7064 MOD 11-2)."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def resident_id(region: str, birth: str, sequence: int) -> str:
    """An 18-character resident ID number (GB 11643-1999): region code, birth date
    YYYYMMDD, 3-digit sequence (odd for men), ISO 7064 MOD 11-2 check character."""
    body = f"{region}{birth}{sequence:03d}"
    if len(body) != 17 or not body.isdigit():
        raise ValueError("resident ID needs a 6-digit region, 8-digit date and a sequence")
    return body + resident_id_check(body)


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code(serial: int) -> str:
    # GB 11714 organisation code: 8 characters and a check character.
    body = f"{serial:08d}"
    c = 11 - sum(int(ch) * w for ch, w in zip(body, _ORG_WEIGHTS, strict=True)) % 11
    return body + ("X" if c == 10 else "0" if c == 11 else str(c))


def uscc_check(body: str) -> str:
    """The check character of the first 17 characters of a unified social credit code."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def uscc(region: str, serial: int, *, authority: str = "9", category: str = "1") -> str:
    """A unified social credit code (GB 32100-2015): registration authority and category
    (9 1 = enterprise registered with market regulation), region code, organisation code,
    check character (weighted sum modulo 31)."""
    body = authority + category + region + _org_code(serial)
    return body + uscc_check(body)


def patent_number(year: int, kind: int, serial: int) -> str:
    """A CNIPA patent number: "ZL", the 12-digit application number (year, type 1 invention /
    2 utility model / 3 design, 7-digit serial), ".", the check digit (weights 2..9 repeated,
    modulo 11, 10 written "X")."""
    digits = f"{year:04d}{kind:01d}{serial:07d}"
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    c = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    return f"ZL{digits}.{'X' if c == 10 else c}"


def luhn_check(body: str) -> str:
    """The Luhn check digit to append to ``body``."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def luhn_number(prefix: str, length: int, serial: int) -> str:
    """A card or account number of ``length`` digits ending in its Luhn check digit."""
    body = f"{prefix}{serial:0{length - len(prefix) - 1}d}"[: length - 1]
    return body + luhn_check(body)


def case_number(year: int, court: str, kind: str, serial: int) -> str:
    """A case number (案号): "(year)" court code, case-type characters, serial, "号"."""
    return f"({year}){court}{kind}{serial}号"


# --- population ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A party as a court knows it (raw identifier) and its recorded name."""

    kind: int  # pb.PartyKind
    id_type: int  # pb.IdType
    id: str
    name: str

    def ref(self) -> pb.PartyRef:
        """The PartyRef a court sends for this party."""
        return pb.PartyRef(kind=self.kind, id_type=self.id_type, id=self.id)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Court:
    code: str
    name: str


COURTS = (
    Court("京0105", "北京市朝阳区人民法院"),
    Court("京0108", "北京市海淀区人民法院"),
    Court("京0101", "北京市东城区人民法院"),
    Court("京03", "北京市第三中级人民法院"),
    Court("沪0115", "上海市浦东新区人民法院"),
)

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_GIVEN = (
    *("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰"),
    *("娟", "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "志强", "晓燕"),
    *("国庆", "海燕", "子涵", "浩然", "雨桐", "欣怡", "俊杰", "思远"),
)
_FIRMS = (
    "星辰科技",
    "华信电子",
    "博远生物医药",
    "中联建设工程",
    "瑞丰贸易",
    "天宇新材料",
    "恒通物流",
    "金桥置业",
    "启明软件",
    "嘉和餐饮管理",
)
IP_REGISTRY = "CNIPA"
"""Registry code of patents and trademarks (China National Intellectual Property Administration)."""
COPYRIGHT_REGISTRY = "CPCC"
"""Registry code of copyright registrations (Copyright Protection Center of China)."""

_REGIONS = ("110105", "110108", "110101", "310115", "440305")


@dataclass(frozen=True)
class Bank:
    """A bank: name of the branch, its code (AssetRef.registry of its accounts) and USCC."""

    name: str
    code: str
    uscc: str

    def party(self) -> Party:
        return Party(pb.PARTY_KIND_ORG, pb.ID_TYPE_USCC, self.uscc, self.name)


BANKS = (
    Bank("中国工商银行股份有限公司北京朝阳支行", "102100000013", uscc("110105", 10_000_013)),
    Bank("中国建设银行股份有限公司北京海淀支行", "105100000025", uscc("110108", 10_000_025)),
    Bank("招商银行股份有限公司北京分行", "308100005019", uscc("110101", 10_000_019)),
)


@dataclass(frozen=True)
class Population:
    """Persons and organisations shared by every sample chain, so one party can hold assets
    on several chains. ``debtor`` is a person who holds something everywhere and is listed
    as a dishonest debtor: the natural subject of a ListHoldings demo."""

    persons: tuple[Party, ...]
    orgs: tuple[Party, ...]

    @property
    def debtor(self) -> Party:
        return self.persons[0]

    @property
    def everyone(self) -> tuple[Party, ...]:
        return self.persons + self.orgs


def population(*, seed: str = "relay-demo", persons: int = 24, orgs: int = 8) -> Population:
    """A deterministic population of ``persons`` natural persons and ``orgs`` companies."""
    rng = random.Random(seed)
    people: list[Party] = []
    used: set[str] = set()
    for i in range(persons):
        region = rng.choice(_REGIONS)
        birth = f"{rng.randint(1955, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        pid = resident_id(region, birth, rng.randint(1, 499) * 2 - (i % 2))
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        while pid in used:  # astronomically rare; keep identifiers unique anyway
            pid = resident_id(region, birth, rng.randint(1, 998))
        used.add(pid)
        people.append(Party(pb.PARTY_KIND_PERSON, pb.ID_TYPE_RESIDENT_ID, pid, name))
    companies = [
        Party(
            pb.PARTY_KIND_ORG,
            pb.ID_TYPE_USCC,
            uscc(rng.choice(_REGIONS), rng.randint(10_000_000, 99_999_999)),
            f"北京{_FIRMS[i % len(_FIRMS)]}有限公司",
        )
        for i in range(orgs)
    ]
    return Population(tuple(people), tuple(companies))


# --- records ---------------------------------------------------------------------------------


def ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def cny(yuan: float) -> pb.Money:
    return pb.Money(minor_units=round(yuan * 100), currency="CNY")


@dataclass
class SampleSet:
    """What :func:`generate` put on a chain, for tests and demos to ask about."""

    records: list[tuple[pb.RecordKey, object]] = field(default_factory=list)
    assets: list[pb.AssetRef] = field(default_factory=list)
    parties: list[Party] = field(default_factory=list)
    credit_parties: list[Party] = field(default_factory=list)

    def add(self, key: pb.RecordKey, record: object) -> None:
        self.records.append((key, record))


class _Gen:
    def __init__(self, *, seed: str, key: PartyKeyFn, people: Population) -> None:
        self.rng = random.Random(seed)
        self.key = key
        self.people = people

    def recorded(self, party: Party) -> pb.RecordParty:
        return pb.RecordParty(
            party_key=self.key(party.id_type, party.id),
            kind=party.kind,  # type: ignore[arg-type]
            name=party.name,
        )

    def when(self, start_year: int = 2015, end_year: int = 2025) -> int:
        lo = _EPOCH_2015 + (start_year - 2015) * 365 * DAY
        hi = _EPOCH_2015 + (end_year - 2015 + 1) * 365 * DAY
        return self.rng.randrange(lo, hi) // DAY * DAY + self.rng.randrange(8, 18) * 3600

    def court(self) -> Court:
        return self.rng.choice(COURTS)

    def case(self, court: Court, kind: str, year: int | None = None) -> str:
        return case_number(
            year or self.rng.randint(2023, 2026), court.code, kind, self.rng.randint(1, 19_999)
        )

    def court_party(self, court: Court) -> pb.RecordParty:
        # Courts appear as unkeyed organisations: they are not parties of the record.
        return pb.RecordParty(kind=pb.PARTY_KIND_ORG, name=court.name)

    def seizure(self, since: int, rank: int, *, waiting: bool = False) -> pb.Encumbrance:
        court = self.court()
        return pb.Encumbrance(
            kind=pb.ENCUMBRANCE_KIND_WAITING_SEIZURE if waiting else pb.ENCUMBRANCE_KIND_SEIZURE,
            holder=self.court_party(court),
            court=court.code,
            case_number=self.case(court, "执"),
            since=ts(since),
            until=ts(since + 3 * 365 * DAY),  # seizures of real estate run three years
            status=pb.REGISTRATION_STATUS_REGISTERED,
            registered_at=ts(since + DAY),
            rank=rank,
            reference=f"{court.code}查封{self.rng.randint(100_000, 999_999)}",
        )

    def mortgage(self, since: int, amount: float, rank: int, *, cancelled: bool) -> pb.Encumbrance:
        bank = self.rng.choice(BANKS)
        return pb.Encumbrance(
            kind=pb.ENCUMBRANCE_KIND_MORTGAGE,
            holder=self.recorded(bank.party()),
            amount=cny(amount),
            since=ts(since),
            until=ts(since + 30 * 365 * DAY),
            status=pb.REGISTRATION_STATUS_CANCELLED
            if cancelled
            else pb.REGISTRATION_STATUS_REGISTERED,
            registered_at=ts(since + 2 * DAY),
            rank=rank,
            reference=(
                f"京({since // (365 * DAY) + 1970})不动产证明第"
                f"{self.rng.randint(1, 9_999_999):07d}号"
            ),
        )


_ROADS = ("建国路", "朝阳北路", "望京街", "东三环中路", "酒仙桥路", "广渠路", "农展馆南路")


def _flat_owners(g: _Gen, first: Party | None) -> list[pb.Owner]:
    persons = g.people.persons
    pick = first or g.rng.choice(persons)
    style = g.rng.random()
    if style < 0.55:
        return [
            pb.Owner(
                party=g.recorded(pick),
                share=pb.Share(basis_points=10_000),
                co_ownership=pb.CO_OWNERSHIP_SOLE,
            )
        ]
    other = g.rng.choice([p for p in persons if p != pick])
    if style < 0.8:  # spouses: joint ownership without shares
        return [
            pb.Owner(party=g.recorded(p), co_ownership=pb.CO_OWNERSHIP_JOINT) for p in (pick, other)
        ]
    split = g.rng.choice([(5000, 5000), (7000, 3000), (6000, 4000)])
    if g.rng.random() < 0.3:  # a share basis points cannot express
        return [
            pb.Owner(
                party=g.recorded(pick),
                share=pb.Share(fraction="2/3"),
                co_ownership=pb.CO_OWNERSHIP_BY_SHARES,
            ),
            pb.Owner(
                party=g.recorded(other),
                share=pb.Share(fraction="1/3"),
                co_ownership=pb.CO_OWNERSHIP_BY_SHARES,
            ),
        ]
    return [
        pb.Owner(
            party=g.recorded(p),
            share=pb.Share(basis_points=bp),
            co_ownership=pb.CO_OWNERSHIP_BY_SHARES,
        )
        for p, bp in zip((pick, other), split, strict=True)
    ]


def real_estate(
    g: _Gen, out: SampleSet, *, registry: str, count: int, district: str = "朝阳区"
) -> None:
    """Flats of one district registry: owners, mortgages, seizures, and their histories."""
    for i in range(count):
        unit = f"{registry}-{g.rng.randint(1, 120):04d}-{i + 1:04d}"
        asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry=registry, id=unit)
        owners = _flat_owners(g, g.people.debtor if i == 0 else None)
        registered = g.when(2012, 2024)
        encumbrances: list[pb.Encumbrance] = []
        if g.rng.random() < 0.5 or i == 0:
            encumbrances.append(
                g.mortgage(
                    registered + 3 * DAY, g.rng.randint(80, 600) * 10_000, 1, cancelled=False
                )
            )
        if g.rng.random() < 0.15:
            encumbrances.append(g.mortgage(registered - 900 * DAY, 500_000, 1, cancelled=True))
        if g.rng.random() < 0.2 or i == 0:
            since = g.when(2024, 2026)
            encumbrances.append(g.seizure(since, 1))
            if g.rng.random() < 0.4 or i == 0:
                encumbrances.append(g.seizure(since + 40 * DAY, 2, waiting=True))
        floor = g.rng.randint(1, 28)
        record = pb.OwnershipRecord(
            asset=asset,
            description=(
                f"北京市{district}{g.rng.choice(_ROADS)}{g.rng.randint(1, 200)}号院"
                f"{g.rng.randint(1, 12)}号楼{g.rng.randint(1, 4)}单元"
                f"{floor}{g.rng.randint(1, 8):02d}"
            ),
            owners=owners,
            encumbrances=encumbrances,
            status=pb.REGISTRATION_STATUS_REGISTERED,
            registered_at=ts(registered),
            certificate_number=(
                f"京({registered // (365 * DAY) + 1970}){district}不动产权第"
                f"{g.rng.randint(1, 9_999_999):07d}号"
            ),
        )
        out.add(pb.RecordKey(ownership=asset), record)
        history = pb.AssetHistory(asset=asset)
        first = registered - g.rng.randint(400, 3000) * DAY
        developer = g.rng.choice(g.people.orgs)
        history.entries.append(
            pb.HistoryEntry(
                kind=pb.HISTORY_EVENT_KIND_REGISTRATION,
                to_parties=[g.recorded(developer)],
                at=ts(first),
                reference=f"京({first // (365 * DAY) + 1970}){district}不动产权第{i + 1:07d}号",
            )
        )
        history.entries.append(
            pb.HistoryEntry(
                kind=pb.HISTORY_EVENT_KIND_TRANSFER,
                from_parties=[g.recorded(developer)],
                to_parties=[o.party for o in owners],
                at=ts(registered),
                reference=record.certificate_number,
            )
        )
        out.add(pb.RecordKey(history=asset), history)
        out.assets.append(asset)


_TITLES = (
    "一种基于区块链的司法存证方法及系统",
    "一种锂离子电池正极材料及其制备方法",
    "一种可折叠的电动自行车车架",
    "一种智能门锁的指纹识别装置",
    "用于跨链数据验证的轻客户端装置",
    "一种中药组合物及其在降血压中的应用",
)


def _assignments(
    g: _Gen, first: Party, registered: int, *, last: Party | None, reference: str
) -> tuple[list[pb.HistoryEntry], Party, int]:
    """The assignments (转让) of an IP right first registered to ``first`` at ``registered``:
    none to three, each from the holder of the time to a new one, ending with ``last`` when
    given (then at least one). Returns (entries, current holder, time of the last event)."""
    candidates = list(g.people.orgs + g.people.persons[:6])
    count = g.rng.choice((0, 0, 1, 1, 2, 3))
    if last is not None:
        count = max(count, 2 if g.rng.random() < 0.5 else 1)
    entries: list[pb.HistoryEntry] = []
    holder, at = first, registered
    # Spread the assignments between registration and the recent past (never the future).
    gap = max((_RECENT - registered) // (count + 1), 2 * DAY)
    for n in range(count):
        if last is not None and n == count - 1:
            to = last
        else:
            to = g.rng.choice([p for p in candidates if p not in (holder, last)])
        at += g.rng.randrange(gap // 2, gap) // DAY * DAY + 10 * 3600
        entries.append(
            pb.HistoryEntry(
                kind=pb.HISTORY_EVENT_KIND_ASSIGNMENT,
                from_parties=[g.recorded(holder)],
                to_parties=[g.recorded(to)],
                at=ts(at),
                reference=reference.format(n=n + 1),
            )
        )
        holder = to
    return entries, holder, at


def _licences(g: _Gen, holder: Party, since: int, *, reference: str) -> list[pb.HistoryEntry]:
    """Licences (许可) the current holder granted: none to two."""
    out = []
    for n in range(g.rng.choice((0, 0, 1, 1, 2))):
        licensee = g.rng.choice([o for o in g.people.orgs if o != holder])
        at = since + g.rng.randrange(max(_RECENT - since, 2 * DAY)) // DAY * DAY + 3600
        out.append(
            pb.HistoryEntry(
                kind=pb.HISTORY_EVENT_KIND_LICENCE,
                from_parties=[g.recorded(holder)],
                to_parties=[g.recorded(licensee)],
                at=ts(at),
                reference=reference.format(n=n + 1),
                licence_type=g.rng.choice(
                    (pb.LICENCE_TYPE_EXCLUSIVE, pb.LICENCE_TYPE_SOLE, pb.LICENCE_TYPE_ORDINARY)
                ),
                until=ts(at + 5 * 365 * DAY),
            )
        )
    return out


def _ip_encumbrances(g: _Gen, granted: int, *, frozen: bool) -> list[pb.Encumbrance]:
    """A bank's pledge (质押) now and then; a court freeze when ``frozen`` or by chance."""
    out: list[pb.Encumbrance] = []
    year = granted // (365 * DAY) + 1970
    if g.rng.random() < 0.25:
        bank = g.rng.choice(BANKS)
        out.append(
            pb.Encumbrance(
                kind=pb.ENCUMBRANCE_KIND_PLEDGE,
                holder=g.recorded(bank.party()),
                amount=cny(g.rng.randint(50, 500) * 10_000),
                since=ts(granted + 200 * DAY),
                status=pb.REGISTRATION_STATUS_REGISTERED,
                registered_at=ts(granted + 201 * DAY),
                rank=1,
                reference=f"Y{year + 1}99000{g.rng.randint(10_000, 99_999)}",
            )
        )
    if g.rng.random() < 0.15 or frozen:
        court = g.court()
        since = g.when(2025, 2026)
        out.append(
            pb.Encumbrance(
                kind=pb.ENCUMBRANCE_KIND_FREEZE,
                holder=g.court_party(court),
                court=court.code,
                case_number=g.case(court, "执"),
                since=ts(since),
                until=ts(since + 3 * 365 * DAY),
                status=pb.REGISTRATION_STATUS_REGISTERED,
                registered_at=ts(since + DAY),
                rank=1,
            )
        )
    return out


def _ip_right(
    g: _Gen,
    out: SampleSet,
    asset: pb.AssetRef,
    *,
    title: str,
    certificate: str,
    granted: int,
    first_reference: str,
    to_debtor: bool,
    assignment_reference: str,
    licence_reference: str,
) -> None:
    """One IP right: its ownership record (current holder, pledges, freezes) and its full
    history (registration, assignments, licences), consistent with each other."""
    candidates = g.people.orgs + g.people.persons[:6]
    first = g.rng.choice([p for p in candidates if not to_debtor or p != g.people.debtor])
    entries, holder, last_at = _assignments(
        g,
        first,
        granted,
        last=g.people.debtor if to_debtor else None,
        reference=assignment_reference,
    )
    history = pb.AssetHistory(
        asset=asset,
        entries=[
            pb.HistoryEntry(
                kind=pb.HISTORY_EVENT_KIND_REGISTRATION,
                to_parties=[g.recorded(first)],
                at=ts(granted),
                reference=first_reference,
            ),
            *entries,
            *_licences(g, holder, last_at, reference=licence_reference),
        ],
    )
    record = pb.OwnershipRecord(
        asset=asset,
        description=title,
        owners=[
            pb.Owner(
                party=g.recorded(holder),
                share=pb.Share(basis_points=10_000),
                co_ownership=pb.CO_OWNERSHIP_SOLE,
            )
        ],
        encumbrances=_ip_encumbrances(g, granted, frozen=to_debtor),
        status=pb.REGISTRATION_STATUS_REGISTERED,
        registered_at=ts(last_at),
        certificate_number=certificate,
    )
    out.add(pb.RecordKey(ownership=asset), record)
    out.add(pb.RecordKey(history=asset), history)
    out.assets.append(asset)


_TITLES = (
    "一种基于区块链的司法存证方法及系统",
    "一种锂离子电池正极材料及其制备方法",
    "一种可折叠的电动自行车车架",
    "一种智能门锁的指纹识别装置",
    "用于跨链数据验证的轻客户端装置",
    "一种中药组合物及其在降血压中的应用",
)


def patents(g: _Gen, out: SampleSet, *, registry: str, count: int) -> None:
    """Patents: holders (mostly companies), assignments, licences, pledges, court freezes.
    The first one was assigned to the debtor."""
    for i in range(count):
        year = g.rng.randint(2014, 2022)
        kind = g.rng.choice((1, 1, 2, 3))
        number = patent_number(year, kind, g.rng.randint(100_000, 9_999_999))
        contract = f"{year + 2}99000{g.rng.randint(10_000, 99_999)}"
        _ip_right(
            g,
            out,
            pb.AssetRef(kind=pb.ASSET_KIND_PATENT, registry=registry, id=number),
            title=g.rng.choice(_TITLES),
            certificate=f"第{g.rng.randint(1_000_000, 6_999_999)}号",
            granted=g.when(min(year + 1, 2023), 2023),
            first_reference=f"授权公告号CN{g.rng.randint(100_000_000, 119_999_999)}B",
            to_debtor=i == 0,
            assignment_reference=f"专利权转让登记{contract}{{n}}",
            licence_reference=f"专利实施许可合同备案{contract}{{n}}",
        )


_MARKS = ("星辰", "华信", "博远", "瑞丰", "天宇", "恒通", "金桥", "启明", "嘉和", "云帆")
_NICE_CLASSES = (9, 30, 35, 41, 42, 43)


def trademarks(g: _Gen, out: SampleSet, *, registry: str, count: int) -> None:
    """Registered trademarks (注册商标): registration number, Nice class, assignments
    (转让) and licences (使用许可备案); the first one was assigned to the debtor."""
    for i in range(count):
        number = str(g.rng.randint(10_000_000, 69_999_999))
        nice = g.rng.choice(_NICE_CLASSES)
        _ip_right(
            g,
            out,
            pb.AssetRef(kind=pb.ASSET_KIND_TRADEMARK, registry=registry, id=number),
            title=f"“{g.rng.choice(_MARKS)}”文字商标，第{nice}类",
            certificate=f"商标注册证第{number}号",
            granted=g.when(2015, 2023),
            first_reference=f"商标注册公告第{g.rng.randint(1500, 1900)}期",
            to_debtor=i == 0,
            assignment_reference=f"转让公告{number}-{{n}}",
            licence_reference=f"商标使用许可备案{number}-{{n}}",
        )


_WORKS = (
    ("F", "文字作品《城市司法实务手册》"),
    ("I", "美术作品《望京晨光》"),
    ("L", "计算机软件《跨链取证管理系统V2.0》"),
    ("L", "计算机软件《智能合同审查平台V1.3》"),
    ("J", "音乐作品《朝阳》"),
)


def copyrights(g: _Gen, out: SampleSet, *, registry: str, count: int) -> None:
    """Registered copyrights (作品 / 软件著作权登记): registration numbers of the copyright
    protection centre, assignments (著作权转让) and licences (专有许可)."""
    for i in range(count):
        code, title = g.rng.choice(_WORKS)
        granted = g.when(2016, 2023)
        year = granted // (365 * DAY) + 1970
        if code == "L":
            number = f"{year}SR{g.rng.randint(100_000, 1_999_999):07d}"
            certificate = f"软著登字第{g.rng.randint(1_000_000, 9_999_999)}号"
        else:
            number = f"国作登字-{year}-{code}-{g.rng.randint(1, 99_999_999):08d}"
            certificate = f"作品登记证书{number}"
        _ip_right(
            g,
            out,
            pb.AssetRef(kind=pb.ASSET_KIND_COPYRIGHT, registry=registry, id=number),
            title=title,
            certificate=certificate,
            granted=granted,
            first_reference=number,
            to_debtor=i == 0,
            assignment_reference=f"著作权转让合同登记{number}-Z{{n}}",
            licence_reference=f"著作权专有许可合同登记{number}-X{{n}}",
        )


_CIRCUMSTANCES = (
    "有履行能力而拒不履行生效法律文书确定义务",
    "以伪造证据、暴力、威胁等方法妨碍、抗拒执行",
    "以虚假诉讼、虚假仲裁或者以隐匿、转移财产等方法规避执行",
    "违反财产报告制度",
    "违反限制消费令",
    "无正当理由拒不履行执行和解协议",
)


def credit(g: _Gen, out: SampleSet, *, count: int) -> None:
    """Dishonest-debtor listings and consumption restrictions for ``count`` parties."""
    for n, party in enumerate(g.people.persons[: max(count, 1)]):
        record = pb.CreditRecord(party=g.recorded(party))
        for _ in range(1 if n else 2):
            court = g.court()
            listed = g.when(2023, 2025)
            removed = g.rng.random() < 0.2 and n != 0
            record.listings.append(
                pb.DishonestListing(
                    court=court.code,
                    case_number=g.case(court, "执", listed // (365 * DAY) + 1970),
                    obligation=f"支付借款本金人民币{g.rng.randint(5, 300) * 10_000}元及利息",
                    circumstance=g.rng.choice(_CIRCUMSTANCES),
                    listed_at=ts(listed),
                    removed_at=ts(listed + 400 * DAY) if removed else None,
                )
            )
            record.restrictions.append(
                pb.ConsumptionRestriction(
                    court=court.code,
                    case_number=g.case(court, "执", listed // (365 * DAY) + 1970),
                    issued_at=ts(listed - 10 * DAY),
                )
            )
        out.add(pb.RecordKey(credit_party_key=record.party.party_key), record)
        out.credit_parties.append(party)


def accounts(g: _Gen, out: SampleSet, *, bank: Bank, count: int) -> None:
    """Deposit accounts of one bank with balances and court freezes."""
    holders = list(g.people.everyone)
    for i in range(count):
        holder = g.people.debtor if i == 0 else holders[i % len(holders)]
        number = luhn_number("6222", 19, g.rng.randint(10**12, 10**13))
        asset = pb.AssetRef(kind=pb.ASSET_KIND_BANK_ACCOUNT, registry=bank.code, id=number)
        record = pb.AccountRecord(
            account=asset,
            holder=g.recorded(holder),
            bank=bank.name,
            balance=cny(g.rng.randint(0, 5_000_000) / 100 * 10),
            status=pb.ACCOUNT_STATUS_OPEN if g.rng.random() < 0.9 else pb.ACCOUNT_STATUS_DORMANT,
        )
        if g.rng.random() < 0.25 or i == 0:
            for rank in (1, 2) if i == 0 else (1,):
                court = g.court()
                since = g.when(2025, 2026)
                record.freezes.append(
                    pb.AccountFreeze(
                        court=court.code,
                        case_number=g.case(court, "执保" if rank == 2 else "执"),
                        amount=cny(g.rng.randint(1, 200) * 10_000),
                        since=ts(since),
                        until=ts(since + 365 * DAY),  # deposits are frozen for one year
                        status=pb.REGISTRATION_STATUS_REGISTERED,
                        rank=rank,
                    )
                )
        out.add(pb.RecordKey(account=asset), record)
        out.assets.append(asset)


def generate(
    *,
    domain: int,
    registry_codes: Sequence[str],
    party_key: PartyKeyFn,
    people: Population | None = None,
    seed: str = "relay-demo",
    scale: int = 1,
) -> SampleSet:
    """Records for a chain of ``domain`` (a ``pb.Domain`` value) authoritative for
    ``registry_codes``. ``scale`` multiplies the number of records."""
    pop = people or population()
    g = _Gen(seed=f"{seed}/{domain}/{','.join(registry_codes)}", key=party_key, people=pop)
    out = SampleSet(parties=list(pop.everyone))
    if domain == pb.DOMAIN_REAL_ESTATE:
        for code in registry_codes:
            real_estate(g, out, registry=code, count=30 * scale)
    elif domain == pb.DOMAIN_IP:
        # A national IP register: patents and trademarks under CNIPA's code, copyrights
        # under the copyright protection centre's; any other code holds patents.
        for code in registry_codes:
            if code == COPYRIGHT_REGISTRY:
                copyrights(g, out, registry=code, count=8 * scale)
            else:
                patents(g, out, registry=code, count=14 * scale)
                if code == IP_REGISTRY:
                    trademarks(g, out, registry=code, count=10 * scale)
    elif domain == pb.DOMAIN_CREDIT:
        credit(g, out, count=min(len(pop.persons), 6 * scale))
    elif domain == pb.DOMAIN_BANK:
        by_code = {b.code: b for b in BANKS}
        for code in registry_codes:
            bank = by_code.get(code) or Bank(f"银行{code}", code, uscc("110101", int(code[-8:])))
            accounts(g, out, bank=bank, count=25 * scale)
    else:
        raise ValueError(f"no sample data for domain {domain}")
    return out

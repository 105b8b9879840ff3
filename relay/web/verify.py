"""The public evidence-verification page (issue 7): anyone, without logging in, uploads or
pastes an evidence file and sees, in Chinese and English, each of the seven checks of
:func:`relay.verify.evidence.verify_evidence` with its result, the record in plain language
(who owns what, shares, restrictions, as of which block and time), the assurance, and how to
check the same file offline with ``relay verify``.

It runs on its own port (``listen.web``), apart from the court API and the operations port.
The server checks the upload against the relay's own anchors (every chain registered in the
store, and the relay's public key), the same checks ``relay verify`` runs with an exported
anchors file. Nothing uploaded is stored: bodies are read into memory, checked and dropped;
no file is written and no body is logged. Uploads are limited in size (``max_upload_bytes``,
1 MiB by default), POSTs are rate-limited per client address, and every response carries a
strict Content-Security-Policy (``default-src 'none'``; scripts, styles and images from this
origin only, no inline script), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
no-referrer`` and ``frame-ancestors 'none'``. The page is a plain HTML form that works
without JavaScript; ``static/verify.js`` (no framework, nothing third-party) only adds
drag-and-drop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from aiohttp import BodyPartReader, web
from google.protobuf.timestamp_pb2 import Timestamp

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.anchors import AnchorSet
from relay.verify.evidence import STEP_NAMES, EvidenceReport
from relay.verify.offline import FileReport, verify_evidence_bytes

log = logging.getLogger("relay.web.verify")

MAX_UPLOAD_BYTES: Final = 1 << 20
# Bodies a little over the limit are read and dropped so that the browser gets the clear
# "too large" page rather than a reset connection; far larger ones are refused unread.
DRAIN_LIMIT_BYTES: Final = 16 << 20
RATE_PER_MINUTE: Final = 30
RATE_BURST: Final = 30
MAX_TRACKED_CLIENTS: Final = 10_000

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: Where the anchors come from: usually :func:`relay.offline.relay_anchor_set` over the
#: running relay's store.
AnchorsSource = Callable[[], Awaitable[AnchorSet]]

_STATIC: Final = {"verify.css": "text/css", "verify.js": "text/javascript"}

STEP_LABELS: Final = {
    "format": ("格式", "Format and version"),
    "anchor": ("信任锚", "Registered trust anchor"),
    "trust_path": ("信任路径", "Trust path (header or checkpoint signatures)"),
    "state_root": ("状态根", "State root in the header"),
    "proof": ("状态证明", "State proof"),
    "record": ("记录解码", "Record decoding"),
    "attestation": ("中继签名", "Relay signature"),
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _enum(enum: Any, value: int) -> str:
    item = enum.DESCRIPTOR.values_by_number.get(value)
    if item is None:
        return str(value)
    prefix = "".join(
        "_" + c if c.isupper() and i else c for i, c in enumerate(enum.DESCRIPTOR.name)
    )
    return str(item.name).removeprefix(prefix.upper() + "_").replace("_", " ").lower()


def _time(ts: Timestamp) -> str:
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(ts.seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts.seconds} s"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _money(m: pb.Money) -> str:
    sign = "-" if m.minor_units < 0 else ""
    units = abs(m.minor_units)
    return f"{sign}{units // 100:,}.{units % 100:02d} {m.currency}".strip()


def _share(s: pb.Share) -> str:
    which = s.WhichOneof("portion")
    if which == "basis_points":
        return f"{s.basis_points / 100:g}%"
    if which == "fraction":
        return s.fraction
    return "-"


def _asset(a: pb.AssetRef) -> str:
    return f"{_enum(pb.AssetKind, a.kind)} · {a.registry} / {a.id}"


def _party(p: pb.RecordParty) -> str:
    name = p.name or "(未记载姓名 / no name recorded)"
    kind = _enum(pb.PartyKind, p.kind)
    key = f"<br><span class=key>party key {_e(p.party_key.hex())}</span>" if p.party_key else ""
    return f"{_e(name)} ({_e(kind)}){key}"


def _rows(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A table; cells are already escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fields(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs)
    return f"<dl>{items}</dl>"


def _ownership(r: pb.OwnershipRecord) -> str:
    out = [
        _fields(
            [
                ("资产 / Asset", _e(_asset(r.asset))),
                ("描述 / Description", _e(r.description or "-")),
                ("登记状态 / Registration", _e(_enum(pb.RegistrationStatus, r.status))),
                ("登簿时间 / Registered at", _e(_time(r.registered_at))),
                ("证书号 / Certificate", _e(r.certificate_number or "-")),
            ]
        ),
        "<h3>权利人 / Owners</h3>",
        _rows(
            ["权利人 / Owner", "份额 / Share", "共有方式 / Co-ownership"],
            (
                [_party(o.party), _e(_share(o.share)), _e(_enum(pb.CoOwnership, o.co_ownership))]
                for o in r.owners
            ),
        )
        if r.owners
        else "<p>无 / none</p>",
        "<h3>权利限制 / Encumbrances</h3>",
    ]
    if r.encumbrances:
        out.append(
            _rows(
                [
                    "类型 / Kind",
                    "权利人 / Holder",
                    "金额 / Amount",
                    "法院与案号 / Court, case",
                    "期间 / Term",
                    "状态 / Status",
                ],
                (
                    [
                        _e(_enum(pb.EncumbranceKind, x.kind)),
                        _party(x.holder) if x.HasField("holder") else "-",
                        _e(_money(x.amount)) if x.HasField("amount") else "-",
                        _e(f"{x.court} {x.case_number}".strip() or "-"),
                        _e(f"{_time(x.since)} – {_time(x.until)}"),
                        _e(_enum(pb.RegistrationStatus, x.status)),
                    ]
                    for x in r.encumbrances
                ),
            )
        )
    else:
        out.append("<p>无 / none recorded</p>")
    return "".join(out)


def _account(r: pb.AccountRecord) -> str:
    out = [
        _fields(
            [
                ("账户 / Account", _e(_asset(r.account))),
                ("开户人 / Holder", _party(r.holder)),
                ("开户行 / Bank", _e(r.bank or "-")),
                ("余额 / Balance", _e(_money(r.balance)) if r.HasField("balance") else "-"),
                ("状态 / Status", _e(_enum(pb.AccountStatus, r.status))),
            ]
        ),
        "<h3>冻结 / Freezes</h3>",
    ]
    if r.freezes:
        out.append(
            _rows(
                ["法院与案号 / Court, case", "金额 / Amount", "期间 / Term", "状态 / Status"],
                (
                    [
                        _e(f"{f.court} {f.case_number}".strip() or "-"),
                        _e(_money(f.amount)) if f.HasField("amount") else "全部 / whole account",
                        _e(f"{_time(f.since)} – {_time(f.until)}"),
                        _e(_enum(pb.RegistrationStatus, f.status)),
                    ]
                    for f in r.freezes
                ),
            )
        )
    else:
        out.append("<p>无 / none recorded</p>")
    return "".join(out)


def _credit(r: pb.CreditRecord) -> str:
    out = [_fields([("当事人 / Party", _party(r.party))]), "<h3>失信名单 / Dishonest listings</h3>"]
    out.append(
        _rows(
            ["法院与案号 / Court, case", "义务 / Obligation", "列入 / Listed", "撤销 / Removed"],
            (
                [
                    _e(f"{x.court} {x.case_number}"),
                    _e(x.obligation or "-"),
                    _e(_time(x.listed_at)),
                    _e(_time(x.removed_at)),
                ]
                for x in r.listings
            ),
        )
        if r.listings
        else "<p>无 / none</p>"
    )
    out.append("<h3>限制消费 / Consumption restrictions</h3>")
    out.append(
        _rows(
            ["法院与案号 / Court, case", "发布 / Issued", "解除 / Lifted"],
            (
                [_e(f"{x.court} {x.case_number}"), _e(_time(x.issued_at)), _e(_time(x.lifted_at))]
                for x in r.restrictions
            ),
        )
        if r.restrictions
        else "<p>无 / none</p>"
    )
    return "".join(out)


def _history(r: pb.AssetHistory) -> str:
    return _fields([("资产 / Asset", _e(_asset(r.asset)))]) + _rows(
        ["事件 / Event", "自 / From", "至 / To", "时间 / At", "文号 / Reference"],
        (
            [
                _e(_enum(pb.HistoryEventKind, x.kind)),
                "<br>".join(_party(p) for p in x.from_parties) or "-",
                "<br>".join(_party(p) for p in x.to_parties) or "-",
                _e(_time(x.at)),
                _e(x.reference or "-"),
            ]
            for x in r.entries
        ),
    )


def _holdings(r: pb.PartyHoldings) -> str:
    return _fields([("当事人密钥 / Party key", _e(r.party_key.hex()))]) + (
        _rows(["资产 / Asset"], ([_e(_asset(a))] for a in r.assets))
        if r.assets
        else "<p>无 / none</p>"
    )


def record_html(evidence: pb.Evidence) -> str:
    """The record an evidence bundle proves, in plain language (escaped HTML)."""
    kind = evidence.WhichOneof("record")
    if not evidence.HasField("value"):
        return (
            "<p class=absent>该键下无记录，已由不存在性证明证实。<br>"
            "No record exists under this key: the proof shows it absent.</p>"
        )
    if kind == "ownership":
        return "<h3>权属 / Ownership</h3>" + _ownership(evidence.ownership)
    if kind == "account":
        return "<h3>账户 / Account</h3>" + _account(evidence.account)
    if kind == "credit":
        return "<h3>信用 / Credit</h3>" + _credit(evidence.credit)
    if kind == "history":
        return "<h3>历史 / History</h3>" + _history(evidence.history)
    if kind == "holdings":
        return "<h3>持有资产索引 / Holdings index</h3>" + _holdings(evidence.holdings)
    return (
        "<p>原始状态值（未声明记录类型）/ Raw state value (no record claimed): "
        f"<code>{_e(evidence.value.hex()[:512])}</code></p>"
    )


# --- pages -----------------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=zh-CN><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><link rel=stylesheet href='/static/verify.css'>"
        "<script src='/static/verify.js' defer></script></head><body><main>"
        "<header><h1>司法链上证据核验 <span>Evidence verification</span></h1>"
        "<p><a href='/'>核验另一份证据 / Verify another file</a></p></header>"
        f"{body}</main></body></html>\n"
    )


def _form(max_bytes: int) -> str:
    limit = f"{max_bytes // 1024} KiB"
    return (
        "<section class=intro><p>上传或粘贴中继出具的证据文件（JSON），本页从链的已登记信任锚起逐项"
        "核验。上传内容不保存。</p><p>Upload or paste an evidence file (JSON) issued by the relay; "
        "this page checks it step by step from the chain's registered trust anchor. Nothing "
        "you upload is stored.</p></section>"
        "<form id=upload method=post action='/verify' enctype='multipart/form-data'>"
        "<div id=drop class=drop><label for=file>证据文件 / Evidence file</label>"
        "<input type=file id=file name=file accept='.json,application/json'>"
        "<p class=hint>可拖放文件到此处 / You may drop the file here</p></div>"
        "<label for=text>或粘贴 JSON / or paste the JSON</label>"
        "<textarea id=text name=text rows=8 spellcheck=false></textarea>"
        f"<p class=hint>大小上限 / Size limit: {limit}</p>"
        "<button type=submit id=submit>核验 / Verify</button></form>"
    )


def _offline_help() -> str:
    return (
        "<section class=offline><h2>离线核验 / Verify it yourself, offline</h2>"
        "<p>本页的核验也可离线完成，无需信任本站或中继：下载中继运营方公布的信任锚文件"
        "（anchors.yaml），然后运行：</p><p>The same checks run offline, trusting neither this "
        "site nor the relay: get the anchors file (anchors.yaml) the relay operator "
        "publishes, then run:</p>"
        "<pre>relay verify evidence.json --anchors anchors.yaml</pre>"
        "<p>退出码 0 表示有效，1 表示无效并指出首个未通过的检查 / Exit code 0 means valid; 1 "
        "means invalid and names the first failed check.</p></section>"
    )


def _checks_table(report: EvidenceReport) -> str:
    ran = {c.name: c for c in report.checks}
    rows = []
    for name in STEP_NAMES:
        zh, en = STEP_LABELS[name]
        check = ran.get(name)
        if check is None:
            status, cls, detail = "未执行 / not run", "skip", ""
        elif check.passed:
            status, cls, detail = "通过 / passed", "pass", check.detail
        else:
            status, cls, detail = "未通过 / FAILED", "fail", check.detail
        rows.append(
            f"<tr class={cls} data-check={_e(name)}><td>{_e(zh)}<br>{_e(en)}</td>"
            f"<td class=status>{status}</td><td class=detail>{_e(detail)}</td></tr>"
        )
    return (
        "<table class=checks><thead><tr><th>检查 / Check</th><th>结果 / Result</th>"
        "<th>说明 / Detail</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def result_html(result: FileReport, anchors: AnchorSet) -> str:
    """The result page body of one verified upload."""
    report = result.report
    failed = report.first_failure
    if report.ok:
        verdict = (
            "<div id=verdict class='verdict ok' data-verdict=verified><h2>已核验 ✓ Verified</h2>"
            "<p>该证据从链的已登记信任锚到记录逐项核验通过，并由中继签名。<br>Every check "
            "passed: the record is proven from the chain's registered trust anchor, and the "
            "relay signed the bundle.</p></div>"
        )
    else:
        assert failed is not None
        zh, en = STEP_LABELS.get(failed.name, (failed.name, failed.name))
        why = f" ({_e(failed.reason)})" if failed.reason else ""
        verdict = (
            "<div id=verdict class='verdict bad' data-verdict=invalid "
            f"data-failed-check={_e(failed.name)}><h2>未通过核验 ✗ Not verified</h2>"
            f"<p>首个未通过的检查 / First failed check: <strong>{_e(zh)} / {_e(en)}</strong>"
            f"{why}</p><p class=detail>{_e(failed.detail)}</p></div>"
        )
    parts = [verdict, "<h2>检查 / Checks</h2>", _checks_table(report)]
    ev = result.evidence
    if ev is not None:
        chain = anchors.chains.get(ev.chain_id)
        name = ""
        if chain is not None:
            name = " / ".join(x for x in (chain.display_name_zh, chain.display_name_en) if x)
        header_time = _time(ev.header_time) if ev.HasField("header_time") else "-"
        caveat = (
            ""
            if report.ok
            else "<p class=warn>以下内容未通过核验，不可作为依据 / The content below did NOT "
            "pass verification; do not rely on it.</p>"
        )
        parts.append("<h2>记录 / Record</h2>" + caveat)
        parts.append(
            _fields(
                [
                    ("链 / Chain", _e(f"{ev.chain_id} {name}".strip())),
                    ("区块高度 / Block height (tree size)", _e(ev.height)),
                    ("区块时间 / Block time", _e(header_time)),
                    ("保证级别 / Assurance", _e(_enum(pb.Assurance, ev.assurance))),
                    ("中继核验时间 / Relay verified at", _e(_time(ev.verified_at))),
                    ("中继密钥 / Relay key", _e(ev.relay_attestation.key_id or "-")),
                ]
            )
        )
        parts.append(record_html(ev))
    parts.append(_offline_help())
    return "".join(parts)


def _message_page(status: int, zh: str, en: str, *, code: str) -> web.Response:
    body = (
        f"<div id=verdict class='verdict bad' data-verdict={_e(code)}>"
        f"<h2>{_e(zh)}</h2><p>{_e(en)}</p></div>" + _offline_help()
    )
    return web.Response(
        status=status, text=_page("核验 / Verification", body), content_type="text/html"
    )


# --- rate limiting ---------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per client address (``per_minute`` refill, ``burst`` capacity); the
    least recently seen addresses are forgotten beyond ``max_clients``."""

    def __init__(
        self,
        *,
        per_minute: float = RATE_PER_MINUTE,
        burst: int = RATE_BURST,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def allow(self, client: str) -> bool:
        now = self._now()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed


# --- the application -------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _read_upload(request: web.Request, limit: int) -> bytes | None:
    """The evidence bytes of a multipart or urlencoded form (file part first, else the
    pasted text), or None when neither was given. Raises _TooLarge."""
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        total = 0
        found: dict[str, bytes] = {}
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart bodies are not accepted")
            name = part.name
            chunks = []
            while True:
                chunk = await part.read_chunk(64 << 10)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit + (64 << 10):
                    raise _TooLarge
                chunks.append(chunk)
            if name in ("file", "text"):
                found[name] = b"".join(chunks)
        for name in ("file", "text"):
            data = found.get(name, b"")
            if data.strip():
                if len(data) > limit:
                    raise _TooLarge
                return data
        return None
    # read(n) returns what is buffered (at most n), not n bytes: read to the end.
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(64 << 10)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        parts.append(chunk)
    data = b"".join(parts)
    if request.content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        text = parse_qs(data.decode("utf-8", errors="replace")).get("text", [""])[0]
        return text.encode("utf-8") if text.strip() else None
    return data if data.strip() else None


async def _drain(request: web.Request) -> None:
    """Read and drop the rest of a too-large body (bounded), so the answer arrives."""
    remaining = DRAIN_LIMIT_BYTES
    while remaining > 0:
        chunk = await request.content.read(min(remaining, 256 << 10))
        if not chunk:
            return
        remaining -= len(chunk)


def verify_app(
    *,
    anchors: AnchorsSource,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    limiter: RateLimiter | None = None,
) -> web.Application:
    """The aiohttp application of the verification page."""
    limiter = limiter if limiter is not None else RateLimiter()
    static = {
        name: resources.files("relay.web").joinpath("static", name).read_bytes() for name in _STATIC
    }

    @web.middleware
    async def headers(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as e:
            for k, v in SECURITY_HEADERS.items():
                e.headers.setdefault(k, v)
            raise
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    async def index(request: web.Request) -> web.Response:
        body = _form(max_upload_bytes) + _offline_help()
        return web.Response(
            text=_page("证据核验 / Evidence verification", body), content_type="text/html"
        )

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in static:
            raise web.HTTPNotFound()
        return web.Response(body=static[name], content_type=_STATIC[name], charset="utf-8")

    async def verify(request: web.Request) -> web.Response:
        client = request.remote or "unknown"
        if not limiter.allow(client):
            return _message_page(
                429,
                "请求过于频繁，请稍后再试。",
                "Too many verifications from your address; please wait a minute and retry.",
                code="rate-limited",
            )
        too_large = _message_page(
            413,
            f"文件过大：上限为 {max_upload_bytes // 1024} KiB。",
            f"The upload is too large: the limit is {max_upload_bytes // 1024} KiB. Evidence "
            "files are much smaller; check that you chose the right file.",
            code="too-large",
        )
        length = request.content_length
        if length is not None and length > DRAIN_LIMIT_BYTES:
            return too_large
        try:
            data = await _read_upload(request, max_upload_bytes)
        except _TooLarge:
            await _drain(request)
            return too_large
        except (ValueError, AssertionError, web.HTTPException):
            return _message_page(
                400,
                "无法读取上传内容。",
                "The upload could not be read as a form; choose a file or paste the JSON.",
                code="bad-form",
            )
        if data is None:
            return _message_page(
                400,
                "未收到文件或文本。",
                "Nothing was uploaded: choose an evidence file or paste its JSON.",
                code="empty",
            )
        if data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] != b"{":
            return _message_page(
                400,
                "这不是 JSON 证据文件。",
                "This is not a JSON evidence file: an evidence file is the JSON the relay "
                "issued (it starts with “{”).",
                code="not-json",
            )
        try:
            anchor_set = await anchors()
        except Exception:
            log.exception("verification page: the relay's anchors could not be read")
            return _message_page(
                503,
                "暂时无法读取中继的信任锚，请稍后再试。",
                "The relay's trust anchors cannot be read right now; please retry later.",
                code="unavailable",
            )
        loop = asyncio.get_running_loop()
        # Light-client and signature checks take milliseconds of CPU: off the event loop.
        result = await loop.run_in_executor(
            None, lambda: verify_evidence_bytes(data, anchors=anchor_set)
        )
        failed = result.report.first_failure
        log.info(
            "verification page: %s%s",
            "verified" if result.report.ok else "not verified",
            f" (first failed check {failed.name})" if failed is not None else "",
        )
        return web.Response(
            status=200,
            text=_page("核验结果 / Verification result", result_html(result, anchor_set)),
            content_type="text/html",
        )

    app = web.Application(middlewares=[headers], client_max_size=max_upload_bytes + (64 << 10))
    app.add_routes(
        [
            web.get("/", index),
            web.post("/verify", verify),
            web.get("/static/{name}", asset),
        ]
    )
    return app


@dataclass
class VerifyServer:
    """A started verification page server; ``port`` is the bound port."""

    runner: web.AppRunner
    host: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_verify_server(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout_s: float = 5.0,
) -> VerifyServer:
    """Serve ``app`` on ``host:port`` (HTTPS with ``ssl_context``). Access logs are off:
    the page must not record who checked what."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple)), port)
    scheme = "https" if ssl_context is not None else "http"
    log.info("verification page on %s://%s:%d/", scheme, host, bound)
    return VerifyServer(runner=runner, host=host, port=bound)

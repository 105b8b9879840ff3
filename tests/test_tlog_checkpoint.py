"""C2SP tlog-checkpoint bodies: fields, the map-root extension, strictness, limits, fuzzing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.testing.tlog import checkpoint_text
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.lightclient.tlog import CheckpointLimits, parse_checkpoint
from relay.verify.merkle.rfc6962 import MAX_TREE_SIZE, RFC6962_SHA256, RFC6962_SM3

ROOT = bytes(range(32))
B64 = base64.b64encode(ROOT).decode()
MAP = bytes(range(100, 132))
URLSAFE = base64.urlsafe_b64encode(b"\xfb" * 32).decode()


def _parse(text: bytes | str, **kw: object) -> object:
    data = text.encode() if isinstance(text, str) else text
    return parse_checkpoint(data, hasher=RFC6962_SHA256, **kw)  # type: ignore[arg-type]


def test_parses_the_spec_example() -> None:
    text = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(text, hasher=RFC6962_SHA256)
    assert (cp.origin, cp.size, cp.extensions, cp.map_root) == (
        "example.com/behind-the-sofa",
        20852163,
        (),
        None,
    )
    assert base64.b64encode(cp.root_hash) == b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert cp.text == text


def test_extensions_and_map_root() -> None:
    text = checkpoint_text(
        origin="registry.example/land",
        size=7,
        root=ROOT,
        extensions=["opaque extension", f"map-root {base64.b64encode(MAP).decode()}"],
    )
    cp = parse_checkpoint(text, hasher=RFC6962_SM3)
    assert cp.map_root == MAP
    assert cp.extensions[0] == "opaque extension"
    assert cp.size == 7 and cp.root_hash == ROOT


def test_other_lines_that_merely_start_like_map_root_are_opaque() -> None:
    cp = _parse(f"o\n1\n{B64}\nmap-rooted something\nmap-root2 x\n")
    assert cp.map_root is None  # type: ignore[attr-defined]


def test_empty_tree() -> None:
    empty = base64.b64encode(RFC6962_SHA256.empty_root()).decode()
    assert _parse(f"o\n0\n{empty}\n").size == 0  # type: ignore[attr-defined]
    with pytest.raises(RootMismatchError):
        _parse(f"o\n0\n{B64}\n")


@pytest.mark.parametrize(
    "size",
    [
        "05",
        "00",
        "+5",
        "-1",
        " 5",
        "5 ",
        "0x5",
        "1_000",
        "٥",
        "５",
        "1e3",
        "",
        str(MAX_TREE_SIZE),
        "9" * 20,
    ],
)
def test_non_canonical_or_out_of_range_sizes(size: str) -> None:
    with pytest.raises(MalformedInputError):
        _parse(f"o\n{size}\n{B64}\n")


def test_largest_size_accepted() -> None:
    assert _parse(f"o\n{MAX_TREE_SIZE - 1}\n{B64}\n").size == MAX_TREE_SIZE - 1  # type: ignore[attr-defined]


MALFORMED = {
    "missing final newline": f"o\n1\n{B64}",
    "two lines": "o\n1\n",
    "empty origin": f"\n1\n{B64}\n",
    "empty extension line": f"o\n1\n{B64}\n\nx\n",
    "blank trailing extension": f"o\n1\n{B64}\n\n",
    "root too short": f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
    "root too long": f"o\n1\n{base64.b64encode(ROOT + b'x').decode()}\n",
    "root unpadded": f"o\n1\n{B64.rstrip('=')}\n",
    "root non-canonical": f"o\n1\n{B64[:-2]}9=\n",  # '8' -> '9' sets a padding bit
    "root url-safe alphabet": f"o\n1\n{URLSAFE}\n",
    "control character": f"o\x07\n1\n{B64}\n",
    "carriage return": f"o\r\n1\n{B64}\n",
    "map-root without value": f"o\n1\n{B64}\nmap-root\n",
    "map-root empty value": f"o\n1\n{B64}\nmap-root \n",
    "map-root two spaces": f"o\n1\n{B64}\nmap-root  {B64}\n",
    "map-root wrong length": f"o\n1\n{B64}\nmap-root {base64.b64encode(MAP[:20]).decode()}\n",
    "map-root twice": f"o\n1\n{B64}\nmap-root {B64}\nmap-root {B64}\n",
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_checkpoints(case: str) -> None:
    with pytest.raises(MalformedInputError):
        _parse(MALFORMED[case])


def test_invalid_utf8() -> None:
    with pytest.raises(MalformedInputError):
        _parse(b"\xff\n1\n" + B64.encode() + b"\n")


def test_limits() -> None:
    many = "".join(f"ext {i}\n" for i in range(17))
    with pytest.raises(LimitExceededError):
        _parse(f"o\n1\n{B64}\n{many}")
    _parse(f"o\n1\n{B64}\n" + "".join(f"ext {i}\n" for i in range(16)))
    with pytest.raises(LimitExceededError):
        _parse(f"{'o' * 5000}\n1\n{B64}\n")
    with pytest.raises(LimitExceededError):
        _parse(f"o\n1\n{B64}\n", limits=CheckpointLimits(max_text_bytes=10))
    assert (
        _parse(
            f"o\n1\n{B64}\nmap-root {base64.b64encode(MAP[:20]).decode()}\n",
            limits=CheckpointLimits(map_root_size=20),
        ).map_root
        == MAP[:20]
    )  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40
    ).filter(lambda s: "\n" not in s),
    size=st.integers(0, MAX_TREE_SIZE - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(st.text("abc xyz-", min_size=1, max_size=20), max_size=3),
    map_root=st.none() | st.binary(min_size=32, max_size=32),
)
def test_round_trip(
    origin: str, size: int, root: bytes, extensions: list[str], map_root: bytes | None
) -> None:
    if size == 0:
        root = RFC6962_SHA256.empty_root()
    ext = list(extensions)
    if map_root is not None:
        ext.append(f"map-root {base64.b64encode(map_root).decode()}")
    cp = _parse(checkpoint_text(origin=origin, size=size, root=root, extensions=ext))
    assert (cp.origin, cp.size, cp.root_hash, cp.map_root) == (origin, size, root, map_root)  # type: ignore[attr-defined]
    assert list(cp.extensions) == ext  # type: ignore[attr-defined]


@pytest.mark.fuzz
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        cp = parse_checkpoint(data, hasher=RFC6962_SHA256)
    except VerificationError:
        return
    assert cp.text == data and len(cp.root_hash) == 32


@pytest.mark.fuzz
@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["o", "0", "1", "007", B64, f"map-root {B64}", "map-root", "", " "]),
            st.text(max_size=30),
        ),
        max_size=8,
    )
)
def test_fuzz_line_structured(lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")
    try:
        cp = parse_checkpoint(data, hasher=RFC6962_SHA256)
    except VerificationError:
        return
    assert str(cp.size) == lines[1] and lines[2] == B64

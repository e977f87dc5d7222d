"""Property test: thousands of generated malformed manifests (both formats) go through the
manifest reader. Only ``OmgclipError`` may come out; every row it accepts has finite,
bounded times, a safe key and an http(s) or absolute local source."""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the [test] extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from omgclip.dataset.manifest import read_manifest  # noqa: E402
from omgclip.errors import OmgclipError  # noqa: E402

MAX_TIME_S = 1e6
OMG_COLUMNS = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]
OWN_COLUMNS = ["source", "start", "end", "label", "group", "split", "id", "crop"]
SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "7e306", "1e308", "1e309",
                     "-0", "0", "1e6", "1000000.0001", "999999.9", "1e-320", "0x10", "1_000",
                     " 3 ", "٣", "1e", "--1", "+5", "", "  "]),
    st.integers(min_value=-10**400, max_value=10**400).map(str),
)
SOURCES = st.sampled_from([
    "http://[::1", "http://[x]/a.mp4", "https://[::1]:99999/a", "http://", "https://a.b/c.mp4",
    "HTTP://EXAMPLE.COM/v?v=abc", "ftp://e.com/a.mp4", "file:///etc/passwd", "javascript:alert(1)",
    "data:video/mp4;base64,AAAA", "//host/share/a.mp4", "~nosuchuser_omgclip/x.mp4", "~/a.mp4",
    "../../etc/passwd", "/abs/a.mp4", "rel/a.mp4", "-oProxyCommand=x", "a.png;b.jpg",
    "a.png;;../b.png", "x.png;http://e.com/a.png", "C:\\v\\a.mp4", "a\tb.mp4",
    "vidéo ünïcode.mp4", "\u202eevil.mp4", " ", ";", "a.mp4;b.mp4", "http://e.com/%00.mp4",
    "a\x01b.mp4",
    "https://www.youtube.com/watch?v=../../x",
])
IDS = st.sampled_from(["../x", "..", ".", "/abs", "a/b", "a\\b", "C:x", "ok", "utterance_1.mp4",
                       "x" * 300, "\x1f", "\u0085nel", "ünï", ".hidden", "...", "a..b", "CON",
                       "a\nb", "~root"])
LABELS = st.sampled_from(["3", "3.0", "happy", "HAPPY", "-1", "7", "-2", "nan", "1e9",
                          "np.int64(9)", "sad ", "", "𝟛"])
CELL = st.one_of(NUMBERS, SOURCES, IDS, LABELS, st.text(max_size=40),
                 st.sampled_from(["a\x7fb", '"quoted, comma"', "x" * 5000]))
HUGE = "x" * 1_000_000  # 1 MB: past the csv module's field limit


@st.composite
def manifests(draw) -> bytes:
    """One CSV file as bytes: a (mangled) header of either format and some (mangled) rows."""
    columns = list(draw(st.sampled_from([OMG_COLUMNS, OMG_COLUMNS[:5], OWN_COLUMNS,
                                         OWN_COLUMNS[:4]])))
    mangle = draw(st.lists(st.sampled_from(["drop", "extra", "dup", "case", "shuffle", "none",
                                            "none", "none"]), max_size=3))
    for op in mangle:
        if op == "drop" and columns:
            columns.pop(draw(st.integers(0, len(columns) - 1)))
        elif op == "extra":
            columns.append(draw(st.sampled_from(["x", "", "start", "label", "source ", "Link"])))
        elif op == "dup" and columns:
            columns.append(draw(st.sampled_from(columns)))
        elif op == "case":
            columns = [c.upper() for c in columns]
        elif op == "shuffle":
            columns = draw(st.permutations(columns))
    good_row = _plausible_row(columns, draw)
    rows = [good_row] + draw(st.lists(
        st.lists(CELL, min_size=0, max_size=len(columns) + 2), max_size=6))
    rows += [[draw(_cell_for(c)) for c in columns] for _ in range(draw(st.integers(0, 4)))]
    if draw(st.integers(0, 40)) == 17:  # now and then (not biased to 0) a 1 MB field
        row = draw(st.sampled_from(rows))
        row.insert(draw(st.integers(0, len(row))), HUGE)
    delimiter = draw(st.sampled_from([",", ",", ",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(delimiter.join(_quote(c) for c in r) for r in [columns] + rows) + newline
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf",
                                     b"\xff\xfe"])) + data
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # bad bytes (NUL too) somewhere
        at = draw(st.integers(0, len(data)))
        bad = draw(st.sampled_from([b"\xff", b"\x00", b"\xc3", b"\x80", b'"', b"\r", b",,"]))
        data = data[:at] + bad + data[at:]
    if draw(st.integers(0, 10)) == 7:  # cut off anywhere
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _cell_for(column: str):
    name = column.strip().lower()
    if name in ("start", "end", "arousal", "valence"):
        return NUMBERS
    if name in ("link", "source"):
        return SOURCES
    if name in ("video", "utterance", "id", "group", "split"):
        return IDS
    if name in ("emotionmaxvote", "label"):
        return LABELS
    return CELL


def _plausible_row(columns, draw) -> list[str]:
    """A row that may well be accepted, so that the accepted-row checks see real rows."""
    value = {"link": "https://e.com/v.mp4", "source": "clip.mp4", "start": "1.5", "end": "3",
             "video": "v1", "utterance": "u1.mp4", "emotionmaxvote": "3", "label": "happy"}
    row = [value.get(c.strip().lower(), "") for c in columns]
    if row and draw(st.booleans()):
        i = draw(st.integers(0, len(row) - 1))
        row[i] = draw(_cell_for(columns[i]))
    return row


def _quote(cell: str) -> str:
    if any(ch in cell for ch in ',;\t|"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _is_http(source: str) -> bool:
    parts = urllib.parse.urlsplit(source)  # an accepted URL must parse
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _check_accepted(manifest) -> None:
    keys = set()
    for u in manifest.utterances:
        if u.start is not None or u.end is not None:
            assert u.start is not None and u.end is not None
            assert math.isfinite(u.start) and math.isfinite(u.end)
            assert 0 <= u.start < u.end <= MAX_TIME_S, (u.start, u.end)
        key = u.key
        assert SAFE_KEY.match(key) and not os.path.isabs(key), key
        assert all(part not in (".", "..") for part in key.split("/")), key
        assert key.casefold() not in keys
        keys.add(key.casefold())
        assert -1 <= u.label <= 6
        assert u.split and re.fullmatch(r"[A-Za-z0-9._-]+", u.split), u.split
        assert "\x00" not in u.source
        if not _is_http(u.source):
            for entry in u.source.split(";"):
                assert os.path.isabs(entry), u.source  # (a leading // is still a local path)
                assert ".." not in Path(entry).parts, u.source


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=int(os.environ.get("OMGCLIP_FUZZ_EXAMPLES", "2000")), deadline=None,
          database=None,  # nothing written into the repository (.hypothesis/)
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=manifests(), name=st.sampled_from(["m.csv", "omg_TrainVideos.csv",
                                               "omg_TestVideos.csv"]))
def test_malformed_manifests_give_one_line_errors_or_safe_rows(fuzz_dir: Path, data: bytes,
                                                               name: str) -> None:
    path = fuzz_dir / name
    path.write_bytes(data)
    try:
        manifest = read_manifest(path)
    except OmgclipError as exc:
        assert "\n" not in str(exc).strip() or "unreadable CSV" in str(exc)
        return
    _check_accepted(manifest)
    assert all(s.reason and s.row >= 2 for s in manifest.skips)


@pytest.mark.parametrize("source", ["http://[::1", "http://[x]/a.mp4", "~nosuchuser_omgclip/x.mp4"])
def test_odd_sources_are_recorded_skips(tmp_path: Path, source: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"source,start,end,label\n{source},0,1,happy\nok.mp4,0,1,sad\n")
    m = read_manifest(path)
    assert [u.row for u in m.utterances] == [3]
    assert [s.row for s in m.skips] == [2] and m.skips[0].reason


@pytest.mark.parametrize("start, end, ok", [("0", "1e6", True), ("7e306", "8e306", False),
                                            ("0", "1000000.5", False), ("1e5", "2e5", True)])
def test_times_are_bounded(tmp_path: Path, start: str, end: str, ok: bool) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"source,start,end,label\nclip.mp4,{start},{end},happy\n")
    m = read_manifest(path)
    assert len(m.utterances) == (1 if ok else 0)
    if not ok:
        assert "10^6" in m.skips[0].reason or "1e+06" in m.skips[0].reason or \
            "1000000" in m.skips[0].reason


@settings(max_examples=500, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=60), st.builds(lambda a, b: f"http{a}://{b}",
                                                      st.sampled_from(["", "s"]), st.text(max_size=40))))
def test_is_url_never_raises(text: str) -> None:
    from omgclip.dataset.sources import is_local_path, is_url

    assert is_url(text) in (True, False) and is_local_path(text) in (True, False)

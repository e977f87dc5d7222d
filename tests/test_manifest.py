"""omgclip.dataset.manifest: both formats, every kind of bad row, the real OMG files, omg:<split>."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from omgclip.dataset import omg as omg_mod
from omgclip.errors import OmgclipError
from omgclip.labels import UNLABELED
from omgclip.dataset.manifest import RowSkip, Utterance
from omgclip.dataset.omg import load_manifest
from omgclip.dataset.sources import is_local_path, is_url

PROJECT = Path(__file__).resolve().parents[1]
OMG_HEADER = "link,start,end,video,utterance,arousal,valence,EmotionMaxVote"
OWN_HEADER = "source,start,end,label,group,split,id,crop"


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _skips(m) -> dict[int, str]:
    return {s.row: s.reason for s in m.skips}


@pytest.fixture(scope="module")
def omg_dir(omg_manifests: Path) -> Path:
    return omg_manifests


# --------------------------------------------------------------------------- real OMG files

def test_real_train_manifest(omg_dir: Path) -> None:
    m = load_manifest(str(omg_dir / "omg_TrainVideos.csv"))
    assert m.format == "omg"
    assert len(m.utterances) == 2442
    assert m.skips == (RowSkip(2444, "blank row"), RowSkip(2445, "blank row"))
    assert len(m.sources) == 125
    assert {u.split for u in m.utterances} == {"train"}
    counts = Counter(u.label for u in m.utterances)
    assert [counts[i] for i in range(7)] == [293, 113, 60, 713, 891, 346, 26]
    first = m.utterances[0]
    assert first.row == 2 and first.video == "5b44393ed" and first.utterance == "utterance_4.mp4"
    assert first.key == "5b44393ed/utterance_4"
    assert first.group == first.source == "https://www.youtube.com/watch?v=CROcsl0lIec"
    assert first.is_url and first.frame_paths is None and first.crop == "detect"
    assert first.start == pytest.approx(15.4126838087585) and first.end == pytest.approx(19.6828646042587)


def test_real_validation_and_test_manifests(omg_dir: Path) -> None:
    val = load_manifest(str(omg_dir / "omg_ValidationVideos.csv"))
    assert (len(val.utterances), len(val.skips), len(val.sources)) == (617, 0, 46)
    assert {u.split for u in val.utterances} == {"validation"}
    test = load_manifest(str(omg_dir / "omg_TestVideos_WithoutLabels.csv"))
    assert (len(test.utterances), len(test.skips), len(test.sources)) == (2229, 0, 141)
    assert {u.label for u in test.utterances} == {UNLABELED}
    assert {u.split for u in test.utterances} == {"test"}
    assert test.utterances[0].start == 0.0


def test_real_manifests_keys_are_unique_and_safe(omg_dir: Path) -> None:
    for name in ("omg_TrainVideos.csv", "omg_ValidationVideos.csv", "omg_TestVideos_WithoutLabels.csv"):
        m = load_manifest(str(omg_dir / name))
        keys = [u.key for u in m.utterances]
        assert len(set(keys)) == len(keys)
        for key in keys:
            assert not key.startswith("/") and ".." not in key.split("/")


def test_real_train_validation_share_links(omg_dir: Path) -> None:
    train = load_manifest(str(omg_dir / "omg_TrainVideos.csv"))
    val = load_manifest(str(omg_dir / "omg_ValidationVideos.csv"))
    shared = set(train.sources) & set(val.sources)
    assert len(shared) == 23
    assert sum(u.group in shared for u in val.utterances) == 392


def test_split_argument_overrides_file_name(omg_dir: Path) -> None:
    m = load_manifest(str(omg_dir / "omg_ValidationVideos.csv"), split="train")
    assert {u.split for u in m.utterances} == {"train"}


# --------------------------------------------------------------------------- OMG format, generated

def test_omg_rows_bad_values_are_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "my_omg_subset.csv", OMG_HEADER,
        "https://youtu.be/a,1,2,v1,utterance_1.mp4,0.1,0.2,3",      # 2 ok
        ",,,,,0.4,0.1,",                                            # 3 blank
        "https://youtu.be/a,2,1,v1,utterance_2.mp4,0.1,0.2,3",      # 4 end <= start
        "https://youtu.be/a,x,3,v1,utterance_3.mp4,0.1,0.2,3",      # 5 non-numeric
        "https://youtu.be/a,nan,3,v1,utterance_4.mp4,0.1,0.2,3",    # 6 NaN
        "https://youtu.be/a,-1,3,v1,utterance_5.mp4,0.1,0.2,3",     # 7 negative
        "https://youtu.be/a,1,2,v1,utterance_6.mp4,0.1,0.2,9",      # 8 unknown label
        "https://youtu.be/a,3,4,v1,utterance_1.mp4,0.1,0.2,3",      # 9 duplicate
        "https://youtu.be/a,1,2,../x,utterance_7.mp4,0.1,0.2,3",    # 10 unsafe video id
        "https://youtu.be/a,1,2,v1,/etc/passwd,0.1,0.2,3",          # 11 unsafe utterance id
        "ftp://host/a.mp4,1,2,v1,utterance_8.mp4,0.1,0.2,3",        # 12 bad scheme
        "-o/etc/x,1,2,v1,utterance_9.mp4,0.1,0.2,3",                # 13 option-like
        "https://youtu.be/a,1,2,v1,utterance_10.mp4,0.1,0.2,",      # 14 missing label
        "https://youtu.be/b,1,inf,v2,utterance_1.mp4,0.1,0.2,2",    # 15 inf
        "https://youtu.be/b,5,6.5,v2,utterance_2.mp4,0.1,0.2,2.0",  # 16 ok
    )
    m = load_manifest(str(path))
    assert [u.row for u in m.utterances] == [2, 16]
    assert m.utterances[1].label == 2 and m.utterances[1].split == "train"
    reasons = _skips(m)
    assert reasons[3] == "blank row"
    assert reasons[4] == "end <= start"
    assert reasons[5].startswith("non-numeric start")
    assert reasons[6].startswith("non-numeric start")
    assert reasons[7].startswith("negative start")
    assert reasons[8].startswith("unknown label '9'")
    assert reasons[9] == "duplicate utterance"
    assert reasons[10] == "unsafe id '../x'"
    assert reasons[11] == "unsafe id '/etc/passwd'"
    assert reasons[12].startswith("bad source 'ftp://")
    assert reasons[13].startswith("bad source '-o/etc/x'")
    assert reasons[14] == "missing label"
    assert reasons[15].startswith("non-numeric end")
    assert len(m.skips) == 13


def test_omg_test_file_without_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "whatever.csv", "link,start,end,video,utterance",
                  "https://youtu.be/a,0,2,v1,utterance_1.mp4")
    m = load_manifest(path)
    assert m.utterances[0].label == UNLABELED and m.utterances[0].split == "test"


@pytest.mark.parametrize("name, split", [
    ("omg_TrainVideos.csv", "train"), ("omg_ValidationVideos.csv", "validation"),
    ("omg_TestVideos_WithLabels.csv", "test"), ("latest_train.csv", "train"),
    ("val-set.csv", "validation"),
])
def test_split_from_file_name(tmp_path: Path, name: str, split: str) -> None:
    path = _write(tmp_path / name, OMG_HEADER, "https://youtu.be/a,0,2,v1,utterance_1.mp4,0,0,4")
    assert load_manifest(path).utterances[0].split == split


# --------------------------------------------------------------------------- own format

def test_own_format_basics(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    path = _write(
        tmp_path / "mine.csv", OWN_HEADER,
        "clips/a.mp4,,,happy,alice,,,",                         # 2 whole source, relative
        "https://example.com/talk.mp4,1.5,4,3,bob,validation,talk_1,",  # 3 explicit id
        "/data/ck/S005_1.png;/data/ck/S005_2.png,,,disgust,S005,test,,none",  # 4 frame list
        "https://www.youtube.com/watch?v=abcDEF12345,0,5,surprised,,Train,,DETECT",  # 5
    )
    m = load_manifest(path)
    assert m.format == "own" and m.skips == ()
    a, talk, frames, yt = m.utterances
    assert a.source == str(tmp_path / "clips" / "a.mp4")
    assert (a.start, a.end, a.label, a.group, a.split) == (None, None, 3, "alice", "train")
    assert a.video == "" and a.utterance == "a" and a.key == "a" and not a.is_url
    assert (talk.utterance, talk.label, talk.split, talk.start, talk.end) == ("talk_1", 3, "validation", 1.5, 4.0)
    assert frames.frame_paths == ("/data/ck/S005_1.png", "/data/ck/S005_2.png")
    assert frames.crop == "none" and frames.label == 1 and frames.utterance == "S005_1"
    assert yt.utterance == "abcDEF12345" and yt.group == yt.source and yt.split == "train"
    assert yt.crop == "detect" and yt.label == 6
    assert m.sources == [a.source, talk.source, frames.source, yt.source]


def test_own_format_bad_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mine.csv", OWN_HEADER,
        "a.mp4,1,,happy,,,,",            # 2 only one time
        "a.mp4,,,joyful,,,,",            # 3 unknown label
        "file:///etc/passwd,,,happy,,,,",  # 4 other scheme
        "b.mp4,,,happy,,,../up,",        # 5 unsafe id
        "b.mp4,,,happy,,,x\\y,",         # 6 path separator
        "c.mp4,,,happy,,../s,,",         # 7 unsafe split
        "c.mp4,,,happy,,,,resize",       # 8 unknown crop
        "a.png;b.txt,,,happy,,,,",       # 9 frame list with a non-image
        "a.png;b.png,1,2,happy,,,,",     # 10 times on a frame list
        ",,,,,,,",                       # 11 blank
        "d.mp4,,,4,,,same,",             # 12 ok
        "e.mp4,,,4,,,same,",             # 13 duplicate explicit id
        "",                              # 14 empty line
        "f.mp4,,,-1,,,,",                # 15 ok, unlabeled on purpose
    )
    m = load_manifest(path)
    assert [u.row for u in m.utterances] == [12, 15]
    assert m.utterances[1].label == UNLABELED
    reasons = _skips(m)
    assert reasons[2] == "missing end"
    assert reasons[3].startswith("unknown label 'joyful'")
    assert reasons[4].startswith("bad source 'file:///etc/passwd'")
    assert reasons[5] == "unsafe id '../up'"
    assert reasons[6] == "unsafe id 'x\\\\y'"
    assert reasons[7] == "unsafe split '../s'"
    assert reasons[8].startswith("unknown crop 'resize'")
    assert reasons[9].startswith("frame-list entry is not an image")
    assert reasons[10] == "start/end given for a frame-list source"
    assert reasons[11] == "blank row" and reasons[14] == "blank row"
    assert reasons[13] == "duplicate utterance"
    assert len(m.skips) == 12


def test_own_ids_are_derived_deterministically(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mine.csv", "source,start,end,label,id",
        "talk.mp4,0,2,happy,",        # 2 -> talk
        "talk.mp4,2,4,sad,",          # 3 -> talk_row3
        "other/talk.mp4,0,1,sad,",    # 4 -> talk_row4
        "x.mp4,0,1,sad,talk_row3x",   # 5 explicit
        "my clip.mp4,0,1,sad,",       # 6 -> my_clip (safe characters only)
        "y.mp4,0,1,sad,my_clip",      # 7 explicit id reserved first: row 6 must yield
    )
    first = load_manifest(path)
    ids = [u.utterance for u in first.utterances]
    assert ids == ["talk", "talk_row3", "talk_row4", "talk_row3x", "my_clip_row6", "my_clip"]
    assert [u.key for u in first.utterances] == ids
    assert [u.utterance for u in load_manifest(path).utterances] == ids


def test_quoted_multiline_field_keeps_row_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.csv", "source,start,end,label,group",
                  'a.mp4,,,happy,"two\nlines"', "b.mp4,,,oops,", "c.mp4,,,sad,")
    m = load_manifest(path)
    assert [u.row for u in m.utterances] == [2, 5]
    assert m.skips[0].row == 4


def test_example_manifest_in_repo_loads_cleanly() -> None:
    m = load_manifest(PROJECT / "data_manifests" / "example_own_manifest.csv")
    assert m.format == "own" and m.skips == () and len(m.utterances) >= 3
    assert any(u.frame_paths for u in m.utterances)
    assert any(u.is_url for u in m.utterances)


# --------------------------------------------------------------------------- errors

def _bytes_file(name: str, data: bytes):
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name
    return make


# (id, makes the bad manifest in a folder -> its path, words of the one-line error)
BAD_MANIFEST_FILES = [
    ("missing", lambda tmp: tmp / "nope.csv", "manifest not found"),
    ("unknown_columns", _bytes_file("junk.csv", b"name,age\nbob,3\n"), "source,start,end,label"),
    ("binary", _bytes_file("video.csv", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))), "expected"),
    ("latin1", _bytes_file("latin.csv", "source,start,end,label\nk\xe4se.mp4,,,happy\n".encode("latin-1")),
     "UTF-8"),
    ("empty", _bytes_file("empty.csv", b""), "expected"),
    ("a_folder", lambda tmp: tmp, "not a file"),
]


@pytest.mark.parametrize("make, words", [c[1:] for c in BAD_MANIFEST_FILES], ids=[c[0] for c in BAD_MANIFEST_FILES])
def test_missing_or_unreadable_files(tmp_path: Path, make, words) -> None:
    path = make(tmp_path)
    with pytest.raises(OmgclipError, match=words) as err:
        load_manifest(str(path))
    assert "\n" not in str(err.value)


def test_unknown_columns_name_both_formats(tmp_path: Path) -> None:
    junk = _write(tmp_path / "junk.csv", "name,age", "bob,3")
    with pytest.raises(OmgclipError, match="source,start,end,label") as err:
        load_manifest(str(junk))
    assert "link,start,end,video,utterance" in str(err.value)


def test_unknown_omg_name_and_bad_split() -> None:
    with pytest.raises(OmgclipError, match="omg:train"):
        load_manifest("omg:dev-extra")
    with pytest.raises(OmgclipError, match="invalid split"):
        load_manifest("omg:train", split="../x")


def test_bom_and_header_case_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffSource, Start ,End,Label\nhttps://e.com/a.mp4,0,1,Happy\n".encode("utf-8"))
    m = load_manifest(path)
    assert m.utterances[0].label == 3 and m.utterances[0].source == "https://e.com/a.mp4"


# --------------------------------------------------------------------------- omg:<split> download

def test_omg_spec_downloads_once_and_reuses(loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = (OMG_HEADER + "\nhttps://youtu.be/a,0,2,v1,utterance_1.mp4,0.1,0.2,4\n").encode()
    with loopback() as server:
        server.add("/pinned/omg_TrainVideos.csv", body, content_type="text/csv")
        server.add("/pinned/not_csv.csv", b"<html>rate limited</html>", content_type="text/html")
        monkeypatch.setitem(omg_mod.OMG_MANIFESTS, "train", server.url("/pinned/omg_TrainVideos.csv"))
        monkeypatch.setitem(omg_mod.OMG_MANIFESTS, "validation", server.url("/pinned/missing.csv"))
        monkeypatch.setitem(omg_mod.OMG_MANIFESTS, "test", server.url("/pinned/not_csv.csv"))
        cache = tmp_path / "cache"
        first = load_manifest("omg:train", cache_dir=cache)
        second = load_manifest("OMG:train", cache_dir=str(cache))
        assert server.count("GET") == 1
        assert first.utterances == second.utterances and first.utterances[0].split == "train"
        assert Path(first.path).parent == cache and Path(first.path).name.startswith("omg_TrainVideos")
        assert [p.name for p in cache.iterdir()] == [Path(first.path).name]  # no temp files left
        assert load_manifest("omg:train", split="validation", cache_dir=cache).utterances[0].split == "validation"

        with pytest.raises(OmgclipError, match="404"):
            load_manifest("omg:validation", cache_dir=cache)
        with pytest.raises(OmgclipError, match="not return an OMG manifest"):
            load_manifest("omg:test", cache_dir=cache)
        assert len(list(cache.iterdir())) == 1  # failures cache nothing


def test_omg_manifest_urls_are_pinned() -> None:
    assert set(omg_mod.OMG_MANIFESTS) == {"train", "validation", "test"}
    for url in omg_mod.OMG_MANIFESTS.values():
        assert url.startswith("https://raw.githubusercontent.com/knowledgetechnologyuhh/OMGEmotionChallenge/")
        commit = url.split("/")[5]
        assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)


# --------------------------------------------------------------------------- helpers and keys

@pytest.mark.parametrize("text, expected", [
    ("https://www.youtube.com/watch?v=x", True), ("HTTP://example.com/a.mp4", True),
    ("ftp://example.com/a", False), ("file:///etc/passwd", False), ("-o/etc/x", False),
    ("/local/a.mp4", False), ("http://", False), ("", False),
])
def test_is_url(text: str, expected: bool) -> None:
    assert is_url(text) is expected


@pytest.mark.parametrize("text, expected", [
    ("/local/a.mp4", True), ("rel/a.mp4", True), ("C:\\videos\\a.mp4", True),
    ("-o/etc/x", False), ("file:///etc/passwd", False), ("https://e.com/a", False), ("", False),
])
def test_is_local_path(text: str, expected: bool) -> None:
    assert is_local_path(text) is expected


@pytest.mark.parametrize("video, utterance", [
    ("..", ".."), ("/abs", "/etc/passwd"), ("a/../../b", "x y.mp4"), ("", ""), ("ok", "."),
])
def test_key_is_always_safe(video: str, utterance: str) -> None:
    u = Utterance(row=2, source="/x.mp4", start=None, end=None, video=video,
                  utterance=utterance, label=0, group="g", split="train")
    key = u.key
    assert key and not os.path.isabs(key)
    for part in key.split("/"):
        assert part not in ("", ".", "..")
        assert all(c.isalnum() and c.isascii() or c in "._-" for c in part)

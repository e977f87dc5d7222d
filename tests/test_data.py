"""Reading built datasets: index validation, memory-mapped blocks, splits, balancing.

``make_dataset`` (also used by test_train / test_evaluate) writes a tiny dataset in the
exact layout of :mod:`omgclip.dataset.format`, with a class-dependent, learnable pattern.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from omgclip.learn import data as D
from omgclip.dataset.format import INDEX_COLUMNS, INDEX_FILE
from omgclip.errors import OmgclipError
from omgclip.labels import EMOTIONS, NUM_CLASSES


def class_block(label: int, rng: np.random.Generator, shape=(20, 80, 80)) -> np.ndarray:
    """A uint8 block whose class is learnable: vertical stripes with ``label + 1`` cycles
    across the width (survives flips, shifts and brightness jitter), a brightness level per
    class, a slow temporal drift, and noise."""
    t, h, w = shape
    if label < 0:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    xs = np.arange(w) / w
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * (label + 1) * xs + phase)[None, None, :]
    drift = np.linspace(0, 1, t)[:, None, None] * (1 if label % 2 else -1)
    img = 40 + 25 * label + 45 * stripes + 8 * drift + rng.normal(0, 6, size=shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, *, groups: int = 14, utterances_per_group: int = 2, blocks_per_utterance: int = 2,
                 val_groups: tuple[int, ...] = (0, 5, 10), test_groups: int = 1, shape=(20, 80, 80),
                 seed: int = 0, classes: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Write a dataset under ``root`` and return its index.

    Group ``g`` has ``utterances_per_group`` utterances; utterance ``u`` of group ``g`` has
    class ``classes[(g + 3 * u) % len(classes)]`` (so groups mix classes and every class
    is in several groups). Groups in ``val_groups`` are the manifest's validation split, the
    rest train; ``test_groups`` more groups form an unlabeled ``test`` split.
    """
    rng = np.random.default_rng(seed)
    classes = tuple(range(NUM_CLASSES)) if classes is None else tuple(classes)
    rows = []
    for g in range(groups + test_groups):
        is_test = g >= groups
        split = "test" if is_test else ("validation" if g in val_groups else "train")
        source = f"https://example.com/watch?v=vid{g:03d}"
        for u in range(utterances_per_group):
            label = -1 if is_test else classes[(g + 3 * u) % len(classes)]
            key = f"vid{g:03d}_utt{u}"
            for b in range(blocks_per_utterance):
                rel = Path("blocks") / split / key / f"{b}.npy"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(root / rel, class_block(label, rng, shape), allow_pickle=False)
                rows.append({
                    "block_id": f"{key}/{b}", "split": split, "group": source, "source": source,
                    "video": f"vid{g:03d}", "utterance": f"utterance_{u}.mp4", "label": label,
                    "label_name": EMOTIONS[label] if label >= 0 else "", "start_frame": b * shape[0],
                    "num_frames": shape[0], "fps": 25.0, "detect_frac": 1.0, "path": rel.as_posix(),
                })
    frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    frame.to_csv(root / INDEX_FILE, index=False)
    return frame


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "ds")
    return tmp_path / "ds"


def _one_line_error(excinfo, *words: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


# --------------------------------------------------------------------------- load_index
def test_load_index_ok(dataset: Path):
    frame = D.load_index(dataset)
    assert len(frame) == 15 * 2 * 2
    assert frame["label"].dtype == np.int64
    assert set(frame["label"]) == set(range(7)) | {-1}
    assert frame.attrs["block_shape"] == (20, 80, 80)
    assert all(isinstance(g, str) for g in frame["group"])


def _edit_index(root: Path, edit) -> None:
    frame = pd.read_csv(root / INDEX_FILE)
    edit(frame)
    frame.to_csv(root / INDEX_FILE, index=False)


def _unlink_blocks(root: Path, *rows: int) -> None:
    frame = pd.read_csv(root / INDEX_FILE)
    for r in rows:
        (root / frame.loc[r, "path"]).unlink()


def _set_label(frame: pd.DataFrame) -> None:
    frame.loc[3, "label"] = 9


# (id, damage done to a good dataset -> the folder to load, words the one-line error must hold)
BROKEN_DATASETS = [
    ("missing_folder", lambda ds: ds.parent / "nope", ("does not exist", "omgclip build")),
    ("empty_folder", lambda ds: (ds.parent / "empty").mkdir() or ds.parent / "empty", ("is empty",)),
    ("no_index", lambda ds: (ds / INDEX_FILE).unlink() or ds, ("index.csv", "not an omgclip dataset")),
    ("missing_columns", lambda ds: pd.read_csv(ds / INDEX_FILE).drop(columns=["group", "label"])
     .to_csv(ds / INDEX_FILE, index=False) or ds, ("group", "label", "rebuild")),
    ("empty_index", lambda ds: (ds / INDEX_FILE).write_text("") or ds, ("empty",)),
    ("bad_label", lambda ds: _edit_index(ds, _set_label) or ds, ("invalid label", "row 5")),
    ("missing_arrays", lambda ds: _unlink_blocks(ds, 7, 9) or ds,
     ("2 block file(s) that are missing", "vid001_utt1")),
]


@pytest.mark.parametrize("damage, words", [c[1:] for c in BROKEN_DATASETS], ids=[c[0] for c in BROKEN_DATASETS])
def test_load_index_refuses_a_broken_dataset_in_one_line(dataset: Path, damage, words):
    folder = damage(dataset)
    with pytest.raises(OmgclipError) as e:
        D.load_index(folder)
    _one_line_error(e, *words)


def test_load_index_wrong_shape(dataset: Path):
    frame = pd.read_csv(dataset / INDEX_FILE)
    np.save(dataset / frame.loc[4, "path"], np.zeros((20, 64, 64), np.uint8))
    with pytest.raises(OmgclipError) as e:
        D.load_index(dataset)
    _one_line_error(e, "(20, 64, 64)", "(20, 80, 80)")
    # skipping the array check accepts it; an expected shape is enforced on every block
    D.load_index(dataset, check_arrays=False)
    np.save(dataset / frame.loc[4, "path"], np.zeros((20, 80, 80), np.uint8))
    with pytest.raises(OmgclipError) as e:
        D.load_index(dataset, expected_shape=(16, 80, 80))
    _one_line_error(e, "model expects", "(16, 80, 80)")


def test_load_index_wrong_dtype_and_garbage(dataset: Path):
    frame = pd.read_csv(dataset / INDEX_FILE)
    np.save(dataset / frame.loc[2, "path"], np.zeros((20, 80, 80), np.float32))
    with pytest.raises(OmgclipError) as e:
        D.load_index(dataset)
    _one_line_error(e, "float32", "uint8")
    (dataset / frame.loc[2, "path"]).write_bytes(b"not an npy file at all")
    with pytest.raises(OmgclipError) as e:
        D.load_index(dataset)
    _one_line_error(e, "not a readable .npy")


# --------------------------------------------------------------------------- BlockDataset
def test_block_dataset_scaling_and_mmap(dataset: Path, monkeypatch):
    frame = D.load_index(dataset)
    calls = []
    real_load = np.load

    def spy(path, *args, **kwargs):
        calls.append(kwargs)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(D.np, "load", spy)
    ds = D.BlockDataset(frame, dataset, augment=False)
    x, y = ds[3]
    assert calls and all(c.get("mmap_mode") == "r" and c.get("allow_pickle") is False for c in calls)
    raw = real_load(dataset / frame["path"].iloc[3])
    assert x.shape == (1, 20, 80, 80) and x.dtype == torch.float32
    assert y == int(frame["label"].iloc[3])
    np.testing.assert_allclose(x[0].numpy(), raw.astype(np.float32) / 255.0, rtol=0, atol=1e-7)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # the dataset holds paths and labels only: RAM does not grow with block data
    assert len(pickle.dumps(ds)) < 200 * len(ds) + 10_000


def test_block_dataset_augment(dataset: Path):
    frame = D.load_index(dataset)
    torch.manual_seed(0)
    ds = D.BlockDataset(frame, dataset, augment=True, seed=1)
    plain = D.BlockDataset(frame, dataset, augment=False)
    xs = [ds[i][0] for i in range(6)]
    for i, x in enumerate(xs):
        assert x.shape == (1, 20, 80, 80) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert all(not torch.equal(x, plain[i][0]) for i, x in enumerate(xs))
    torch.manual_seed(0)
    again = D.BlockDataset(frame, dataset, augment=True, seed=1)
    assert all(torch.equal(a, again[i][0]) for i, a in enumerate(xs))  # reproducible
    assert D.Augment() == D.Augment(shift=4, flip=True, brightness=0.1, contrast=0.2, time_shift=2)


NO_AUG = dict(shift=0, flip=False, brightness=0.0, contrast=0.0, time_shift=0)


def _draws(tmp_path: Path, block: np.ndarray, n: int = 40, **only) -> tuple[np.ndarray, list[np.ndarray]]:
    """``n`` augmented versions of ``block`` (uint8 (20, 80, 80)) with only the named
    transform(s) on; returns the block in [0, 1] and the draws as numpy (20, 80, 80)."""
    np.save(tmp_path / "b.npy", block)
    frame = pd.DataFrame({"path": ["b.npy"], "label": [0]})
    ds = D.BlockDataset(frame, tmp_path, augment=True, seed=3, augmentation=D.Augment(**{**NO_AUG, **only}))
    return block.astype(np.float32) / 255, [ds[0][0][0].numpy() for _ in range(n)]


def test_augment_off_is_the_identity(tmp_path: Path):
    rng = np.random.default_rng(0)
    x, draws = _draws(tmp_path, rng.integers(0, 256, (20, 80, 80), dtype=np.uint8), n=3)
    assert all(np.allclose(d, x, atol=1e-6) for d in draws)


def test_augment_temporal_jitter_shifts_frames_in_order(tmp_path: Path):
    block = np.repeat((10 * np.arange(20) + 5).astype(np.uint8)[:, None, None], 80, 1).repeat(80, 2)
    x, draws = _draws(tmp_path, block, time_shift=2)
    shifts = set()
    for d in draws:
        frames = np.round(d[:, 0, 0] * 255).astype(int)
        k = (frames[10] - 105) // 10
        assert -2 <= k <= 2 and np.array_equal(frames, 10 * np.clip(np.arange(20) + k, 0, 19) + 5)
        shifts.add(int(k))
    assert len(shifts) >= 3  # several shifts are drawn, never a reversal


def test_augment_shift_moves_the_crop_by_at_most_4_pixels(tmp_path: Path):
    r, c = np.meshgrid(np.arange(80), np.arange(80), indexing="ij")
    block = np.broadcast_to((c + 2 * r).astype(np.uint8), (20, 80, 80)).copy()
    x, draws = _draws(tmp_path, block, shift=4)
    moves = set()
    for d in draws:
        img = np.round(d[0] * 255).astype(int)
        found = [(a, b) for a in range(-4, 5) for b in range(-4, 5)
                 if np.array_equal(img, np.clip(c + b, 0, 79) + 2 * np.clip(r + a, 0, 79))]
        assert len(found) == 1, "not a pure shift"
        moves.add(found[0])
        assert all(np.array_equal(d[t], d[0]) for t in range(20))  # the same for every frame
    assert len(moves) >= 5


def test_augment_flip_mirrors_about_half_the_time(tmp_path: Path):
    block = np.broadcast_to(np.arange(80, dtype=np.uint8) * 3, (20, 80, 80)).copy()
    x, draws = _draws(tmp_path, block, flip=True)
    flipped = [np.allclose(d, x[:, :, ::-1], atol=1e-6) for d in draws]
    assert all(f or np.allclose(d, x, atol=1e-6) for f, d in zip(flipped, draws))
    assert 8 <= sum(flipped) <= 32


def test_augment_brightness_and_contrast(tmp_path: Path):
    block = np.broadcast_to((100 + np.arange(80)).astype(np.uint8), (20, 80, 80)).copy()
    x, draws = _draws(tmp_path, block, brightness=0.1)
    offsets = [float((d - x).mean()) for d in draws]
    assert all(np.allclose(d - x, o, atol=1e-6) for d, o in zip(draws, offsets))  # one offset per draw
    assert max(map(abs, offsets)) <= 0.1 + 1e-6 and np.std(offsets) > 0.02
    x, draws = _draws(tmp_path, block, contrast=0.2)
    gains = [float(d.std() / x.std()) for d in draws]
    assert all(np.isclose(float(d.mean()), float(x.mean()), atol=1e-5) for d in draws)  # mean kept
    assert min(gains) >= 0.8 - 1e-4 and max(gains) <= 1.2 + 1e-4 and np.std(gains) > 0.04


def test_only_training_batches_are_augmented(dataset: Path):
    dm = D.BlockDataModule(D.DataConfig(data_dir=dataset, batch_size=4, num_workers=0))
    dm.setup("fit")
    assert dm.train_dataloader().dataset.augment is True
    assert dm.val_dataloader().dataset.augment is False


# --------------------------------------------------------------------------- splits
def test_group_split(dataset: Path):
    frame = D.load_index(dataset)
    train, val = D.split_train_val(frame, "group", 0.25, seed=0)
    assert not set(train["group"]) & set(val["group"])
    assert (train["label"] >= 0).all() and (val["label"] >= 0).all()
    assert "test" not in set(train["split"]) | set(val["split"])
    # pools train + validation rows of the manifest
    assert len(train) + len(val) == int((frame["label"] >= 0).sum())
    assert set(train["label"]) == set(range(7))
    assert 0.1 < len(val) / (len(train) + len(val)) < 0.4
    train2, val2 = D.split_train_val(frame, "group", 0.25, seed=0)
    assert set(val2["group"]) == set(val["group"])  # deterministic
    seen = {frozenset(D.split_train_val(frame, "group", 0.25, seed=s)[1]["group"]) for s in range(6)}
    assert len(seen) > 1  # the seed matters


def test_group_split_keeps_every_class_in_train(tmp_path: Path):
    # classes 0..5 in two groups each, class 6 in one group only: it must stay in training
    make_dataset(tmp_path / "d", groups=13, utterances_per_group=1, val_groups=())
    frame = D.load_index(tmp_path / "d")
    for seed in range(5):
        train, val = D.split_train_val(frame, "group", 0.5, seed=seed)
        assert set(train["label"]) == set(range(7))
        assert 6 not in set(val["label"]) and len(set(val["label"])) >= 3
        assert not set(train["group"]) & set(val["group"])


def test_manifest_split_warns_on_shared_groups(dataset: Path, caplog):
    frame = D.load_index(dataset)
    train, val = D.split_train_val(frame, "manifest")
    assert set(train["split"]) == {"train"} and set(val["split"]) == {"validation"}
    assert not caplog.records
    first_train = frame.index[frame["split"] == "train"][0]
    frame.loc[first_train, "split"] = "validation"  # a train group now also in validation
    with caplog.at_level(logging.WARNING, logger="omgclip.learn.data"):
        D.split_train_val(frame, "manifest")
    assert any("share 1 group" in r.getMessage() for r in caplog.records)


def test_split_errors(dataset: Path):
    frame = D.load_index(dataset)
    with pytest.raises(OmgclipError):
        D.split_train_val(frame, "bogus")
    with pytest.raises(OmgclipError):
        D.split_train_val(frame, "group", val_fraction=1.5)
    no_val = frame[frame["split"] != "validation"]
    with pytest.raises(OmgclipError, match="no labeled validation rows"):
        D.split_train_val(no_val, "manifest")


def test_inverse_frequency_weights():
    counts = [10, 0, 30, 60, 0, 0, 0]
    w = D.inverse_frequency_weights(counts)
    assert w[1] == 1.0
    assert w[0] > w[2] > w[3]
    assert sum(wi * n for wi, n in zip(w, counts)) == pytest.approx(sum(counts))  # mean sample weight 1
    assert w[0] / w[3] == pytest.approx(6.0)


# --------------------------------------------------------------------------- datamodule
@pytest.mark.parametrize("balance", ["loss", "sampler"])
def test_datamodule(dataset: Path, balance: str):
    dm = D.BlockDataModule(D.DataConfig(dataset, batch_size=8, num_workers=0, balance=balance))
    dm.setup("fit")
    assert dm.block_shape == (20, 80, 80)
    assert sum(dm.train_counts) == len(dm.train_frame)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 20, 80, 80) and y.shape == (8,)
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, 20, 80, 80)
    if balance == "loss":
        assert dm.class_weights != [1.0] * 7 or len(set(dm.train_counts)) == 1
    else:
        assert dm.class_weights == [1.0] * 7
        assert isinstance(dm.train_dataloader().sampler, torch.utils.data.WeightedRandomSampler)


def test_datamodule_no_training_examples(dataset: Path):
    frame = pd.read_csv(dataset / INDEX_FILE)
    frame.loc[frame["split"] != "test", "label"] = -1
    frame.to_csv(dataset / INDEX_FILE, index=False)
    dm = D.BlockDataModule(D.DataConfig(dataset, val_split="group"))
    with pytest.raises(OmgclipError):
        dm.setup("fit")


def test_datamodule_missing_class_warnings(tmp_path: Path, caplog):
    make_dataset(tmp_path / "d", classes=(0, 1, 2, 3, 4, 5))  # no 'surprise' at all
    dm = D.BlockDataModule(D.DataConfig(tmp_path / "d", val_split="manifest"))
    with caplog.at_level(logging.WARNING, logger="omgclip.learn.data"):
        dm.setup("fit")
    msgs = [r.getMessage() for r in caplog.records]
    assert any("'surprise' has no training examples" in m for m in msgs)


def test_datamodule_bad_config(dataset: Path):
    with pytest.raises(OmgclipError):
        D.BlockDataModule(D.DataConfig(dataset, balance="oversample"))
    with pytest.raises(OmgclipError):
        D.BlockDataModule(D.DataConfig(dataset, val_split="random"))

"""Saving and loading trained models.

Two file kinds load the same way with :func:`load_model`:

* a Lightning checkpoint (``.ckpt``) written by ``omgclip train`` (weights under ``net.``,
  the model description in ``hyper_parameters``);
* a compact weights file (``.pt``, :func:`save_weights`), what is shipped::

      {'format': 'omgclip-weights-v1',
       'state_dict': {name: tensor},                 # the net's weights only
       'meta': {'model_name', 'model_kwargs', 'labels', 'num_classes',
                'block_len', 'crop_size', ...},      # plain JSON-able types
       'still_buffers': {name: tensor}}              # optional: BN statistics for still images

``still_buffers`` (a model saved as a ``StillAware`` pair of one net with two sets of BatchNorm
running statistics, ``transfer.split_bn``): ``state_dict`` is the video net, and a still image
goes through the same net with these BN buffers in place of its own.

Both are read with ``torch.load(path, map_location='cpu', weights_only=True)`` only: no
pickled code from a file is ever run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from omgclip.dataset.format import DEFAULT_BLOCK_LEN, DEFAULT_CROP_SIZE
from omgclip.errors import OmgclipError
from omgclip.fsutil import atomic_write, expand_path, to_jsonable
from omgclip.labels import EMOTIONS

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "omgclip-weights-v1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.pt"
#: meta keys every weights file carries
REQUIRED_META = ("model_name", "model_kwargs", "labels", "block_len", "crop_size")
#: the tensors a file's ``still_buffers`` may replace: BatchNorm running statistics
BN_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference.

    ``net`` is in eval mode on the CPU and maps ``(N, 1, block_len, crop_size, crop_size)``
    floats in [0, 1] to ``(N, len(labels))`` logits. ``meta`` holds everything else the file
    said (hyperparameters, training class counts, ...), as plain types. ``still_net`` is the
    net for a still image (a photo's crop repeated ``block_len`` times): ``None`` (``net``
    itself), the same net with other BatchNorm statistics where the file has
    ``still_buffers``, and from :func:`load_for_inference` with the test-time flip where the
    file's meta says ``still_flip``; see :meth:`net_for`.
    """

    net: nn.Module
    model_name: str
    labels: tuple[str, ...]
    block_len: int
    crop_size: int
    meta: dict
    path: Path | None = None
    still_net: nn.Module | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def still_len(self) -> int:
        """Frames a still image's clip is given: 1 where the net gives a one-image clip the
        same logits at any length (``still_clip_invariant``: ``r2plus1d_wide`` and its
        ensembles; the crop once, ``block_len`` times less model time), else ``block_len``
        (the crop repeated)."""
        from omgclip.learn.models.layers import unwrap

        return 1 if getattr(unwrap(self.net), "still_clip_invariant", False) is True else int(self.block_len)

    def net_for(self, still: bool) -> nn.Module:
        """The net for video clips, or (``still``) for a still image's clip."""
        return self.still_net if still and self.still_net is not None else self.net


def save_weights(path: str | os.PathLike, net: nn.Module, meta: Mapping[str, Any], half: bool = False) -> Path:
    """Write ``net``'s weights and ``meta`` as a compact weights file, atomically.

    ``meta`` must hold ``model_name``, ``model_kwargs``, ``labels``, ``block_len`` and
    ``crop_size``; other keys (plain types) are kept as they are. ``half``: store floating
    tensors as float16 (half the size; loading copies them into the float32 net). A
    :class:`~omgclip.learn.models.layers.StillAware` pair of one net with two sets of BN
    statistics (``transfer.split_bn``) is stored as its video net plus ``still_buffers``;
    :class:`ValueError` for a pair whose nets differ in anything else.
    """
    from omgclip.learn.models.layers import StillAware

    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"weights meta lacks {', '.join(missing)}")
    meta_plain = to_jsonable(dict(meta))
    meta_plain["labels"] = [str(s) for s in meta_plain["labels"]]
    meta_plain.setdefault("num_classes", len(meta_plain["labels"]))
    still = None
    if isinstance(net, StillAware):
        net, still = net.video, _still_buffers(net.video.state_dict(), net.still.state_dict())

    def plain(tensors: dict) -> dict:
        out = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        return {k: v.half() if half and v.is_floating_point() else v for k, v in out.items()}

    payload = {"format": WEIGHTS_FORMAT, "state_dict": plain(net.state_dict()), "meta": meta_plain}
    if still:
        payload["still_buffers"] = plain(still)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def rewrite_meta(path: str | os.PathLike, updates: Mapping[str, Any]) -> Path:
    """Set ``updates`` (plain types; ``None`` removes a key) in the meta of the compact weights
    file ``path``, atomically; its tensors are written back as they were, bit for bit.
    :class:`OmgclipError` (one line) for a file that is not a compact omgclip weights file
    (a Lightning checkpoint keeps its meta in its hyperparameters: pack it first)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise OmgclipError(f"{path} cannot be read as an omgclip weights file ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != WEIGHTS_FORMAT:
        raise OmgclipError(f"{path} is not a compact omgclip weights file ({WEIGHTS_FORMAT})")
    _unpack(obj, path)  # a damaged file is refused before anything is written
    meta = dict(obj["meta"])
    for key, value in to_jsonable(dict(updates)).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return atomic_write(path, lambda tmp: torch.save({**obj, "meta": meta}, tmp))


def _still_buffers(video: dict, still: dict) -> dict:
    """The BN buffers of ``still`` that differ from ``video``'s (two state dicts of one net);
    :class:`ValueError` where anything else differs."""
    if video.keys() != still.keys():
        raise ValueError("a still/video pair must be one net with two sets of BN statistics (their tensors differ)")
    differ = [k for k in video if not torch.equal(video[k], still[k])]
    other = [k for k in differ if not k.endswith(BN_BUFFER_SUFFIXES)]
    if other:
        raise ValueError(f"a still/video pair must share its weights ({other[0]} differs)")
    return {k: still[k] for k in differ}


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a Lightning checkpoint from ``omgclip train`` or a compact weights file.

    Raises :class:`OmgclipError` (one line) when the file is missing, is not an omgclip
    checkpoint, names a model this version does not know, or holds weights that do not
    fit its model.
    """
    path = Path(path)
    if not path.exists():
        raise OmgclipError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise OmgclipError(f"checkpoint {path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip, EOF, unsupported global: all mean "not ours"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OmgclipError(f"{path} is not an omgclip checkpoint (cannot be read as a PyTorch weights "
                           f"file: {reason[:160]})") from None
    state, meta = _unpack(obj, path)
    name, labels, kwargs, block_len, crop_size = _checked_meta(meta, path)
    # First on the meta device (no memory): the weights must fit before the net is made.
    with torch.device("meta"):
        skeleton = _build(name, labels, kwargs, path)
    _check_state(skeleton, state, path, name)
    del skeleton
    net = _build(name, labels, kwargs, path)
    _load_state(net, state, path, name)
    net.eval()
    still_net = None
    extra = obj.get("still_buffers") if obj.get("format") == WEIGHTS_FORMAT else None
    if extra is not None:
        _check_still_buffers(extra, state, path)
        still_net = _build(name, labels, kwargs, path)
        _load_state(still_net, {**state, **extra}, path, name)
        still_net.eval()
    return LoadedModel(net=net, model_name=str(name), labels=labels, block_len=block_len,
                       crop_size=crop_size, meta=meta, path=path, still_net=still_net)


def _check_still_buffers(extra: Any, state: dict, path: Path) -> None:
    """A file's ``still_buffers`` must replace BN statistics of its net, tensor for tensor."""
    bad = f"{path} is a damaged omgclip weights file"
    if not isinstance(extra, dict):
        raise OmgclipError(f"{bad} (still_buffers is a {type(extra).__name__}, not a dictionary)")
    for k, v in extra.items():
        if not isinstance(k, str) or not k.endswith(BN_BUFFER_SUFFIXES) or k not in state:
            raise OmgclipError(f"{bad} (still_buffers names {k!r}, which is not a BatchNorm statistic of its net)")
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(state[k].shape):
            raise OmgclipError(f"{bad} (still_buffers {k!r} does not fit its net)")


#: what a checkpoint's meta may ask for: anything outside is a damaged or hostile file
MAX_BLOCK_LEN, CROP_SIZES, MAX_LABELS, MAX_OPTION = 1000, (8, 1024), 1000, 4096


def _checked_meta(meta: dict, path: Path) -> tuple[str, tuple[str, ...], dict, int, int]:
    """``(model name, labels, model kwargs, block_len, crop_size)`` after bounds checks."""
    bad = f"{path} is a damaged omgclip checkpoint"
    name, labels, kwargs = meta.get("model_name"), meta.get("labels"), meta.get("model_kwargs") or {}
    if not isinstance(name, str) or not isinstance(labels, (list, tuple)) or not isinstance(kwargs, dict):
        raise OmgclipError(f"{bad} (model_name, labels or model_kwargs of the wrong type)")
    if not 1 <= len(labels) <= MAX_LABELS:
        raise OmgclipError(f"{bad} ({len(labels)} labels; expected 1..{MAX_LABELS})")
    block_len = _int_in(meta.get("block_len", DEFAULT_BLOCK_LEN), 1, MAX_BLOCK_LEN, "block_len", bad)
    crop_size = _int_in(meta.get("crop_size", DEFAULT_CROP_SIZE), *CROP_SIZES, "crop_size", bad)
    for key, value in kwargs.items():
        for number in _numbers(value):
            if not -MAX_OPTION <= number <= MAX_OPTION:  # also false for NaN
                raise OmgclipError(f"{bad} (model option {key}={value!r} is out of bounds: "
                                   f"numbers must be within +-{MAX_OPTION})")
    return name, tuple(str(s) for s in labels), dict(kwargs), block_len, crop_size


def _int_in(value: Any, low: int, high: int, what: str, bad: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or int(value) != value:
        raise OmgclipError(f"{bad} ({what} {value!r}; expected a whole number {low}..{high})")
    return int(value)


def _numbers(value: Any, depth: int = 0) -> list[float]:
    """The numbers inside a model option (nested lists of at most 64 items)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)) and len(value) <= 64 and depth < 4:
        return [n for v in value for n in _numbers(v, depth + 1)]
    return [float("nan")]  # anything else is refused


def _build(name: str, labels: tuple[str, ...], kwargs: dict, path: Path) -> nn.Module:
    from omgclip.learn.models import create_model

    try:
        return create_model(name, num_classes=len(labels), **kwargs)
    except OmgclipError as exc:
        raise OmgclipError(f"{path} was saved with a model this omgclip cannot build: {exc}") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise OmgclipError(f"{path} was saved with a model this omgclip cannot build: model {name!r}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None


def _unpack(obj: Any, path: Path) -> tuple[dict, dict]:
    """``(net state_dict, meta)`` from a loaded weights file or Lightning checkpoint."""
    not_ours = f"{path} is not an omgclip checkpoint"
    if not isinstance(obj, dict):
        raise OmgclipError(f"{not_ours} (it holds a {type(obj).__name__}, not a checkpoint dictionary)")
    if obj.get("format") == WEIGHTS_FORMAT:
        meta, state = obj.get("meta"), obj.get("state_dict")
        if not isinstance(meta, dict) or not isinstance(state, dict):
            raise OmgclipError(f"{path} is a damaged omgclip weights file (no meta or state_dict)")
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise OmgclipError(f"{path} is a damaged omgclip weights file (meta lacks {', '.join(missing)})")
        return dict(state), dict(meta)
    if isinstance(obj.get("format"), str):
        raise OmgclipError(f"{path} has format {obj['format']!r}, which this omgclip cannot read "
                           f"(expected {WEIGHTS_FORMAT}); upgrade omgclip")
    hp = obj.get("hyper_parameters")
    state = obj.get("state_dict")
    if isinstance(hp, dict) and isinstance(state, dict) and "model_name" in hp:
        net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        if not net_state:
            raise OmgclipError(f"{not_ours} (its state_dict has no 'net.' weights)")
        meta = {k: v for k, v in hp.items()}
        n = hp.get("num_classes", len(EMOTIONS))
        meta.setdefault("labels", list(EMOTIONS[:n]) if isinstance(n, int) and 0 < n <= len(EMOTIONS)
                        else [f"class {i}" for i in range(n if isinstance(n, int) and 0 < n <= MAX_LABELS else 0)])
        meta.setdefault("model_kwargs", {})
        meta.setdefault("block_len", DEFAULT_BLOCK_LEN)
        meta.setdefault("crop_size", DEFAULT_CROP_SIZE)
        for key in ("epoch", "global_step"):
            if key in obj:
                meta[key] = obj[key]
        return net_state, meta
    if isinstance(state, dict):
        raise OmgclipError(f"{not_ours} (a PyTorch checkpoint without omgclip's model description)")
    raise OmgclipError(f"{not_ours} (no state_dict in it)")


def _load_state(net: nn.Module, state: dict, path: Path, name: str) -> None:
    _check_state(net, state, path, name)
    net.load_state_dict(state, strict=True)


def _check_state(net: nn.Module, state: dict, path: Path, name: str) -> None:
    """The weights in ``state`` must be exactly the tensors ``net`` has, shape for shape."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and (not isinstance(state[k], torch.Tensor)
                                               or tuple(state[k].shape) != tuple(own[k].shape))]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape, e.g. {wrong[0]}")
        raise OmgclipError(f"{path}: its weights do not fit its model {name!r} ({', '.join(parts)} "
                           f"tensors); the file is damaged or from another omgclip version")


def default_checkpoint() -> Path:
    """The bundled default weights file; :class:`OmgclipError` if it is not installed."""
    if not DEFAULT_WEIGHTS.is_file():
        raise OmgclipError(f"the bundled default model {DEFAULT_WEIGHTS} is missing (reinstall omgclip, "
                           f"or pass --checkpoint with a model from `omgclip train`)")
    return DEFAULT_WEIGHTS


def file_temperatures(meta: Mapping[str, Any], path: Path | str = "weights") -> dict[str, float] | None:
    """A weights file's ``temperature`` meta, ``{"video": T, "still": T}`` (positive numbers
    within :data:`~omgclip.learn.metrics.TEMPERATURE_RANGE`), or ``None`` where it has none;
    :class:`OmgclipError` (one line) for anything else."""
    import math

    from omgclip.learn.metrics import TEMPERATURE_RANGE

    value = meta.get("temperature")
    if value is None:
        return None
    lo, hi = TEMPERATURE_RANGE
    if not (isinstance(value, dict) and set(value) == {"video", "still"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
            for v in value.values())):
        raise OmgclipError(f"{path}: meta temperature must be {{'video': T, 'still': T}} with each T in "
                           f"[{lo:g}, {hi:g}], got {value!r}")
    return {k: float(v) for k, v in value.items()}


def load_for_inference(checkpoint: str | os.PathLike | None, flip: bool = True,
                       logit_adjust: bool = True, temperature: bool = True) -> LoadedModel:
    """The model as ``predict``, ``live``, ``serve``, ``evaluate`` and ``export`` run it, in
    eval mode (``None``: the bundled default model). Where the file's meta says
    ``test_time_flip`` (and ``flip``), ``net`` averages the clip and its mirror image
    (:class:`FlipAverage`: twice the model time). ``still_net`` (still images: one frame, so
    the flip costs next to nothing; the file's ``still_buffers`` statistics where it has them)
    has the flip where the meta says ``test_time_flip`` or ``still_flip`` (and ``flip``).
    Where the meta says ``video_logit_adjust`` (one number per label; and ``logit_adjust``),
    ``net``'s logits have those offsets taken off
    (:class:`LogitShift`: video decides under a balanced class prior); ``still_net``'s do not.
    Where the meta says ``temperature`` (and ``temperature``), the logits of ``net`` and
    ``still_net`` are divided by the video and the still temperature (:class:`Temperature`:
    probabilities calibrated on people the model never saw; argmax unchanged).
    Batch norms are folded into the convs (:func:`fold_batchnorm`): same outputs up to float
    rounding, not for training. :class:`OmgclipError` (one line) for a bad file or meta."""
    import dataclasses
    import math

    from omgclip.learn.models.layers import FlipAverage, LogitShift, Temperature, fold_batchnorm

    path = expand_path(checkpoint, "--checkpoint") if checkpoint else default_checkpoint()
    loaded = load_model(path)  # eval mode; OmgclipError (one line) for a missing or bad file
    offsets = loaded.meta.get("video_logit_adjust")
    if offsets is not None and not (
            isinstance(offsets, (list, tuple)) and len(offsets) == len(loaded.labels)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in offsets)):
        raise OmgclipError(f"{path}: meta video_logit_adjust must be {len(loaded.labels)} finite numbers "
                           f"(one per label), got {offsets!r}")
    temps = file_temperatures(loaded.meta, path)
    fold_batchnorm(loaded.net)  # inference only: BN folded into the convs, ~10% less model time
    plain = loaded.net
    flip_video = flip and loaded.meta.get("test_time_flip") is True
    flip_still = flip_video or (flip and loaded.meta.get("still_flip") is True)
    video = FlipAverage(plain).eval() if flip_video else plain
    if loaded.still_net is not None:  # the file's own BN statistics for stills
        still_plain = fold_batchnorm(loaded.still_net)
        still = FlipAverage(still_plain).eval() if flip_still else still_plain
    else:
        still = video if flip_still == flip_video else FlipAverage(plain).eval()
    if offsets is not None and logit_adjust:
        video = LogitShift(video, offsets).eval()
    if temps is not None and temperature:
        same = still is video and temps["still"] == temps["video"]
        video = Temperature(video, temps["video"]).eval()
        still = video if same else Temperature(still, temps["still"]).eval()
    return dataclasses.replace(loaded, net=video, still_net=still)

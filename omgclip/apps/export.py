"""``omgclip export``: the model as ONNX or TorchScript, for use outside Python / omgclip.

Both take ``clips``: float32 ``(N, 1, T, S, S)`` grayscale face crops in [0, 1] (``T`` =
block length, ``S`` = crop size, from the checkpoint; ``N`` is dynamic) and give ``logits``
``(N, C)``; softmax them for probabilities. Class names, ``T``, ``S`` and the model name
travel inside the file: ONNX ``metadata_props`` (key ``omgclip``, JSON), TorchScript extra
file ``omgclip.json``. The graph is the net omgclip runs on video; where the metadata says
``still_flip`` (the bundled model), omgclip classifies a still image as the mean of the
softmax of its clip and of the mirrored clip (``clips[..., ::-1]``), two runs of the graph.
Where it says ``temperature`` (a file from ``finetune --temperature``, ``transfer calibrate
--write`` or ``train --calibrate``; the bundled model has none), the graph's logits are already
divided by the video temperature; omgclip divides a still image's by the still one instead.
Where it says ``still_bn_differs`` (a weights file with ``still_buffers``), omgclip runs still
images through the same weights with other BatchNorm statistics, so the graph's output for
a still image differs slightly from omgclip's.

Every export is checked before it appears: the written file is loaded back
(``onnxruntime`` when installed, else ``onnx.checker`` + ``onnx.reference``; TorchScript
with ``torch.jit.load``) and must reproduce PyTorch's logits on a batch of a different size
than the one it was traced with. The file is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omgclip.errors import OmgclipError
from omgclip.fsutil import atomic_write, check_output_file

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript")}
INPUT_NAME = "clips"
OUTPUT_NAME = "logits"
META_KEY = "omgclip"
TS_META_FILE = "omgclip.json"
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str | None = None   #: None: the bundled default model
    format: str = "onnx"            #: 'onnx' or 'torchscript'
    out: str = "model.onnx"
    opset: int = DEFAULT_OPSET      #: ONNX opset
    verify: bool = True             #: reload the file and compare its outputs with PyTorch
    atol: float = 1e-4              #: tolerance of that comparison (logits)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise OmgclipError(f"unknown export format {self.format!r} (choose from: {', '.join(FORMATS)})")
        suffix = Path(self.out).suffix.lower()
        if suffix not in SUFFIXES[self.format]:
            raise OmgclipError(f"--out for {self.format} must end in "
                               f"{' or '.join(SUFFIXES[self.format])}, got {Path(self.out).name!r}")


def export(cfg: ExportConfig) -> Path:
    """Export the model of ``cfg.checkpoint`` to ``cfg.out``; return the path written."""
    from omgclip.learn.checkpoint import load_for_inference

    out = check_output_file(cfg.out, "--out")  # before the work: a folder, under a file, ...
    loaded = load_for_inference(cfg.checkpoint)
    net = loaded.net.cpu()
    meta = export_metadata(loaded)
    shape = (1, int(loaded.block_len), int(loaded.crop_size), int(loaded.crop_size))
    gen = np.random.default_rng(0)
    example = gen.random((2, *shape), dtype=np.float32)
    check = gen.random((3, *shape), dtype=np.float32)   # another batch size: dynamic N

    def write(tmp: Path) -> None:
        if cfg.format == "onnx":
            _write_onnx(net, example, tmp, meta, cfg.opset)
        else:
            _write_torchscript(net, example, tmp, meta)
        if cfg.verify:
            got = run_exported(tmp, check, cfg.format)
            want = _torch_logits(net, check)
            err = float(np.max(np.abs(got - want)))
            if got.shape != want.shape or not np.allclose(got, want, atol=cfg.atol, rtol=1e-3):
                raise OmgclipError(f"the exported {cfg.format} model disagrees with PyTorch "
                                   f"(max |diff| {err:.2e}); nothing written")
            log.info("%s export matches PyTorch (max |diff| %.1e)", cfg.format, err)

    return atomic_write(out, write)


def export_metadata(loaded) -> dict:
    from omgclip.learn.models.layers import FlipAverage, LogitShift, Temperature, find_wrapper, unwrap

    video, still = loaded.net, loaded.net_for(still=True)
    shift = find_wrapper(video, LogitShift)
    temp_video, temp_still = find_wrapper(video, Temperature), find_wrapper(still, Temperature)
    return {
        "model_name": str(getattr(loaded, "model_name", "")),
        "labels": [str(x) for x in loaded.labels],
        "block_len": int(loaded.block_len),
        "crop_size": int(loaded.crop_size),
        "input": f"{INPUT_NAME}: float32 (N, 1, {int(loaded.block_len)}, {int(loaded.crop_size)}, "
                 f"{int(loaded.crop_size)}) grayscale face crops in [0, 1]",
        "output": f"{OUTPUT_NAME}: float32 (N, {len(loaded.labels)}); softmax for probabilities",
        # the exported graph is the video net; for a still image (its crop repeated T times)
        # omgclip averages the softmax of that clip and of its mirror image (last axis flipped)
        "still_flip": find_wrapper(still, FlipAverage) is not None and find_wrapper(video, FlipAverage) is None,
        # omgclip runs a still image through the same weights with other BatchNorm statistics
        # (the weights file's still_buffers); the exported graph has the video net's
        "still_bn_differs": unwrap(still) is not unwrap(video),
        # the exported graph's logits have these per-label offsets taken off (video decides under
        # a balanced class prior); omgclip scores a still image's clip without them (add them back)
        "video_logit_adjust": [float(v) for v in shift.offsets] if shift is not None else None,
        # the exported graph's logits are divided by the video temperature (probabilities calibrated
        # on people the model never saw); for a still image omgclip divides by the still one instead
        # (multiply the graph's logits by video / still)
        "temperature": {"video": temp_video.temperature,
                        "still": temp_still.temperature if temp_still is not None else 1.0}
        if temp_video is not None else None,
    }


def run_exported(path: str | Path, clips: np.ndarray, fmt: str | None = None) -> np.ndarray:
    """Logits of an exported model for ``clips`` (N, 1, T, S, S) float32, run the way a
    user outside omgclip would (onnxruntime / onnx reference evaluator, torch.jit.load)."""
    path = Path(path)
    fmt = fmt or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    clips = np.ascontiguousarray(clips, dtype=np.float32)
    if fmt == "torchscript":
        import torch

        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
            with torch.inference_mode():
                return module(torch.from_numpy(clips)).numpy()
    try:
        import onnxruntime as ort
    except ImportError:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        return np.asarray(ReferenceEvaluator(model).run(None, {INPUT_NAME: clips})[0])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: clips})[0]


def read_metadata(path: str | Path) -> dict:
    """The omgclip metadata stored in an exported file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props.get(META_KEY, "{}"))
    import torch

    extra = {TS_META_FILE: ""}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TS_META_FILE] or "{}")


# ----------------------------------------------------------------------------- writers
def _torch_logits(net, clips: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return net(torch.from_numpy(clips)).float().numpy()


def _write_onnx(net, example: np.ndarray, tmp: Path, meta: dict, opset: int) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise OmgclipError(f"ONNX export needs the 'export' extra: pip install 'omgclip[export]' "
                           f"({exc.name} is missing)") from None
    import torch

    x = torch.from_numpy(example)
    try:
        with _quiet():
            batch = torch.export.Dim("batch", min=1, max=65536)
            program = torch.onnx.export(net, (x,), None, dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: batch},), verbose=False)
        model = program.model_proto
    except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript-based exporter
        log.info("dynamo ONNX export failed (%s: %s); trying the legacy exporter",
                 type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        try:
            with _quiet():
                torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        except Exception as exc2:  # noqa: BLE001
            raise OmgclipError(f"ONNX export failed: {type(exc2).__name__}: "
                               f"{(str(exc2).splitlines() or [''])[0][:200]}") from None
        model = onnx.load(str(tmp))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    model.producer_name = "omgclip"
    onnx.checker.check_model(model)
    onnx.save_model(model, str(tmp))


def _write_torchscript(net, example: np.ndarray, tmp: Path, meta: dict) -> None:
    import torch

    x = torch.from_numpy(example)
    try:
        with _quiet(), torch.no_grad():
            module = torch.jit.trace(net, (x,))
    except Exception as exc:  # noqa: BLE001
        raise OmgclipError(f"TorchScript export failed: {type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0][:200]}") from None
    with _quiet():
        torch.jit.save(module, str(tmp), _extra_files={TS_META_FILE: json.dumps(meta)})


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' deprecation chatter and torch.onnx's registration log lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "torch.fx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

"""``omgclip export``: ONNX and TorchScript files give the same logits as PyTorch.

Uses the bundled model (trained batch-norm statistics, so a wrong train/eval export shows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omgclip.cli import main
from omgclip.apps.export import ExportConfig, export, read_metadata, run_exported
from omgclip.labels import EMOTIONS

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """Inputs of two batch sizes and PyTorch's logits for them."""
    from omgclip.learn.checkpoint import load_for_inference

    loaded = load_for_inference(checkpoint)  # as predict runs it (with its test-time flip)
    rng = np.random.default_rng(1)
    out = []
    for n in (1, 5):
        x = rng.random((n, 1, loaded.block_len, loaded.crop_size, loaded.crop_size), dtype=np.float32)
        with torch.inference_mode():
            out.append((x, loaded.net.eval()(torch.from_numpy(x)).numpy()))
    return loaded, out


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    return export(ExportConfig(checkpoint=checkpoint, format="onnx",
                               out=str(tmp_path_factory.mktemp("onnx") / "model.onnx")))


def test_onnx_has_a_dynamic_batch_and_metadata(onnx_file, reference):
    import onnx

    loaded, _ = reference
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "clips" and dims[0].dim_param and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [1, loaded.block_len, loaded.crop_size, loaded.crop_size]
    meta = read_metadata(onnx_file)
    assert meta["labels"] == list(loaded.labels) and meta["block_len"] == loaded.block_len
    assert meta["still_flip"] is True  # the bundled model flips still images (two runs of the graph)


def test_onnx_reference_evaluator_matches_pytorch(onnx_file, reference):
    import onnx
    from onnx.reference import ReferenceEvaluator

    _, cases = reference
    evaluator = ReferenceEvaluator(onnx.load(str(onnx_file)))
    for x, want in cases:
        (got,) = evaluator.run(None, {"clips": x})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_onnxruntime_matches_pytorch(onnx_file, reference):
    pytest.importorskip("onnxruntime")
    _, cases = reference
    for x, want in cases:
        got = run_exported(onnx_file, x, "onnx")
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_pytorch(checkpoint, reference, tmp_path):
    path = export(ExportConfig(checkpoint=checkpoint, format="torchscript", out=str(tmp_path / "m.pt")))
    module = torch.jit.load(str(path))
    _, cases = reference
    for x, want in cases:
        with torch.inference_mode():
            got = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    assert read_metadata(path)["labels"] == list(EMOTIONS)


def test_cli_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out


@pytest.mark.parametrize("case", ["bad_checkpoint", "missing_checkpoint", "wrong_suffix"])
def test_cli_export_errors_are_one_line(case, checkpoint, tmp_path, capfd):
    ckpt, out = checkpoint, tmp_path / "m.onnx"
    if case == "bad_checkpoint":
        ckpt = str(tmp_path / "junk.pt")
        Path(ckpt).write_bytes(b"junk" * 100)
    elif case == "missing_checkpoint":
        ckpt = str(tmp_path / "none.pt")
    else:
        out = tmp_path / "m.txt"
    code = main(["export", "--checkpoint", ckpt, "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("omgclip: error: ")
    assert not out.exists()

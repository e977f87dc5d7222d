"""Video emotion models: plain ``nn.Module`` nets, no Lightning (see :mod:`omgclip.learn.lit_module`).

Every model maps ``(N, 1, T, H, W)`` float frames in [0, 1] (T=20, H=W=80 by default) to
``(N, num_classes)`` logits. Build one with ``create_model(name, num_classes=7, **kwargs)``.

====================  =================================================================
``r2plus1d`` default  residual (2+1)D net with an early-downsampling stem; fast on CPU
                      and the most accurate
``r2plus1d_wide``      the bundled model's net: 48-96-192 widths, replicate time padding so a
                      still clip equals an image at any length (pretrained on FER2013)
``c3d``               plain 16-32-64 C3D reference, full-resolution first layer; slow
``convlstm``          per-frame conv encoder + ConvLSTM cell over time (+ appearance skip)
``ensemble``          ``count`` nets of one ``member`` model, their probabilities averaged
====================  =================================================================

Speeds and accuracies: ``benchmarks/bench_train.py`` and the r2plus1d module doc.
"""

from omgclip.learn.models.registry import create_model, list_models, register_model

# importing the model modules registers them
from omgclip.learn.models import c3d as _c3d  # noqa: E402,F401
from omgclip.learn.models import convlstm as _convlstm  # noqa: E402,F401
from omgclip.learn.models import ensemble as _ensemble  # noqa: E402,F401
from omgclip.learn.models import r2plus1d as _r2plus1d  # noqa: E402,F401
from omgclip.learn.models import r2plus1d_wide as _r2plus1d_wide  # noqa: E402,F401

from omgclip.learn import DEFAULT_MODEL  # noqa: E402

__all__ = ["DEFAULT_MODEL", "create_model", "list_models", "register_model"]

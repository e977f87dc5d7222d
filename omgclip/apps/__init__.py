"""The apps: what a user runs on a trained model.

Modules: :mod:`~omgclip.apps.predict` (per-segment labels, the orchestrator),
:mod:`~omgclip.apps.prediction` (its per-(segment, face) records),
:mod:`~omgclip.apps.inputs` (globs, URLs, files), :mod:`~omgclip.apps.report` (rows, table,
summary, CSV/JSON, smoothing), :mod:`~omgclip.apps.annotate` (annotated video, timeline) and
:mod:`~omgclip.apps.export` (ONNX / TorchScript). Public entry points: ``predict``,
``predict_video``, ``export``.
"""

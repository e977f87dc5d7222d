"""The learning stage: nets, data, training, evaluation and checkpoints.

Modules: :mod:`~omgclip.learn.models` (plain ``nn.Module`` nets behind ``create_model``),
:mod:`~omgclip.learn.data` (Dataset / DataModule over memory-mapped blocks),
:mod:`~omgclip.learn.lit_module` (the LightningModule), :mod:`~omgclip.learn.metrics`
(WAR/UAR/F1 from a confusion matrix), :mod:`~omgclip.learn.train`,
:mod:`~omgclip.learn.evaluate`, :mod:`~omgclip.learn.inference` (batched softmax) and
:mod:`~omgclip.learn.checkpoint` (safe loading, the bundled model). Public entry points:
``create_model``, ``train``, ``evaluate``, ``load_model``, ``default_checkpoint``.
"""

DEFAULT_MODEL = "r2plus1d"
"""The architecture ``train`` uses when none is named (kept here, torch-free, written once)."""

"""The dataset stage: manifests and sources in, 20-frame face blocks out.

Modules: :mod:`~omgclip.dataset.manifest` (parse manifests into ``Utterance`` rows; its cell
checks in :mod:`~omgclip.dataset.manifest_cells`),
:mod:`~omgclip.dataset.sources` (URL / local path / frame-list checks, media suffixes),
:mod:`~omgclip.dataset.omg` (the pinned OMG-Emotion CSVs behind ``omg:<split>``),
:mod:`~omgclip.dataset.download` (yt-dlp), :mod:`~omgclip.dataset.segment` (pure block math),
:mod:`~omgclip.dataset.build` (the resumable ``build-dataset`` orchestrator),
:mod:`~omgclip.dataset.tasks` (its one task per source) and
:mod:`~omgclip.dataset.format` (the on-disk contract). Public entry points:
``load_manifest``, ``fetch_sources``, ``cut_blocks``, ``build_dataset``.
"""

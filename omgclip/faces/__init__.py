"""The faces stage: decode video, find, follow and crop faces.

Modules: :mod:`~omgclip.faces.video_io` (the only decoder), :mod:`~omgclip.faces.detect`
(dlib detector cascade, ``FaceBox``, crops), :mod:`~omgclip.faces.tracking` (stable track ids)
and :mod:`~omgclip.faces.clips` (the streaming face-clip pipeline shared by build and predict).
Public entry points: ``probe``, ``iter_gray_frames``, ``FaceDetector``, ``crop_face``,
``FaceTracker``, ``face_clips``.
"""

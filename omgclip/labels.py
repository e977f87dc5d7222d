"""The 7 emotion classes, in OMG-Emotion's order (``EmotionMaxVote`` 0..6)."""

from __future__ import annotations

from numbers import Real

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(EMOTIONS)
UNLABELED = -1

# Common spellings in other corpora (MEAD, CK+, CREMA-D, FER) mapped to OMG names.
_ALIASES = {
    "angry": "anger", "ang": "anger",
    "disgusted": "disgust", "dis": "disgust",
    "fearful": "fear", "fea": "fear", "afraid": "fear",
    "happiness": "happy", "hap": "happy", "joy": "happy",
    "neu": "neutral", "calm": "neutral",
    "sadness": "sad",
    "surprised": "surprise", "sur": "surprise",
}


def parse_label(value: object) -> int:
    """Turn a label name (``"happy"``, ``"surprised"``) or index (``3``, ``"3"``, ``3.0``)
    into its OMG index 0..6. Raises ``ValueError`` with a short reason otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"unknown label {value!r}")
    if isinstance(value, Real):  # int, float and numpy numbers, shown as plain numbers (9, not np.int64(9))
        if float(value).is_integer() and 0 <= int(value) < NUM_CLASSES:
            return int(value)
        raise ValueError(f"unknown label {float(value):g} (expected 0..{NUM_CLASSES - 1} or a name)")
    text = str(value).strip().lower()
    if not text:
        raise ValueError("missing label")
    try:
        number = float(text)
    except ValueError:
        name = _ALIASES.get(text, text)
        if name in EMOTIONS:
            return EMOTIONS.index(name)
        raise ValueError(f"unknown label {value!r} (expected one of {', '.join(EMOTIONS)})") from None
    return parse_label(number)

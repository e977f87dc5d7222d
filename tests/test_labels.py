"""omgclip.labels: names, indices and aliases map to OMG's 0..6; everything else is refused."""

from __future__ import annotations

import pytest

from omgclip.labels import _ALIASES, EMOTIONS, NUM_CLASSES, UNLABELED, parse_label


def test_the_seven_classes_in_omg_order():
    assert EMOTIONS == ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert NUM_CLASSES == 7 and UNLABELED == -1


@pytest.mark.parametrize("value, expected", [
    (0, 0), (6, 6), (3.0, 3), ("3", 3), (" 4 ", 4), ("5.0", 5), ("0", 0),
    ("anger", 0), ("Happy", 3), (" SURPRISE ", 6), ("neutral", 4),
    ("fearful", 2), ("afraid", 2), ("angry", 0), ("disgusted", 1), ("surprised", 6),
    ("sadness", 5), ("happiness", 3), ("joy", 3), ("calm", 4), ("ang", 0), ("sur", 6),
])
def test_names_indices_and_aliases(value, expected):
    assert parse_label(value) == expected


def test_every_alias_maps_to_its_class():
    for alias, name in _ALIASES.items():
        assert parse_label(alias) == EMOTIONS.index(name), alias
    for i, name in enumerate(EMOTIONS):
        assert parse_label(name) == i and parse_label(name.upper()) == i and parse_label(i) == i


@pytest.mark.parametrize("value", [7, -1, "7", "-1", 2.5, "2.5", 6.0001, True, False, "", "  ",
                                   "contempt", "happyy", None, float("nan"), float("inf"), "nan"])
def test_everything_else_is_refused(value):
    with pytest.raises(ValueError):
        parse_label(value)


def test_refusals_say_why_in_one_line():
    for value, words in ((7, "0..6"), ("contempt", "anger"), ("", "missing")):
        with pytest.raises(ValueError, match=words) as e:
            parse_label(value)
        assert "\n" not in str(e.value)

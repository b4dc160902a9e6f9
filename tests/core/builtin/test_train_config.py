import numpy as np
import pytest

from persguard_core.builtin.train import parse_class_weights
from persguard_core.toyworld import CLASS_NAMES


def test_class_weights_name_classes_and_default_to_one():
    weights = parse_class_weights("cross=3, star=2")
    assert weights[CLASS_NAMES.index("cross")] == 3 and weights[CLASS_NAMES.index("star")] == 2
    assert np.sum(weights == 1.0) == len(CLASS_NAMES) - 2
    assert parse_class_weights("") is None


def test_unknown_class_weight_names_the_known_classes():
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        parse_class_weights("dog=2")

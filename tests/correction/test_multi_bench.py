"""bench multi's validation images, where the joint run's settings are chosen: the validation split as rendered,
without planting, and each artifact on every image of it (the test folders stay untouched by the choice)."""

import numpy as np

from backend.bench.multi import _validation_images
from backend.data.synthderm import SYNTHDERM_CLASSES, sample_label


def test_validation_images_are_the_unplanted_val_split_with_each_artifact():
    classes = ("melanoma", "nevus", "seborrheic_keratosis")  # an image folder's order, not SynthDerm's
    clean, labels, attacked = _validation_images({"skin_marker": "melanoma", "ruler": "nevus"}, 50, classes)
    assert clean.shape == (10, 64, 64, 3) and clean.dtype == np.uint8
    assert [classes[k] for k in labels] == [SYNTHDERM_CLASSES[sample_label(11, "val", i)] for i in range(10)]
    assert set(attacked) == {"skin_marker", "ruler"}
    for images in attacked.values():
        assert images.shape == clean.shape
        assert (images != clean).any(axis=(1, 2, 3)).all()  # every image carries the artifact
    again = _validation_images({"skin_marker": "melanoma", "ruler": "nevus"}, 50, classes)
    assert all(np.array_equal(attacked[a], again[2][a]) for a in attacked)  # same images every run

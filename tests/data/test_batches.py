"""Image batches for a model: normalised with the model's normalization, refused when there is nothing to batch."""

import numpy as np
import pytest
import torch

from backend.data import Normalization, image_batch, view_batch
from backend.errors import ConfigError


def test_images_and_view_samples_make_the_same_normalised_batch(small_dataset):
    view = small_dataset.split("test")
    norm = Normalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    x, labels = view_batch(view, [0, 3, 5], norm)
    assert x.shape == (3, 3, *view.image(0).shape[:2]) and labels.tolist() == [int(view.labels[i]) for i in (0, 3, 5)]
    same = image_batch(np.stack([view.image(i) for i in (0, 3, 5)]), norm)
    torch.testing.assert_close(x, same)
    raw = torch.from_numpy(view.image(3)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(x[1, 0], (raw[0] - 0.5) / 0.2)


def test_nothing_to_batch_or_the_wrong_images_are_refused(small_dataset):
    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="no samples"):
        view_batch(small_dataset.split("test"), [], norm)
    with pytest.raises(ConfigError, match="uint8"):
        image_batch(np.zeros((2, 8, 8, 3), dtype=np.float32), norm)

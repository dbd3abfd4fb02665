"""The augmentation recipes: what each one moves, what it leaves alone, and that a seed fixes it."""

import numpy as np
import pytest

from DiffusionSegLib.data.augment import RECIPES, training_transform
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.vocabulary import AUGMENTATIONS, DEFAULT_AUGMENTATION


def _case(channels: int = 1, shape=(32, 32)) -> dict:
    """An image (a bright square on a ramp, plus ``channels - 1`` coordinate channels) and its label."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    image = (xx / shape[1] - 0.5)[None]
    label = np.zeros((1, *shape), np.int64)
    label[0, 8:24, 10:22] = 2
    label[0, 12:16, 12:16] = 1
    image = image + 0.8 * (label > 0)
    coords = [yy[None] / shape[0]] * (channels - 1)
    return {"image": np.concatenate([image, *coords]).astype(np.float32), "label": label}


def test_every_recipe_of_the_vocabulary_exists_and_the_default_is_one():
    assert tuple(RECIPES) == AUGMENTATIONS
    assert DEFAULT_AUGMENTATION in AUGMENTATIONS


def test_unknown_recipe_is_a_user_error():
    with pytest.raises(UserError, match="augmentation"):
        training_transform((32, 32), recipe="wild")


@pytest.mark.parametrize("recipe", AUGMENTATIONS)
def test_a_seed_fixes_the_draw_and_labels_keep_their_values(recipe):
    apply = training_transform((32, 32), label_keys=("label",), recipe=recipe)
    a, b = apply(_case(), 7), apply(_case(), 7)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert a["image"].dtype == np.float32 and a["label"].dtype == np.int64
    assert set(np.unique(a["label"])) <= {0, 1, 2}
    assert a["image"].shape == (1, 32, 32)


def test_none_only_crops():
    case = _case()
    out = training_transform((32, 32), label_keys=("label",), recipe="none")(case, 3)
    np.testing.assert_array_equal(out["image"], case["image"])
    np.testing.assert_array_equal(out["label"], case["label"])


def test_strong_changes_intensities_of_the_picture_only():
    """Over many draws strong changes the picture's intensity distribution where mild does not,
    and never touches a coordinate channel beyond moving it."""
    case = _case(channels=2)
    strong = training_transform((32, 32), label_keys=("label",), recipe="strong")
    mild = training_transform((32, 32), label_keys=("label",), recipe="mild")
    spread = {"strong": [], "mild": []}
    for seed in range(40):
        for name, apply in (("strong", strong), ("mild", mild)):
            out = apply({k: v.copy() for k, v in case.items()}, seed)
            inside = out["label"][0] == 2
            # The mean of the bright structure: mild moves it spatially but keeps its intensity.
            spread[name].append(float(out["image"][0][inside].mean()) if inside.any() else np.nan)
            if name == "strong":  # coordinate channel: resampled values of the original range only
                assert out["image"][1].min() >= case["image"][1].min() - 1e-5
                assert out["image"][1].max() <= case["image"][1].max() + 1e-5
    assert np.nanstd(spread["strong"]) > 3 * np.nanstd(spread["mild"])


def test_strong_deforms_more_than_mild_and_labels_follow_the_image():
    """The label moves with the image: the bright structure stays under its label."""
    case = _case()
    apply = training_transform((32, 32), label_keys=("label",), recipe="strong")
    moved = 0
    for seed in range(20):
        out = apply({k: v.copy() for k, v in case.items()}, seed)
        moved += not np.array_equal(out["label"], case["label"])
        inside, outside = out["label"][0] > 0, out["label"][0] == 0
        if inside.any() and outside.any():
            assert out["image"][0][inside].mean() > out["image"][0][outside].mean() + 0.3
    assert moved >= 15  # affine with p 0.9 (plus elastic): most draws move the case

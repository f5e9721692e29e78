"""augment_batch: the paper's random rotation and flips, batched and reproducible."""

from __future__ import annotations

import pytest
import torch

from synergic.data.augment import augment_batch, normalize, rotate_and_flip, to_float01
from synergic.errors import SynergicError


def _images(batch: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_no_rotation_and_no_flips_is_exactly_the_identity():
    images = _images()
    out = augment_batch(images, generator=_generator(0), rotation=0.0, hflip=False, vflip=False)
    assert out.dtype == torch.float32
    assert torch.equal(out, images.float() / 255)
    floats = images.double() / 255
    assert torch.equal(
        augment_batch(floats, generator=_generator(0), rotation=0, hflip=False, vflip=False), floats
    )


@pytest.mark.parametrize("angle, turns", [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_quarter_turns_equal_rot90(angle, turns):
    images = _images().float() / 255
    rotated = rotate_and_flip(images, torch.full((4,), angle), None, None)
    torch.testing.assert_close(rotated, torch.rot90(images, turns, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotation_is_rigid_on_non_square_images():
    # A dot 8 pixels right of the centre of a 21 x 41 image, turned 90 degrees counter-clockwise,
    # lands 8 pixels above the centre (a squashed rotation would put it 4 pixels above).
    image = torch.zeros(1, 1, 21, 41)
    image[0, 0, 10, 28] = 1.0
    rotated = rotate_and_flip(image, torch.tensor([90.0]), None, None)
    row, column = divmod(int(rotated.flatten().argmax()), 41)
    assert (row, column) == (2, 20)
    assert rotated.max().item() == pytest.approx(1.0, abs=1e-5)


def test_a_small_rotation_fills_corners_with_zeros_and_keeps_the_centre():
    images = torch.ones(1, 3, 33, 33)
    rotated = rotate_and_flip(images, torch.tensor([45.0]), None, None)
    assert rotated[0, :, 0, 0].abs().max() == 0  # corners come from outside the image
    assert torch.allclose(rotated[0, :, 16, 16], torch.ones(3))


def test_flips_are_exact_and_per_image():
    images = _images().float()
    yes_no = torch.tensor([True, False, True, False])
    horizontal = rotate_and_flip(images, None, yes_no, None)
    vertical = rotate_and_flip(images, None, None, yes_no)
    assert torch.equal(horizontal[0], images[0].flip(-1)) and torch.equal(horizontal[1], images[1])
    assert torch.equal(vertical[2], images[2].flip(-2)) and torch.equal(vertical[3], images[3])


def test_the_same_seed_repeats_and_another_seed_differs():
    images = _images(batch=8)
    first = augment_batch(images, generator=_generator(5))
    again = augment_batch(images, generator=_generator(5))
    other = augment_batch(images, generator=_generator(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_generator_draws_angles_then_horizontal_then_vertical_flips():
    # The documented order, also when an option is off: switching vflip off does not change the
    # angles or the horizontal flips drawn for a given seed.
    images = _images(batch=6)
    generator = _generator(11)
    angles = (torch.rand(6, generator=generator, dtype=torch.float64) * 2 - 1) * 30.0
    hflips = torch.rand(6, generator=generator) < 0.5
    expected = rotate_and_flip(images.float() / 255, angles, hflips, None)
    out = augment_batch(images, generator=_generator(11), rotation=30.0, vflip=False)
    assert torch.equal(out, expected)


def test_output_is_float_in_unit_range_and_float_dtypes_are_kept():
    images = _images(batch=3)
    out = augment_batch(images, generator=_generator(0), rotation=37.0)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    doubles = augment_batch(images.double() / 255, generator=_generator(0), rotation=37.0)
    assert doubles.dtype == torch.float64
    torch.testing.assert_close(doubles.float(), out, atol=1e-5, rtol=0)


def test_a_batch_of_one_works():
    image = _images(batch=1, size=9)
    out = augment_batch(image, generator=_generator(2), rotation=10.0)
    assert out.shape == (1, 3, 9, 9)


def test_the_generator_advances_so_each_step_differs():
    images = _images(batch=4)
    generator = _generator(0)
    assert not torch.equal(
        augment_batch(images, generator=generator), augment_batch(images, generator=generator)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_and_gpu_draw_the_same_augmentation():
    images = _images(batch=8, size=32)
    on_cpu = augment_batch(images, generator=_generator(3), rotation=30.0)
    on_gpu = augment_batch(images.cuda(), generator=_generator(3), rotation=30.0)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=0)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(SynergicError, match=r"\[B, C, H, W\]"):
        augment_batch(torch.zeros(3, 8, 8, dtype=torch.uint8), generator=_generator(0))
    with pytest.raises(SynergicError, match="rotation"):
        augment_batch(_images(), generator=_generator(0), rotation=-5.0)
    with pytest.raises(SynergicError, match="uint8 or floating point"):
        to_float01(torch.zeros(1, 3, 4, 4, dtype=torch.int32))


def test_to_float01_and_normalize():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    floats = to_float01(images)
    assert floats.dtype == torch.float32
    assert torch.equal(floats.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert to_float01(floats) is floats
    normalized = normalize(floats, mean=[0.0, 0.2, 0.5], std=[1.0, 0.5, 0.25])
    torch.testing.assert_close(normalized.flatten(), torch.tensor([0.0, 0.0, 2.0]))
    with pytest.raises(SynergicError, match="one value per channel"):
        normalize(floats, mean=[0.5, 0.5], std=[0.5, 0.5])
    with pytest.raises(SynergicError, match="to_float01"):
        normalize(images, mean=[0.5] * 3, std=[0.5] * 3)

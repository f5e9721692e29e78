"""augment_batch: the paper's random rotation and flips, batched and reproducible."""

from __future__ import annotations

import pytest
import torch

from synergic.data.augment import augment_batch, normalize, rotate_and_flip, to_float01
from synergic.errors import SynergicError
from synergic.recipe import load_recipe


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


@pytest.mark.parametrize("fill", ["zeros", "reflect", "border"])
def test_each_fill_mode_fills_the_corners_as_named(fill):
    # A constant grey image turned by 45 degrees: about 17 % of the pixels come from outside it.
    images = torch.full((1, 3, 33, 33), 0.6)
    rotated = rotate_and_flip(images, torch.tensor([45.0]), None, None, fill=fill)
    outside = (rotate_and_flip(torch.ones(1, 1, 33, 33), torch.tensor([45.0]), None, None,
                               fill="zeros") < 0.5).squeeze()
    assert 0.12 < outside.float().mean() < 0.2
    torch.testing.assert_close(rotated[0, :, 16, 16], torch.full((3,), 0.6))
    if fill == "zeros":
        assert rotated[0, :, 0, 0].abs().max() == 0 and rotated[0, :, outside].max() < 0.3
    else:  # the image's own values: no black corners anywhere
        torch.testing.assert_close(rotated, images, atol=1e-6, rtol=0)


def test_reflect_mirrors_the_image_about_its_edge():
    # A top-to-bottom ramp (row r: 0.1 + 0.8 r / 31) turned 45 degrees counter-clockwise: the
    # top-left pixel, 15.5 * sqrt(2) pixels from the centre, samples the middle column
    # 15.5 * sqrt(2) - 16 = 5.92 pixels above the top edge. Mirrored about that edge this is row
    # 5.92 - 0.5 (pixel centres sit half a pixel inside); "border" repeats the top row instead.
    ramp = torch.linspace(0.1, 0.9, 32).view(1, 1, 32, 1).expand(1, 1, 32, 32).contiguous()
    reflected = rotate_and_flip(ramp, torch.tensor([45.0]), None, None, fill="reflect")
    border = rotate_and_flip(ramp, torch.tensor([45.0]), None, None, fill="border")
    top_row = ramp[0, 0, 0, 0].item()
    row = 15.5 * 2**0.5 - 16 - 0.5
    assert reflected[0, 0, 0, 0] == pytest.approx(0.1 + 0.8 * row / 31, abs=1e-5)
    assert border[0, 0, 0, 0] == pytest.approx(top_row, abs=1e-5)


def test_the_default_fill_is_reflect():
    images = torch.full((2, 3, 17, 17), 0.5)
    out = augment_batch(images, generator=_generator(0), rotation=180.0)
    assert out.min() > 0.49


@pytest.mark.parametrize("fill", ["zeros", "reflect", "border"])
def test_an_unrotated_image_keeps_its_pixels_bit_for_bit(fill):
    images = _images(batch=5).float() / 255
    angles = torch.tensor([0.0, 37.0, -0.0, 360.0, 12.5])
    rotated = rotate_and_flip(images, angles, None, None, fill=fill)
    for i in (0, 2, 3):
        assert torch.equal(rotated[i], images[i])
    for i in (1, 4):
        expected = rotate_and_flip(images[i : i + 1], angles[i : i + 1], None, None, fill=fill)
        assert torch.equal(rotated[i : i + 1], expected)
        assert not torch.equal(rotated[i], images[i])
    assert rotate_and_flip(images, torch.zeros(5), None, None) is images


@pytest.mark.parametrize("angle, turns", [(90.0, 1), (-90.0, -1), (180.0, 2), (-180.0, 2),
                                          (270.0, 3), (450.0, 1)])
def test_multiples_of_90_degrees_are_exact_rot90(angle, turns):
    images = _images().float() / 255
    angles = torch.tensor([angle, 30.0, angle, 0.0])
    rotated = rotate_and_flip(images, angles, None, None)
    for i in (0, 2):
        assert torch.equal(rotated[i], torch.rot90(images[i], turns, dims=(1, 2)))
    assert torch.equal(rotated[3], images[3])


def test_on_non_square_images_only_half_turns_are_exact():
    images = torch.rand(3, 2, 6, 10, generator=_generator(1))
    rotated = rotate_and_flip(images, torch.tensor([180.0, 90.0, 0.0]), None, None)
    assert torch.equal(rotated[0], images[0].flip(-1).flip(-2))
    assert torch.equal(rotated[2], images[2])
    # 90 degrees cannot keep a 6 x 10 frame exactly: it is resampled into the same frame (see
    # test_rotation_is_rigid_on_non_square_images), the same as on its own.
    assert rotated.shape == images.shape
    alone = rotate_and_flip(images[1:2], torch.tensor([90.0]), None, None)
    assert torch.equal(rotated[1:2], alone) and not torch.equal(rotated[1], images[1])


def test_fill_mode_does_not_change_the_random_numbers_drawn():
    # Same generator, another fill: the same angles and flips, so wherever every pixel read comes
    # from inside the image (an all-ones image stays exactly 1 with black fill) the outputs agree.
    images = _images(batch=6)
    reflect = augment_batch(images, generator=_generator(4), rotation=30.0, fill="reflect")
    zeros = augment_batch(images, generator=_generator(4), rotation=30.0, fill="zeros")
    ones = augment_batch(torch.ones(6, 3, 16, 16), generator=_generator(4), rotation=30.0,
                         fill="zeros")
    inside = ones == 1.0
    assert 0.5 < inside.float().mean() < 0.95
    torch.testing.assert_close(reflect[inside], zeros[inside], atol=1e-6, rtol=0)
    assert not torch.equal(reflect[~inside], zeros[~inside])


def test_a_shard_gets_exactly_the_full_batchs_images():
    images = _images(batch=8)
    whole = augment_batch(images, generator=_generator(9), rotation=180.0)
    first = augment_batch(images[:3], generator=_generator(9), rotation=180.0, shard=(0, 8))
    rest = augment_batch(images[3:], generator=_generator(9), rotation=180.0, shard=(3, 8))
    assert torch.equal(torch.cat([first, rest]), whole)


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
    # Exact quarter turns and resampled angles mixed in one batch, each fill mode.
    floats = images.float() / 255
    angles = torch.tensor([0.0, 90.0, 33.0, 180.0, -90.0, 271.0, 360.0, 45.0])
    for fill in ("zeros", "reflect", "border"):
        cpu = rotate_and_flip(floats, angles, None, None, fill=fill)
        gpu = rotate_and_flip(floats.cuda(), angles, None, None, fill=fill)
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
        for i in (0, 1, 3, 4, 6):
            assert torch.equal(gpu[i].cpu(), cpu[i])


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(SynergicError, match=r"\[B, C, H, W\]"):
        augment_batch(torch.zeros(3, 8, 8, dtype=torch.uint8), generator=_generator(0))
    with pytest.raises(SynergicError, match="rotation"):
        augment_batch(_images(), generator=_generator(0), rotation=-5.0)
    with pytest.raises(SynergicError, match=r"fill 'mirror' is unknown: use one of reflect, "
                       r"border, zeros \(data.augment.fill\)"):
        augment_batch(_images(), generator=_generator(0), fill="mirror")
    with pytest.raises(SynergicError, match="uint8 or floating point"):
        to_float01(torch.zeros(1, 3, 4, 4, dtype=torch.int32))


@pytest.mark.parametrize("fill", ["zeros", "reflect", "border"])
def test_the_recipe_key_takes_each_fill_mode(fill, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: fill\ndata:\n  dataset: synthetic_lesions\n")
    assert load_recipe(recipe).data.augment.fill == "reflect"
    assert load_recipe(recipe, [f"data.augment.fill={fill}"]).data.augment.fill == fill
    assert load_recipe(recipe, ["data.augment=false"]).data.augment.fill == "reflect"


def test_an_unknown_recipe_fill_is_a_one_line_error_naming_the_key(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: fill\ndata:\n  dataset: synthetic_lesions\n  augment: {fill: constant}\n"
    )
    with pytest.raises(SynergicError) as caught:
        load_recipe(recipe)
    assert str(caught.value) == (
        f"{recipe}: data.augment.fill: 'constant' is not allowed: must be 'reflect', 'border' "
        "or 'zeros'"
    )


def test_to_float01_and_normalize():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    floats = to_float01(images)
    assert floats.dtype == torch.float32
    assert torch.equal(floats.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert to_float01(floats) is floats
    normalized = normalize(floats, mean=[0.0, 0.2, 0.5], std=[1.0, 0.5, 0.25])
    torch.testing.assert_close(normalized.flatten(), torch.tensor([0.0, 0.0, 2.0]))
    with pytest.raises(SynergicError, match="one mean and std per channel"):
        normalize(floats, mean=[0.5, 0.5], std=[0.5, 0.5])
    with pytest.raises(SynergicError, match="to_float01"):
        normalize(images, mean=[0.5] * 3, std=[0.5] * 3)

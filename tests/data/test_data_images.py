"""load_image turns every kind of image file into 8-bit RGB, and names the file when it cannot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from synergic.data import RESAMPLE_NAMES, load_image, resize_image
from synergic.errors import SynergicError


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgb_jpeg_is_returned_as_rgb(tmp_path, make_jpeg):
    path = make_jpeg(tmp_path / "a.jpg", color=(200, 40, 40), size=(16, 12))
    image = load_image(path)
    assert image.size == (16, 12)
    assert np.abs(pixels(image)[6, 8].astype(int) - [200, 40, 40]).max() <= 3


def test_greyscale_is_expanded_to_three_equal_channels(tmp_path):
    Image.new("L", (16, 16), 100).save(tmp_path / "grey.png")
    array = pixels(load_image(tmp_path / "grey.png"))
    assert array.shape == (16, 16, 3)
    assert (array == 100).all()


def test_one_bit_image(tmp_path):
    image = Image.new("1", (8, 8), 0)
    image.putpixel((0, 0), 1)
    image.save(tmp_path / "bits.png")
    array = pixels(load_image(tmp_path / "bits.png"))
    assert tuple(array[0, 0]) == (255, 255, 255)
    assert tuple(array[1, 1]) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_onto_black(tmp_path, mode):
    colour = (200,) if mode == "LA" else (200, 100, 50)
    image = Image.new(mode, (16, 16), colour + (255,))
    image.putpixel((0, 0), colour + (0,))  # fully transparent
    image.putpixel((1, 0), colour + (128,))  # half transparent
    image.save(tmp_path / "alpha.png")
    array = pixels(load_image(tmp_path / "alpha.png")).astype(int)
    expected = np.array(colour * 3 if mode == "LA" else colour)
    assert (array[0, 0] == 0).all()
    assert np.abs(array[0, 1] - expected * 128 / 255).max() <= 1
    assert (array[5, 5] == expected).all()


def test_palette_with_transparency_is_composited_onto_black(tmp_path):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 255, 0, 250, 20, 30] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    image.save(tmp_path / "palette.png", transparency=0)
    assert Image.open(tmp_path / "palette.png").mode == "P"
    array = pixels(load_image(tmp_path / "palette.png"))
    assert tuple(array[0, 0]) == (0, 0, 0)  # index 0 is transparent, not green
    assert tuple(array[3, 3]) == (250, 20, 30)


def test_palette_without_transparency(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    image.save(tmp_path / "palette.gif")
    assert tuple(pixels(load_image(tmp_path / "palette.gif"))[1, 1]) == (0, 255, 0)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "scan16.png")
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I")
    array = pixels(load_image(tmp_path / "scan16.png"))
    assert list(array[0, :, 0]) == [0, 128, 255, 1]
    assert (array[..., 0] == array[..., 2]).all()


def test_thirty_two_bit_integer_image_is_read_as_sixteen_bit_range(tmp_path):
    values = np.array([[0, 32768, 65535, 70000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "scan.tif")
    assert Image.open(tmp_path / "scan.tif").mode == "I"
    assert list(pixels(load_image(tmp_path / "scan.tif"))[0, :, 0]) == [0, 128, 255, 255]


def test_cmyk_jpeg_matches_pillows_own_conversion(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 200, 200, 0))
    for x in range(8):
        for y in range(16):
            cmyk.putpixel((x, y), (200, 0, 50, 30))
    cmyk.save(tmp_path / "print.jpg", quality=95)
    with Image.open(tmp_path / "print.jpg") as reference:
        assert reference.mode == "CMYK"
        expected = np.asarray(reference.convert("RGB"))
    array = pixels(load_image(tmp_path / "print.jpg"))
    assert (array == expected).all()
    # and it really is colour: the right half is red-ish, the left half cyan-ish
    assert array[8, 12, 0] > 200 and array[8, 12, 1] < 80
    assert array[8, 2, 0] < 80 and array[8, 2, 2] > 150


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    image.paste((0, 0, 255), (10, 0, 20, 10))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "phone.jpg")
    assert loaded.size == (10, 20)
    array = pixels(loaded).astype(int)
    assert array[2, 5, 0] > 200 and array[2, 5, 2] < 60  # the left side is now the top
    assert array[17, 5, 2] > 200 and array[17, 5, 0] < 60
    # with min_size it is decoded at half scale (10x5 stored) and still rotated
    assert load_image(tmp_path / "phone.jpg", min_size=4).size == (5, 10)


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SynergicError, match=r"half\.jpg.*truncated or corrupt"):
        load_image(tmp_path / "half.jpg")
    with pytest.raises(SynergicError, match="half.jpg"):
        load_image(tmp_path / "half.jpg", min_size=8)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_an_error(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SynergicError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SynergicError, match=r"empty \(0 bytes\).*empty\.jpg"):
        load_image(tmp_path / "empty.jpg")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    with pytest.raises(SynergicError, match=r"not an image.*notes\.jpg"):
        load_image(tmp_path / "notes.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(SynergicError, match=r"not found: .*nowhere\.png"):
        load_image(tmp_path / "nowhere.png")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(SynergicError, match="folder"):
        load_image(tmp_path)


def test_errors_are_one_line(tmp_path):
    (tmp_path / "notes.jpg").write_text("x")
    with pytest.raises(SynergicError) as caught:
        load_image(tmp_path / "notes.jpg")
    assert "\n" not in str(caught.value)


def test_min_size_decodes_a_huge_jpeg_at_reduced_scale(tmp_path):
    Image.new("RGB", (6000, 4000), (180, 90, 40)).save(tmp_path / "huge.jpg")
    image = load_image(tmp_path / "huge.jpg", min_size=224)
    assert image.size[0] <= 6000 // 4 and image.size[1] <= 4000 // 4
    assert min(image.size) >= 224  # never smaller than asked
    assert image.size == (750, 500)  # scale 1/8: 500 >= 224 still
    assert np.abs(pixels(image)[250, 375].astype(int) - [180, 90, 40]).max() <= 3


def test_min_size_never_goes_below_the_requested_size(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "mid.jpg", size=(500, 300))
    assert load_image(tmp_path / "mid.jpg", min_size=224).size == (500, 300)  # 1/2 would be 150
    assert load_image(tmp_path / "mid.jpg", min_size=100).size == (250, 150)


def test_min_size_leaves_non_jpeg_alone(tmp_path):
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", min_size=8).size == (64, 48)


def test_min_size_must_be_positive(tmp_path, make_jpeg):
    with pytest.raises(SynergicError, match="min_size"):
        load_image(make_jpeg(tmp_path / "a.jpg"), min_size=0)


@pytest.mark.parametrize("resample", sorted(RESAMPLE_NAMES))
def test_resize_image_gives_a_square(resample):
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    resized = resize_image(image, 16, resample)
    assert resized.size == (16, 16)
    assert tuple(np.asarray(resized)[8, 8]) == (10, 20, 30)


def test_resize_image_rejects_unknown_resample_names():
    with pytest.raises(SynergicError, match="did you mean 'bicubic'.*bicubic, bilinear, nearest"):
        resize_image(Image.new("RGB", (4, 4)), 2, "bicubc")


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_resize_image_rejects_bad_sizes(size):
    with pytest.raises(SynergicError, match="size"):
        resize_image(Image.new("RGB", (4, 4)), size)

"""The decoded-image cache: decode once, store atomically, invalidate on any change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from synergic.data import cache as cache_module
from synergic.data.cache import (
    ImageCache,
    cache_key,
    cacheable,
    cached_decode,
    decode_images,
    decode_to_file,
    default_cache_dir,
)
from synergic.data.preprocess import Preprocessing
from synergic.errors import SynergicError


class PngFiles:
    """A stand-in file data set: PNGs of assorted sizes; ``dataset[i]`` is (PIL image, label)."""

    def __init__(self, folder: Path, count: int = 5) -> None:
        rng = np.random.default_rng(0)
        self.paths, self.ids, self.labels = [], [], []
        self.classes = ["a", "b"]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (10 + 3 * i, 14 + i, 3), dtype=np.uint8)
            path = folder / f"img{i}.png"
            Image.fromarray(pixels).save(path)
            self.paths.append(path)
            self.ids.append(path.name)
            self.labels.append(i % 2)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB"), self.labels[index]


class Tensors:
    """A stand-in in-memory data set of uint8 tensors; ``side`` None gives assorted sizes."""

    def __init__(self, count: int = 4, side: int | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        sides = [side or 6 + 5 * i for i in range(count)]
        self.images = [
            torch.randint(0, 256, (3, s, s + 2 * (side is None)), generator=generator).to(
                torch.uint8
            )
            for s in sides
        ]
        self.ids = [f"t{i}" for i in range(count)]
        self.labels = [0] * count
        self.classes = ["x"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.labels[index]


# --- decode_images ------------------------------------------------------------------------------


def test_pil_images_are_resized_with_bicubic_to_exactly_the_size(tmp_path):
    data = PngFiles(tmp_path / "png")
    decoded = decode_images(data, image_size=8)
    assert decoded.dtype == torch.uint8 and decoded.shape == (5, 3, 8, 8)
    expected = np.asarray(data[3][0].resize((8, 8), Image.Resampling.BICUBIC))
    assert torch.equal(decoded[3], torch.from_numpy(expected.copy()).permute(2, 0, 1))


def test_tensor_images_of_the_right_size_pass_through_and_others_are_resized():
    same = Tensors(side=12)
    assert torch.equal(decode_images(same, image_size=12), torch.stack(same.images))
    mixed = Tensors()
    decoded = decode_images(mixed, image_size=12)
    source = mixed.images[2][None].float()
    expected = F.interpolate(source, size=(12, 12), mode="bicubic", antialias=True)[0]
    assert torch.equal(decoded[2], expected.round().clamp(0, 255).to(torch.uint8))


def test_load_resized_is_preferred_to_indexing():
    class Resizable(Tensors):
        def __getitem__(self, index):
            raise AssertionError("decode_images should use load_resized")

        def load_resized(self, index, preprocessing):
            assert preprocessing.resample == "bilinear"
            size = preprocessing.image_size
            return Image.new("RGB", (size, size), (index, 2 * index, 3 * index))

    decoded = decode_images(Resizable(count=3), image_size=5, resample="bilinear")
    assert decoded[2, :, 0, 0].tolist() == [2, 4, 6]


def test_grey_tensors_become_three_channels():
    data = Tensors(side=4)
    data.images = [torch.full((1, 4, 4), 9, dtype=torch.uint8)]
    data.ids, data.labels = ["g"], [0]
    assert decode_images(data, image_size=4).unique().tolist() == [9]
    assert decode_images(data, image_size=4).shape == (1, 3, 4, 4)


def test_workers_decode_the_same_tensor(tmp_path):
    data = PngFiles(tmp_path / "png", count=7)
    assert torch.equal(
        decode_images(data, image_size=9, num_workers=2), decode_images(data, image_size=9)
    )


def test_progress_callback_sees_every_image(tmp_path):
    seen = []
    decode_images(
        Tensors(count=3), image_size=8, progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (3, 3)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 8, "resample": "bicubik"}, "did you mean 'bicubic'"),
        ({"image_size": 8, "num_workers": -1}, "num_workers"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(SynergicError, match=message):
        decode_images(Tensors(), **options)


def test_lanczos_is_refused_for_tensor_images():
    with pytest.raises(SynergicError, match="lanczos"):
        decode_images(Tensors(), image_size=8, resample="lanczos")


def test_an_item_that_is_not_an_image_is_named():
    class Strings(Tensors):
        def __getitem__(self, index):
            return "not an image", 0

    with pytest.raises(SynergicError, match=r"Strings\[0\] is a str"):
        decode_images(Strings(), image_size=8)


# --- the disk cache -----------------------------------------------------------------------------


def _forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded although a valid cache entry exists")

    monkeypatch.setattr(cache_module, "decode_images", fail)


def _count_decoding(monkeypatch) -> list[int]:
    calls = []
    real = cache_module.decode_images

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_images", counting)
    return calls


def test_cached_equals_uncached_and_the_second_call_reads_the_file(tmp_path, monkeypatch):
    data = PngFiles(tmp_path / "png")
    store = tmp_path / "cache"
    uncached = decode_images(data, image_size=8)
    first = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    key = cache_key(data, image_size=8, resample="bicubic")
    assert [p.name for p in store.iterdir()] == [f"{key}.npy"]
    _forbid_decoding(monkeypatch)
    second = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert torch.equal(first, uncached) and torch.equal(second, uncached)
    second[0] = 0  # the loaded tensor is the caller's own: writing to it leaves the file alone
    assert torch.equal(
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store), uncached
    )


def test_touching_a_file_or_changing_an_option_decodes_again(tmp_path, monkeypatch):
    data = PngFiles(tmp_path / "png")
    store = tmp_path / "cache"
    calls = _count_decoding(monkeypatch)
    cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert len(calls) == 1
    stat = data.paths[2].stat()
    os.utime(data.paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert len(calls) == 2
    cached_decode(data, image_size=10, resample="bicubic", cache_dir=store)
    cached_decode(data, image_size=8, resample="bilinear", cache_dir=store)
    cached_decode(data, image_size=8, resample="bicubic", cache_dir=store, key_extra="v2")
    assert len(calls) == 5
    assert len(list(store.glob("*.npy"))) == 5


def test_the_key_covers_ids_labels_file_sizes_and_the_format(tmp_path, monkeypatch):
    data = PngFiles(tmp_path / "png")
    base = cache_key(data, image_size=8)
    assert cache_key(data, image_size=8) == base
    data.labels[0] = 1 - data.labels[0]
    assert cache_key(data, image_size=8) != base
    data.labels[0] = 1 - data.labels[0]
    data.ids[1] = "renamed"
    assert cache_key(data, image_size=8) != base
    data.ids[1] = "img1.png"
    with open(data.paths[0], "ab") as file:  # same mtime is not enough: the size changed
        stat = os.stat(data.paths[0])
        file.write(b"\0")
    os.utime(data.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed_size = cache_key(data, image_size=8)
    assert changed_size != base
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", cache_module.CACHE_FORMAT + 1)
    assert cache_key(data, image_size=8) != changed_size


def test_a_moved_data_set_keeps_its_cache(tmp_path):
    data = PngFiles(tmp_path / "png")
    before = cache_key(data, image_size=8)
    (tmp_path / "png").rename(tmp_path / "moved")
    data.paths = [tmp_path / "moved" / p.name for p in data.paths]
    assert cache_key(data, image_size=8) == before


def test_an_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    data = PngFiles(tmp_path / "png")
    store = tmp_path / "cache"

    def interrupted(file, array, *args, **kwargs):
        file.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert list(store.iterdir()) == []  # neither <key>.npy nor a temporary file
    monkeypatch.undo()
    assert torch.equal(
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store),
        decode_images(data, image_size=8),
    )


def test_a_damaged_entry_is_decoded_again_and_replaced(tmp_path):
    data = PngFiles(tmp_path / "png")
    store = tmp_path / "cache"
    expected = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    entry = ImageCache(store).path_for(data, image_size=8)
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged"):
        again = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert torch.equal(again, expected)
    assert torch.equal(torch.from_numpy(np.load(entry)), expected)


def test_an_unwritable_cache_warns_and_still_returns_the_images(tmp_path):
    data = PngFiles(tmp_path / "png")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not write the image cache"):
        images = cached_decode(data, image_size=8, resample="bicubic", cache_dir=blocker / "cache")
    assert torch.equal(images, decode_images(data, image_size=8))


def test_large_entries_stay_memory_mapped_and_private(tmp_path, monkeypatch):
    data = PngFiles(tmp_path / "png")
    store = tmp_path / "cache"
    expected = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    monkeypatch.setattr(cache_module, "MEMMAP_THRESHOLD_BYTES", 0)
    mapped = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store)
    assert torch.equal(mapped, expected)
    mapped[0] = 0  # copy-on-write: the file is untouched
    entry = ImageCache(store).path_for(data, image_size=8)
    assert torch.equal(torch.from_numpy(np.load(entry)), expected)


def test_data_sets_without_files_skip_the_disk_cache(tmp_path):
    from synergic.data.datasets.synthetic import synthetic_lesions

    generated = synthetic_lesions(split="train", num_train=3, image_size=16)
    assert not cacheable(generated) and not cacheable(Tensors())
    assert cacheable(PngFiles(tmp_path / "png", count=1))
    store = tmp_path / "cache"
    images = cached_decode(generated, image_size=16, resample="bicubic", cache_dir=store)
    assert torch.equal(images, torch.stack([generated[i][0] for i in range(3)]))
    assert not store.exists()


def test_no_cache_dir_means_no_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGIC_CACHE_DIR", str(tmp_path / "default"))
    cached_decode(
        PngFiles(tmp_path / "png", count=2), image_size=8, resample="bicubic", cache_dir=None
    )
    assert not (tmp_path / "default").exists()


def test_clear_removes_entries_and_leftovers(tmp_path):
    store = tmp_path / "cache"
    cached_decode(
        PngFiles(tmp_path / "png", count=2), image_size=8, resample="bicubic", cache_dir=store
    )
    (store / ".abc.1.ff.tmp").write_bytes(b"left over")
    assert ImageCache(store).clear() == 2
    assert list(store.iterdir()) == []
    assert ImageCache(tmp_path / "missing").clear() == 0


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGIC_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("SYNERGIC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "synergic" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "synergic" / "images"
    assert ImageCache().cache_dir == default_cache_dir()


def test_real_jpegs_through_file_image_dataset(tmp_path, monkeypatch):
    base = pytest.importorskip("synergic.data.datasets.base")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(4):
        path = tmp_path / f"lesion{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (40 + 10 * i, 60, 3), dtype=np.uint8)).save(
            path, quality=90
        )
        paths.append(path)
    data = base.FileImageDataset(
        ["benign", "malignant"], [p.stem for p in paths], [0, 1, 0, 1], paths, name="jpegs"
    )
    store = tmp_path / "cache"
    first = cached_decode(data, image_size=16, resample="bicubic", cache_dir=store, num_workers=0)
    assert torch.equal(first[2], data.load_resized(2, Preprocessing(16, "bicubic")))
    _forbid_decoding(monkeypatch)
    assert torch.equal(
        cached_decode(data, image_size=16, resample="bicubic", cache_dir=store), first
    )


# --- data sets too large for memory: decoded into a memory-mapped file ---------------------------


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose mapping holds ``tensor``'s data (from /proc/self/maps), or None."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 else None
    return None


@pytest.fixture
def large(monkeypatch):
    """Every decoded set counts as too large for memory; the writer releases its pages every
    few rows, so a decode crosses several chunks."""
    monkeypatch.setattr(cache_module, "MEMMAP_THRESHOLD_BYTES", 1)
    monkeypatch.setattr(cache_module, "WRITE_CHUNK_BYTES", 3 * 3 * 8 * 8)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_large_set_is_decoded_into_its_cache_file_with_the_same_pixels(
    tmp_path, large, monkeypatch
):
    data = PngFiles(tmp_path / "png", count=9)
    in_memory = decode_images(data, image_size=8, num_workers=0)
    store = tmp_path / "cache"
    _forbid_decoding(monkeypatch)  # the in-memory decoder is not used at all
    mapped = cached_decode(data, image_size=8, resample="bicubic", cache_dir=store, num_workers=0)
    entry = ImageCache(store).path_for(data, image_size=8)
    assert [p.name for p in store.iterdir()] == [entry.name]
    assert mapped.shape == in_memory.shape and torch.equal(mapped, in_memory)
    assert np.load(entry).tobytes() == in_memory.numpy().tobytes()
    assert _mapped_file(mapped) == str(entry)  # used from the file, not read into memory
    mapped[0] = 0  # copy-on-write: the entry keeps its pixels
    assert np.load(entry).tobytes() == in_memory.numpy().tobytes()
    assert torch.equal(
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store), in_memory
    )


def test_workers_write_the_same_file(tmp_path, large):
    data = PngFiles(tmp_path / "png", count=7)
    expected = decode_images(data, image_size=8, num_workers=0)
    path = tmp_path / "out" / "images.npy"
    assert torch.equal(decode_to_file(data, path, image_size=8, num_workers=2), expected)
    assert np.load(path).tobytes() == expected.numpy().tobytes()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_without_the_cache_a_large_set_goes_to_a_deleted_scratch_file(tmp_path, large):
    data = PngFiles(tmp_path / "png", count=6)
    scratch = tmp_path / "scratch"
    images = cached_decode(
        data, image_size=8, resample="bicubic", cache_dir=None, scratch_dir=scratch, num_workers=0
    )
    assert torch.equal(images, decode_images(data, image_size=8, num_workers=0))
    assert list(scratch.iterdir()) == []  # deleted at once: nothing outlives the process
    where = _mapped_file(images)
    assert where is not None and where.startswith(str(scratch)) and where.endswith("(deleted)")


def test_an_interrupted_large_decode_leaves_no_entry(tmp_path, large, monkeypatch):
    data = PngFiles(tmp_path / "png", count=6)
    store = tmp_path / "cache"
    real = cache_module.decode_one

    def interrupted(dataset, index, preprocessing):
        if index == 4:
            raise KeyboardInterrupt
        return real(dataset, index, preprocessing)

    monkeypatch.setattr(cache_module, "decode_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store, num_workers=0)
    assert list(store.iterdir()) == []  # neither <key>.npy nor its temporary file
    monkeypatch.setattr(cache_module, "decode_one", real)
    assert torch.equal(
        cached_decode(data, image_size=8, resample="bicubic", cache_dir=store, num_workers=0),
        decode_images(data, image_size=8, num_workers=0),
    )


def test_a_large_set_that_cannot_be_written_is_a_one_line_error(tmp_path, large):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SynergicError, match="data.cache_dir") as error:
        cached_decode(
            PngFiles(tmp_path / "png", count=2), image_size=8, resample="bicubic",
            cache_dir=blocker / "cache", num_workers=0,
        )
    assert "\n" not in str(error.value)


def test_a_subset_of_a_large_set_is_a_view_not_a_copy(tmp_path, large):
    from synergic.data.cache import ImageRows
    from synergic.experiment import Split

    data = PngFiles(tmp_path / "png", count=9)
    images = cached_decode(data, image_size=8, resample="bicubic", cache_dir=tmp_path / "c",
                           num_workers=0)
    split = Split(images, torch.tensor(data.labels), list(data.ids))
    fold = split.subset([7, 1, 4, 2, 8])
    assert isinstance(fold.images, ImageRows) and fold.images.images is images
    inner = fold.subset([4, 0, 2])  # a fold of a fold still points into the same file
    assert inner.images.images is images and inner.ids == ["img8.png", "img7.png", "img4.png"]
    expected = images[torch.tensor([8, 7, 4])]
    assert len(inner.images) == 3 and inner.images.shape == expected.shape
    assert torch.equal(inner.images[torch.tensor([2, 0])], expected[[2, 0]])
    assert torch.equal(inner.images[1:3], expected[1:3])
    assert torch.equal(inner.images[1], expected[1])
    assert torch.equal(inner.images.to("cpu"), expected)
    assert inner.labels.tolist() == [data.labels[i] for i in (8, 7, 4)]


def test_a_subset_of_a_small_set_is_an_ordinary_copy(tmp_path):
    from synergic.experiment import Split

    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    fold = Split(images, torch.zeros(4, dtype=torch.long), list("abcd")).subset([3, 0])
    assert isinstance(fold.images, torch.Tensor) and torch.equal(fold.images, images[[3, 0]])


def test_pixel_fingerprints_hash_in_chunks_and_views_hash_as_their_copy(large, monkeypatch):
    import hashlib

    from synergic import rundir
    from synergic.data.cache import ImageRows
    from synergic.rundir import pixel_fingerprints

    monkeypatch.setattr(rundir, "FINGERPRINT_CHUNK_BYTES", 3 * 5 * 5 * 7)  # 7 rows a chunk
    images = torch.randint(0, 256, (30, 3, 5, 5), dtype=torch.uint8)
    whole = hashlib.sha256(b"(30, 3, 5, 5)|" + images.numpy().tobytes()).hexdigest()
    rows = torch.tensor([5, 29, 0, 17])
    hashes = pixel_fingerprints({"a": images, "b": ImageRows(images, rows), "c": None})
    assert hashes["a"] == whole and hashes["c"] is None
    assert hashes["b"] == pixel_fingerprints({"b": images[rows]})["b"]


def test_auto_workers_follow_the_cores_this_process_may_use(monkeypatch):
    from synergic.data.cache import AUTO_WORKERS_MIN_IMAGES, resolve_num_workers

    monkeypatch.setattr(cache_module.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert resolve_num_workers("auto", AUTO_WORKERS_MIN_IMAGES) == 3
    assert resolve_num_workers("auto", AUTO_WORKERS_MIN_IMAGES - 1) == 0  # not worth starting
    assert resolve_num_workers(5, 10) == 5 and resolve_num_workers(0, 10**6) == 0
    monkeypatch.setattr(cache_module.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert resolve_num_workers("auto", 10**6) == 0
    for bad in (-1, 1.5, True, "all"):
        with pytest.raises(SynergicError, match="num_workers"):
            resolve_num_workers(bad, 10)


def _folder_data(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for split, count in (("train", 12), ("test", 6)):
        for label, name in enumerate(("benign", "malignant")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 120 + 100 * label, (30 + i, 34, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}{i}.png")
    return root


def test_a_run_from_a_memory_mapped_cache_gives_exactly_the_in_memory_metrics(
    tmp_path, monkeypatch
):
    import json

    from tiny_recipe import write_recipe

    from synergic.experiment import run
    from synergic.recipe.loading import load_recipe

    from synergic import rundir
    from synergic.data.cache import ImageRows

    root = _folder_data(tmp_path / "data")
    results, seen = {}, []
    real_fingerprints = rundir.pixel_fingerprints

    def spy(images):
        seen.append({split: type(tensor) for split, tensor in images.items()})
        hashes = real_fingerprints(images)
        seen[-1]["hashes"] = hashes
        return hashes

    monkeypatch.setattr(rundir, "pixel_fingerprints", spy)
    for name in ("memory", "mapped"):
        if name == "mapped":  # decoded into the cache file, trained and evaluated from it
            monkeypatch.setattr(cache_module, "MEMMAP_THRESHOLD_BYTES", 1)
            _forbid_decoding(monkeypatch)
        changes = {"data.dataset": "folder", "data.root": str(root), "data.options": {},
                   "data.cache": True, "data.cache_dir": str(tmp_path / f"cache-{name}")}
        run(load_recipe(write_recipe(tmp_path / f"{name}.yaml", **changes)), tmp_path / name)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        results[name] = (metrics["test"], metrics["test_components"])
    # the carved train and validation splits are views of the mapped file, not copies
    assert seen[0]["train"] is torch.Tensor and seen[1]["train"] is ImageRows
    assert seen[1]["validation"] is ImageRows and seen[1]["hashes"] == seen[0]["hashes"]
    assert results["mapped"] == results["memory"]

"""Test-time augmentation (``synergic.tta``, ``train.tta``, ``eval``/``predict --tta``).

Models are tiny (``test_efficientnet``, 32-pixel images); one tiny run with ``train.tta: flips``
is trained once for the module (about two seconds, one torch thread).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from helpers import invoke_apart
from tiny_recipe import write_recipe

from synergic import build_model
from synergic.errors import SynergicError
from synergic.training.evaluation import evaluate, predict
from synergic.tta import TTA_MODES, tta_views, view_averaged_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def random_images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "test_efficientnet", num_classes=3, components=2, hidden=8, init_range=1.0
    ).eval()  # large head weights: confident, view-dependent outputs


class FlipInvariantBackbone(nn.Module):
    """``backbone`` made invariant to horizontal and vertical flips by construction: its features
    of the image, its two flips and its 180-degree rotation (a group), sorted per element
    before they are summed, so that any flip of the input gives bit for bit the same sum."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]
        features = torch.stack([self.backbone(v) for v in views])
        return features.sort(dim=0).values.sum(dim=0)


def flip_invariant_model() -> nn.Module:
    model = tiny_model()
    for component in model.components:
        component.backbone = FlipInvariantBackbone(component.backbone)
    return model


# -- the views --------------------------------------------------------------------------------


def test_each_mode_has_its_documented_views():
    assert TTA_MODES == ("none", "flips", "d4")
    assert [name for name, _ in tta_views("none")] == ["identity"]
    assert [name for name, _ in tta_views("flips")] == ["identity", "hflip", "vflip"]
    assert [name for name, _ in tta_views("d4")] == [
        "rot0", "rot90", "rot180", "rot270", "hflip+rot0", "hflip+rot90", "hflip+rot180",
        "hflip+rot270",
    ]
    image = torch.arange(2 * 4 * 4).view(1, 2, 4, 4)
    flips = dict(tta_views("flips"))
    assert torch.equal(flips["hflip"](image)[..., 0], image[..., -1])  # left-right
    assert torch.equal(flips["vflip"](image)[..., 0, :], image[..., -1, :])  # top-bottom


def test_d4_is_the_eight_symmetries_of_the_square():
    image = torch.arange(5 * 5).view(1, 1, 5, 5)  # no symmetry of its own
    views = [view(image) for _, view in tta_views("d4")]
    as_tuples = {tuple(v.flatten().tolist()) for v in views}
    assert len(as_tuples) == 8
    expected = {
        tuple(t.flatten().tolist()) for t in (
            image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2),
            image.transpose(-1, -2), image.transpose(-1, -2).flip(-1),
            image.transpose(-1, -2).flip(-2), image.flip(-1).flip(-2).transpose(-1, -2),
        )
    }
    assert as_tuples == expected
    for _, first in tta_views("d4"):  # closed under composition: a group
        for _, second in tta_views("d4"):
            assert tuple(second(first(image)).flatten().tolist()) in expected


def test_unknown_modes_and_d4_on_oblong_images_are_one_line_errors():
    with pytest.raises(SynergicError, match=r"^unknown test-time augmentation 'd8': use one of none, flips, d4$"):
        tta_views("d8")
    model = tiny_model()
    oblong = torch.zeros(2, 3, 32, 48, dtype=torch.uint8)
    with pytest.raises(SynergicError, match="needs square images; these are 32x48: use --tta flips"):
        predict(model, oblong, mean=MEAN, std=STD, tta="d4")
    assert len(predict(model, oblong, mean=MEAN, std=STD, tta="flips")) == 2


# -- what is averaged -----------------------------------------------------------------------------


def test_flips_of_a_flip_invariant_model_equal_no_tta():
    model, images, labels = flip_invariant_model(), random_images(), torch.tensor([0, 1, 2, 0, 1, 2])
    plain = evaluate(model, images, labels, mean=MEAN, std=STD, tta="none")
    flipped = evaluate(model, images, labels, mean=MEAN, std=STD, tta="flips")
    torch.testing.assert_close(flipped.probabilities, plain.probabilities, atol=1e-6, rtol=0)
    for a, b in zip(flipped.component_probabilities, plain.component_probabilities):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # The same comparison tells a model that is not flip-invariant apart.
    ordinary = tiny_model()
    plain = evaluate(ordinary, images, labels, mean=MEAN, std=STD, tta="none")
    flipped = evaluate(ordinary, images, labels, mean=MEAN, std=STD, tta="flips")
    assert (flipped.probabilities - plain.probabilities).abs().max() > 1e-4


def test_d4_averages_each_components_softmax_over_the_8_views_before_aggregation():
    model, images = tiny_model(), random_images()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    result = evaluate(model, images, labels, mean=MEAN, std=STD, tta="d4", batch_size=4)
    # By hand: the 8 views, each component's softmax averaged over them, then eq. 6.
    x = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    views += [torch.rot90(torch.flip(x, dims=[3]), k, dims=(2, 3)) for k in range(4)]
    with torch.no_grad():
        by_hand = [
            torch.stack([component(v).logits.softmax(-1) for v in views]).mean(0)
            for component in model.components
        ]
    for computed, expected in zip(result.component_probabilities, by_hand):
        torch.testing.assert_close(computed, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.probabilities, torch.stack(by_hand).mean(0), atol=1e-6, rtol=0)


def test_view_averaged_logits_are_log_probabilities_of_the_mean():
    logits_per_view = iter([torch.tensor([[0.0, 10.0]]), torch.tensor([[-30.0, 30.0]]),
                            torch.tensor([[5.0, -5.0]])])
    averaged = view_averaged_logits(lambda x: next(logits_per_view), torch.zeros(1, 3, 2, 2), "flips")
    expected = torch.stack([torch.tensor([0.0, 10.0]).softmax(-1), torch.tensor([-30.0, 30.0]).softmax(-1),
                            torch.tensor([5.0, -5.0]).softmax(-1)]).mean(0)
    torch.testing.assert_close(averaged.softmax(-1)[0], expected)
    assert torch.isfinite(averaged).all()


# -- a run, eval and predict ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def flips_run(tmp_path_factory, one_torch_thread) -> Path:
    folder = tmp_path_factory.mktemp("tta")
    recipe = write_recipe(folder / "tiny.yaml", **{"train.tta": "flips"})
    code, out, err = invoke_apart(["run", recipe, "--output", folder / "run", "--quiet"])
    assert code == 0, err
    return folder / "run"


def read_predictions(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return {Path(row[0]).stem: [float(v) for v in row[1:3]] for row in rows}


def test_a_run_records_its_tta_and_eval_reproduces_it(flips_run):
    from synergic.recipe import load_recipe

    metrics = json.loads((flips_run / "metrics.json").read_text())
    assert metrics["tta"] == "flips"
    assert load_recipe(flips_run / "recipe.yaml").train.tta == "flips"
    code, out, err = invoke_apart(["eval", flips_run, "--json"])
    assert code == 0, err
    again = json.loads(out)
    assert again["tta"] == "flips" and again["weights"] == "trained"
    assert again["aggregate"] == pytest.approx(metrics["test"], abs=1e-9)
    code, out, err = invoke_apart(["eval", flips_run, "--tta", "none", "--json"])
    assert code == 0, err
    assert json.loads(out)["tta"] == "none"
    assert json.loads((flips_run / "metrics.json").read_text()) == metrics  # never rewritten


def test_eval_quiet_names_the_tta_it_used(flips_run):
    metrics = json.loads((flips_run / "metrics.json").read_text())
    values = " ".join(f"{name}={value:.4f}" for name, value in metrics["test"].items())
    code, out, err = invoke_apart(["eval", flips_run, "--quiet"])  # the run's own train.tta
    assert code == 0, err
    assert out == f"{values} tta=flips\n"
    code, out, err = invoke_apart(["eval", flips_run, "--tta", "none", "--quiet"])
    assert code == 0, err
    assert "tta=" not in out and out.startswith("ap=")
    code, out, err = invoke_apart(["eval", flips_run, "--tta", "d4", "--quiet"])
    assert code == 0, err
    assert out.rstrip("\n").endswith(" tta=d4")


def test_predict_with_the_runs_tta_gives_its_predictions(flips_run, tmp_path):
    from PIL import Image

    from synergic.data.datasets.synthetic import synthetic_lesions

    test_set = synthetic_lesions(root=None, split="test", num_test=16, image_size=32)
    for index in range(4):
        image, _ = test_set[index]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / f"{test_set.ids[index]}.png")
    from_run = read_predictions(flips_run / "predictions.csv")
    code, out, err = invoke_apart(["predict", flips_run, tmp_path, "--json"])
    assert code == 0, err
    answer = json.loads(out)
    assert answer["tta"] == "flips"
    for record in answer["predictions"]:
        assert list(record["probabilities"].values()) == pytest.approx(
            from_run[Path(record["image"]).stem], abs=1e-5
        )
    code, out, err = invoke_apart(["predict", flips_run, tmp_path, "--tta", "none", "--output",
                             tmp_path / "plain.csv"])
    assert code == 0, err
    plain = read_predictions(tmp_path / "plain.csv")
    assert max(abs(plain[k][1] - from_run[k][1]) for k in plain) > 1e-6


def test_train_tta_is_part_of_the_run_but_not_of_older_recipes(tmp_path):
    from synergic.recipe import load_recipe, recipe_to_yaml
    from synergic.rundir import identity_hash

    plain = load_recipe(write_recipe(tmp_path / "plain.yaml"))
    flips = load_recipe(write_recipe(tmp_path / "flips.yaml", **{"train.tta": "flips"}))
    assert "tta" not in recipe_to_yaml(plain)  # recipes and identities from before TTA stay
    assert identity_hash(plain) != identity_hash(flips)


def test_eval_refuses_set_train_tta_and_names_the_option(flips_run):
    code, out, err = invoke_apart(["eval", flips_run, "--set", "train.tta=none"])
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "error: --set train.tta: the run's test-time augmentation is part of its results; "
        "evaluate with another one with --tta none|flips|d4 instead"
    )

"""The recipe format: defaults, YAML, errors, overrides, built-ins, writing, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from synergic import registry
from synergic.errors import SynergicError, UnknownNameError
from synergic.recipe import (
    NOT_RUN_DEFINING_KEYS,
    RUN_DEFINING_KEYS,
    Recipe,
    builtin_recipe_dir,
    builtin_recipe_names,
    check_registry_names,
    load_recipe,
    recipe_differences,
    recipe_from_dict,
    recipe_hash,
    recipe_to_yaml,
    save_recipe,
)

MINIMAL = "name: tiny\ndata:\n  dataset: synthetic_lesions\n"
ISIC_RECIPES = ["isic2016_resnet50", "isic2016_ensemble2", "isic2016_sdl2", "isic2016_sdl3"]


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(source, overrides=()) -> str:
    with pytest.raises(SynergicError) as caught:
        load_recipe(source, overrides)
    message = str(caught.value)
    assert "\n" not in message, "user errors are one line"
    return message


# --------------------------------------------------------------------------------- the schema


def test_a_minimal_recipe_gets_the_papers_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.name == "tiny" and recipe.seed == 0
    assert (recipe.data.image_size, recipe.data.resize) == (224, "bicubic")
    assert recipe.data.validation_fraction == 0.0
    assert (recipe.data.augment.rotation, recipe.data.augment.hflip, recipe.data.augment.vflip) == (
        180.0,
        True,
        True,
    )
    assert recipe.model.components == 2
    assert (recipe.model.backbone.name, recipe.model.backbone.pretrained) == ("resnet50.tv_in1k", True)
    assert (recipe.model.head.hidden, recipe.model.head.init_range) == (1024, 0.05)
    assert recipe.model.head.activation == "none"
    assert recipe.model.synergic_head.name == "mlp"
    assert recipe.model.aggregator == "sum_softmax"
    train = recipe.train
    assert (train.iterations, train.batch_size, train.synergic_weight) == (100_000, 32, 3.0)
    assert train.sampler.name == "balanced"
    assert (train.optimizer.name, train.optimizer.lr, train.optimizer.momentum) == (
        "sgd",
        1e-4,
        0.0,
    )
    assert (train.lr_schedule.name, train.lr_schedule.gamma) == ("inverse_time", 1e-4)
    assert train.device == "auto"


def test_every_section_forbids_unknown_keys_and_describes_every_field():
    # The generated key reference is built from the descriptions.
    def walk(model: type[BaseModel]) -> int:
        assert model.model_config.get("extra") == "forbid", model.__name__
        count = 0
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            count += 1
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                count += walk(field.annotation)
        return count

    assert walk(Recipe) > 50


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("augment: false", (0.0, False, False)),
        ("augment: true", (180.0, True, True)),
        ("augment: {rotation: 90}", (90.0, True, True)),
    ],
)
def test_augment_accepts_true_and_false(tmp_path, text, expected):
    recipe = load_recipe(write(tmp_path, MINIMAL + "  " + text + "\n"))
    augment = recipe.data.augment
    assert (augment.rotation, augment.hflip, augment.vflip) == expected


def test_named_components_accept_a_plain_string(tmp_path):
    text = MINIMAL + (
        "model:\n  backbone: resnet18\n  synergic_head: deep\n"
        "train:\n  sampler: random\n  lr_schedule: cosine\n"
    )
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.model.backbone.name == "resnet18" and recipe.model.backbone.pretrained is True
    assert (recipe.model.synergic_head.name, recipe.model.synergic_head.options) == ("deep", {})
    assert (recipe.train.sampler.name, recipe.train.sampler.options) == ("random", {})
    assert (recipe.train.lr_schedule.name, recipe.train.lr_schedule.gamma) == ("cosine", 1e-4)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_devices(tmp_path, device):
    assert load_recipe(write(tmp_path, MINIMAL), [f"train.device={device}"]).train.device == device


def test_floats_written_like_1e_minus_4_are_floats_in_files(tmp_path):
    text = MINIMAL + "  options: {eps: 1e-8, big: 3E5, quoted: '1e-4', version: 1.2.3}\n"
    text += "train:\n  optimizer:\n    lr: 1e-3\n"
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.train.optimizer.lr == pytest.approx(0.001)
    # In options nothing coerces types, so this shows how the YAML itself was read.
    assert recipe.data.options == {
        "eps": 1e-8,
        "big": 300000.0,
        "quoted": "1e-4",
        "version": "1.2.3",
    }


# ------------------------------------------------------------------------------------- errors


def test_yaml_syntax_error_gives_file_line_and_column(tmp_path):
    path = write(tmp_path, "name: tiny\ndata:\n\tdataset: a\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3:1: YAML syntax error: ")
    assert "'\\t'" in message


def test_yaml_syntax_error_in_a_flow_sequence(tmp_path):
    path = write(tmp_path, "name: t\ndata:\n  dataset: [a, b\nmodel: {}\n")
    assert error_of(path).startswith(f"{path}:4:6: YAML syntax error: expected ',' or ']'")


def test_a_duplicated_key_is_an_error(tmp_path):
    path = write(tmp_path, MINIMAL + "train: {}\ntrain: {batch_size: 4}\n")
    assert error_of(path) == f"{path}:5:1: duplicate key 'train'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the recipe is empty"),
        ("# only a comment\n", "the recipe is empty"),
        (
            "- name: x\n",
            "a recipe must be a mapping of keys (name, seed, data, model, train, loggers), not a list",
        ),
        ("just text\n", "a recipe must be a mapping"),
    ],
)
def test_a_recipe_must_be_a_mapping(tmp_path, text, expected):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: ") and expected in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "train:\n  batchsize: 4\n",
            "unknown key 'train.batchsize' (did you mean 'train.batch_size'?)",
        ),
        ("trian:\n  batch_size: 4\n", "unknown key 'trian' (did you mean 'train'?)"),
        (
            "model:\n  head:\n    hiden: 4\n",
            "unknown key 'model.head.hiden' (did you mean 'model.head.hidden'?)",
        ),
        (
            "train:\n  optimizer: {learning_rate: 0.1}\n",
            "unknown key 'train.optimizer.learning_rate' (valid keys of train.optimizer: name, lr, "
            "momentum, weight_decay, nesterov)",
        ),
        (
            "  augment: {rotate: 10}\n",
            "unknown key 'data.augment.rotate' (did you mean 'data.augment.rotation'?)",
        ),
        (
            "zzz: 1\n",
            "unknown key 'zzz' (valid keys at the top level: name, seed, data, model, train, loggers)",
        ),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path, extra, expected):
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(UnknownNameError) as caught:
        load_recipe(path)
    assert str(caught.value) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("train.batch_size", "0", "0 is not allowed: must be >= 1"),
        ("train.batch_size", "abc", "'abc' is not allowed: must be a valid integer"),
        ("train.iterations", "2.5", "2.5 is not allowed: must be a valid integer"),
        ("train.optimizer.lr", "-1", "-1 is not allowed: must be > 0"),
        ("train.optimizer.lr", ".nan", "nan is not allowed: must be a finite number"),
        ("train.optimizer.momentum", "1", "1 is not allowed: must be < 1"),
        ("train.optimizer.name", "adam", "'adam' is not allowed: must be 'sgd'"),
        ("train.synergic_weight", "-0.5", "-0.5 is not allowed: must be >= 0"),
        ("train.synergic_gradient", "both", "'both' is not allowed: must be 'paper' or 'joint'"),
        ("train.lr_schedule.name", "step", "'step' is not allowed: must be 'inverse_time'"),
        ("train.device", "gpu", "'gpu' is not allowed: must be auto, cpu, cuda or cuda:N"),
        ("train.precision", "fp64", "'fp64' is not allowed: must be 'fp32', 'bf16' or 'fp16'"),
        ("train.grad_clip", "0", "0 is not allowed: must be > 0"),
        ("train.log_every", "0", "0 is not allowed: must be >= 1"),
        ("train.eval_every", "-1", "-1 is not allowed: must be >= 0"),
        ("train.num_workers", "-1", "-1 is not allowed: must be 'auto' or an integer >= 0"),
        ("model.components", "0", "0 is not allowed: must be >= 1"),
        ("model.head.hidden", "0", "0 is not allowed: must be >= 1"),
        ("model.head.init_range", "0", "0 is not allowed: must be > 0"),
        ("model.head.activation", "gelu", "'gelu' is not allowed: must be 'none' or 'relu'"),
        ("data.image_size", "8", "8 is not allowed: must be >= 16"),
        (
            "data.resize",
            "cubic",
            "'cubic' is not allowed: must be 'bicubic', 'bilinear', 'nearest'",
        ),
        ("data.validation_fraction", "0.95", "0.95 is not allowed: must be <= 0.9"),
        ("data.augment.rotation", "181", "181 is not allowed: must be <= 180"),
        (
            "data.augment",
            "5",
            "5 is not allowed: must be a mapping with keys rotation, hflip, vflip, fill, or true/false",
        ),
        (
            "train.sampler",
            "[a]",
            "[a] is not allowed: must be a mapping with keys name, options, or just a name",
        ),
        ("data.options", "3", "3 is not allowed: must be a mapping"),
        ("seed", "-1", "-1 is not allowed: must be >= 0"),
    ],
)
def test_wrong_values_name_the_key_the_value_and_what_is_allowed(tmp_path, key, value, allowed):
    # The same bad value once in the file and once as an override.
    *sections, leaf = key.split(".")
    data = yaml.safe_load(MINIMAL)
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert error_of(path).startswith(f"{path}: {key}: {allowed}")
    clean = write(tmp_path, MINIMAL, "clean.yaml")
    assert error_of(clean, [f"{key}={value}"]).startswith(f"--set {key}={value}: {key}: {allowed}")


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("name: tiny\n", "data"),
        ("name: tiny\ndata: {}\n", "data.dataset"),
        ("data: {dataset: x}\n", "name"),
    ],
)
def test_missing_required_keys(tmp_path, text, missing):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: missing required key '{missing}'"


def test_several_errors_report_the_first_and_count_the_rest(tmp_path):
    path = write(tmp_path, MINIMAL + "train:\n  batch_size: 0\n  iterations: 0\n  log_every: 0\n")
    assert error_of(path) == (
        f"{path}: train.iterations: 0 is not allowed: must be >= 1 (and 2 more)"
    )


def test_a_missing_recipe_lists_the_built_in_ones(tmp_path):
    message = error_of(tmp_path / "nope.yaml")
    assert message.startswith(f"recipe '{tmp_path / 'nope.yaml'}' not found: give a path")
    assert message.endswith("built-in recipes: " + ", ".join(builtin_recipe_names()))
    assert "(did you mean 'isic2016_sdl2'?)" in error_of("isic2016_sld2")


def test_recipe_from_dict_names_its_source():
    with pytest.raises(SynergicError, match=r"^notebook: train.batch_size: 0 is not allowed"):
        recipe_from_dict(
            {"name": "n", "data": {"dataset": "x"}, "train": {"batch_size": 0}}, source="notebook"
        )
    data = {"name": "n", "data": {"dataset": "x"}}
    assert recipe_from_dict(data, ["data.image_size=32"]).data.image_size == 32
    assert data == {"name": "n", "data": {"dataset": "x"}}, "the caller's mapping is not changed"


# ---------------------------------------------------------------------------------- overrides


def test_overrides_of_every_kind(tmp_path):
    path = write(tmp_path, MINIMAL)  # no model or train section: overrides create them
    recipe = load_recipe(
        path,
        [
            "train.optimizer.lr=1e-4",
            "train.iterations=3e5",
            "train.batch_size=8",
            "data.augment.hflip=false",
            "data.root=null",
            "data.cache_dir=",
            "data.options.classes=[benign, malignant]",
            "data.options.nested.depth=3",
            "model.backbone={name: resnet18, pretrained: false}",
            "name=second",
            "name=third",
        ],
    )
    assert recipe.train.optimizer.lr == 0.0001 and isinstance(recipe.train.optimizer.lr, float)
    assert recipe.train.iterations == 300_000 and isinstance(recipe.train.iterations, int)
    assert recipe.train.batch_size == 8
    assert recipe.data.augment.hflip is False and recipe.data.augment.vflip is True
    assert recipe.data.root is None and recipe.data.cache_dir is None
    assert recipe.data.options == {"classes": ["benign", "malignant"], "nested": {"depth": 3}}
    assert (recipe.model.backbone.name, recipe.model.backbone.pretrained) == ("resnet18", False)
    assert recipe.name == "third", "a later override wins"


def test_a_single_override_string_is_one_override(tmp_path):
    assert load_recipe(write(tmp_path, MINIMAL), "train.batch_size=4").train.batch_size == 4


def test_the_float_override_stays_a_float_where_nothing_coerces(tmp_path):
    recipe = load_recipe(
        write(tmp_path, MINIMAL), ["data.options.eps=1e-4", "data.options.tag='1e-4'"]
    )
    assert recipe.data.options == {"eps": 0.0001, "tag": "1e-4"}


def test_an_override_can_supply_a_required_key(tmp_path):
    path = write(tmp_path, "name: tiny\n")
    assert load_recipe(path, ["data.dataset=folder"]).data.dataset == "folder"


def test_overrides_reach_inside_shorthands(tmp_path):
    text = MINIMAL + "  augment: false\ntrain:\n  sampler: random\n"
    recipe = load_recipe(
        write(tmp_path, text), ["data.augment.rotation=90", "train.sampler.options.ratio=0.5"]
    )
    assert (recipe.data.augment.rotation, recipe.data.augment.hflip) == (90.0, False)
    assert (recipe.train.sampler.name, recipe.train.sampler.options) == ("random", {"ratio": 0.5})


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("x", "--set 'x': expected KEY=VALUE"),
        ("=3", "--set '=3': '' is not a dotted key path"),
        ("train..lr=3", "--set 'train..lr=3': 'train..lr' is not a dotted key path"),
        ("name=[", "--set 'name=[': the value is not valid YAML"),
        (
            "train.batch_size.x=1",
            "--set train.batch_size.x=1: cannot set 'train.batch_size.x': "
            "'train.batch_size' is 32, not a mapping",
        ),
    ],
)
def test_malformed_overrides(tmp_path, override, expected):
    path = write(tmp_path, MINIMAL + "train:\n  batch_size: 32\n")
    assert error_of(path, [override]).startswith(expected)


def test_an_override_below_a_plain_value_names_the_override(tmp_path):
    message = error_of(write(tmp_path, MINIMAL), ["train.batch_size.x=1"])
    assert message == (
        "--set train.batch_size.x=1: train.batch_size: {x: 1} is not allowed: "
        "must be a valid integer"
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batchsize=3", "unknown key 'train.batchsize' (did you mean 'train.batch_size'?)"),
        ("trian.batch_size=3", "unknown key 'trian' (did you mean 'train'?)"),
        (
            "data.augment.hflp=true",
            "unknown key 'data.augment.hflp' (did you mean 'data.augment.hflip'?)",
        ),
    ],
)
def test_an_override_of_an_unknown_key_names_the_override(tmp_path, override, expected):
    with pytest.raises(UnknownNameError) as caught:
        load_recipe(write(tmp_path, MINIMAL), [override])
    assert str(caught.value) == f"--set {override}: {expected}"


def test_an_error_in_the_file_is_not_blamed_on_an_unrelated_override(tmp_path):
    path = write(tmp_path, MINIMAL + "train:\n  batch_size: 0\n")
    assert error_of(path, ["train.optimizer.lr=0.1"]).startswith(f"{path}: train.batch_size: 0")


# ---------------------------------------------------------------------------- built-in recipes


def test_the_built_in_recipes_are_there():
    assert builtin_recipe_dir().is_dir()
    assert set(builtin_recipe_names()) >= {"demo", *ISIC_RECIPES}


@pytest.mark.parametrize("name", builtin_recipe_names())
def test_each_built_in_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert load_recipe(f"{name}.yaml") == recipe
    assert load_recipe(builtin_recipe_dir() / f"{name}.yaml") == recipe


@pytest.mark.parametrize("name", builtin_recipe_names())
def test_each_built_in_recipe_writes_every_key_out(name):
    written = yaml.load((builtin_recipe_dir() / f"{name}.yaml").read_text(), Loader=yaml.SafeLoader)
    resolved = yaml.safe_load(recipe_to_yaml(load_recipe(name)))

    def keys(mapping, prefix=""):
        for key, value in mapping.items():
            if isinstance(value, dict) and not key.endswith("options"):
                yield from keys(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    assert list(keys(written)) == list(keys(resolved)), "every key, in the schema's order"


@pytest.mark.parametrize("name", builtin_recipe_names())
def test_each_built_in_recipe_names_registered_components(name):
    check_registry_names(load_recipe(name), source=f"{name}.yaml")


@pytest.mark.parametrize(
    ("name", "components", "synergic_weight"),
    [
        ("isic2016_resnet50", 1, 0.0),
        ("isic2016_ensemble2", 2, 0.0),
        ("isic2016_sdl2", 2, 3.0),
        ("isic2016_sdl3", 3, 3.0),
    ],
)
def test_the_isic2016_recipes_are_the_papers_table_1_rows(name, components, synergic_weight):
    recipe = load_recipe(name)
    assert (recipe.model.components, recipe.train.synergic_weight) == (components, synergic_weight)
    # Apart from those two numbers (and the name) they are the paper's one setting, Sect. 3, with
    # the torchvision ImageNet weights pinned (timm's plain `resnet50` is its a1_in1k recipe):
    paper = Recipe(
        name=name,
        data={"dataset": "isic2016"},
        model={"components": components, "backbone": {"name": "resnet50.tv_in1k"}},
        train={"synergic_weight": synergic_weight, "eval_every": 5000},
    )
    assert recipe_differences(paper, recipe) == []
    assert (
        recipe.data.augment.rotation > 0 and recipe.data.augment.hflip and recipe.data.augment.vflip
    )
    without_da = load_recipe(name, ["data.augment=false"]).data.augment
    assert (without_da.rotation, without_da.hflip, without_da.vflip) == (0.0, False, False)


def test_the_demo_recipe_needs_no_network_and_no_gpu():
    recipe = load_recipe("demo")
    assert recipe.data.dataset == "synthetic_lesions" and recipe.data.download is False
    # Generated at the size the model sees, so no resampling blurs the lesions' borders.
    assert recipe.data.options["image_size"] == recipe.data.image_size == 32
    assert recipe.model.backbone.pretrained is False and recipe.model.backbone.weights is None
    assert recipe.train.device == "cpu"
    assert recipe.data.validation_fraction > 0
    assert recipe.model.components == 2 and recipe.train.synergic_weight == 3.0


# ------------------------------------------------------------------------------------ writing


def test_save_and_load_give_an_equal_recipe(tmp_path):
    recipe = load_recipe(
        "isic2016_sdl2",
        [
            "data.options={eps: 1e-8, tag: '1e-4', when: 2016-01-01, list: [1, a, null]}",
            "data.augment=false",
            "train.optimizer.lr=3e-5",
            "train.grad_clip=1.5",
            "train.device=cuda:1",
            "name='2016'",
        ],
    )
    path = save_recipe(recipe, tmp_path / "run" / "recipe.yaml")
    again = load_recipe(path)
    assert again == recipe
    assert again.data.options["tag"] == "1e-4" and again.data.options["when"] == "2016-01-01"
    assert recipe_to_yaml(again) == path.read_text()


def test_the_resolved_yaml_writes_every_default_in_schema_order(tmp_path):
    text = recipe_to_yaml(load_recipe(write(tmp_path, MINIMAL)))
    top_level = [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")]
    assert top_level == ["name", "seed", "data", "model", "train"]
    assert "  lr: 0.0001\n" in text and "  grad_clip: null\n" in text
    assert "  augment:\n    rotation: 180.0\n    hflip: true\n    vflip: true\n" in text


# ------------------------------------------------------------------------ registry names


@pytest.fixture()
def fresh_registries(monkeypatch):
    """Registries that hold only what the test registers (the real ones load every plugin)."""
    fresh = {
        "datasets": registry.Registry("dataset"),
        "backbones": registry.Registry("backbone"),
        "synergic_heads": registry.Registry("synergic head"),
        "aggregators": registry.Registry("aggregator"),
        "pair_samplers": registry.Registry("pair sampler"),
    }
    for attribute, fresh_registry in fresh.items():
        monkeypatch.setattr(registry, attribute, fresh_registry)

    def component(*args, **kwargs):
        """A stand-in."""

    fresh["datasets"].register("synthetic_lesions", component, origin="test")
    fresh["synergic_heads"].register("mlp", component, origin="test")
    fresh["aggregators"].register("sum_softmax", component, origin="test")
    fresh["aggregators"].register("vote", component, origin="test")
    fresh["pair_samplers"].register("balanced", component, origin="test")
    fresh["backbones"].register("my_backbone", component, origin="test")
    return fresh


def test_registered_and_timm_names_pass(tmp_path, fresh_registries):
    path = write(tmp_path, MINIMAL)
    check_registry_names(load_recipe(path, ["model.backbone.name=resnet10t"]))
    check_registry_names(load_recipe(path, ["model.backbone.name=my_backbone"]))


def test_an_unknown_aggregator_names_the_key_the_closest_and_the_valid_names(
    tmp_path, fresh_registries
):
    recipe = load_recipe(
        write(tmp_path, MINIMAL), ["model.aggregator=sum_sofmax", "model.backbone=resnet10t"]
    )
    with pytest.raises(UnknownNameError) as caught:
        check_registry_names(recipe, source="recipe.yaml")
    assert str(caught.value) == (
        "recipe.yaml: model.aggregator: unknown aggregator 'sum_sofmax': did you mean "
        "'sum_softmax'? valid names: sum_softmax, vote"
    )


def test_an_unknown_backbone_suggests_a_timm_name(tmp_path, fresh_registries):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["model.backbone.name=resnet5O"])
    with pytest.raises(
        UnknownNameError,
        match=r"^recipe: model.backbone.name: unknown backbone "
        r"'resnet5O': did you mean 'resnet50'\? give a registered backbone "
        r"\(my_backbone\) or any timm model name",
    ):
        check_registry_names(recipe)


def test_several_unknown_names_are_counted(tmp_path, fresh_registries):
    recipe = load_recipe(
        write(tmp_path, MINIMAL),
        [
            "data.dataset=isic",
            "model.backbone=resnet10t",
            "model.synergic_head=mpl",
            "train.sampler=x",
        ],
    )
    with pytest.raises(
        UnknownNameError, match=r"^r.yaml: data.dataset: unknown dataset 'isic'.* \(and 2 more\)$"
    ):
        check_registry_names(recipe, source="r.yaml")


def test_a_name_registered_in_the_real_registry_passes(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["model.aggregator=test_throwaway_aggregator"])
    with pytest.raises(UnknownNameError, match="model.aggregator: unknown aggregator"):
        check_registry_names(recipe)
    registry.aggregators.register("test_throwaway_aggregator", lambda logits: logits, origin="test")
    try:
        check_registry_names(recipe)
    finally:
        registry.aggregators.unregister("test_throwaway_aggregator")


# --------------------------------------------------------------------- hashes and differences


def test_the_hash_covers_what_defines_the_run(tmp_path):
    base = load_recipe("isic2016_sdl2")
    digest = recipe_hash(base)
    assert len(digest) == 64 and digest == recipe_hash(load_recipe("isic2016_sdl2"))
    for unchanged in [
        "train.iterations=200000",
        "train.num_workers=8",
        "data.cache_dir=/tmp/c",
        "name=other",
    ]:
        assert recipe_hash(load_recipe("isic2016_sdl2", [unchanged])) == digest, unchanged
    for changed in [
        "seed=1",
        "model.components=3",
        "data.image_size=256",
        "data.options.fold=2",
        "data.augment=false",
        "model.backbone.pretrained=false",
    ]:
        assert recipe_hash(load_recipe("isic2016_sdl2", [changed])) != digest, changed
    lr_changed = load_recipe("isic2016_sdl2", ["train.optimizer.lr=0.1"])
    assert recipe_hash(lr_changed) == digest
    assert recipe_hash(lr_changed, keys=("train.optimizer",)) != recipe_hash(
        base, keys=("train.optimizer",)
    )


def test_differences_list_the_dotted_keys(tmp_path):
    a = load_recipe("isic2016_sdl2")
    b = load_recipe(
        "isic2016_sdl2", ["train.iterations=5", "seed=3", "data.options.fold=2", "data.cache=false"]
    )
    assert recipe_differences(a, a) == []
    assert recipe_differences(a, b) == [
        "seed",
        "data.cache",
        "train.iterations",
        "data.options.fold",
    ]
    assert recipe_differences(a, b, keys=RUN_DEFINING_KEYS, ignore=NOT_RUN_DEFINING_KEYS) == [
        "seed",
        "data.options.fold",
    ]
    assert recipe_differences(b, a, keys=["train"]) == ["train.iterations"]
    with pytest.raises(ValueError, match="'trian' is not a recipe key"):
        recipe_differences(a, b, keys=["trian"])

"""The recipe: every setting of a synergic run, as typed pydantic models.

A recipe is a YAML file (see :mod:`synergic.recipe.loading`) validated by :class:`Recipe`. Defaults
are the paper's (Zhang et al., MICCAI 2018) where the paper gives a value; the docstrings and
``description=`` texts feed the generated key reference.

Every section forbids unknown keys, so a misspelt key is an error rather than a silently ignored
setting. Registry names (data sets, backbones, synergic heads, aggregators, pair samplers) are
plain strings here because plugins can add names; :func:`synergic.recipe.check_registry_names`
checks them.

A few sections accept a shorthand: a plain string for a named component (``sampler: random`` means
``sampler: {name: random}``) and a boolean for ``data.augment``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator,
)

__all__ = [
    "Recipe",
    "DataConfig",
    "AugmentConfig",
    "CrossValidationConfig",
    "ModelConfig",
    "BackboneConfig",
    "HeadConfig",
    "SynergicHeadConfig",
    "TrainConfig",
    "SamplerConfig",
    "OptimizerConfig",
    "LRScheduleConfig",
    "LoggerConfig",
    "EMAConfig",
]


class _Section(BaseModel):
    """A recipe section: unknown keys are errors, numbers must be finite."""

    # allow_inf_nan: a learning rate of .nan is never meant. coerce_numbers_to_str: `name: 2016`
    # in YAML is an int, but the user meant the name "2016".
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)

    @classmethod
    def expand_shorthand(cls, value: Any) -> Any:
        """The mapping a shorthand value stands for; other values are returned unchanged."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        return cls.expand_shorthand(value)


def _names_as_list(value: Any) -> Any:
    """A list-valued key given as one text: ``tensorboard`` means ``[tensorboard]`` and
    ``tensorboard,mlflow`` means ``[tensorboard, mlflow]`` (so ``--set loggers=tensorboard``
    works as users type it); other values are returned unchanged."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


class _NamedComponent(_Section):
    """A registry name plus keyword options; a plain string is shorthand for ``{name: ...}``."""

    @classmethod
    def expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


# --------------------------------------------------------------------------------------------- data


class AugmentConfig(_Section):
    """Training-time data augmentation (Sect. 3.4: random rotation, horizontal and vertical flips).

    ``augment: false`` turns all of it off (the "without DA" rows of Table 1); ``augment: true``
    means the defaults.
    """

    model_config = ConfigDict(extra="forbid")

    rotation: float = Field(
        180.0,
        ge=0,
        le=180,
        description="Largest random rotation in degrees, drawn uniformly from [-rotation, "
        "rotation]; 0 turns rotation off. The paper does not give a range; 180 allows any angle, "
        "which suits dermoscopy images (no natural up).",
    )
    hflip: bool = Field(True, description="Random horizontal flip with probability 0.5.")
    vflip: bool = Field(True, description="Random vertical flip with probability 0.5.")
    fill: Literal["reflect", "border", "zeros"] = Field(
        "reflect",
        description="What the corners a rotation brings in from outside the image show: reflect "
        "(the image mirrored about its edges), border (edge pixels repeated) or zeros (black). "
        "Not in the paper; reflect keeps skin where test images have skin.",
    )

    @classmethod
    def expand_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return {"rotation": 0.0, "hflip": False, "vflip": False}
        return value


class CrossValidationConfig(_Section):
    """One fold of a stratified k-fold cross-validation over the data set's training split
    (``synergic cv`` writes it into each fold's recipe): the held-out fold is the run's test set,
    the other folds its training set (``data.validation_fraction`` carves inside them). Left out of
    the written recipe while ``folds`` is 0, so recipes and runs without cross-validation do not
    change. See :mod:`synergic.cv`."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(
        0, ge=0, description="Number of folds k (at least 2); 0 means no cross-validation: the "
        "data set's own test split is the test set.",
    )
    fold: int = Field(0, ge=0, description="The held-out fold, 0 to folds - 1.")
    repeat: int = Field(
        0, ge=0, description="Which repetition of the k-fold split (each a new shuffle).",
    )
    seed: int = Field(
        0, ge=0, description="Seed of the fold assignment (synergic cv: the recipe's seed).",
    )
    group_by: str | None = Field(
        None, description="The kind of group (a key of the data set's `groups`, e.g. lesion or "
        "patient) whose images always stay in one fold; null: no grouping.",
    )

    @model_validator(mode="after")
    def _check_fold(self) -> CrossValidationConfig:
        if self.folds == 1:
            raise ValueError("folds must be 0 (no cross-validation) or at least 2")
        if self.folds and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} does not exist: folds are 0 to {self.folds - 1}")
        if not self.folds and (self.fold, self.repeat, self.seed, self.group_by) != (
            0, 0, 0, None
        ):
            raise ValueError("folds is 0 (no cross-validation), so fold, repeat, seed and "
                             "group_by must stay unset")
        return self


class DataConfig(_Section):
    """Where the images come from and how they are prepared (Sect. 3.1)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        description="Data-set name in the data-set registry, e.g. isic2016, folder, csv, "
        "synthetic_lesions (`synergic list datasets`)."
    )
    root: str | None = Field(
        None, description="Folder that holds the data set; null means the data set's default."
    )
    download: bool = Field(
        False, description="Download the data set into `root` on first use when it is missing."
    )
    image_size: int = Field(
        224, ge=16, description="Side of the square input images in pixels (Sect. 3.1: 224)."
    )
    resize: Literal["bicubic", "bilinear", "nearest", "lanczos"] = Field(
        "bicubic", description="Interpolation used to resize images (Sect. 3.1: bicubic)."
    )
    validation_fraction: float = Field(
        0.0,
        ge=0.0,
        le=0.9,
        description="Fraction of the training set held out as a stratified validation split when "
        "the data set has no validation split of its own; 0 trains on all training images. "
        "Every class with at least 2 training images gets at least one validation image.",
    )
    allow_incomplete_validation: bool = Field(
        False,
        description="With validation_fraction > 0, a class with a single training image cannot "
        "be in the carved validation split: an error, unless this is true (then a warning).",
    )
    validation_group_by: str = Field(
        "auto",
        min_length=1,
        description="Which of the data set's groups the carved validation split keeps whole, so "
        "that no patient or lesion has images on both sides: auto = patient, else lesion, else "
        "the data set's first kind of group (no grouping when it has none); none = no grouping; "
        "or a kind the data set names. Left out of the written recipe while auto.",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="Training-time augmentation; `false` turns it off, `true` means the defaults.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the data-set factory."
    )
    cache: bool = Field(
        True,
        description="Keep decoded, resized images in an on-disk cache so that later epochs and "
        "runs skip JPEG decoding.",
    )
    cache_dir: str | None = Field(
        None, description="Folder of the decoded-image cache; null means the user's cache folder."
    )
    cross_validation: CrossValidationConfig = Field(
        default_factory=CrossValidationConfig,
        description="The fold of a cross-validation this run is (written by `synergic cv`); "
        "absent from written recipes while its `folds` is 0.",
    )
    primary_metric: str | None = Field(
        None,
        description="The metric that selects the best checkpoint and ranks sweep cells and "
        "reports, overriding the data set's own (isic2016 ap, isic2017 task_auc, isic2018 and "
        "isic2019 balanced_accuracy, isic2020 auc; ap for folder, csv and data sets that name "
        "none): a key of metrics.json's test metrics for the data set's classes, e.g. auc, "
        "balanced_accuracy, task_auc, auc_<class>. Left out of the written recipe while null.",
    )
    task_classes: list[str] | None = Field(
        None,
        description="The classes scored one-vs-rest, overriding the data set's own (isic2017: "
        "melanoma, seborrheic_keratosis): each adds the metric auc_<class>, and task_auc is "
        "their mean; one name, or names separated by commas, is read as a list. Left out of "
        "the written recipe while null.",
    )

    @field_validator("primary_metric")
    @classmethod
    def _check_primary_metric(cls, value: str | None) -> str | None:
        from synergic.errors import did_you_mean
        from synergic.metrics import (
            CLASS_AUC_PREFIX, METRIC_NAMES_BINARY, METRIC_NAMES_MULTICLASS, TASK_AUC,
            is_metric_name,
        )

        if value is not None and not is_metric_name(value):
            names = list(dict.fromkeys(METRIC_NAMES_BINARY + METRIC_NAMES_MULTICLASS))
            raise ValueError(
                f"not a metric synergic computes{did_you_mean(value, names)}: use "
                f"one of {', '.join(names)}, {TASK_AUC} or {CLASS_AUC_PREFIX}<class>"
            )
        return value

    @field_validator("task_classes", mode="before")
    @classmethod
    def _one_class_as_list(cls, value: Any) -> Any:
        return _names_as_list(value)

    @field_validator("task_classes")
    @classmethod
    def _check_task_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one class, or be null (the data set's own)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("names a class twice")
        return value

    @model_serializer(mode="wrap")
    def _leave_out_no_cross_validation(self, handler):
        dumped = handler(self)
        # Recipes, identities and run directories from before cross-validation (and grouped
        # validation splits, and the primary-metric keys) stay the same.
        if isinstance(dumped, dict) and not self.cross_validation.folds:
            dumped.pop("cross_validation", None)
        if isinstance(dumped, dict) and self.validation_group_by == "auto":
            dumped.pop("validation_group_by", None)
        if isinstance(dumped, dict):
            for key in ("primary_metric", "task_classes"):
                if getattr(self, key) is None:
                    dumped.pop(key, None)
        return dumped


# -------------------------------------------------------------------------------------------- model


class BackboneConfig(_NamedComponent):
    """The feature extractor of each DCNN component (Sect. 3.2: ImageNet-pretrained ResNet-50)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "resnet50.tv_in1k",
        description="A registered backbone or any timm model name (`synergic list backbones`), "
        "optionally with timm's pretrained tag. The default is the paper's: ResNet-50 with the "
        "classic torchvision ImageNet weights (timm's plain `resnet50` means another recipe's "
        "weights, `a1_in1k`).",
    )
    pretrained: bool = Field(
        True, description="Start from pretrained (ImageNet) weights, as the paper does."
    )
    weights: str | None = Field(
        None,
        description="Local file with the pretrained weights (no download); null lets the backbone "
        "fetch its default weights when `pretrained` is true.",
    )
    weights_key: str | None = Field(
        None,
        description="Which state dict of a `weights` checkpoint to load: a key of the checkpoint "
        "(`state_dict_ema`) or a key prefix inside its state dict (`ema`); null takes "
        "`state_dict`, else `model`, else the only one (see Checkpoints: weights from other "
        "trainers).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the backbone factory."
    )


class HeadConfig(_Section):
    """The classifier that replaces the backbone's own (Sect. 3.2: FC 1024, FC K, softmax)."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(
        1024, ge=1, description="Neurons of the hidden fully connected layer (Sect. 3.2: 1024)."
    )
    init_range: float = Field(
        0.05,
        gt=0,
        description="The head's weights start uniform in [-init_range, init_range] "
        "(Sect. 3.2: U(-0.05, 0.05)).",
    )
    activation: Literal["none", "relu"] = Field(
        "none",
        description="Activation between the two fully connected layers; the paper names none.",
    )


class SynergicHeadConfig(_NamedComponent):
    """The synergic network that tells whether a pair shares a class (Sect. 3.3)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("mlp", description="Synergic-head name in the synergic-head registry.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the synergic-head factory."
    )


class ModelConfig(_Section):
    """The SDL^n model: n DCNN components and a synergic head for each pair of them."""

    model_config = ConfigDict(extra="forbid")

    components: int = Field(
        2,
        ge=1,
        description="Number n of DCNN components (SDL^n; Sect. 5 suggests 2 or 3). 1 trains a "
        "single network with no synergic head.",
    )
    backbone: BackboneConfig = Field(
        default_factory=BackboneConfig,
        description="Backbone of every component; a plain string is shorthand for its name.",
    )
    head: HeadConfig = Field(
        default_factory=HeadConfig, description="Classifier of each component."
    )
    synergic_head: SynergicHeadConfig = Field(
        default_factory=SynergicHeadConfig,
        description="Synergic network of each pair; a plain string is shorthand for its name.",
    )
    aggregator: str = Field(
        "sum_softmax",
        description="How the components' predictions combine at test time, a name in the "
        "aggregator registry (eq. 6: sum of the softmax outputs).",
    )


# -------------------------------------------------------------------------------------------- train


class SamplerConfig(_NamedComponent):
    """How training pairs are drawn (Sect. 3.3: 45-55% intra-class pairs in each batch)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "balanced",
        description="Pair-sampler name in the pair-sampler registry; `balanced` keeps the share "
        "of same-class pairs near one half, as the paper does.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the pair sampler."
    )


class OptimizerConfig(_Section):
    """Mini-batch SGD (Sect. 3.2 and 3.4)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["sgd"] = Field("sgd", description="The optimiser; the paper uses SGD.")
    lr: float = Field(1e-4, gt=0, description="Initial learning rate eta(0) (Sect. 3.4: 0.0001).")
    momentum: float = Field(
        0.0, ge=0, lt=1, description="SGD momentum; the paper names none, so 0."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="L2 weight decay; the paper names none, so 0."
    )
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0).")


class LRScheduleConfig(_Section):
    """How the learning rate changes over iterations; a plain string is shorthand for its name."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["inverse_time", "constant", "cosine"] = Field(
        "inverse_time",
        description="inverse_time: eta(t) = eta(0) / (1 + gamma * t) (Sect. 3.4); constant; "
        "cosine: cosine decay to 0 at the last iteration.",
    )
    gamma: float = Field(1e-4, ge=0, description="Decay rate of inverse_time (Sect. 3.4: 10^-4).")
    warmup: int = Field(
        0, ge=0, description="Iterations of linear warm-up from 0 before the schedule starts."
    )

    @classmethod
    def expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


class EMAConfig(_Section):
    """An exponential moving average (EMA) of the weights, kept by timm's ``ModelEmaV3``
    (``timm.utils.model_ema``; its option names), updated after every optimiser step; off while
    ``decay`` is null. Not in the paper. It averages the buffers too (BatchNorm running
    statistics), unless ``exclude_buffers``. Left out of the written recipe while off, so recipes
    and runs without it do not change (see the documentation's page on TTA and EMA)."""

    model_config = ConfigDict(extra="forbid")

    decay: float | None = Field(
        None, gt=0, lt=1,
        description="Weight of the old average in each update, e.g. 0.9998 (an average over "
        "about 1 / (1 - decay) = 5000 steps); null: no EMA.",
    )
    min_decay: float = Field(
        0.0, ge=0, lt=1, description="Lowest decay during the warm-up (use_warmup)."
    )
    update_after_step: int = Field(
        0, ge=0,
        description="Steps during which the average only copies the weights (decay 0) before "
        "it starts averaging.",
    )
    use_warmup: bool = Field(
        False,
        description="Grow the decay from 0 towards `decay` as 1 - (1 + t / warmup_gamma) ^ "
        "-warmup_power (t: steps after update_after_step).",
    )
    warmup_gamma: float = Field(1.0, gt=0, description="gamma of the warm-up.")
    warmup_power: float = Field(2 / 3, gt=0, description="power of the warm-up.")
    device: Literal["cpu"] | None = Field(
        None,
        description="Keep the average on the CPU (saves accelerator memory; evaluating it then "
        "runs on the CPU); null: on the training device.",
    )
    exclude_buffers: bool = Field(
        False,
        description="Copy the buffers (BatchNorm running statistics) instead of averaging them.",
    )
    report: bool = Field(
        True,
        description="The run reports the averaged weights: validation (train.select and best.pt), "
        "the test metrics, predictions.csv, and eval, predict and export use them; false keeps "
        "the average in the checkpoints only and reports the trained weights.",
    )

    @classmethod
    def expand_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {"decay": 0.9998}
        if value is False or value is None:
            return {}
        return value

    @model_validator(mode="after")
    def _options_need_decay(self) -> EMAConfig:
        if self.decay is None and self.model_fields_set - {"decay"}:
            given = ", ".join(sorted(self.model_fields_set - {"decay"}))
            raise ValueError(
                f"{given} given but decay is null (EMA off): set decay, e.g. 0.9998, to turn the "
                "EMA on"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.decay is not None

    def timm_options(self) -> dict[str, Any]:
        """Keyword arguments of ``timm.utils.ModelEmaV3`` (all but ``report``)."""
        return self.model_dump(exclude={"report"})


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class TrainConfig(_Section):
    """The training loop (Sect. 3.4)."""

    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(100_000, ge=1, description="Training iterations (Sect. 3.4: 100,000).")
    batch_size: int = Field(
        32,
        ge=1,
        description="Pairs per iteration, over all processes (Sect. 3.2: mini-batch of 32).",
    )
    synergic_weight: float = Field(
        3.0,
        ge=0,
        description="lambda, the weight of the synergic error (Sect. 3.4 and Fig. 4: 3); "
        "0 trains the components independently (an ensemble).",
    )
    synergic_gradient: Literal["paper", "joint"] = Field(
        "paper",
        description="paper: each component gets its classification gradient plus lambda times "
        "the synergic gradient, each synergic head its own unscaled gradient (eq. 5); joint: "
        "minimise the sum of the cross-entropies plus lambda times the synergic errors.",
    )
    sampler: SamplerConfig = Field(
        default_factory=SamplerConfig,
        description="Pair sampler; a plain string is shorthand for its name.",
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="Optimiser settings."
    )
    lr_schedule: LRScheduleConfig = Field(
        default_factory=LRScheduleConfig,
        description="Learning-rate schedule; a plain string is shorthand for its name.",
    )
    device: str = Field(
        "auto",
        description="auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N.",
        json_schema_extra={"pattern": "^(auto|cpu|cuda(:[0-9]+)?)$"},
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Arithmetic precision; bf16 and fp16 use autocast on the GPU."
    )
    compile: bool = Field(False, description="Compile the model with torch.compile.")
    fuse_components: Literal["auto"] | bool = Field(
        "auto",
        description="Run components of one architecture as one batched computation (torch.vmap "
        "over their stacked weights): the same losses, gradients and BatchNorm statistics up to "
        "float reassociation, fewer kernel launches; auto: on when possible and on a GPU (off "
        "on the CPU); true: on when possible, else a warning says why not. Result-neutral; left "
        "out of the written recipe while auto.",
    )
    channels_last: bool = Field(
        True, description="Keep images and convolutions in channels-last memory layout."
    )
    eval_every: int = Field(
        1000,
        ge=0,
        description="Evaluate on the validation split every this many iterations; 0 only at the "
        "end.",
    )
    checkpoint_every: int = Field(
        1000,
        ge=0,
        description="Write a checkpoint every this many iterations; 0 only at the end.",
    )
    log_every: int = Field(10, ge=1, description="Log the losses every this many iterations.")
    num_workers: Literal["auto"] | int = Field(
        "auto",
        description="Worker processes that decode images (not training data loaders: training "
        "indexes the decoded tensor); 0 decodes in the main process; auto: one per CPU core "
        "this process may use (os.sched_getaffinity), in the main process below 256 images.",
    )
    sync_batchnorm: Literal["auto"] | bool = Field(
        "auto",
        description="With several processes, BatchNorm normalises over the global batch, so N "
        "processes train what one process trains: true, false, or auto (true when there are "
        "several processes and the model has BatchNorm).",
    )
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the gradient norm to this value; null does not clip."
    )
    eval_batch_size: int = Field(64, ge=1, description="Images per batch during evaluation.")
    select: Literal["auto", "best", "last"] = Field(
        "auto",
        description="The model a run reports (metrics.json, predictions.csv): best = the "
        "checkpoint with the best validation AP (best.pt), last = the final weights; auto = best "
        "when there is a validation split, else last.",
    )
    n_bootstrap: int = Field(
        1000,
        ge=0,
        description="Bootstrap resamples of the test images (within each class) for the 95 % "
        "interval of every test metric in metrics.json (test_ci); 0 computes none. Changes the "
        "reported intervals, not the model, so a run may be resumed with another value.",
    )
    keep_checkpoints: Literal["auto", "all", "selected", "none"] = Field(
        "auto",
        description="The checkpoints a run keeps once it has finished (all are kept while it "
        "trains): all = last.pt and best.pt (the run can be extended); selected = only the one "
        "of the reported model (train.select); none = no checkpoint (metrics.json and "
        "predictions.csv stay); auto = all for a single run, selected for each run of a sweep.",
    )

    tta: Literal["none", "flips", "d4"] = Field(
        "none",
        description="Test-time augmentation of the run's evaluations (validation and test): "
        "none; flips = the image, its horizontal and its vertical flip (3 views); d4 = the 8 "
        "rotations by 90 degrees and flips. Each component's softmax is averaged over the "
        "views before aggregation. Left out of the written recipe while none.",
    )
    ema: EMAConfig = Field(
        default_factory=EMAConfig,
        description="EMA of the weights (timm's ModelEmaV3); off unless `decay` is set; `true` "
        "means decay 0.9998.",
    )

    @field_validator("num_workers", mode="before")
    @classmethod
    def _check_num_workers(cls, value: Any) -> Any:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("must be 'auto' or an integer >= 0")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N (e.g. cuda:1)")
        return value

    @model_serializer(mode="wrap")
    def _leave_out_features_that_are_off(self, handler):
        dumped = handler(self)
        # Recipes, identities and run directories from before TTA and EMA stay the same.
        if isinstance(dumped, dict):
            if self.tta == "none":
                dumped.pop("tta", None)
            if self.fuse_components == "auto":
                dumped.pop("fuse_components", None)
            if not self.ema.enabled:
                dumped.pop("ema", None)
        return dumped


# ------------------------------------------------------------------------------------------ loggers


class LoggerConfig(_NamedComponent):
    """A logger of the run besides log.csv (Lightning's term): a name in the logger registry and
    its options; a plain string is shorthand for ``{name: ...}``. See the Loggers page."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Logger name in the logger registry: csv (log.csv, always on), tensorboard, "
        "mlflow (`synergic list loggers`)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments passed to the logger factory, e.g. tracking_uri for "
        "mlflow.",
    )


# ------------------------------------------------------------------------------------------- recipe


class Recipe(_Section):
    """A synergic run: its name, seed, data, model and training settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the run; the default run folder is runs/<name>/.")
    seed: int = Field(
        0, ge=0, description="Seed of every random choice: initialisation, pairs, augmentation."
    )
    data: DataConfig = Field(description="The data set and its preparation.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The SDL^n model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training loop.")
    loggers: list[LoggerConfig] = Field(
        default_factory=list,
        description="Where parameters, losses and metrics go besides log.csv: names or "
        "{name, options}, e.g. [tensorboard, mlflow]; one name, or names separated by commas, "
        "is read as a list (`--set loggers=tensorboard,mlflow`). Changes no result (a run may "
        "be resumed with other loggers). Left out of the written recipe while empty.",
    )

    @field_validator("loggers", mode="before")
    @classmethod
    def _one_logger_as_list(cls, value: Any) -> Any:
        return _names_as_list(value)

    @model_serializer(mode="wrap")
    def _leave_out_no_loggers(self, handler):
        dumped = handler(self)
        # Recipes and run directories from before loggers existed stay the same.
        if isinstance(dumped, dict) and not self.loggers:
            dumped.pop("loggers", None)
        return dumped

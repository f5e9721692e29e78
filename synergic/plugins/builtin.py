"""synergic's own components, registered through the same hooks as any plugin.

Each component is registered by reference (``"module:attribute"``): its module is imported the
first time the component is used, so listing the components (``synergic list``) imports neither
the components' modules nor torch. The descriptions are the first lines of their docstrings.
"""

from __future__ import annotations

from synergic.plugins.hookspecs import hookimpl


@hookimpl
def register_backbones(register):
    # Every timm model name is a backbone without registration (synergic.models.backbones);
    # only names that need more than timm.create_model are registered here.
    return None


@hookimpl
def register_datasets(register):
    register("isic2016", "synergic.data.datasets.isic2016:isic2016")
    register("isic2017", "synergic.data.datasets.isic2017:isic2017")
    register("isic2018", "synergic.data.datasets.isic2018:isic2018")
    register("isic2019", "synergic.data.datasets.isic2019:isic2019")
    register("isic2020", "synergic.data.datasets.isic2020:isic2020")
    register("folder", "synergic.data.datasets.folder:image_folder")
    register("csv", "synergic.data.datasets.csv_dataset:csv_dataset")
    register("synthetic_lesions", "synergic.data.datasets.synthetic:synthetic_lesions")


@hookimpl
def register_pair_samplers(register):
    register("balanced", "synergic.sampling:BalancedPairSampler")
    register("random", "synergic.sampling:RandomPairSampler")


@hookimpl
def register_synergic_heads(register):
    register("mlp", "synergic.models.synergic_head:MLPSynergicHead")


@hookimpl
def register_aggregators(register):
    register("sum_softmax", "synergic.aggregators:sum_softmax")
    register("mean_logits", "synergic.aggregators:mean_logits")
    register("max", "synergic.aggregators:max_softmax")
    register("vote", "synergic.aggregators:vote")


@hookimpl
def register_loggers(register):
    register("csv", "synergic.loggers.csv:csv_logger")
    register("tensorboard", "synergic.loggers.tensorboard:TensorBoardLogger")
    register("mlflow", "synergic.loggers.mlflow:MLflowLogger")

"""synergic's own components, registered through the same hooks as any plugin.

Imports happen inside the hooks so that ``import synergic`` stays cheap.
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
    from synergic.data.datasets import csv_dataset, folder, isic2016, synthetic

    register("isic2016", isic2016.isic2016)
    register("folder", folder.image_folder)
    register("csv", csv_dataset.csv_dataset)
    register("synthetic_lesions", synthetic.synthetic_lesions)


@hookimpl
def register_pair_samplers(register):
    from synergic.sampling import BalancedPairSampler, RandomPairSampler

    register("balanced", BalancedPairSampler)
    register("random", RandomPairSampler)


@hookimpl
def register_synergic_heads(register):
    from synergic.models.synergic_head import MLPSynergicHead

    register("mlp", MLPSynergicHead)


@hookimpl
def register_aggregators(register):
    from synergic import aggregators

    register("sum_softmax", aggregators.sum_softmax)
    register("mean_logits", aggregators.mean_logits)
    register("max", aggregators.max_softmax)
    register("vote", aggregators.vote)

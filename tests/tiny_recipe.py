"""The tiny recipe shared by the tests: SDL^2 end to end in about a second."""

TINY_RECIPE = """\
name: tiny
seed: 0
data:
  dataset: synthetic_lesions
  image_size: 32
  validation_fraction: 0.25
  options: {num_train: 24, num_test: 16, image_size: 32}
  cache: false
model:
  components: 2
  backbone: {name: test_efficientnet, pretrained: false}
  head: {hidden: 16}
  synergic_head: {name: mlp, options: {hidden: 16}}
train:
  iterations: 6
  batch_size: 4
  optimizer: {lr: 0.01, momentum: 0.9}
  device: cpu
  eval_every: 3
  checkpoint_every: 2
  log_every: 1
  eval_batch_size: 8
  n_bootstrap: 20
"""


def write_recipe(path, **changes):
    """Write the tiny recipe to ``path`` with ``changes`` (dotted keys, e.g.
    ``**{"train.eval_every": 1}``) applied; returns ``path``."""
    import yaml

    recipe = yaml.safe_load(TINY_RECIPE)
    for dotted, value in changes.items():
        node = recipe
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(recipe))
    return path

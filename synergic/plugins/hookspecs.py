"""The hooks a synergic plugin can implement.

A plugin is a module with functions marked ``@synergic.hookimpl`` whose names are the hooks
below; it implements only the hooks it needs. Each ``register_*`` hook is handed a callback,
``register(name, factory, description="")``, that adds ``factory`` to synergic's registry of that
kind under ``name``, recorded as coming from your plugin (``synergic list`` shows it). Without
``description`` the first line of the factory's docstring is shown. ``factory`` may also be a
reference ``"package.module:attribute"``: the module is imported at the component's first use, so
that listing the components does not import it (the docstring is then read from its source). A
name that is already taken, by synergic or by another plugin, is an error naming both. Expose the
module through the ``synergic`` entry-point group in your ``pyproject.toml``:

```toml
[project.entry-points.synergic]
myplugin = "myplugin"
```

The types each factory must have are written down as Protocols in ``synergic.contracts``.
Import heavy modules (torch, your models) inside the hooks, not at the top of the module, or
register references: synergic imports every plugin when the ``synergic`` command starts.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("synergic")
hookimpl = pluggy.HookimplMarker("synergic")


@hookspec
def register_backbones(register):
    """Register backbone factories (``model.backbone.name``).

    A factory is called as ``factory(*, pretrained: bool, weights: str | None, **options)`` and
    returns an ``nn.Module`` mapping float images ``[B, 3, H, W]`` to features ``[B, F]``, with an
    attribute ``num_features: int`` equal to ``F`` (a timm model made with ``num_classes=0``
    qualifies). Its ``pretrained_cfg`` (``mean``, ``std``) gives the input normalisation;
    ImageNet's is used otherwise. ``model.backbone.pretrained`` arrives as ``pretrained``,
    ``model.backbone.weights`` (a local file, which wins over ``pretrained``) as ``weights``, and
    ``model.backbone.options`` as keyword arguments. Protocol: ``synergic.contracts.BackboneFactory``.

    A registered name wins over a timm model of the same name; any timm model name works as a
    backbone without registration.

    Args:
        register: ``register(name, factory, description="")`` adds a backbone factory.

    Example:

    ```python
    @synergic.hookimpl
    def register_backbones(register):
        from myplugin.models import small_cnn

        register("small_cnn", small_cnn)
    ```
    """


@hookspec
def register_datasets(register):
    """Register data-set factories (``data.dataset``).

    A factory is called as ``factory(*, root: str | None, split: str, **options)`` with split
    ``"train"``, ``"val"`` or ``"test"``, and returns an object with ``classes: list[str]``,
    ``ids: list[str]`` (unique), ``labels: list[int]``, ``__len__`` and
    ``__getitem__(i) -> (image, label)``, where image is an RGB PIL image or a uint8
    ``[3, H, W]`` tensor. Every split has the same ``classes``. A data set without a validation
    split raises ``synergic.data.NoSuchSplit`` for ``"val"`` and synergic carves a stratified one
    from ``"train"`` (``data.validation_fraction``). ``data.root`` arrives as ``root`` (``None``
    when not set), ``data.options`` as keyword arguments, and ``data.download: true`` as
    ``download=True``. Protocols: ``synergic.contracts.DatasetFactory``, ``ImageDataset``.

    Args:
        register: ``register(name, factory, description="")`` adds a data-set factory.

    Example:

    ```python
    @synergic.hookimpl
    def register_datasets(register):
        from myplugin.data import single_csv

        register("single_csv", single_csv)
    ```
    """


@hookspec
def register_pair_samplers(register):
    """Register pair samplers (``train.sampler.name``).

    A sampler is usually a class, called as
    ``cls(labels, *, num_streams, batch_size, seed, **options)`` with the training labels, the
    number of components, ``train.batch_size``, the recipe's seed and ``train.sampler.options``.
    Its ``sample(step) -> LongTensor[num_streams, batch_size]`` gives the data-set indices each
    component sees at ``step``, deterministically from ``(seed, step)``
    (``synergic.sampling.step_generator``). Subclassing ``synergic.sampling.PairSampler`` gives
    the argument checks and a class -> indices table. Protocols:
    ``synergic.contracts.PairSamplerFactory``, ``PairSampler``.

    Args:
        register: ``register(name, factory, description="")`` adds a sampler class or factory.

    Example:

    ```python
    @synergic.hookimpl
    def register_pair_samplers(register):
        from myplugin.sampling import HardPairSampler

        register("hard_pairs", HardPairSampler)
    ```
    """


@hookspec
def register_synergic_heads(register):
    """Register synergic heads (``model.synergic_head.name``).

    A factory is called as ``factory(in_features: int, **options)`` with
    ``model.synergic_head.options`` and returns an ``nn.Module`` mapping the concatenated deep
    features of a pair, ``[B, in_features]``, to one "same class" logit per pair, ``[B]`` (no
    sigmoid: the loss applies it). ``in_features`` is twice ``model.head.hidden``. Protocol:
    ``synergic.contracts.SynergicHeadFactory``.

    Args:
        register: ``register(name, factory, description="")`` adds a synergic-head factory.

    Example:

    ```python
    @synergic.hookimpl
    def register_synergic_heads(register):
        from myplugin.heads import BilinearHead

        register("bilinear", BilinearHead)
    ```
    """


@hookspec
def register_aggregators(register):
    """Register aggregators (``model.aggregator``).

    An aggregator is a function ``fn(logits: list[Tensor[B, K]]) -> Tensor[B, K]`` that combines
    the components' outputs at test time into class probabilities (rows summing to 1). Protocol:
    ``synergic.contracts.Aggregator``.

    Args:
        register: ``register(name, factory, description="")`` adds an aggregator function.

    Example:

    ```python
    @synergic.hookimpl
    def register_aggregators(register):
        def geometric_mean(logits):
            import torch

            log_p = torch.stack([x.log_softmax(-1) for x in logits]).mean(0)
            return log_p.softmax(-1)

        register("geometric_mean", geometric_mean)
    ```
    """


@hookspec
def register_loggers(register):
    """Register loggers (``loggers: [NAME, ...]`` or ``{name: NAME, options: {...}}``).

    A factory is called before training as
    ``factory(*, run_dir: Path | None, experiment: str, resume: bool, start_step: int, **options)``
    with the run directory (``None`` for ``synergic recipe check``), the recipe's ``name``,
    whether the run resumes and from which step (the checkpoint's; 0 for a new run), and
    ``loggers[i].options`` as keyword arguments. It checks what can fail (a package, a server),
    raising a one-line ``synergic.errors.SynergicError``, and writes nothing yet. It returns an
    object with ``log_hyperparams(params)``, ``log_metrics(metrics, step)``,
    ``log_artifacts(run_dir)`` and ``finalize(status)`` (Lightning's names), called on rank 0
    only; one that raises during the run is switched off with a warning and the run goes on.
    Protocol: ``synergic.loggers.Logger``.

    Args:
        register: ``register(name, factory, description="")`` adds a logger factory.

    Example:

    ```python
    @synergic.hookimpl
    def register_loggers(register):
        class PrintLogger:
            "Print every metric."

            def __init__(self, *, run_dir, experiment, resume, start_step):
                self.experiment = experiment

            def log_hyperparams(self, params): ...

            def log_metrics(self, metrics, step):
                print(self.experiment, step, metrics)

            def log_artifacts(self, run_dir): ...

            def finalize(self, status): ...

        register("print", PrintLogger)
    ```
    """


@hookspec
def register_commands(cli):
    """Add subcommands to the ``synergic`` command.

    Called once when the command starts. A plugin whose hook raises is reported on stderr and
    the other commands work as usual.

    Args:
        cli: the ``synergic`` command, a ``click.Group``: decorate functions with
            ``@cli.command()`` or call ``cli.add_command(...)``.

    Example:

    ```python
    @synergic.hookimpl
    def register_commands(cli):
        import click

        @cli.command()
        @click.argument("run_dir")
        def report(run_dir):
            "Summarise the run in RUN_DIR."
            click.echo(f"report of {run_dir}")
    ```
    """

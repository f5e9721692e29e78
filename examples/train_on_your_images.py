"""Train SDL^2 on your own images, in a folder or CSV layout, with a recipe.

The example writes a small generated data set of white blood cells (three classes; see
``example_data.py``) to disk, writes a recipe for it, and trains and evaluates it with
``synergic.experiment.run``: exactly what ``synergic run RECIPE`` does. Point ``data.root`` at
your own images instead and the rest stays the same.

    python examples/train_on_your_images.py                    # folder layout, about a minute
    python examples/train_on_your_images.py --layout csv       # the same images listed in CSVs
    python examples/train_on_your_images.py --backbone resnet50 --pretrained \\
        --image-size 224 --iterations 5000 --device auto       # a real run, on a GPU

Everything goes to ``--workdir`` (default ``runs/blood-cells-<layout>``): ``data/``,
``recipe.yaml`` and the run directory ``run/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_data.py, beside this file
from example_data import CLASSES, write_dataset  # noqa: E402


def make_recipe(args: argparse.Namespace, data_root: Path) -> dict:
    """The recipe as a mapping; every key not given here keeps its default (the paper's)."""
    if args.layout == "folder":
        # root/train/<class>/<image> and root/test/<class>/<image>
        data = {"dataset": "folder", "root": str(data_root)}
    else:
        data = {
            "dataset": "csv",
            "root": str(data_root),  # ids in the CSVs are paths relative to root
            "options": {"train_csv": "train.csv", "test_csv": "test.csv", "classes": list(CLASSES)},
        }
    data.update(image_size=args.image_size, validation_fraction=0.2)
    return {
        "name": f"blood-cells-{args.layout}",
        "seed": args.seed,
        "data": data,
        "model": {
            "components": args.components,
            "backbone": {"name": args.backbone, "pretrained": args.pretrained},
        },
        "train": {
            "iterations": args.iterations,
            "batch_size": args.batch_size,
            "synergic_weight": 3.0,  # lambda, as in the paper
            # A randomly initialised backbone learns faster with a larger rate and momentum than
            # the paper's fine-tuning of a pretrained one (lr 1e-4, no momentum).
            "optimizer": {"lr": args.lr, "momentum": 0.9},
            "device": args.device,
            "eval_every": max(1, args.iterations // 3),
            "checkpoint_every": 0,
            "eval_batch_size": 32,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["folder", "csv"], default="folder")
    parser.add_argument("--workdir", type=Path, help="default: runs/blood-cells-<layout>")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet10t", help="any timm model name")
    parser.add_argument("--pretrained", action="store_true", help="start from ImageNet weights")
    parser.add_argument("--components", type=int, default=2, help="n of SDL^n")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.workdir = args.workdir or Path(f"runs/blood-cells-{args.layout}")

    from synergic.experiment import run
    from synergic.recipe import check_registry_names, load_recipe

    data_root = write_dataset(
        args.workdir / "data", layout=args.layout, train_per_class=args.train_per_class,
        test_per_class=args.test_per_class, size=args.image_size, seed=args.seed,
    )
    recipe_path = args.workdir / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(make_recipe(args, data_root), sort_keys=False))

    recipe = load_recipe(recipe_path)  # validated: a wrong key or value stops here, in one line
    check_registry_names(recipe, source=str(recipe_path))
    result = run(recipe, args.workdir / "run", overwrite=True)

    test = result.metrics["test"]
    print(f"classes: {', '.join(result.metrics['classes'])}")
    print("test metrics of the aggregate (eq. 6) and of each component:")
    print("  " + " ".join(f"{name:>17}" for name in test))
    print("  " + " ".join(f"{value:17.3f}" for value in test.values()) + "  aggregate")
    for k, component in enumerate(result.metrics["test_components"], start=1):
        values = " ".join(f"{value:17.3f}" for value in component.values())
        print(f"  {values}  component {k}")
    print(f"run directory: {result.run_dir}")
    again = f"synergic run {recipe_path} --output {args.workdir}/run2"
    print(f"the same from the command line: {again}")


if __name__ == "__main__":
    main()

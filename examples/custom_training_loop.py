"""SDL^n in your own training loop: SynergicModel, SynergicLoss and BalancedPairSampler.

No recipe and no Trainer: the parts are plain PyTorch modules and classes, put together here the
way the paper describes them (Sect. 3), on the generated white-blood-cell images of
``example_data.py`` (three classes, kept in memory).

    python examples/custom_training_loop.py                          # CPU, under a minute
    python examples/custom_training_loop.py --components 3           # SDL^3: three synergic heads
    python examples/custom_training_loop.py --backbone resnet50 --image-size 224 \\
        --iterations 3000 --device cuda                               # a real size
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_data.py, beside this file
from example_data import CLASSES, generate  # noqa: E402

from synergic import (  # noqa: E402
    BalancedPairSampler,
    DCNNComponent,
    MLPSynergicHead,
    SynergicLoss,
    SynergicModel,
    aggregators,
    create_backbone,
)
from synergic.data.augment import augment_batch, normalize  # noqa: E402
from synergic.metrics import compute_metrics  # noqa: E402
from synergic.models.backbones import backbone_normalization  # noqa: E402


def build_sdl(backbone: str, num_classes: int, components: int, hidden: int) -> SynergicModel:
    """n components (backbone -> FC hidden -> FC K), one synergic head per pair of them."""
    parts = [
        DCNNComponent(create_backbone(backbone), num_classes, hidden=hidden)
        for _ in range(components)  # independent parameters: nothing is shared (Sect. 3.2)
    ]
    heads = {  # the head of pair (i, j) sees the concatenated features [f_i, f_j]
        f"{i}-{j}": MLPSynergicHead(2 * hidden, hidden=hidden)
        for i, j in itertools.combinations(range(components), 2)
    }
    return SynergicModel(parts, heads)


def as_tensors(images, labels):
    """numpy ``[N, H, W, 3]`` uint8 -> torch ``[N, 3, H, W]`` uint8, and labels as int64."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t", help="any timm model name")
    parser.add_argument("--components", type=int, default=2, help="n of SDL^n")
    parser.add_argument("--hidden", type=int, default=1024, help="width of the components' FC")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16, help="tuples of images per step")
    parser.add_argument("--synergic-weight", type=float, default=3.0, help="lambda")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_images, train_labels = as_tensors(
        *generate(args.train_per_class, size=args.image_size, seed=args.seed)
    )
    test_images, test_labels = as_tensors(
        *generate(args.test_per_class, size=args.image_size, seed=args.seed + 1)
    )

    model = build_sdl(args.backbone, len(CLASSES), args.components, args.hidden).to(device)
    mean, std = backbone_normalization(model.components[0].backbone)
    loss_fn = SynergicLoss(args.synergic_weight, gradient="paper")  # eq. (5)
    sampler = BalancedPairSampler(  # about half of the pairs in each batch share a class
        train_labels.tolist(), num_streams=args.components, batch_size=args.batch_size,
        seed=args.seed,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    augmentation = torch.Generator().manual_seed(args.seed)

    model.train()
    for step in range(args.iterations):
        indices = sampler.sample(step)  # [n, batch]: row k is the image stream of component k
        streams = [
            normalize(augment_batch(train_images[row], generator=augmentation), mean, std)
            .to(device)
            for row in indices
        ]
        labels = [train_labels[row].to(device) for row in indices]
        # Under the paper's rule the synergic gradient reaches the components scaled by lambda
        # while the heads get their own, unscaled: the model scales it on the way back.
        output = model(streams, synergic_grad_scale=loss_fn.feature_grad_scale)
        terms = loss_fn(output, labels)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.iterations - 1:
            synergic = " ".join(
                f"{i + 1}{j + 1}={v.item():.3f}" for (i, j), v in terms.synergic.items()
            )
            ce = " ".join(f"{v.item():.3f}" for v in terms.classification)
            print(f"step {step + 1:4d}  objective {terms.objective.item():.3f}  "
                  f"cross-entropy {ce}  synergic {synergic or '-'}")

    # Test time (eq. 6): every component classifies every image; the softmaxes are summed.
    model.eval()
    with torch.no_grad():
        batch = normalize(test_images.float() / 255, mean, std).to(device)
        logits = model.predict_logits(batch)  # one [N, K] tensor per component
    probabilities = aggregators.sum_softmax(logits)
    labels = test_labels.numpy()
    scores = compute_metrics(probabilities.double().numpy(), labels)
    print("test, aggregate:   " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    for k, component_logits in enumerate(logits, start=1):
        single = compute_metrics(component_logits.softmax(-1).double().numpy(), labels)
        print(f"test, component {k}: " + "  ".join(f"{name} {v:.3f}" for name, v in single.items()))


if __name__ == "__main__":
    main()

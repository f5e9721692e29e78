"""Draw docs/images/gradcam_isic_sample.png: the overlays `synergic explain` writes, side by side.

One row per image: the preprocessed image, then the Grad-CAM overlay of each component (C1,
C2, ...) and of the aggregate (aggr.), each labelled with the class explained and that view's
probability: exactly the PNGs of `synergic explain RUN IMAGES --output DIR` (resized to CELL
pixels, nearest neighbour). Run from the repository root with a trained run (docs/explain.md says which)::

    python docs/scripts/make_gradcam_figure.py RUN_DIR IMAGE... [--output PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from synergic.explain import explain_images

CELL = 128
LABEL = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("docs/images/gradcam_isic_sample.png"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        explanations = explain_images(args.run_dir, args.images, output_dir=Path(folder))
        from synergic.serving import open_run

        preprocessing = open_run(args.run_dir).preprocessing
        rows = {}
        for e in explanations:
            rows.setdefault(e.image, []).append(
                (f"{_short(e.view)} {e.class_name} {e.probability:.2f}",
                 Image.open(e.overlay).copy())
            )
        columns = 1 + max(len(cells) for cells in rows.values())
        figure = Image.new("RGB", (columns * CELL, len(rows) * (CELL + LABEL)), "white")
        draw = ImageDraw.Draw(figure)
        for r, (image, cells) in enumerate(rows.items()):
            pixels = preprocessing.load(image).permute(1, 2, 0).numpy()
            cells = [(Path(image).stem, Image.fromarray(pixels)), *cells]
            for c, (label, picture) in enumerate(cells):
                x, y = c * CELL, r * (CELL + LABEL)
                draw.text((x + 4, y + 3), label, fill="black")
                figure.paste(picture.resize((CELL, CELL), Image.NEAREST), (x, y + LABEL))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette keeps the figure under 200 KB; the JET colours survive it.
    figure.quantize(256).save(args.output, optimize=True)
    print(f"{args.output}: {figure.size[0]} x {figure.size[1]}, {args.output.stat().st_size} bytes")


def _short(view: str) -> str:
    """``C1``, ``C2``, ... for ``component 1``, ... and ``aggr.``: a label fits its cell."""
    return "aggr." if view == "aggregate" else "C" + view.removeprefix("component ")


if __name__ == "__main__":
    main()

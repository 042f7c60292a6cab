"""The default CNN trained to read real handwriting: pen width, slant, gaps and blur augmentation.

    python benchmarks/bench_realworld.py --models cnn cnn_realworld

The default CNN (BatchNorm, one-cycle) twice as wide (32-64 channels), 10 epochs instead of 4,
with training-only augmentation of what real handwriting varies and MNIST does not: stroke thickness
(morphological, up to half a 3x3 dilation or erosion), slant (shear up to 0.3), a break in the
strokes for half the images (``augment_gaps=1``), rotation up to 15 degrees, zoom 0.9-1.1, shift
up to 2 pixels and blur (sigma up to 1 pixel). Chosen among five candidates on the validation
split of the hard stroke set (``strokes.make_set(..., level="hard", split="validation")``, 1,000
digits), never its test split, and the gaps added after, on the same split and on 10,000 MNIST
training digits held out of the fit (``bench_realworld.py --split validation``);
docs/results.md ("Real-world digits") lists the candidates and their scores.
"""

from mnist_estimators.pipelines import cnn

DEFAULTS = {
    **cnn.DEFAULTS,
    "clf__channels": (32, 64),
    "clf__max_epochs": 10,
    "clf__augment_thickness": 0.5,
    "clf__augment_slant": 0.3,
    "clf__augment_gaps": 1,
    "clf__augment_rotation": 15.0,
    "clf__augment_scale": 0.1,
    "clf__augment_shift": 2.0,
    "clf__augment_blur": 1.0,
    # Deskewing lifts the default CNN 1.0 point on the hard level, but not this one, whose slant
    # and rotation augmentation already teach it leans: on a 3,000-digit hard validation level,
    # seeds 0 / 1, 96.07% / 95.47% with it against 96.57% / 96.50% without (and 96.57% / 96.13%
    # with it and augment_slant=0). Held-out MNIST gained 0.1 point (docs/results.md).
    "clf__deskew": False,
}
SPACE, GRID = cnn.SPACE, cnn.GRID


def build_pipeline(**overrides):
    return cnn.build_pipeline(**{**DEFAULTS, **overrides})

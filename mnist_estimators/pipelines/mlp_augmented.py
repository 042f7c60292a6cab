"""MLP with elastic and affine augmentation (Simard et al. 2003's recipe, on a 2 x 1024 MLP).

    mnist-estimators reproduce mlp_augmented --seeds 0 1 2

784 -> 1024 -> 1024 -> 10, ReLU, dropout 0.2, Adam with a cosine schedule. Training-only
augmentation: elastic distortion (alpha 34, sigma 4), rotation up to 10 degrees, shift up to
2 pixels. Trains on all 60,000 training images; docs/results.md lists its measured test
accuracy.
"""

from mnist_estimators.pipelines import mlp

DEFAULTS = {
    **mlp.DEFAULTS,
    "clf__hidden_sizes": (1024, 1024),
    "clf__dropout": 0.2,
    "clf__lr": 1e-3,
    "clf__max_epochs": 60,
    "clf__augment_elastic": 34.0,
    "clf__augment_elastic_sigma": 4.0,
    "clf__augment_rotation": 10.0,
    "clf__augment_shift": 2.0,
    "clf__validation_fraction": None,
}
SPACE, GRID = mlp.SPACE, mlp.GRID


def build_pipeline(**overrides):
    return mlp.build_pipeline(**{**DEFAULTS, **overrides})

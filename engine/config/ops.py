"""The transform ops a config may name, with their arguments, and the semi-supervised
view defaults (the schema checks configs against them; ``engine.data.transforms`` builds
them).

stdlib only: the TUI validates configs with this table.
"""

from __future__ import annotations

# Transform ops allowed in ``sample_transforms``, with the arguments each accepts.
TRANSFORM_OPS: dict[str, dict[str, str]] = {
    "Resize": {"target_size": "side length (int) or [h, w]",
               "keep_ratio": "keep the aspect ratio (longest side = target_size)"},
    "RandomResize": {"sizes": "list of side lengths; one is drawn per image",
                     "keep_ratio": "keep the aspect ratio"},
    "RandomFlip": {"prob": "probability of a horizontal flip"},
    "ColorJitter": {"brightness": "max relative change", "contrast": "max relative change",
                    "saturation": "max relative change", "hue": "max hue shift (0-0.5)",
                    "prob": "probability of applying the jitter"},
    "RandomErasing": {"prob": "probability of erasing one rectangle",
                      "scale": "[min, max] area of the rectangle as a fraction of the image",
                      "ratio": "[min, max] aspect ratio (height / width), drawn log-uniformly",
                      "value": "fill: 'random' (noise), a grey level 0-255 or [r, g, b]"},
    "GaussianBlur": {"prob": "probability of blurring",
                     "sigma": "[min, max] of the blur's standard deviation in pixels",
                     "kernel_size": "odd kernel side in pixels (taps beyond 4 sigma are cut)"},
    "RandomGrayscale": {"prob": "probability of turning the image grey (3 equal channels)"},
}

# Ops that change pixel values only, never where things are: the only ones allowed in
# SemiTrainReader.weak_aug/strong_aug, because the weak and strong views of an image must
# share their geometry point by point (the teacher's targets on the weak view are used as
# they are on the strong view).
PHOTOMETRIC_OPS: tuple[str, ...] = ("ColorJitter", "RandomErasing", "GaussianBlur",
                                    "RandomGrayscale")

# PaddleDetection's StrongAugImage for the semi-supervised detectors (DenseTeacher, ARSL):
# colour jitter, RandomErasingCrop's three erasing passes, blur, grayscale.
DEFAULT_STRONG_AUG: tuple[dict, ...] = (
    {"ColorJitter": {"prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
                     "hue": 0.1}},
    {"RandomErasing": {"prob": 0.7, "scale": [0.05, 0.2], "ratio": [0.3, 3.3],
                       "value": "random"}},
    {"RandomErasing": {"prob": 0.5, "scale": [0.05, 0.2], "ratio": [0.1, 6.0],
                       "value": "random"}},
    {"RandomErasing": {"prob": 0.3, "scale": [0.05, 0.2], "ratio": [0.05, 8.0],
                       "value": "random"}},
    {"GaussianBlur": {"prob": 0.5, "sigma": [0.1, 2.0], "kernel_size": 23}},
    {"RandomGrayscale": {"prob": 0.2}},
)

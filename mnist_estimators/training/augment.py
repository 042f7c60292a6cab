"""Training-time augmentation of flat square images, and the views of test-time augmentation.

``Augment``: random stroke thickness, broken strokes, rotation, scale, shift, slant, blur, erasing
and elastic distortion, as batched tensor ops (max-pooling, ``affine_grid``/``grid_sample``,
grouped convolution, masks), drawn per image.
``shifted_views``: an image and its four one-pixel shifts (``tta=True``).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.nn import functional as F

# torchvision's transforms would do this, but its PyPI build does not load beside this torch
# (docs/design.md, "Traps"), and its v2 transforms draw one set of random parameters per call,
# not per image. So: each transform below is one batched tensor op over the whole
# (N, 1, H, W) batch, with per-image random parameters.

AUGMENT_PARAMS = ("rotation", "scale", "shift", "slant", "blur", "thickness", "gaps", "erasing",
                  "elastic", "elastic_sigma")
MAX_THICKNESS = 2.0  # two full 3x3 erosions leave ~0.5% of an MNIST digit's ink: nothing past it
MAX_GAPS = 8  # more breaks than a digit has strokes to break: a dotted digit, not handwriting
# Pixels of a 28x28 frame: a break of 1.5-3 px across a stroke up to ~3 px wide (MNIST's are
# 1.4-3.5 of 20), a dent in a bolder one. Chosen on the hard stroke level's validation split:
# discs of radius 1-2.5 gained a little more there (+0.8 points against +0.5), but cost held-out
# MNIST digits 0.12 points, over the 0.1-point limit.
GAP_RADIUS = (0.75, 1.5)


class Augment:
    """Random training-time transforms of a batch of flat square images, all images at once.

    Thickness comes first (it is the pen's), as 3x3 max-pooling, then gaps (where the pen
    lifted), as one mask. Slant, rotation, scale and shift then form one affine map per image,
    and an elastic displacement field is added to the same sampling grid, so the five cost one
    ``grid_sample``. Blur (the scan's) is one grouped convolution with a kernel per image;
    erasing is one mask.

    Parameters
    ----------
    rotation : float, default=0.0
        Largest rotation in degrees: each image turns by U(-rotation, rotation).
    scale : float, default=0.0
        Largest relative zoom: each image is scaled by U(1 - scale, 1 + scale) (in and out).
    shift : float, default=0.0
        Largest translation in pixels along each axis.
    slant : float, default=0.0
        Largest horizontal shear: each image is sheared by s ~ U(-slant, slant),
        ``x' = x + s * y`` with y measured down from the image centre (s > 0 leans the top of a
        digit left, its bottom right), before rotation, zoom and shift. Real handwriting slants
        by about +-0.4; typical: 0.3.
    blur : float, default=0.0
        Largest Gaussian blur sigma in pixels: each image is blurred with sigma U(0, blur).
    thickness : float, default=0.0
        Largest stroke-width change, in [0, 2]: each image draws t ~ U(-thickness, thickness)
        and is dilated (t > 0) or eroded (t < 0) by ``|t|`` steps of 3x3 max-pooling, the fraction
        of a step blended linearly (``img + frac * (step(img) - img)``). One step widens or
        narrows a stroke by about 2 pixels; outside the frame counts as background. Typical:
        0.5 (an MNIST digit keeps 0.6x to 1.5x its ink); one full erosion removes most of a
        thin digit.
    gaps : int, default=0
        Largest number of breaks in the strokes, in [0, 8]: each image draws k ~ U{0, ..., gaps}
        and blanks k discs of radius U(0.75, 1.5) pixels, each centred on an ink pixel drawn
        with probability proportional to its ink, so a stroke of MNIST's width is cut across by
        1.5-3 pixels (a pen lifted, a faint scan; issue #27), a bolder one dented. cnn_realworld
        sets 1 (docs/results.md, "Real-world digits").
    erasing : float, default=0.0
        Probability that an image gets one random rectangle (2-20% of its area, aspect 1:3 to
        3:1) set to 0, the background (seed 004's "black squares"; random erasing).
    elastic : float, default=0.0
        Elastic distortion strength alpha (Simard et al. 2003): a U(-1, 1) displacement field,
        smoothed by a Gaussian of ``elastic_sigma`` pixels, times alpha pixels. Typical: 34.
    elastic_sigma : float, default=4.0
    generator : torch.Generator or None
        Source of randomness (on the device of the batches); None uses torch's global one.
    """

    def __init__(self, rotation=0.0, scale=0.0, shift=0.0, slant=0.0, blur=0.0, thickness=0.0,
                 gaps=0, erasing=0.0, elastic=0.0, elastic_sigma=4.0, generator=None):
        values = {"rotation": rotation, "scale": scale, "shift": shift, "slant": slant,
                  "blur": blur, "thickness": thickness, "erasing": erasing, "elastic": elastic,
                  "elastic_sigma": elastic_sigma}
        if not (isinstance(gaps, numbers.Integral) and not isinstance(gaps, bool)
                and 0 <= gaps <= MAX_GAPS):
            raise ValueError(f"The 'augment_gaps' parameter must be an int in [0, {MAX_GAPS}] (the "
                             f"largest number of breaks a digit's strokes get). Got {gaps!r} "
                             f"instead.")
        for name, value in values.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f"The 'augment_{name}' parameter must be a float >= 0. "
                                 f"Got {value!r} instead.")
        if scale >= 1:
            raise ValueError(f"The 'augment_scale' parameter must be < 1 (a zoom factor of "
                             f"1 - scale must stay positive). Got {scale!r} instead.")
        if thickness > MAX_THICKNESS:
            raise ValueError(f"The 'augment_thickness' parameter must be <= {MAX_THICKNESS} (steps "
                             f"of 3x3 dilation or erosion; two erode any MNIST stroke away). "
                             f"Got {thickness!r} instead.")
        if erasing > 1:
            raise ValueError(f"The 'augment_erasing' parameter is a probability in [0, 1]. "
                             f"Got {erasing!r} instead.")
        if elastic and not elastic_sigma:
            raise ValueError("The 'augment_elastic_sigma' parameter must be > 0 when "
                             "augment_elastic is set. Got 0 instead.")
        vars(self).update(values, gaps=int(gaps))
        self.generator = generator

    @property
    def active(self):
        """True when any transform is on."""
        return any(getattr(self, name) for name in AUGMENT_PARAMS if name != "elastic_sigma")

    def __repr__(self):
        on = ", ".join(f"{k}={getattr(self, k)}" for k in AUGMENT_PARAMS if getattr(self, k)
                       and (k != "elastic_sigma" or self.elastic))
        return f"Augment({on})"

    def _uniform(self, low, high, *shape, device):
        return torch.rand(*shape, generator=self.generator, device=device) * (high - low) + low

    def __call__(self, X):
        """``(N, H*W)`` float batch -> a transformed ``(N, H*W)`` batch (a new tensor)."""
        n, n_features = X.shape
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(f"Augmentation needs square images: got {n_features} features per "
                             "sample, not a perfect square (784 for 28x28).")
        img = X.reshape(n, 1, side, side)  # (N, 784) -> (N, 1, 28, 28)
        # Thickness and slant draw only when on: with them off, a seeded batch (and fit) is
        # what it was before they existed.
        if self.thickness:  # the pen's width first; geometry and scan act on the stroke drawn
            img = self._thicken(img)
        if self.gaps:  # then where the pen lifted: before the page turns or blurs the stroke
            img = img * self._gap_mask(img)
        if self.rotation or self.scale or self.shift or self.slant or self.elastic:
            img = F.grid_sample(img, self._sampling_grid(n, side, img), mode="bilinear",
                                padding_mode="border", align_corners=False)
        if self.blur:
            sigma = self._uniform(0.0, self.blur, n, device=X.device)
            img = gaussian_blur(img, sigma, radius=math.ceil(2 * self.blur))
        if self.erasing:
            img = img * self._erasing_mask(n, side, X.device)
        return img.reshape(n, n_features)

    def _thicken(self, img):
        # (N, 1, H, W) -> same: |t| steps of 3x3 dilation (t > 0) or erosion (t < 0) per image,
        # step i weighted by clamp(|t| - i, 0, 1): floor(|t|) full steps, then the fraction.
        n = img.shape[0]
        t = self._uniform(-self.thickness, self.thickness, n, device=img.device).view(n, 1, 1, 1)
        grow, amount = t > 0, t.abs().to(img.dtype)
        for step in range(math.ceil(self.thickness)):
            padded = F.pad(img, (1, 1, 1, 1))  # zeros: outside the frame is background
            dilated = F.max_pool2d(padded, 3, stride=1)
            eroded = -F.max_pool2d(-padded, 3, stride=1)
            target = torch.where(grow, dilated, eroded)
            img = img + (amount - step).clamp(0, 1) * (target - img)
        return img

    def _gap_mask(self, img):
        # (N, 1, H, W) -> a mask of the same shape, 0 inside each image's k ~ U{0..gaps} discs,
        # with a one-pixel soft edge (as a stroke's own anti-aliased end), 1 elsewhere.
        n, _, h, w = img.shape
        device = img.device
        # Centres where the ink is: multinomial over each image's pixels, weighted by ink (an
        # image with none draws uniformly: the tiny floor keeps every row a distribution).
        weights = img.reshape(n, h * w).float().clamp_min(0) + 1e-6
        at = torch.multinomial(weights, self.gaps, replacement=True, generator=self.generator)
        rows, cols = (at // w).to(img.dtype), (at % w).to(img.dtype)  # (N, gaps) each
        k = (self._uniform(0, 1, n, device=device) * (self.gaps + 1)).floor()  # U{0..gaps}
        used = torch.arange(self.gaps, device=device) < k[:, None]  # (N, gaps)
        radius = self._uniform(*GAP_RADIUS, n, self.gaps, device=device).to(img.dtype)
        y = torch.arange(h, device=device, dtype=img.dtype).view(1, 1, h, 1)
        x = torch.arange(w, device=device, dtype=img.dtype).view(1, 1, 1, w)
        dist = ((y - rows[..., None, None]) ** 2 + (x - cols[..., None, None]) ** 2).sqrt()
        keep = (dist - radius[..., None, None] + 0.5).clamp(0, 1)  # (N, gaps, H, W)
        keep = torch.where(used[..., None, None], keep, torch.ones_like(keep))
        return keep.amin(1, keepdim=True)  # (N, 1, H, W): the discs of all k breaks

    def _sampling_grid(self, n, side, img):
        # grid_sample reads output pixel p from input location theta @ p (normalized coordinates,
        # [-1, 1]), so theta is the inverse map: rotate by -angle, divide by the zoom.
        device = img.device
        angle = self._uniform(-self.rotation, self.rotation, n, device=device) * (math.pi / 180)
        zoom = self._uniform(1 - self.scale, 1 + self.scale, n, device=device)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        shift = self._uniform(-self.shift, self.shift, n, 2, device=device) * (2 / side)
        theta = torch.stack([torch.stack([cos, sin, shift[:, 0]], 1),
                             torch.stack([-sin, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3)
        if self.slant:
            # The slant is the writer's, so it comes first in the forward map:
            # out = zoom R(angle) (Shear(s) in - shift), Shear(s) = [[1, s], [0, 1]]. Its
            # inverse, in = Shear(-s) (theta @ out), left-multiplies theta. Square images, so
            # the shear is the same in pixels as in normalized coordinates.
            s = self._uniform(-self.slant, self.slant, n, device=device)
            unshear = torch.eye(2, device=device, dtype=theta.dtype).repeat(n, 1, 1)  # (N, 2, 2)
            unshear[:, 0, 1] = -s
            theta = unshear @ theta  # (N, 2, 2) @ (N, 2, 3) -> (N, 2, 3)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)  # (N, H, W, 2)
        if self.elastic:
            field = self._uniform(-1.0, 1.0, n, 2, side, side, device=device)
            field = gaussian_blur(field, float(self.elastic_sigma),
                                  radius=math.ceil(2 * self.elastic_sigma))
            grid = grid + field.permute(0, 2, 3, 1) * (self.elastic * 2 / side)  # pixels -> [-1, 1]
        return grid

    def _erasing_mask(self, n, side, device):
        # One rectangle per chosen image: area 2-20% of the image, log-uniform aspect 1:3-3:1.
        area = self._uniform(0.02, 0.2, n, device=device) * side * side
        aspect = torch.exp(self._uniform(math.log(1 / 3), math.log(3), n, device=device))
        h = (area * aspect).sqrt().clamp(1, side).floor()
        w = (area / aspect).sqrt().clamp(1, side).floor()
        top = (self._uniform(0, 1, n, device=device) * (side - h + 1)).floor()
        left = (self._uniform(0, 1, n, device=device) * (side - w + 1)).floor()
        chosen = self._uniform(0, 1, n, device=device) < self.erasing
        pos = torch.arange(side, device=device, dtype=torch.float32)
        rows = (pos >= top[:, None]) & (pos < (top + h)[:, None])   # (N, H)
        cols = (pos >= left[:, None]) & (pos < (left + w)[:, None])  # (N, W)
        erase = rows[:, :, None] & cols[:, None, :] & chosen[:, None, None]  # (N, H, W)
        return (~erase).unsqueeze(1).to(torch.float32)  # (N, 1, H, W): 0 where erased


def gaussian_blur(img, sigma, radius):
    """Blur each image of ``img`` (N, C, H, W) with a Gaussian of ``sigma`` pixels.

    ``sigma`` is one float for all (one separable kernel, the batch as the convolution's batch)
    or a tensor ``(N,)``, one per image (a kernel per image, one grouped convolution per axis,
    3x slower). ``2 * radius + 1`` taps, zero padding (the background); sigma 0 is the identity.
    """
    n, c, h, w = img.shape
    offsets = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    if not torch.is_tensor(sigma):
        kernel = torch.exp(-0.5 * (offsets / max(float(sigma), 1e-3)) ** 2)
        kernel = kernel / kernel.sum()
        x = img.reshape(n * c, 1, h, w)
        x = F.conv2d(x, kernel.view(1, 1, -1, 1), padding=(radius, 0))  # along H
        x = F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, radius))  # along W
        return x.reshape(n, c, h, w)
    s = sigma.to(img.dtype).clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / s) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, taps)
    x = img.reshape(1, n * c, h, w)
    x = F.conv2d(x, kernel[:, None, :, None], padding=(radius, 0), groups=n * c)  # along H
    x = F.conv2d(x, kernel[:, None, None, :], padding=(0, radius), groups=n * c)  # along W
    return x.reshape(n, c, h, w)


def shifted_views(X, side):
    """The test-time augmentation views of a flat batch ``X`` (N, side*side): ``X`` itself and
    ``X`` shifted by one pixel up, down, left and right (zeros, the background, fill in)."""
    img = X.reshape(len(X), side, side)
    padded = F.pad(img, (1, 1, 1, 1))  # (N, side + 2, side + 2)
    yield X
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        yield padded[:, dy:dy + side, dx:dx + side].reshape(len(X), -1)

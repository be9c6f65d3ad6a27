"""A seeded, offline checkpoint whose logits look like a trained segmentation model's.

Random init gives near-zero, near-tied logits (DeepLabV3-ResNet50: range ~2, std ~0.3 on photos),
so every bound measured on it says nothing about trained weights (range tens of units, clear
winners). The pretrained files cannot be downloaded here; this makes a stand-in in 80-90 s
on 2 cores:

1. build the model (seeded random init, aux head included like torchvision's checkpoints), with
   two properties of trained ResNets: small residual branches (last BN gamma 0.05) and a smooth stem
2. synthetic scenes with known masks: random ellipses/boxes on real textures (scikit-image's
   grass, gravel, brick, ...), each filled with a class's colour + stripes or with a crop of a
   photo labelled with its VOC class (astronaut: PERSON, chelsea: CAT, ...)
3. BatchNorm re-estimated on scenes + real photos (train-mode forwards, cumulative average):
   the backbone's activations get the normalized statistics of a trained net
4. the head's last layers fitted to the masks (cross-entropy + L2) on their cached inputs:
   DeepLabV3 from ASPP's 1x1 projection on, other nets their final 1x1 conv; the rest stays frozen
5. the classifier scaled so the median per-photo logit range is `logit_range` (trained nets:
   tens of units)

Limits (measured, DeepLabV3-ResNet50 seed 0, accuracy photos): the backbone is random, so it is
still more fragile than a trained one: 1 % Gaussian input noise flips 0.1-1.1 % of fp32 pixels
(up to 12.3 % with random-init gammas and stem and the head fitted from its 3x3 conv), 75-96 % of
pixels have a top-2 margin of 5 % of the logit range (was 62-84 %), and int8's flips sit on the
others. Its masks are semantic where a crop was fitted (astronaut 91 % PERSON, chelsea 94 % CAT)
and patchy elsewhere (motorcycle_left: 69 % MOTORBIKE, 17 % PERSON).

Made from the command line by scripts/realistic_checkpoint.py (`make fixture`); the tests and
scripts/int8_family.py import it. The manifest records such a file like any other checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from export.config import IMAGENET_MEAN, IMAGENET_STD
from export.rne.preprocess import load_photo, preprocess
from export.sources.models import MODELS, small_residual_branches

TEXTURES = ("grass", "gravel", "brick", "rocket", "hubble_deep_field")  # scene backgrounds
# Photo crops pasted as objects of a VOC class, so the fixture's masks on photos have a trained
# net's look (a cat on chelsea, a person on astronaut) instead of one class everywhere.
PHOTO_OBJECTS = {"astronaut": 15, "camera": 15, "chelsea": 8, "motorcycle_right": 14, "coffee": 11}
# BN statistics also see real photos so photo activations are in range (disjoint from parity/accuracy
# is not needed here: this is the model, not a gate's data)
BN_PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle_left", "rocket", "camera", "horse")
SCENE_CLASSES = (15, 8, 12, 7, 2, 14, 5, 19)  # person, cat, dog, car, bicycle, motorbike, bottle, train
LOGIT_RANGE = 30.0  # why: trained DeepLabV3 logits on photos span tens of units
# why 1e-2: measured on DeepLabV3-ResNet50 (the fixture before RESIDUAL_GAIN and STEM_SIGMA): no L2
# gives int8 agreement 77 % (worst photo), 1e-3 87 %, 1e-2 93 %; larger collapses photos to one class
WEIGHT_DECAY = 1e-2
# A trained ResNet's residual branches add small corrections to the skip path (its last BN's gamma
# is well under 1) and its stem filters are smooth; random init has neither, so its masks flip
# under sensor noise. Measured (DeepLabV3-ResNet50, worst of 4 photos, fp32 argmax agreement under
# 1 % Gaussian input noise): random-init gammas and stem 87.7 %; gain 0.2 90.3 %; gain 0.2 and stem
# smoothed (sigma 1.5 px) 97.7 %; gain 0.05 and stem 97.7 %, and with ASPP's projection fitted too
# (step 4) 99.0 % (gain 0.1: 98.8 %). int8 file vs fp32, worst accuracy photo: 94.2 % at gain 0.2
# without the projection, 98.1 % at gain 0.05 with it (98.4 % with 6 calibration views; gain 0.1
# with it and 6 views: 97.3 %)
RESIDUAL_GAIN = 0.05
STEM_SIGMA = 1.5


def _class_look(k: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Colour (RGB 0..1), stripe period (px) and angle for class k: fixed per seed."""
    return rng.uniform(0.1, 0.9, 3), float(rng.uniform(4, 16)), float(rng.uniform(0, math.pi))


def scenes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n RGB float32 [n,3,S,S] images in [0,1] and int64 masks [n,S,S] (0 = background)."""
    rng = np.random.default_rng(seed)
    looks = {k: _class_look(k, np.random.default_rng(1000 + k)) for k in SCENE_CLASSES}
    rgb = lambda name: cv2.cvtColor(load_photo(name), cv2.COLOR_BGR2RGB).astype(np.float32) / 255  # noqa: E731
    textures = [rgb(t) for t in TEXTURES]
    objects = [(rgb(p), k) for p, k in PHOTO_OBJECTS.items()]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    imgs = np.empty((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        tex = textures[rng.integers(len(textures))]
        scale = rng.uniform(0.3, 1.0)
        ch, cw = int(tex.shape[0] * scale), int(tex.shape[1] * scale)
        y0, x0 = rng.integers(0, tex.shape[0] - ch + 1), rng.integers(0, tex.shape[1] - cw + 1)
        img = cv2.resize(tex[y0 : y0 + ch, x0 : x0 + cw], (size, size), interpolation=cv2.INTER_LINEAR)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.15, 0.85, 2) * size
            ry, rx = rng.uniform(0.12, 0.4, 2) * size
            if rng.random() < 0.5:
                shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                shape = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
            if rng.random() < 0.5:  # a crop of a photo, labelled with its VOC class
                photo, k = objects[rng.integers(len(objects))]
                s = rng.uniform(0.4, 0.9)
                ph, pw = int(photo.shape[0] * s), int(photo.shape[1] * s)
                py, px = rng.integers(0, photo.shape[0] - ph + 1), rng.integers(0, photo.shape[1] - pw + 1)
                obj = cv2.resize(photo[py : py + ph, px : px + pw], (size, size), interpolation=cv2.INTER_LINEAR)
            else:  # a synthetic class: colour + stripes
                k = int(rng.choice(SCENE_CLASSES))
                colour, period, angle = looks[k]
                stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
                obj = np.clip(colour[None, None] * rng.uniform(0.7, 1.2) * (0.65 + 0.35 * stripes[..., None]), 0, 1)
            img[shape] = obj[shape]
            masks[i][shape] = k
        img += np.asarray(rng.normal(0, 0.02, img.shape), dtype=np.float32)  # sensor noise
        imgs[i] = np.clip(img, 0, 1)
    return imgs.transpose(0, 3, 1, 2).copy(), masks


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _photos(size: int) -> torch.Tensor:
    """The BN photos as the app feeds them (rne-0.5: RGB /255, no mean/std), [N,3,size,size]."""
    return torch.from_numpy(np.concatenate([preprocess(load_photo(p), size, size) for p in BN_PHOTOS]))


def _trained_like_init(model: nn.Module, residual_gain: float, stem_sigma: float) -> None:
    """Residual branches' last BN gamma = `residual_gain` (ResNet blocks); the first conv's filters,
    when 5x5 or wider (ResNet's 7x7 stem), blurred by a Gaussian of `stem_sigma` px, norm kept."""
    small_residual_branches(model, residual_gain)
    stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if stem is None or stem_sigma <= 0 or min(stem.kernel_size) < 5:
        return
    k = (
        cv2.getGaussianKernel(stem.kernel_size[0], stem_sigma)
        @ cv2.getGaussianKernel(stem.kernel_size[1], stem_sigma).T
    )
    with torch.no_grad():
        w = stem.weight.numpy()
        blurred = np.stack([[cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REFLECT) for f in out] for out in w])
        norms = lambda a: np.linalg.norm(a.reshape(len(a), -1), axis=1)[:, None, None, None]  # noqa: E731
        stem.weight.copy_(torch.from_numpy((blurred * norms(w) / norms(blurred)).astype(np.float32)))


def _recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    model.eval()


def _trainable_head(model: nn.Module, conv: nn.Conv2d) -> nn.Sequential:
    """The layers fitted: DeepLabV3's head from ASPP's 1x1 projection on (its five branches'
    1280 channels -> 256, then the 3x3 conv and the classifier, all at 1/8 scale: cheap), else the
    final 1x1 conv alone. A trained ASPP mixes its branches (the image-pooling one is the whole
    frame's context) into features that tell classes apart; random, it does not, and the masks
    fragment and flip under any rounding (measured beside RESIDUAL_GAIN)."""
    head = getattr(model, "classifier", None)
    if head is not None and head.__class__.__name__ == "DeepLabHead":
        return nn.Sequential(head[0].project, *list(head)[1:])
    return nn.Sequential(conv)


def _final_conv(model: nn.Module) -> nn.Conv2d:
    """The 1x1 conv that produces the logits (torchvision: the classifier's last conv)."""
    head = getattr(model, "classifier", model)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    if not convs:
        raise ValueError("no 1x1 classifier conv to fit")
    return convs[-1]


def make(
    builder: str,
    seed: int = 0,
    num_classes: int = 21,
    size: int = 128,
    n_train: int = 128,
    steps: int = 300,
    logit_range: float = LOGIT_RANGE,
    residual_gain: float = RESIDUAL_GAIN,
    stem_sigma: float = STEM_SIGMA,
    log=print,
) -> dict[str, torch.Tensor]:
    """A state dict (aux head included when the builder has one) with trained-like logits."""
    return make_member(
        FIXTURE, builder, seed, num_classes, size, n_train, steps, logit_range, residual_gain, stem_sigma, log
    )


@dataclass(frozen=True)
class Member:
    """One kind of weights in the family the int8 gates are measured on (issue 21). Axes:
    backbone realism, head logit scale, near-tie share (and an injected activation outlier)."""

    name: str
    # random (torchvision init: `--weights random`) | bn (BN re-estimated on photos) |
    # trained-like (small residual branches, smooth stem, BN re-estimated)
    backbone: str
    head: str  # none (random head) | final (last 1x1 conv fitted) | full (DeepLabV3: from ASPP's projection)
    logit_range: float | None  # median per-photo logit range the classifier is scaled to (None: as built)
    residual_gain: float = RESIDUAL_GAIN
    steps: int = 300  # head fit steps (fewer: an under-trained fine-tune)
    twins: float = 0.0  # target share of photo pixels whose class gets a near-copy class (near-ties)
    outlier: float = 0.0  # one activation channel scaled by this (exactly undone by the next conv)
    why: str = ""


FIXTURE = Member("fixture", "trained-like", "full", LOGIT_RANGE, why="the realistic fixture (make fixture)")
# why these: each axis from random to trained-like, logit scale from a few units to 60, near-ties
# from few to about half the pixels; `outlier_*` are broken on purpose (an activation channel 100x
# the others, which per-tensor int8 ranges crush), never healthy
FAMILY = (
    Member("random", "random", "none", None, why="torchvision init: logits span ~1-2 units, near-tied"),
    Member("random_trained_scale", "random", "none", 30.0, why="random backbone, head scaled to trained range"),
    Member("trained_backbone_random_head", "trained-like", "none", 12.0, why="trained-like backbone, random head"),
    Member("undertrained", "trained-like", "final", 22.0, residual_gain=0.2, steps=100, why="under-trained fine-tune"),
    Member(
        "undertrained_twins",
        "trained-like",
        "final",
        8.0,
        residual_gain=0.2,
        steps=100,
        twins=0.5,
        why="under-trained, small logits, about half the pixels near-tied",
    ),
    FIXTURE,
    replace(FIXTURE, name="fixture_small_scale", logit_range=5.0, why="the fixture at 5 units"),
    replace(FIXTURE, name="fixture_large_scale", logit_range=60.0, why="the fixture at 60 units"),
    replace(FIXTURE, name="fixture_twins", twins=0.3, why="the fixture with confusable classes (near-ties)"),
)
_UNDERTRAINED = next(m for m in FAMILY if m.name == "undertrained")
# Not a member: a random backbone with only its BatchNorm statistics re-estimated is chaotic (1 %
# sensor noise flips 70 % of its fp32 pixels; measured, seed 0): no metric can judge int8 on it
CHAOTIC = Member("bn_random_backbone", "bn", "none", 12.0, why="BN re-estimated on a random backbone: chaotic")
BROKEN_MEMBERS = (
    replace(FIXTURE, name="outlier_fixture", outlier=100.0, why="fixture + outlier channel"),
    replace(_UNDERTRAINED, name="outlier_undertrained", outlier=100.0, why="undertrained + outlier channel"),
)
MEMBERS = {m.name: m for m in (*FAMILY, *BROKEN_MEMBERS, CHAOTIC)}


def member(name: str) -> Member:
    if name not in MEMBERS:
        raise SystemExit(f"error: unknown family member {name!r}; valid: {', '.join(MEMBERS)}")
    return MEMBERS[name]


def make_member(
    m: Member,
    builder: str,
    seed: int = 0,
    num_classes: int = 21,
    size: int = 128,
    n_train: int = 128,
    steps: int | None = None,
    logit_range: float | None | str = "member",
    residual_gain: float | None = None,
    stem_sigma: float = STEM_SIGMA,
    log=print,
) -> dict[str, torch.Tensor]:
    """A state dict of family member `m` (aux head included when the builder has one)."""
    steps = m.steps if steps is None else steps
    target = m.logit_range if isinstance(logit_range, str) else logit_range  # "member": the member's own
    gain = m.residual_gain if residual_gain is None else residual_gain
    key = (builder, seed, num_classes, size, n_train, steps, gain, stem_sigma, m.backbone, m.head)
    if key not in _BASES:  # members that differ only in steps 5 (scale, twins, outlier) share their base
        _BASES.clear()  # one base at a time: each is a whole model's weights
        _BASES[key] = _fitted_base(m, builder, seed, num_classes, size, n_train, steps, gain, stem_sigma, log)
    has_aux = builder.startswith(("deeplabv3", "fcn"))
    model = MODELS.get(builder).build(num_classes, has_aux)
    model.load_state_dict(_BASES[key])
    model.eval()
    photos = _normalize(_photos(size))
    conv = _final_conv(model)
    with torch.no_grad():
        if m.twins > 0:
            _twin_classes(model, conv, photos, m.twins, seed, log)
        # 5. scale the classifier so photos' logits span `logit_range` (median over photos)
        if target is not None:
            ranges = [float(o.max() - o.min()) for o in model(photos)["out"]]
            scale = target / float(np.median(ranges))
            conv.weight.mul_(scale)
            if conv.bias is not None:
                conv.bias.mul_(scale)
            log(f"scaled classifier by {scale:.2f}")
        if m.outlier:
            log(f"outlier channel x{m.outlier:g} at {_inject_outlier(model, m.outlier)}")
    return model.state_dict()


_BASES: dict[tuple, dict[str, torch.Tensor]] = {}


def _fitted_base(m: Member, builder, seed, num_classes, size, n_train, steps, gain, stem_sigma, log):
    """Steps 1-4 of a member: init, BatchNorm statistics, head fit (before scale, twins, outlier)."""
    torch.manual_seed(seed)
    has_aux = builder.startswith(("deeplabv3", "fcn"))
    model = MODELS.get(builder).build(num_classes, has_aux)
    if m.backbone == "trained-like":
        _trained_like_init(model, gain, stem_sigma)
    photos = _normalize(_photos(size))
    conv = _final_conv(model)
    if m.backbone != "random" or m.head != "none":
        imgs, masks = scenes(n_train, size, seed)
        x_all = _normalize(torch.from_numpy(imgs))
        y_all = torch.from_numpy(masks)
    if m.backbone != "random":
        # 3. BatchNorm statistics of normalized activations, as a trained net has
        bn_batches = [
            torch.cat([x_all[i : i + 8], photos[i // 8 % len(photos)][None]]) for i in range(0, min(64, n_train), 8)
        ]
        _recalibrate_bn(model, bn_batches)
    model.eval()
    if m.head != "none":
        # 4. fit the head's last layers on their cached inputs (a forward hook), the rest frozen in eval
        # mode so training and inference compute the same thing; L2 keeps the fit on high-variance
        # feature directions (an unregularized fit leans on directions any rounding swamps)
        gen = torch.Generator().manual_seed(seed)
        head = _trainable_head(model, conv) if m.head == "full" else nn.Sequential(conv)
        _fit(head, _head_inputs(model, head, x_all), y_all, steps, gen, log)
        model.eval()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _twin_classes(model: nn.Module, conv: nn.Conv2d, photos: torch.Tensor, share: float, seed: int, log) -> None:
    """Give the classes that cover the most photo pixels (up to `share` of them) a near-copy among
    the classes no photo shows: their pixels become near-ties, as between a trained net's confusable
    classes (cat/dog, chair/sofa). The copy differs by 1 % of the weights' norm."""
    pred = model(photos)["out"].argmax(1).flatten()
    counts = torch.bincount(pred, minlength=conv.out_channels).double() / pred.numel()
    order = [int(k) for k in counts.argsort(descending=True)]
    unused = [k for k in reversed(order) if counts[k] == 0]
    gen = torch.Generator().manual_seed(seed + 7)
    covered = 0.0
    for k in order:
        if covered >= share or not unused:
            break
        j = unused.pop(0)
        noise = torch.randn(conv.weight[k].shape, generator=gen)
        conv.weight[j] = conv.weight[k] + 0.01 * noise * conv.weight[k].norm() / noise.norm()
        if conv.bias is not None:
            conv.bias[j] = conv.bias[k]
        covered += float(counts[k])
        log(f"class {j} twins class {k} ({float(counts[k]):.0%} of photo pixels)")


def _inject_outlier(model: nn.Module, factor: float) -> str:
    """One channel of a mid-network activation scaled by `factor`, undone exactly by the next conv
    (BN's gamma and beta times factor, ReLU keeps the factor, the next conv's input weights over it):
    fp32 output unchanged, but a per-tensor int8 range sized to that channel crushes the others."""
    blocks = [(n, m) for n, m in model.named_modules() if type(m).__name__ in ("Bottleneck", "BasicBlock")]
    if blocks:
        name, block = blocks[len(blocks) // 2]
        bn, nxt, where = block.bn1, block.conv2, f"{name}.bn1 -> {name}.conv2"
    else:  # a plain Sequential backbone: the first BatchNorm, ReLU, Conv2d run
        seq = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential)]
        name, mods = next((n, list(s)) for n, s in seq if any(isinstance(x, nn.BatchNorm2d) for x in s))
        i = next(i for i, x in enumerate(mods) if isinstance(x, nn.BatchNorm2d))
        bn, nxt, where = mods[i], mods[i + 2], f"{name}.{i} -> {name}.{i + 2}"
    bn.weight[0] *= factor
    bn.bias[0] *= factor
    nxt.weight[:, 0] /= factor
    return where


def _head_inputs(model: nn.Module, head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """What the fitted layers receive for inputs x (a forward hook; the model in eval mode)."""
    cached: list[torch.Tensor] = []
    hook = head[0].register_forward_hook(lambda m, i, o: cached.append(i[0].detach()))
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), 16):
            model(x[i : i + 16])
    hook.remove()
    return torch.cat(cached)


def _fit(head: nn.Sequential, inputs: torch.Tensor, masks: torch.Tensor, steps: int, gen, log) -> None:
    """Cross-entropy on the masks (upsampled logits, as the model upsamples) + L2 on conv weights."""
    params = list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    size = masks.shape[-2:]
    for step in range(steps):
        idx = torch.randint(0, len(inputs), (16,), generator=gen)
        logits = F.interpolate(head(inputs[idx]), size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks[idx]) + WEIGHT_DECAY * sum(p.pow(2).sum() for p in params if p.dim() == 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.3f}")

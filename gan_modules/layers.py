"""Building blocks and initialisation shared by the networks."""

from __future__ import annotations

from torch import Tensor, nn


def keras_bn_momentum(keras_momentum: float) -> float:
    """Keras BatchNormalization(momentum=m) keeps m of the old running stat; PyTorch keeps 1 - momentum."""
    return 1.0 - keras_momentum


def init_dcgan_weights(module: nn.Module) -> None:
    """Conv/linear weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), biases 0 (Radford et al. 2016)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def normalization_2d(kind: str, channels: int, momentum: float = 0.1) -> nn.Module:
    """'batch' -> BatchNorm2d, 'instance' -> InstanceNorm2d (affine), 'none' -> Identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}; choose 'batch', 'instance' or 'none'")


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018) through torch's parametrization, when enabled."""
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def init_glorot_weights(module: nn.Module) -> None:
    """Conv/linear weights ~ Glorot uniform, biases 0: Keras' defaults, for networks ported from Keras seeds."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class UNetDown(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, H/2, W/2]: 4x4 stride-2 conv, BatchNorm, LeakyReLU 0.2 (Isola et al. 2017)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=not norm),
            nn.BatchNorm2d(out_channels) if norm else nn.Identity(),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UNetUp(nn.Module):
    """[N, C_in, H, W] -> [N, C_out, 2H, 2W]: 4x4 stride-2 transposed conv, BatchNorm, dropout, ReLU (Isola et al.)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

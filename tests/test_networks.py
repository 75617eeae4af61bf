import pytest
import torch
from torch import nn

from gan_modules.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_stages
from gan_modules.layers import init_dcgan_weights, keras_bn_momentum
from gan_modules.vanilla import VanillaDiscriminator, VanillaGenerator


def test_vanilla_generator_shape_and_range():
    g = VanillaGenerator(latent_dim=8, image_shape=(1, 28, 28), hidden_dims=(16, 32), dropout=0.1)
    images = g(torch.randn(5, 8) * 10)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_vanilla_matches_the_seed_architecture():
    g = VanillaGenerator()
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    # Keras momentum 0.8 keeps 80% of the running stat: PyTorch momentum 0.2 does the same.
    assert len(norms) == 3 and all(m.momentum == pytest.approx(0.2) for m in norms)
    assert keras_bn_momentum(0.8) == pytest.approx(0.2)
    d = VanillaDiscriminator()
    d_linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in d_linears] == [(784, 512), (512, 256), (256, 1)]
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_batchnorm_momentum_means_what_keras_means():
    bn = VanillaGenerator(latent_dim=4, image_shape=(1, 2, 2), hidden_dims=(3,)).net[2]
    x = torch.randn(64, 3) + 5.0
    bn.train()
    bn(x)
    # running = 0.8 * old (0) + 0.2 * batch mean
    torch.testing.assert_close(bn.running_mean, 0.2 * x.mean(0))


def test_vanilla_discriminator_returns_logits():
    d = VanillaDiscriminator(image_shape=(1, 8, 8), hidden_dims=(16,))
    logits = d(torch.rand(4, 1, 8, 8) * 2 - 1)
    assert logits.shape == (4,)


@pytest.mark.parametrize("size, expected", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (128, (4, 5)), (16, (4, 2))])
def test_dcgan_stages(size, expected):
    assert dcgan_stages(size) == expected


@pytest.mark.parametrize("size", [5, 36, 100])
def test_dcgan_rejects_sizes_it_cannot_build(size):
    with pytest.raises(ValueError, match="image"):
        dcgan_stages(size)


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3), (16, 3)])
def test_dcgan_shapes_and_range(size, channels):
    g = DCGANGenerator(latent_dim=8, image_size=size, num_channels=channels, base_channels=4)
    d = DCGANDiscriminator(image_size=size, num_channels=channels, base_channels=4)
    images = g(torch.randn(3, 8))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)


def test_dcgan_64_follows_seed_002_widths():
    g = DCGANGenerator(latent_dim=100, image_size=64, num_channels=3, base_channels=64)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.out_channels for m in convs] == [512, 256, 128, 64, 64, 3]
    assert [m.kernel_size for m in convs] == [(4, 4)] * 4 + [(3, 3), (4, 4)]


def test_dcgan_init_is_normal_0_02():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=64, image_size=32, num_channels=3, base_channels=32)
    init_dcgan_weights(g)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert weights.mean().abs() < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("norm", ["none", "instance"])
def test_dcgan_discriminator_norm_options(norm):
    d = DCGANDiscriminator(image_size=16, num_channels=3, base_channels=4, norm=norm, spectral_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert d(torch.randn(2, 3, 16, 16)).shape == (2,)

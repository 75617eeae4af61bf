"""Standard, offline GAN metrics: FID and KID on TF-Inception features, precision/recall, density/coverage."""

from gan_modules.metrics.fid import GANMetrics, PassThrough, extract_features, to_uint8
from gan_modules.metrics.inception import (
    InceptionV3Features,
    cache_dir,
    converted_weights_path,
    feature_network,
    network_checksum,
    prepare_for_inception,
    resize_like_tf1,
)
from gan_modules.metrics.prdc import PrecisionRecallDensityCoverage, precision_recall_density_coverage
from gan_modules.metrics.reference import reference_features

__all__ = [
    "GANMetrics",
    "InceptionV3Features",
    "PassThrough",
    "PrecisionRecallDensityCoverage",
    "cache_dir",
    "converted_weights_path",
    "extract_features",
    "feature_network",
    "network_checksum",
    "precision_recall_density_coverage",
    "prepare_for_inception",
    "reference_features",
    "resize_like_tf1",
    "to_uint8",
]

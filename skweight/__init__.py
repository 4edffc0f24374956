"""skweight: imbalance-aware deep learning on images, the scikit-learn way."""

from .classifier import CNNClassifier
from .regressor import CNNRegressor
from .segmenter import CNNSegmenter

__version__ = "0.3.0.dev0"

__all__ = ["CNNClassifier", "CNNRegressor", "CNNSegmenter", "__version__"]

"""skweight: imbalance-aware deep learning on images, the scikit-learn way."""

from .classifier import CNNClassifier

__version__ = "0.1.0"

__all__ = ["CNNClassifier", "__version__"]

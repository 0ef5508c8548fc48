"""vggrepro: Simonyan & Zisserman's VGG paper as a reproducibility workflow."""

__version__ = "0.1.0"

"""nlnet: Non-local Neural Networks (Wang, Girshick, Gupta, He, CVPR 2018) for video recognition."""

__version__ = "0.1.0"

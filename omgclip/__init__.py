"""omgclip: which of 7 emotions a face shows in each stretch of a video.

Importing the package is instant and side-effect free: torch, dlib and OpenCV are imported
lazily by the modules that need them.
"""

from omgclip.labels import EMOTIONS, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "NUM_CLASSES", "__version__"]

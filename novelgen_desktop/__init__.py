"""NovelGen Desktop: bulk, durable, style-consistent image generation for graphic novels."""

__version__ = "0.1.0"

"""fim_model: a small block-diffusion language model for fill-in-the-middle code completion."""

from .api import EMBEDDED_CHECKPOINT, DecodingCancelled, InfillModel, Middle
from .sampler import SamplerSettings

__all__ = ["EMBEDDED_CHECKPOINT", "DecodingCancelled", "InfillModel", "Middle", "SamplerSettings"]

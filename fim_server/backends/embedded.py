"""The embedded block-diffusion model (fim_model), shipped inside the package: the
offline default."""

from __future__ import annotations

from pathlib import Path

import torch

from fim_model import EMBEDDED_CHECKPOINT, DecodingCancelled, InfillModel, SamplerSettings

from ..config import defaults
from .base import Backend, BackendError, BackendSpec, Infill, InfillCancelled, InfillRequest


class EmbeddedBackend(Backend):
    name = "embedded"
    batches = True  # several middles decode as one batch (fim_model.api.infill_candidates)

    def __init__(self, model: InfillModel, folder: Path, device: str) -> None:
        self.model = model
        # A GPU decodes a batch of middles in about the time of one; a CPU core does not.
        self.candidates = (
            defaults.CANDIDATES_CUDA if device.startswith("cuda") else defaults.CANDIDATES_CPU
        )
        cfg = model.model.cfg
        self.context_tokens: int | None = cfg.context_tokens or None
        params = sum(p.numel() for p in model.model.parameters())
        where = "shipped" if folder == EMBEDDED_CHECKPOINT else str(folder)
        self.description = (
            f"embedded block-diffusion model ({params / 1e6:.1f}M parameters, "
            f"blocks of {cfg.block_size}; {where}) on {device}"
        )

    @classmethod
    def load(cls, spec: BackendSpec) -> EmbeddedBackend:
        folder = Path(spec.model_path) if spec.model_path else EMBEDDED_CHECKPOINT
        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        try:
            model = InfillModel.load(
                folder, device=spec.device, settings=SamplerSettings(threshold=spec.threshold)
            )
        except (FileNotFoundError, ValueError) as exc:  # both name the file
            raise BackendError(str(exc)) from None
        backend = cls(model, folder, spec.device)
        # The first forward pass pays for lazy initialisation inside torch; pay it here
        # rather than in the user's first completion.
        backend.infill(InfillRequest("def f(", "):\n    pass\n", max_tokens=4))
        return backend

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def infill(self, request: InfillRequest) -> list[Infill]:
        try:
            middles = self.model.infill_candidates(
                request.model_prefix,
                request.suffix,
                count=request.count,
                max_tokens=request.max_tokens,
                single_line=request.single_line,
                should_cancel=request.should_cancel,
                seed=request.seed,
            )
        except DecodingCancelled as exc:
            raise InfillCancelled(str(exc)) from exc
        return [Infill(m.text, m.tokens, m.forward_passes, m.confidence, m.ended) for m in middles]

    def close(self) -> None:
        pass

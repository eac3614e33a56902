"""The embedded block-diffusion model (fim_model), shipped inside the package: the
offline default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from fim_model import EMBEDDED_CHECKPOINT, InfillModel, SamplerSettings
from fim_model import InfillCancelled as ModelCancelled

from .. import defaults
from .base import BackendError, BackendSpec, Infill, InfillCancelled


class EmbeddedBackend:
    name = "embedded"

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
        backend.infill(
            "def f(", "):\n    pass\n", max_tokens=4, single_line=False,
            should_cancel=lambda: False, seed=0,
        )  # fmt: skip
        return backend

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def infill(
        self,
        prefix: str,
        suffix: str,
        *,
        max_tokens: int,
        single_line: bool,
        should_cancel: Callable[[], bool],
        seed: int,
    ) -> Infill:
        try:
            result = self.model.infill(
                prefix,
                suffix,
                max_tokens=max_tokens,
                single_line=single_line,
                should_cancel=should_cancel,
                seed=seed,
            )
        except ModelCancelled as exc:
            raise InfillCancelled(str(exc)) from exc
        return Infill(
            result.text, result.tokens, result.forward_passes, result.confidence, result.ended
        )

    def infill_candidates(
        self,
        prefix: str,
        suffix: str,
        *,
        count: int,
        max_tokens: int,
        single_line: bool,
        should_cancel: Callable[[], bool],
        seed: int,
    ) -> list[Infill]:
        try:
            results = self.model.infill_candidates(
                prefix,
                suffix,
                count=count,
                max_tokens=max_tokens,
                single_line=single_line,
                should_cancel=should_cancel,
                seed=seed,
            )
        except ModelCancelled as exc:
            raise InfillCancelled(str(exc)) from exc
        return [Infill(r.text, r.tokens, r.forward_passes, r.confidence, r.ended) for r in results]

    def close(self) -> None:
        pass

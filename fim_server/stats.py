"""Counters of the completion pipeline, as `fim/stats` reports them: one set per session
(per TCP connection), with the state of the backend that session uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineStats:
    requests: int = 0
    completions: int = 0  # requests answered with non-empty text: suggestions shown
    gated: int = 0  # completions the confidence gate hid (below minConfidence)
    model_runs: int = 0  # backend infill calls that finished
    tokens_generated: int = 0
    forward_passes: int = 0
    model_ms: float = 0.0
    last_latency_ms: float = 0.0
    cache_hits: int = 0  # answered from the cache or by typing-through, without the model
    cancelled: int = 0  # requests cancelled by the caller, queued or running
    superseded: int = 0  # requests dropped because a newer one came
    interrupted: int = 0  # model runs stopped mid-way by a cancellation
    errors: int = 0
    last_error: str | None = None  # the backend's last failure; None once it answers again
    accepted: int = 0  # completions the editor reports the user accepted (fim/accepted)
    accepted_chars: int = 0  # characters those acceptances inserted
    speculative: int = 0  # completions computed ahead after an acceptance
    # accepted / completions, once a client has reported an acceptance; None before.
    acceptance_rate: float | None = None
    # The confidence of the last completion (the gate's score, shown or hidden) and the
    # backend's own part of it; None when the last request had no completion to judge.
    last_confidence: float | None = None
    last_model_confidence: float | None = None
    min_confidence: float = 0.0  # the gate in force (the user's, or the backend's default)
    last_mode: str | None = None  # the completion mode of the last request, for clients
    last_language: str | None = None  # and the language it was read as (None: plain text)
    busy: bool = False  # the backend is running a request of this session right now
    backend: str | None = None  # the loaded backend's name ("embedded", ...)
    backend_description: str | None = None  # what it is, on which device
    model_ready: bool = False
    model_error: str | None = None
    load_ms: float = 0.0

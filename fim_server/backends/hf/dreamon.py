"""DreamOn: Dream-org/DreamOn-v0-7B, Dream-Coder fine-tuned to grow and shrink the middle.

Checked against: DreamLM/DreamOn eval/generator.py (`batch_generate_with_expand_as_token`:
every pass runs the whole sequence; a committed <|expand|> (id 151667, also in
src/trainer/sft_expand_dataset.py) becomes two masks while the expansion budget lasts and
its logit is suppressed once the middle is as long as allowed; `pad_eos_to_right` turns
the masks after the first end-of-text in the middle into end-of-text, and
`delete_eos_token` deletes end-of-text tokens from the middle, so the middle shrinks),
eval/configs/eval_infill.yaml (start from min_gen_len 4 masks, max_gen_len 64) and
demo/quickstart.py (prompt [bos] prefix [mask]*n suffix [eos]). The network, shift and
special tokens are Dream's.

Decoding: the fast path (decoding.decode_variable_length) commits every position above
the threshold, greedy in maskgit_plus order, with no step cap; at threshold 1.0 it is the
official loop with maskgit_plus and the cap lifted (issue 30's outside check; the
fast path also bans the mask token from predictions, which the official loop does not).
`dreamon-official` (official.decode_dreamon_expand) is the official loop as
eval_humaneval_infilling.sh runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import TokenizerFiles
from .dream import Dream
from .family import SpecialTokens, architectures, model_type

EXPAND = "<|expand|>"
INITIAL_MASKS = 4  # eval_infill.yaml min_gen_len


def _has_expand_token(folder: Path) -> bool:
    for name in ("added_tokens.json", "tokenizer_config.json", "tokenizer.json"):
        path = folder / name
        try:
            if path.is_file() and EXPAND in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


class DreamOn(Dream):
    kind = "dreamon"
    title = "DreamOn (Dream with <|expand|>/delete: the middle's length is decoded too)"
    variable_length = True
    infilling = "variable-length infilling: the middle expands and shrinks while decoding"
    reference = "DreamLM/DreamOn eval/generator.py"

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        dream = model_type(config) == "dream" or "DreamModel" in architectures(config)
        return dream and _has_expand_token(folder)

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        base = super().special_tokens(folder, config, tok)
        expand = tok.token_id(EXPAND)
        return SpecialTokens(
            mask=base.mask, bos=base.bos, eos=base.eos, stops=base.stops, expand=expand
        )


FAMILY = DreamOn()

"""Every default a user can change, defined once: settings, the command line, the engine
and the backends all read them from here."""

# Token budgets of one completion: a rest-of-line or single-line completion, a block
# (four blocks of the embedded model: a few statements, within a second on one CPU
# thread), and inside comments and strings (prose, where a long guess is rarely what the
# user meant to write).
LINE_TOKENS = 48
BLOCK_TOKENS = 64
LITERAL_TOKENS = 24
# An automatic block stops at its first line break after this long (milliseconds;
# llama.cpp's t_max_predict_ms, llama.vim's limit): a CPU writes a long block for
# seconds while the user types. A block the user asks for runs to its token budget.
# Writing 8 lines of two Python files as new code with the 0.5B on two cores
# (results/real-model/block-ms/, alternating): 1500, 700 and 400 typed the same 71.0% of
# the characters by completions, keystroke p95 1.87-1.90 s, 1.29-1.30 s and 1.03-1.08 s.
# 700 keeps about two lines of a block (the 0.5B writes ~24 tokens/s there).
BLOCK_MS = 700

# Wait this long after a keystroke before running the model: a burst of keystrokes runs
# it once, for the last one.
DEBOUNCE_MS = 50

# Completions kept in the LRU cache (0 turns the cache and typing-through off).
CACHE_SIZE = 256

# Diffusion decoding commits every masked position whose confidence clears this; lower:
# fewer forward passes per token, more mistakes; 1.0 commits one token per pass.
THRESHOLD = 0.9

# Completions offered at once (several InlineCompletionItems the editor cycles through),
# where the backend decodes them together: a GPU decodes a batch of middles in about the
# time of one, a CPU core does not (the embedded model's pass is bound by reading its
# weights, shared by the batch, but attention and the sampler grow with it).
CANDIDATES_CPU = 1
CANDIDATES_CUDA = 3
# (The first is the greedy answer, the others sampled: fim_model.api.CANDIDATE_TEMPERATURE.)

# Torch intra-op threads. The embedded model's matrices are small, so extra threads
# mostly add synchronisation, and under load from other processes (the editor, a build)
# they stall each other: one thread was ~40x faster per step on a busy 2-core machine.
THREADS = 1

# TCP clients served at once (each its own session over one shared model); more are refused.
MAX_SESSIONS = 8
# When they are all taken, a new client takes the slot of the session idle longest, if it
# has sent nothing and had nothing running for this long (seconds): idle connections
# cannot hold every slot forever, and an editor a user is typing in never loses its own.
IDLE_SESSION_S = 60.0

# A remote backend gives up on a request after this long (milliseconds). Generous: a CPU
# model takes seconds for a cold prompt, a timeout throws that work away, and a request
# the user has moved on from is cancelled anyway (a newer keystroke supersedes it).
REMOTE_TIMEOUT_MS = 30_000

-- ~/.config/nvim/init.lua: fim-server ghost text (Neovim 0.9+, no plugin manager needed).
vim.opt.runtimepath:append('/path/to/fim-server/editors/neovim') -- this repository's plugin folder
require('fim').setup({
  cmd = { '/path/to/fim-server/.venv/bin/fim-server' },
  -- model = '~/models/fim-checkpoint', -- another checkpoint (--model PATH)
  debounce_ms = 75, -- quiet time before asking
  -- min_confidence = 0.2, -- show more (and more wrong) suggestions; 0 shows every one
  -- candidates = 3, -- suggestions per request (default: 1 on CPU, 3 on CUDA)
  -- line_tokens = 48, -- length budgets of a one-line and a block completion
  -- block_tokens = 64,
  -- block_ms = 700, -- an automatic block stops at its first line break after this long
  -- A model server instead of the embedded model (docs/remote.md):
  -- backend = 'llama.cpp', -- or 'openai' (vLLM, SGLang), 'mercury'
  -- endpoint = 'http://127.0.0.1:8080',
  -- timeout_ms = 5000, -- give up on an answer after this long
  -- auto_trigger = false, -- ask only with the trigger key
  keymaps = {
    accept = '<Tab>',
    accept_word = '<C-Right>',
    accept_line = '<C-Down>',
    dismiss = '<C-]>',
    trigger = '<M-\\>',
    next = '<M-]>', -- cycle through several suggestions (candidates)
    prev = '<M-[>',
  },
})
-- The model's state (fim: loading / working / ready / error / off) at the right of the
-- statusline.
vim.o.statusline = "%f %m%=%{v:lua.require'fim'.status()}  %l:%c "

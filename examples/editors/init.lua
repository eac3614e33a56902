-- ~/.config/nvim/init.lua: fim-server ghost text (Neovim 0.9+, no plugin manager needed).
vim.opt.runtimepath:append('/path/to/fim-server/editors/neovim') -- this repository's plugin folder
require('fim').setup({
  cmd = { '/path/to/fim-server/.venv/bin/fim-server' },
  -- model = '~/models/fim-checkpoint', -- another checkpoint (--model PATH)
  debounce_ms = 75,
  -- line_tokens = 48, block_tokens = 64, context_tokens = nil, cross_file = nil,
  -- candidates = 3, -- suggestions per request (default: 1 on CPU, 3 on CUDA)
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
-- The model's state (fim: loading / ready / error / off) at the right of the statusline.
vim.o.statusline = "%f %m%=%{v:lua.require'fim'.status()}  %l:%c "

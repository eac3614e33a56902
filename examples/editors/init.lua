-- ~/.config/nvim/init.lua: fim-server ghost text with lazy.nvim.
-- Bootstrap lazy.nvim (https://lazy.folke.io/installation) first, then:
require('lazy').setup({
  {
    dir = '/path/to/fim-server/editors/neovim', -- this repository's plugin folder
    name = 'fim',
    ft = { 'python', 'javascript', 'typescript', 'typescriptreact', 'go', 'rust', 'java',
           'c', 'cpp', 'lua', 'sh' },
    opts = {
      cmd = { '/path/to/fim-server/.venv/bin/fim-server' },
      -- model = '~/models/fim-checkpoint',   -- another checkpoint (--model PATH)
      debounce_ms = 75,
      -- line_tokens = 48, block_tokens = 64, context_tokens = nil, cross_file = nil,
      keymaps = { accept = '<Tab>', dismiss = '<C-]>', trigger = '<M-\\>' },
    },
  },
})

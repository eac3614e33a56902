-- ~/.config/nvim/lua/plugins/fim.lua: the same with lazy.nvim (https://lazy.folke.io)
return {
  dir = '/path/to/fim-server/editors/neovim',
  name = 'fim',
  opts = {
    cmd = { '/path/to/fim-server/.venv/bin/fim-server' },
    debounce_ms = 75,
  },
}

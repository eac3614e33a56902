-- ~/.config/nvim/lua/plugins/fim.lua: the same with lazy.nvim (https://lazy.folke.io)
return {
  dir = '/path/to/fim-server/editors/neovim',
  name = 'fim',
  opts = {
    cmd = { '/path/to/fim-server/.venv/bin/fim-server' },
    debounce_ms = 75, -- quiet time before asking
    -- min_confidence = 0.2, -- show more (and more wrong) suggestions; 0 shows every one
    -- candidates = 3, -- suggestions per request (default: 1 on CPU, 3 on CUDA)
    -- backend = 'llama.cpp', -- a model server instead of the embedded model (docs/remote.md)
    -- endpoint = 'http://127.0.0.1:8080',
    -- timeout_ms = 5000, -- give up on an answer after this long
  },
}

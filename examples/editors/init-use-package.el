;;; init-use-package.el --- the same with use-package (built in from Emacs 29)
(use-package fim
  :load-path "/path/to/fim-server/editors/emacs"
  :custom
  (fim-server-command '("/path/to/fim-server/.venv/bin/fim-server"))
  (fim-debounce-ms 75)
  :config
  (fim-setup))

;;; init-use-package.el --- the same with use-package (built in from Emacs 29)
(use-package fim
  :load-path "/path/to/fim-server/editors/emacs"
  :custom
  (fim-server-command '("/path/to/fim-server/.venv/bin/fim-server"))
  (fim-debounce-ms 75)                       ; quiet time before asking
  ;; (fim-min-confidence 0.2)                ; show more (and more wrong) suggestions; 0: all
  ;; (fim-candidates 3)                      ; suggestions to cycle (M-] / M-[)
  ;; (fim-motion-keys-accept t)              ; M-f / C-e take a word / line of one
  ;; (fim-backend "llama.cpp")               ; a model server (docs/remote.md)
  ;; (fim-endpoint "http://127.0.0.1:8080")
  ;; (fim-timeout-ms 5000)                   ; give up on an answer after this long
  :config
  (fim-setup))

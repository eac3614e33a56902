;;; init.el --- fim-server ghost text in Emacs 27+ with eglot (no use-package needed)
;; eglot is built in from Emacs 29; on 27/28: apt-get install elpa-eglot, or
;; M-x package-install RET eglot.
(add-to-list 'load-path "/path/to/fim-server/editors/emacs") ; this repository's package folder
(require 'fim)
(setq fim-server-command '("/path/to/fim-server/.venv/bin/fim-server"))
;; (setq fim-model-path "~/models/fim-checkpoint")       ; another checkpoint (--model PATH)
(setq fim-debounce-ms 75)
;; (setq fim-candidates 3)                               ; suggestions to cycle (M-] / M-[)
(fim-setup)                      ; eglot + fim-mode in the ten languages' major modes

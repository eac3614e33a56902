;;; init.el --- fim-server ghost text in Emacs 27+ with eglot (no use-package needed)
;; eglot is built in from Emacs 29; on 27/28: apt-get install elpa-eglot, or
;; M-x package-install RET eglot.
(add-to-list 'load-path "/path/to/fim-server/editors/emacs") ; this repository's package folder
(require 'fim)
(setq fim-server-command '("/path/to/fim-server/.venv/bin/fim-server"))
;; (setq fim-model-path "~/models/fim-checkpoint")       ; another checkpoint (--model PATH)
(setq fim-debounce-ms 75)                               ; quiet time before asking
;; (setq fim-min-confidence 0.2)                         ; show more (and more wrong) suggestions; 0: all
;; (setq fim-candidates 3)                               ; suggestions to cycle (M-] / M-[)
;; (setq fim-motion-keys-accept t)                       ; M-f / C-e take a word / line of one
;; A model server instead of the embedded model (docs/remote.md):
;; (setq fim-backend "llama.cpp")                        ; or "openai" (vLLM, SGLang), "mercury"
;; (setq fim-endpoint "http://127.0.0.1:8080")
;; (setq fim-timeout-ms 5000)                            ; give up on an answer after this long
(fim-setup)                      ; eglot + fim-mode in the ten languages' major modes

;;; init.el --- fim-server ghost text with use-package (Emacs 27+, eglot)

;; Emacs 29+ ships eglot and use-package; on 27/28 install them first
;; (M-x package-install RET eglot, or apt-get install elpa-eglot).
(use-package eglot :ensure t)

(use-package fim
  :load-path "/path/to/fim-server/editors/emacs"   ; this repository's package folder
  :after eglot
  :custom
  (fim-server-command '("/path/to/fim-server/.venv/bin/fim-server"))
  ;; (fim-model-path "~/models/fim-checkpoint")    ; another checkpoint (--model PATH)
  (fim-debounce-ms 75)
  :bind (:map fim-mode-map ("M-\\" . fim-complete))
  :config
  (fim-setup))                                      ; eglot + fim-mode in Python buffers

;;; fim.el --- Ghost-text code completion from fim-server through eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1") (eglot "1.9") (jsonrpc "1.0.14"))
;; Keywords: convenience, languages, tools
;; URL: https://github.com/fim-server/fim-server

;;; Commentary:

;; fim-server is a language server that fills the gap at point with a small
;; block-diffusion model.  This package
;;
;; - registers it with eglot for `fim-major-modes', so `M-x eglot' (or
;;   `eglot-ensure') starts it and `completion-at-point' offers its
;;   completion through the ordinary `textDocument/completion';
;; - provides `fim-mode', a minor mode that asks the server for
;;   `textDocument/inlineCompletion' while you type and shows the answer as
;;   ghost text after point: TAB accepts it, M-] and M-[ cycle through the
;;   suggestions, C-g or moving point dismisses it.
;;
;;   (require 'fim)
;;   (fim-setup)                    ; eglot + fim-mode in `fim-major-modes'

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)

(defgroup fim nil
  "Ghost-text code completion from fim-server."
  :group 'tools
  :prefix "fim-")

(defcustom fim-server-command '("fim-server")
  "Command that starts fim-server; \"--stdio\" and \"--model\" are added."
  :type '(repeat string))

(defcustom fim-model-path nil
  "Checkpoint folder passed as \"--model PATH\"; nil uses the shipped model."
  :type '(choice (const :tag "Shipped model" nil) directory))

(defcustom fim-major-modes
  '(python-mode python-ts-mode js-mode js-ts-mode typescript-mode typescript-ts-mode
    tsx-ts-mode go-mode go-ts-mode rust-mode rust-ts-mode java-mode java-ts-mode
    c-mode c-ts-mode c++-mode c++-ts-mode lua-mode lua-ts-mode sh-mode bash-ts-mode)
  "Major modes whose buffers fim-server serves."
  :type '(repeat symbol))

(defcustom fim-enable t
  "Non-nil: request completions.  `fim-toggle' flips it."
  :type 'boolean)

(defcustom fim-debounce-ms 75
  "Milliseconds without typing before `fim-mode' sends a request."
  :type 'integer)

(defcustom fim-context-tokens nil
  "Context token budget sent to the server; nil keeps the server's default."
  :type '(choice (const nil) integer))

(defcustom fim-line-tokens nil
  "Token budget of a single-line completion; nil keeps the server's default."
  :type '(choice (const nil) integer))

(defcustom fim-block-tokens nil
  "Token budget of a multi-line completion; nil keeps the server's default."
  :type '(choice (const nil) integer))

(defcustom fim-cross-file nil
  "Whether the server may use other files as context; nil keeps its default.
Use `:json-false' to turn it off explicitly."
  :type '(choice (const :tag "Server default" nil) (const t) (const :json-false)))

(defcustom fim-backend nil
  "What fills the middle: \"embedded\", \"mercury\", \"openai\" or \"llama.cpp\".
nil keeps the server's command line.  See docs/remote.md."
  :type '(choice (const nil) string))

(defcustom fim-endpoint nil
  "Base URL of a remote backend's server; nil: the backend's default."
  :type '(choice (const nil) string))

(defcustom fim-remote-model nil
  "The model field of each remote request; nil: the backend's default."
  :type '(choice (const nil) string))

(defcustom fim-api-key-env nil
  "Name of the environment variable holding the API key (never the key itself)."
  :type '(choice (const nil) string))

(defcustom fim-timeout-ms nil
  "Milliseconds before a remote request is given up; nil: the server's default."
  :type '(choice (const nil) integer))

(defcustom fim-headers nil
  "Extra HTTP headers for remote requests, a plist such as (:X-Team \"a\")."
  :type '(choice (const nil) plist))

(defcustom fim-fim-template nil
  "openai backend: a raw prompt with the model's FIM tokens.
{prefix} and {suffix} stand for the code before and after the cursor."
  :type '(choice (const nil) string))

(defcustom fim-auto-trigger t
  "Non-nil: `fim-mode' asks while you type; nil: only `fim-complete' asks."
  :type 'boolean)

(defface fim-ghost-face '((t :inherit shadow))
  "Face of the ghost text.")

;;;; Server registration

(defun fim-server-settings ()
  "The server's settings as a plist, keys set by the user only."
  (append
   (list :enable (if fim-enable t :json-false) :debounceMs fim-debounce-ms)
   (and fim-context-tokens (list :contextTokens fim-context-tokens))
   (and fim-line-tokens (list :lineTokens fim-line-tokens))
   (and fim-block-tokens (list :blockTokens fim-block-tokens))
   (and fim-cross-file (list :crossFile fim-cross-file))
   (and fim-backend (list :backend fim-backend))
   (and fim-endpoint (list :endpoint fim-endpoint))
   (and fim-remote-model (list :remoteModel fim-remote-model))
   (and fim-api-key-env (list :apiKeyEnv fim-api-key-env))
   (and fim-timeout-ms (list :timeoutMs fim-timeout-ms))
   (and fim-headers (list :headers fim-headers))
   (and fim-fim-template (list :fimTemplate fim-fim-template))))

(defun fim-server-contact (&optional _interactive)
  "Eglot contact for fim-server: the command and its initializationOptions."
  (append fim-server-command
          (unless (member "--stdio" fim-server-command) (list "--stdio"))
          (and fim-model-path (list "--model" (expand-file-name fim-model-path)))
          (list :initializationOptions (lambda (_server) (fim-server-settings)))))

(defun fim-register ()
  "Make eglot start fim-server in `fim-major-modes'."
  (setq eglot-server-programs
        (cons (cons fim-major-modes #'fim-server-contact)
              (cl-remove #'fim-server-contact eglot-server-programs :key #'cdr))))

(defun fim--servers ()
  "Live eglot connections to fim-server."
  (let (servers)
    (maphash (lambda (_project list)
               (dolist (server list)
                 (when (and (jsonrpc-running-p server)
                            (equal (plist-get (eglot--server-info server) :name)
                                   "fim-server"))
                   (push server servers))))
             eglot--servers-by-project)
    servers))

(defun fim--server ()
  "This buffer's eglot connection, when it is fim-server."
  (let ((server (and (bound-and-true-p eglot--managed-mode) (eglot-current-server))))
    (and server
         (equal (plist-get (eglot--server-info server) :name) "fim-server")
         server)))

(defun fim-signal-settings ()
  "Send the current settings to every fim-server with didChangeConfiguration."
  (dolist (server (fim--servers))
    (jsonrpc-notify server :workspace/didChangeConfiguration
                    (list :settings (list :fim (fim-server-settings))))))

;;;; Ghost text

(defvar-local fim--overlay nil "Overlay showing the ghost text.")
(defvar-local fim--items nil "Vector of the suggestions' texts.")
(defvar-local fim--index 0 "Index in `fim--items' of the suggestion shown.")
(defvar-local fim--showing nil "Non-nil while a suggestion is shown.")
(defvar-local fim--timer nil)
(defvar-local fim--request-id nil)
(defvar-local fim--tick nil "Buffer tick after the last command.")

(defvar fim-active-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'fim-accept)
    (define-key map (kbd "<tab>") #'fim-accept)
    (define-key map (kbd "M-]") #'fim-next)
    (define-key map (kbd "M-[") #'fim-previous)
    (define-key map (kbd "C-g") #'fim-dismiss)
    map)
  "Keys active while a suggestion is shown.")

(add-to-list 'minor-mode-map-alist (cons 'fim--showing fim-active-map))

(defvar fim-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "M-\\") #'fim-complete)
    map)
  "Keymap of `fim-mode'.")

(defun fim-current ()
  "Text of the suggestion shown, or nil."
  (and fim--showing (aref fim--items fim--index)))

(defun fim--cancel-request ()
  (when fim--timer
    (cancel-timer fim--timer)
    (setq fim--timer nil))
  (setq fim--request-id nil))

(defun fim-dismiss ()
  "Hide the ghost text."
  (interactive)
  (fim--cancel-request)
  (when fim--overlay
    (delete-overlay fim--overlay)
    (setq fim--overlay nil))
  (setq fim--showing nil fim--items nil fim--index 0))

(defun fim--show ()
  (let ((text (copy-sequence (aref fim--items fim--index))))
    (unless (string-empty-p text)
      (add-text-properties 0 (length text) '(face fim-ghost-face) text)
      ;; The cursor stays in front of the ghost text.
      (put-text-property 0 1 'cursor t text))
    (unless fim--overlay
      (setq fim--overlay (make-overlay (point) (point) nil nil t)))
    (move-overlay fim--overlay (point) (point))
    (overlay-put fim--overlay 'after-string text)
    (overlay-put fim--overlay 'fim t)
    (setq fim--showing t)))

(defun fim--item-text (item point)
  "The text ITEM adds at POINT, or nil when it does not fit the buffer."
  (let ((text (plist-get item :insertText))
        (range (plist-get item :range)))
    (when (and (listp text) (plist-get text :value))
      (setq text (plist-get text :value))) ; a snippet: inserted as plain text
    (when (and (stringp text) range)
      (let* ((start (eglot--lsp-position-to-point (plist-get range :start)))
             (typed (and (<= start point) (buffer-substring-no-properties start point))))
        (setq text (and typed (string-prefix-p typed text) (substring text (length typed))))))
    (and (stringp text) (not (string-empty-p text)) text)))

(defun fim--handle (buffer point tick id result)
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (when (and (eql id fim--request-id)
                 (= point (point))
                 (= tick (buffer-chars-modified-tick)))
        (setq fim--request-id nil)
        (let* ((items (if (vectorp result) result (plist-get result :items)))
               (texts (delq nil (mapcar (lambda (item) (fim--item-text item point))
                                        (append items nil)))))
          (if (null texts)
              (fim-dismiss)
            (setq fim--items (vconcat texts) fim--index 0)
            (fim--show)))))))

(defvar fim--request-counter 0)

(defun fim-complete (&optional automatic)
  "Ask fim-server for a suggestion at point and show it as ghost text.
AUTOMATIC non-nil: asked while typing rather than by the user."
  (interactive)
  (let ((server (fim--server)))
    (cond
     ((not fim-enable) (when (called-interactively-p 'any) (message "fim: completions are off")))
     ((not server) (when (called-interactively-p 'any) (message "fim: no fim-server here")))
     (t
      (fim--cancel-request)
      ;; eglot sends buffer changes when idle: flush them so the server sees this text.
      (eglot--signal-textDocument/didChange)
      (let* ((buffer (current-buffer))
             (point (point))
             (tick (buffer-chars-modified-tick))
             (id (cl-incf fim--request-counter))
             (params (append (eglot--TextDocumentPositionParams)
                             (list :context (list :triggerKind (if automatic 2 1))))))
        (setq fim--request-id id)
        (jsonrpc-async-request
         server :textDocument/inlineCompletion params
         :success-fn (lambda (result) (fim--handle buffer point tick id result))
         :error-fn (lambda (err)
                     (when (buffer-live-p buffer)
                       (with-current-buffer buffer
                         (when (eql id fim--request-id) (setq fim--request-id nil))))
                     (unless (eq (plist-get err :code) -32800) ; cancelled
                       (message "fim: %s" (plist-get err :message))))
         :timeout-fn #'ignore))))))

(defun fim-accept ()
  "Insert the suggestion shown."
  (interactive)
  (let ((text (fim-current)))
    (fim-dismiss)
    (when text
      (insert text)
      (setq fim--tick (buffer-chars-modified-tick)))))

(defun fim--cycle (step)
  (when fim--showing
    (setq fim--index (mod (+ fim--index step) (length fim--items)))
    (fim--show)))

(defun fim-next ()
  "Show the next suggestion."
  (interactive)
  (fim--cycle 1))

(defun fim-previous ()
  "Show the previous suggestion."
  (interactive)
  (fim--cycle -1))

(defun fim--post-command ()
  (let ((tick (buffer-chars-modified-tick)))
    (unless (memq this-command '(fim-accept fim-next fim-previous fim-complete fim-dismiss))
      (when (and fim--showing
                 (or (not (eql tick fim--tick))
                     (not (eql (point) (overlay-start fim--overlay)))))
        (fim-dismiss))
      (when (and fim-enable fim-auto-trigger (not (eql tick fim--tick))
                 (memq this-command '(self-insert-command org-self-insert-command
                                      newline python-indent-dedent-line-backspace
                                      delete-backward-char backward-delete-char-untabify)))
        (fim--cancel-request)
        (let ((buffer (current-buffer)))
          (setq fim--timer
                (run-with-timer (/ fim-debounce-ms 1000.0) nil
                                (lambda ()
                                  (when (and (buffer-live-p buffer)
                                             (eq buffer (window-buffer (selected-window))))
                                    (with-current-buffer buffer
                                      (setq fim--timer nil)
                                      (fim-complete t)))))))))
    (setq fim--tick tick)))

;;;###autoload
(define-minor-mode fim-mode
  "Ghost-text completions from fim-server while you type.
Needs eglot connected to fim-server in this buffer (see `fim-setup').
\\<fim-active-map>While a suggestion is shown, \\[fim-accept] accepts it, \\[fim-next] and \
\\[fim-previous] cycle, \\[fim-dismiss] hides it."
  :lighter " fim"
  :keymap fim-mode-map
  (if fim-mode
      (progn
        (setq fim--tick (buffer-chars-modified-tick))
        (add-hook 'post-command-hook #'fim--post-command nil t))
    (remove-hook 'post-command-hook #'fim--post-command t)
    (fim-dismiss)))

;;;###autoload
(defun fim-toggle (&optional arg)
  "Turn requests on or off; with ARG, on when ARG is positive.
Tells the running servers too."
  (interactive "P")
  (setq fim-enable (if arg (> (prefix-numeric-value arg) 0) (not fim-enable)))
  (unless fim-enable
    (dolist (buffer (buffer-list))
      (with-current-buffer buffer
        (when fim-mode (fim-dismiss)))))
  (fim-signal-settings)
  (message "fim: completions %s" (if fim-enable "on" "off")))

(defun fim--maybe-enable ()
  (when (and (apply #'derived-mode-p fim-major-modes) (fim--server))
    (fim-mode 1)))

;;;###autoload
(defun fim-setup ()
  "Register fim-server with eglot, start it in `fim-major-modes' and turn on
`fim-mode' in the buffers it manages."
  (fim-register)
  (dolist (mode fim-major-modes)
    (add-hook (intern (format "%s-hook" mode)) #'eglot-ensure))
  (add-hook 'eglot-managed-mode-hook #'fim--maybe-enable))

(provide 'fim)
;;; fim.el ends here

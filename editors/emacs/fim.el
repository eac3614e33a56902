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
;;   suggestions, C-g or moving point dismisses it (`fim-motion-keys-accept'
;;   makes M-f and C-e accept its next word or line).  The mode line shows
;;   whether the model is loading, working on an answer, ready or failed;
;;   `M-x fim-status' says more.
;;
;;   (add-to-list 'load-path "/path/to/fim-server/editors/emacs")
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

(defcustom fim-block-ms nil
  "An automatic block stops at its first line break after this many milliseconds (0: no
limit); nil keeps the server's default."
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

(defcustom fim-min-confidence nil
  "The confidence gate: suggestions scored below this (0-1) are hidden.
nil: the server's default."
  :type '(choice (const nil) number))

(defcustom fim-candidates nil
  "How many distinct suggestions the server sends per request; M-] and M-[
\(`fim-next', `fim-previous') cycle through them, the first is shown first.
nil: the server's default (1 on CPU, 3 on CUDA)."
  :type '(choice (const :tag "Server default" nil) integer))

(defcustom fim-fim-template nil
  "openai backend: a raw prompt with the model's FIM tokens.
{prefix} and {suffix} stand for the code before and after the cursor."
  :type '(choice (const nil) string))

(defcustom fim-auto-trigger t
  "Non-nil: `fim-mode' asks while you type; nil: only `fim-complete' asks."
  :type 'boolean)

(defcustom fim-motion-keys-accept nil
  "Non-nil: while a suggestion is shown, M-f and C-e accept its next word or line.
Those keys then no longer move point while a suggestion is shown (and one
is shown nearly always), so this is off by default: `fim-accept-word' and
`fim-accept-line' are commands to bind to keys of your own."
  :type 'boolean)

(defface fim-ghost-face '((t :inherit shadow :slant italic))
  "Face of the ghost text.")

(defface fim-replaced-face '((t :strike-through t))
  "Face of the text after point a suggestion replaces, where it does not end with it.")

;;;; Server registration

(defconst fim--settings
  '((:contextTokens . fim-context-tokens) (:lineTokens . fim-line-tokens)
    (:blockTokens . fim-block-tokens) (:blockMs . fim-block-ms)
    (:crossFile . fim-cross-file)
    (:minConfidence . fim-min-confidence) (:candidates . fim-candidates)
    (:backend . fim-backend) (:endpoint . fim-endpoint)
    (:remoteModel . fim-remote-model) (:apiKeyEnv . fim-api-key-env)
    (:timeoutMs . fim-timeout-ms) (:headers . fim-headers)
    (:fimTemplate . fim-fim-template) (:debounceMs . fim-debounce-ms))
  "The server's settings sent when set, and the options that hold them.")

(defun fim-server-settings ()
  "The server's settings as a plist, keys set by the user only."
  (append
   (list :enable (if fim-enable t :json-false))
   (cl-loop for (key . option) in fim--settings
            for value = (symbol-value option)
            when value append (list key value))))

(defun fim--user-words (message)
  "MESSAGE from the server with its setting names (timeoutMs) as the options the
user sets (`fim-timeout-ms')."
  (let ((case-fold-search nil))
    (replace-regexp-in-string
     "\\_<[[:alpha:]]+\\_>"
     (lambda (word)
       (let ((option (alist-get (intern (concat ":" word)) fim--settings)))
         (if option (symbol-name option) word)))
     message t t)))

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

;;;; The model's state

(defvar fim-mode)
(defvar fim--showing)
(defvar fim--items)
(defvar fim--index)
(defvar-local fim--asked-while-loading nil
  "Non-nil when a request here was answered while the model was still loading.")

(defvar fim--states (make-hash-table :test #'eq :weakness 'key)
  "Per eglot connection to fim-server: (STATE . MESSAGE), STATE one of
`loading', `ready' and `error'.")

(defun fim--state (&optional server)
  "The model's state in SERVER (default: this buffer's): (STATE . MESSAGE) or nil."
  (let ((server (or server (fim--server))))
    (and server (gethash server fim--states))))

(defun fim--set-state (server state &optional message)
  (let ((old (car (gethash server fim--states))))
    (puthash server (cons state message) fim--states)
    (unless (eq old state)
      (force-mode-line-update t)
      (pcase state
        ('ready
         (message "fim: model ready")
         ;; A request made while the model loaded was answered empty and nothing else
         ;; asks again: ask now where the user is typing.
         (let ((buffer (window-buffer (selected-window))))
           (with-current-buffer buffer
             (when (and fim-mode fim-enable fim-auto-trigger fim--asked-while-loading
                        (not fim--showing) (eq (fim--server) server))
               (setq fim--asked-while-loading nil)
               (fim-complete t)))))
        ('error (message "fim: %s" message))))))

(defun fim--refresh-state (server)
  "Ask SERVER how its model is (fim/stats); while it loads, ask again shortly."
  (when (jsonrpc-running-p server)
    (jsonrpc-async-request
     server :fim/stats nil
     :success-fn
     (lambda (stats)
       (let ((error (plist-get stats :modelError)))
         (cond
          ((stringp error) (fim--set-state server 'error (concat "the model failed to load: " error)))
          ((eq (plist-get stats :modelReady) t) (fim--set-state server 'ready))
          (t (fim--set-state server 'loading)
             ;; eglot before 1.10 does not take $/progress: ask again.
             (run-with-timer 0.25 nil #'fim--refresh-state server)))))
     :error-fn (lambda (err) (fim--set-state server 'error (plist-get err :message)))
     :timeout-fn (lambda () (fim--set-state server 'error "fim/stats timed out")))))

(cl-defmethod eglot-handle-notification :around
  (server (method (eql window/showMessage)) &rest args &key message &allow-other-keys)
  "fim-server's messages name the options the user sets, not the server's settings."
  (if (and (stringp message)
           (equal (plist-get (eglot--server-info server) :name) "fim-server"))
      (apply #'cl-call-next-method server method
             (plist-put (copy-sequence args) :message (fim--user-words message)))
    (cl-call-next-method)))

(cl-defmethod eglot-handle-notification :after
  (server (_method (eql $/progress)) &key _token value &allow-other-keys)
  "The end of fim-server's model-loading progress: the model is ready or failed."
  (when (and (equal (plist-get (eglot--server-info server) :name) "fim-server")
             (equal (plist-get value :kind) "end"))
    (fim--refresh-state server)))

(defvar-local fim--pending nil
  "Non-nil while an answer has taken longer than `fim--pending-seconds'.")

(defconst fim--pending-seconds 0.25
  "How long a request may be outstanding before the mode line says the model is
working (a fast answer should not make it flicker on every key).")

(defun fim--lighter ()
  "Mode-line text of `fim-mode': the model's state.
\" fim:working\" while an answer takes long.  With several suggestions, which one
is shown: \" fim:ready 2/3\"."
  (let ((state (car (fim--state))))
    (cond ((not fim-enable) " fim:off")
          ((and (eq state 'ready) fim--pending) " fim:working")
          ((eq state 'ready)
           (if (and fim--showing (> (length fim--items) 1))
               (format " fim:ready %d/%d" (1+ fim--index) (length fim--items))
             " fim:ready"))
          ((eq state 'error) " fim:error")
          ((fim--server) " fim:loading")
          (t " fim:no-server"))))

(defun fim-status ()
  "Show fim-server's state here: command, version, model, backend, last latency."
  (interactive)
  (let* ((server (fim--server))
         (state (and server (fim--state server)))
         (stats (and server (jsonrpc-request server :fim/stats nil)))
         (info (and server (eglot--server-info server)))
         (text
          (if (not server)
              (format "fim: no fim-server in this buffer (command: %s)"
                      (mapconcat #'identity fim-server-command " "))
            (format "fim: %s%s | %s %s | command: %s | model: %s | backend: %s | completions %s | requests %d, last latency %.0f ms"
                    (car state)
                    (if (cdr state) (format " (%s)" (cdr state)) "")
                    (or (plist-get info :name) "fim-server") (or (plist-get info :version) "")
                    (mapconcat #'identity (process-command (jsonrpc--process server)) " ")
                    (or fim-model-path "the one shipped with the server")
                    (let ((backend (plist-get stats :backend)))
                      (if (stringp backend)
                          (let ((description (plist-get stats :backendDescription)))
                            (if (stringp description) (format "%s (%s)" backend description) backend))
                        "not reported"))
                    (if fim-enable "on" "off")
                    (or (plist-get stats :requests) 0)
                    (or (plist-get stats :lastLatencyMs) 0)))))
    (message "%s" text)
    text))

;;;; Ghost text

(defvar-local fim--overlay nil "Overlay showing the ghost text.")
(defvar-local fim--replaced-overlay nil
  "Overlay marking the text after point the suggestion replaces, when shown struck.")
(defvar-local fim--items nil
  "Vector of the suggestions: (TEXT . REPLACE).
REPLACE is the number of characters after point the suggestion replaces.")
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

(defvar fim-motion-accept-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "M-f") #'fim-accept-word)
    (define-key map (kbd "C-e") #'fim-accept-line)
    map)
  "Motion keys accepting part of a suggestion, with `fim-motion-keys-accept'.")

(defvar-local fim--motion-keys-active nil
  "Non-nil while a suggestion is shown and `fim-motion-keys-accept' is on.")

(add-to-list 'minor-mode-map-alist (cons 'fim--showing fim-active-map))
(add-to-list 'minor-mode-map-alist (cons 'fim--motion-keys-active fim-motion-accept-map))

(defvar fim-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "M-\\") #'fim-complete)
    map)
  "Keymap of `fim-mode'.")

(defun fim-current ()
  "Text of the suggestion shown, or nil."
  (and fim--showing (car (aref fim--items fim--index))))

(defun fim-current-replace ()
  "How many characters after point the suggestion shown replaces, or nil."
  (and fim--showing (cdr (aref fim--items fim--index))))

(defun fim--cancel-request ()
  (when fim--timer
    (cancel-timer fim--timer)
    (setq fim--timer nil))
  (fim--end-request))

(defun fim--end-request ()
  "Forget the request in flight; the mode line drops its pending state."
  (setq fim--request-id nil)
  (when fim--pending
    (setq fim--pending nil)
    (force-mode-line-update)))

(defun fim-dismiss ()
  "Hide the ghost text."
  (interactive)
  (fim--cancel-request)
  (dolist (overlay (list fim--overlay fim--replaced-overlay))
    (when overlay (delete-overlay overlay)))
  (setq fim--overlay nil fim--replaced-overlay nil)
  (when fim--showing (force-mode-line-update))
  (setq fim--showing nil fim--motion-keys-active nil fim--items nil fim--index 0))

(defun fim--show ()
  "Show the suggestion at `fim--index' after point.
Nil when nothing is left to show."
  (pcase-let* ((`(,text . ,replace) (aref fim--items fim--index))
               (end (min (+ (point) replace) (line-end-position)))
               (replaced (buffer-substring-no-properties (point) end))
               (shown text)
               (strike nil))
    (when (> end (point))
      (if (and (not (string-match-p "\n" text)) (string-suffix-p replaced text))
          ;; The suggestion ends with the text it replaces (a closing bracket): show the
          ;; part before it, so the line reads as it will after accepting.
          (setq shown (substring text 0 (- (length text) (length replaced))))
        (setq strike t)))
    (when fim--replaced-overlay
      (delete-overlay fim--replaced-overlay)
      (setq fim--replaced-overlay nil))
    (if (string-empty-p shown)
        nil
      (setq shown (copy-sequence shown))
      (add-text-properties 0 (length shown) '(face fim-ghost-face) shown)
      (unless fim--overlay
        (setq fim--overlay (make-overlay (point) (point) nil nil t)))
      (overlay-put fim--overlay 'fim t)
      (when strike
        (setq fim--replaced-overlay (make-overlay (point) end))
        (overlay-put fim--replaced-overlay 'face 'fim-replaced-face))
      (if (eolp)
          (progn
            ;; The cursor stays in front of the ghost text.
            (put-text-property 0 1 'cursor t shown)
            (move-overlay fim--overlay (point) (point))
            (overlay-put fim--overlay 'display nil)
            (overlay-put fim--overlay 'after-string shown))
        ;; Before text (the `)' of `foo(|)'), the cursor would be drawn on that text,
        ;; after the ghost text: the overlay covers the character after point and shows
        ;; the ghost text's first character in its place (the cursor is drawn there),
        ;; then the rest and the character itself.
        (let ((covered (buffer-substring (point) (1+ (point)))))
          (when strike
            (add-face-text-property 0 1 'fim-replaced-face t covered))
          (move-overlay fim--overlay (point) (1+ (point)))
          (overlay-put fim--overlay 'display (substring shown 0 1))
          (overlay-put fim--overlay 'after-string (concat (substring shown 1) covered))))
      (setq fim--motion-keys-active (and fim-motion-keys-accept t)
            fim--showing t))))

(defun fim--item (item point)
  "What ITEM does at POINT: (TEXT . REPLACE), TEXT added at POINT in place of the
REPLACE characters after it; nil when it does not fit the buffer."
  (let ((text (plist-get item :insertText))
        (range (plist-get item :range))
        (replace 0))
    (when (and (listp text) (plist-get text :value))
      (setq text (plist-get text :value))) ; a snippet: inserted as plain text
    (when (and (stringp text) range)
      (let* ((start (eglot--lsp-position-to-point (plist-get range :start)))
             (end (min (eglot--lsp-position-to-point (plist-get range :end))
                       (save-excursion (goto-char point) (line-end-position))))
             (typed (and (<= start point) (buffer-substring-no-properties start point))))
        ;; What is typed since the range's start must match the text's start; what the
        ;; range covers after point goes when the suggestion is accepted.
        (setq text (and typed (string-prefix-p typed text) (substring text (length typed))))
        (setq replace (max 0 (- end point)))))
    (and (stringp text) (not (string-empty-p text)) (cons text replace))))

(defun fim--handle (buffer point tick id result)
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (when (and (eql id fim--request-id)
                 (= point (point))
                 (= tick (buffer-chars-modified-tick)))
        (fim--end-request)
        (when (eq (car (fim--state)) 'loading)
          (setq fim--asked-while-loading t))
        (let* ((items (if (vectorp result) result (plist-get result :items)))
               ;; The server sends distinct texts; two may still insert the same here.
               (shown (cl-remove-duplicates
                       (delq nil (mapcar (lambda (item) (fim--item item point))
                                         (append items nil)))
                       :test #'equal :from-end t)))
          (if (null shown)
              (fim-dismiss)
            (setq fim--items (vconcat shown) fim--index 0)
            (if (fim--show) (force-mode-line-update) (fim-dismiss))))))))

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
        ;; A slow model (a CPU model, a remote server): the mode line says it works.
        (run-with-timer fim--pending-seconds nil
                        (lambda ()
                          (when (buffer-live-p buffer)
                            (with-current-buffer buffer
                              (when (eql id fim--request-id)
                                (setq fim--pending t)
                                (force-mode-line-update))))))
        (jsonrpc-async-request
         server :textDocument/inlineCompletion params
         :success-fn (lambda (result) (fim--handle buffer point tick id result))
         :error-fn (lambda (err)
                     (when (buffer-live-p buffer)
                       (with-current-buffer buffer
                         (when (eql id fim--request-id) (fim--end-request))))
                     (unless (eq (plist-get err :code) -32800) ; cancelled
                       (message "fim: %s" (plist-get err :message))))
         :timeout-fn #'ignore))))))

(defun fim--next-part (text part)
  "The start of TEXT a partial accept takes.
PART `word': spaces, then punctuation, then word characters (\"(values\" of
\"(values)\"); `line': to the end of the line (a leading line break and the next
line); nil: all of TEXT."
  (let ((regexp (pcase part
                  ('word "\\`[ \t\n]*[^[:alnum:]_ \t\n]*[[:alnum:]_]*")
                  ('line "\\`\n?[^\n]*"))))
    (if (and regexp (string-match regexp text)) (match-string 0 text) text)))

(defun fim--notify-accepted (text partial)
  "Tell the server the user accepted TEXT.
PARTIAL non-nil: a word or line of a suggestion."
  (let ((server (fim--server)))
    (when server
      (jsonrpc-notify server :fim/accepted
                      (list :uri (plist-get (eglot--TextDocumentIdentifier) :uri)
                            :chars (length text)
                            :partial (if partial t :json-false))))))

(defun fim--accept (part)
  "Accept the suggestion shown, or with PART (`word', `line') only its start."
  (let ((item (and fim--showing (aref fim--items fim--index))))
    (if (not item)
        (fim-dismiss)
      (pcase-let* ((`(,text . ,replace) item)
                   (piece (fim--next-part text part))
                   (whole (or (string= piece text) (string-empty-p piece))))
        (when whole (setq piece text))
        (fim-dismiss)
        (when whole
          ;; The suggestion's range covers text after point (a closing bracket): it goes.
          (delete-region (point) (min (+ (point) replace) (line-end-position))))
        (insert piece)
        (setq fim--tick (buffer-chars-modified-tick))
        (unless whole
          ;; The rest stays shown (and still replaces the same text after point).
          (setq fim--items (vector (cons (substring text (length piece)) replace))
                fim--index 0)
          (unless (fim--show) (fim-dismiss)))
        (fim--notify-accepted piece part)))))

(defun fim-accept ()
  "Insert the suggestion shown, in place of the text after point it replaces."
  (interactive)
  (fim--accept nil))

(defun fim-accept-word ()
  "Insert the next word of the suggestion shown; the rest stays shown."
  (interactive)
  (fim--accept 'word))

(defun fim-accept-line ()
  "Insert the next line of the suggestion shown; the rest stays shown."
  (interactive)
  (fim--accept 'line))

(defun fim--cycle (step)
  "Show the suggestion STEP places on from the one shown.
Skips those with nothing to show here."
  (when fim--showing
    (let ((start fim--index) (shown nil))
      (while (and (not shown)
                  (progn (setq fim--index (mod (+ fim--index step) (length fim--items)))
                         (/= fim--index start)))
        (setq shown (fim--show)))
      (unless shown
        (setq fim--index start)
        (fim--show)))
    (force-mode-line-update)))

(defun fim-next ()
  "Show the next suggestion."
  (interactive)
  (fim--cycle 1))

(defun fim-previous ()
  "Show the previous suggestion."
  (interactive)
  (fim--cycle -1))

(defvar-local fim--point nil "Point after the last command.")
(defvar-local fim--interrupted nil
  "Non-nil when the last command cancelled a request not yet sent.")

(defun fim--pre-command ()
  ;; Debounce: a new command cancels the pending request; post-command-hook schedules
  ;; another.  (The timer would otherwise fire while a command waits, such as eglot's
  ;; completion-at-point, and the server answers only the newest request.)
  (setq fim--interrupted (and fim--timer t))
  (when fim--timer
    (cancel-timer fim--timer)
    (setq fim--timer nil)))

(defun fim--schedule ()
  "Ask for a suggestion at point once the user has paused for `fim-debounce-ms'."
  (fim--cancel-request)
  (let ((buffer (current-buffer)))
    (setq fim--timer
          (run-with-timer (/ fim-debounce-ms 1000.0) nil
                          (lambda ()
                            (when (and (buffer-live-p buffer)
                                       (eq buffer (window-buffer (selected-window))))
                              (with-current-buffer buffer
                                (setq fim--timer nil)
                                (fim-complete t))))))))

(defun fim--post-command ()
  (let ((tick (buffer-chars-modified-tick))
        (moved (not (eql (point) fim--point))))
    (unless (memq this-command '(fim-accept fim-accept-word fim-accept-line fim-next
                                 fim-previous fim-complete fim-dismiss))
      (when (and fim--showing
                 (or (not (eql tick fim--tick))
                     (not (eql (point) (overlay-start fim--overlay)))))
        (fim-dismiss))
      ;; Typing, or moving point (C-b into the brackets just closed): ask where point
      ;; is now.  A command that did neither (a scroll, a key of another mode) asks
      ;; again for a request it interrupted, so the answer for where point still is
      ;; comes anyway.
      (when (and fim-enable fim-auto-trigger (not fim--showing)
                 (or (not (eql tick fim--tick)) moved fim--interrupted))
        (fim--schedule)))
    (setq fim--tick tick fim--point (point) fim--interrupted nil)))

;;;###autoload
(define-minor-mode fim-mode
  "Ghost-text completions from fim-server while you type.
Needs eglot connected to fim-server in this buffer (see `fim-setup').
\\<fim-active-map>While a suggestion is shown, \\[fim-accept] accepts it,
\\[fim-accept-word] and \\[fim-accept-line] its next word or line,
\\[fim-next] and \\[fim-previous] cycle, \\[fim-dismiss] hides it.
The lighter shows the model's state: loading, ready, error."
  :lighter (:eval (fim--lighter))
  :keymap fim-mode-map
  (if fim-mode
      (let ((server (fim--server)))
        (setq fim--tick (buffer-chars-modified-tick) fim--point (point))
        (add-hook 'pre-command-hook #'fim--pre-command nil t)
        (add-hook 'post-command-hook #'fim--post-command nil t)
        (when (and server (not (fim--state server)))
          (puthash server (cons 'loading nil) fim--states)
          (fim--refresh-state server))
        ;; Text typed before eglot connected (the server takes a moment to start):
        ;; nothing asked for it, so ask now.
        (when (and fim-enable fim-auto-trigger (buffer-modified-p)
                   (eq (current-buffer) (window-buffer (selected-window))))
          (fim--schedule)))
    (remove-hook 'pre-command-hook #'fim--pre-command t)
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
  "Turn `fim-mode' on where eglot now manages a buffer with fim-server.
Off where it stopped managing it; run by `eglot-managed-mode-hook'."
  (if (and (apply #'derived-mode-p fim-major-modes) (fim--server))
      (fim-mode 1)
    (when fim-mode (fim-mode -1))))

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

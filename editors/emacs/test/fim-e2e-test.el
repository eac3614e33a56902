;;; fim-e2e-test.el --- fim.el driven in Emacs against the real server  -*- lexical-binding: t; -*-

;; Run by tests/editors/test_emacs.py:
;;   emacs --batch -l fim.el -l fim-e2e-test.el -f ert-run-tests-batch-and-exit
;; with FIM_TEST_SERVER (the fim-server program), FIM_TEST_FILE (the Python file to
;; edit), FIM_TEST_LINE (1-based line to type at the end of), FIM_TEST_TYPED (what to
;; type) and FIM_TEST_EXPECTED (what the server itself completes there).
;; Keys go through `execute-kbd-macro': Emacs's command loop, keymaps and
;; post-command-hook, as if typed.

;;; Code:

(require 'ert)
(require 'fim)

(defun fim-test--env (name)
  (or (getenv name) (error "%s is not set" name)))

(defun fim-test--wait (predicate seconds what)
  "Let timers and the server's replies run until PREDICATE holds."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate)))
                (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or value (ert-fail (format "timed out after %s s waiting for %s" seconds what)))))

(defun fim-test--type (keys)
  (execute-kbd-macro (kbd keys)))

(defun fim-test--ghost ()
  "The ghost text shown after point, from the overlay itself, or nil."
  (let ((overlays (cl-remove-if-not (lambda (o) (overlay-get o 'fim))
                                    (overlays-in (point-min) (point-max)))))
    (when overlays
      (should (= (length overlays) 1))
      (should (= (overlay-start (car overlays)) (point)))
      (substring-no-properties (overlay-get (car overlays) 'after-string)))))

(defmacro fim-test--with-buffer (&rest body)
  "Visit FIM_TEST_FILE with eglot connected to fim-server, fim-mode on."
  (declare (indent 0))
  `(let ((fim-server-command (list (fim-test--env "FIM_TEST_SERVER")))
         (fim-debounce-ms 50)
         (fim-enable t)
         (eglot-server-programs eglot-server-programs)
         (eglot-autoreconnect nil)
         (buffer nil))
     (fim-register)
     (unwind-protect
         (progn
           ;; The command loop types into the selected window's buffer.
           (setq buffer (find-file (fim-test--env "FIM_TEST_FILE")))
           (should (derived-mode-p 'python-mode))
           (apply #'eglot (eglot--guess-contact))
           (fim-test--wait #'fim--server 60 "eglot to connect to fim-server")
           (fim-mode 1)
           ;; Wait for the model as a person would wait for the first suggestion.
           (fim-test--wait
            (lambda ()
              (let ((stats (jsonrpc-request (fim--server) :fim/stats nil)))
                (or (eq (plist-get stats :modelReady) t)
                    (when (stringp (plist-get stats :modelError))
                      (ert-fail (plist-get stats :modelError))))))
            180 "the model to load")
           (goto-char (point-min))
           (forward-line (1- (string-to-number (fim-test--env "FIM_TEST_LINE"))))
           (end-of-line)
           ,@body)
       (when buffer
         (with-current-buffer buffer
           (let ((server (ignore-errors (fim--server))))
             (when server (ignore-errors (eglot-shutdown server))))
           (set-buffer-modified-p nil))
         (kill-buffer buffer)))))

(ert-deftest fim-ghost-text-as-you-type-then-accept ()
  (fim-test--with-buffer
    (let* ((typed (fim-test--env "FIM_TEST_TYPED"))
           (expected (fim-test--env "FIM_TEST_EXPECTED"))
           (line-before (buffer-substring-no-properties (line-beginning-position) (point))))
      (fim-test--type (mapconcat (lambda (c) (if (eq c ?\s) "SPC" (string c))) typed " "))
      (should (equal (buffer-substring-no-properties (line-beginning-position) (point))
                     (concat line-before typed)))
      (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text") expected))
      (should (equal (fim-current) expected))
      ;; Ghost text is display only.
      (should (equal (buffer-substring-no-properties (line-beginning-position) (line-end-position))
                     (concat line-before typed)))
      ;; C-g dismisses; M-\ asks again at the same place: the same suggestion.
      (fim-test--type "C-g")
      (should-not (fim-test--ghost))
      (fim-test--type "M-\\")
      (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text after M-\\")
                     expected))
      ;; M-] cycles among the suggestions (the server sends one: it stays).
      (fim-test--type "M-]")
      (should (equal (fim-test--ghost) expected))
      ;; Moving point dismisses.
      (fim-test--type "C-b")
      (should-not (fim-test--ghost))
      (fim-test--type "C-e M-\\")
      (fim-test--wait #'fim-test--ghost 60 "the ghost text after M-\\")
      ;; TAB accepts: exactly the suggestion is inserted, point after it.
      (fim-test--type "TAB")
      (should-not (fim-test--ghost))
      (should (equal (buffer-substring-no-properties (line-beginning-position) (point))
                     (concat line-before typed expected)))
      (should (= (point) (line-end-position))))))

(ert-deftest fim-toggle-off-stops-requests ()
  (fim-test--with-buffer
    (let ((before (plist-get (jsonrpc-request (fim--server) :fim/stats nil) :requests)))
      (fim-toggle -1)
      (unwind-protect
          (progn
            (fim-test--type (fim-test--env "FIM_TEST_TYPED"))
            (fim-test--type "M-\\")
            (let ((deadline (+ (float-time) 1.0)))
              (while (< (float-time) deadline) (accept-process-output nil 0.05)))
            (should-not (fim-test--ghost))
            (should (equal (plist-get (jsonrpc-request (fim--server) :fim/stats nil) :requests)
                           before)))
        (fim-toggle 1)))))

(ert-deftest fim-eglot-completion-at-point-offers-the-same-text ()
  ;; Without fim-mode's ghost text: eglot's own completion-at-point gets the server's
  ;; textDocument/completion item, which inserts the same text.
  (fim-test--with-buffer
    (fim-mode -1)
    (let ((typed (fim-test--env "FIM_TEST_TYPED"))
          (expected (fim-test--env "FIM_TEST_EXPECTED")))
      (insert typed)
      (let* ((capf (eglot-completion-at-point))
             (table (nth 2 capf))
             (candidates (all-completions "" table)))
        (should (member (car (split-string expected "\n")) candidates))))))

;;; fim-e2e-test.el ends here

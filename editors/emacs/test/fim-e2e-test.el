;;; fim-e2e-test.el --- fim.el driven in Emacs against the real server  -*- lexical-binding: t; -*-

;; Run by tests/editors/test_emacs.py:
;;   emacs --batch -l ~/.emacs.d/init.el -l fim-e2e-test.el -f ert-run-tests-batch-and-exit
;; where init.el is examples/editors/init.el with its paths filled in, as a user would
;; (it runs `fim-setup'), and the current directory holds the files to edit. Environment:
;;   FIM_TEST_LINE, FIM_TEST_TYPED      1-based line of mean.py to type at the end of, and what
;;   FIM_TEST_EXPECTED                  what the server itself completes there
;;   FIM_TEST_CANDIDATES               the `fim-candidates' the cycling test sets
;;   FIM_TEST_CANDIDATE_TEXTS           JSON list of what the server offers there with it
;;   FIM_TEST_WORD, FIM_TEST_WORD_LINE  the expected completion's next word, and the next
;;                                      line of what is left after it
;;   FIM_TEST_BRACKET_LINE              line of join.py to type "(" at the end of
;;   FIM_TEST_BRACKET, FIM_TEST_BRACKET_REPLACE
;;                                      the completion between the brackets and how many
;;                                      characters after point it replaces
;;   FIM_TEST_GATE_PYTHONPATH, FIM_TEST_GATE
;;                                      what makes a server's model load wait for a file
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

(defun fim-test--idle (seconds)
  (let ((deadline (+ (float-time) seconds)))
    (while (< (float-time) deadline) (accept-process-output nil 0.05))))

(defun fim-test--type (keys)
  (execute-kbd-macro (kbd keys)))

(defun fim-test--type-text (text)
  (execute-kbd-macro (vconcat text)))

(defun fim-test--ghost ()
  "The ghost text shown after point, from the overlay itself, or nil."
  (let ((overlays (cl-remove-if-not (lambda (o) (overlay-get o 'fim))
                                    (overlays-in (point-min) (point-max)))))
    (when overlays
      (should (= (length overlays) 1))
      (let* ((overlay (car overlays))
             ;; Before text, the overlay covers the character after point and shows the
             ;; ghost text's first character in its place, then the rest and it.
             (covered (buffer-substring-no-properties (overlay-start overlay)
                                                      (overlay-end overlay)))
             (shown (concat (or (overlay-get overlay 'display) "")
                            (overlay-get overlay 'after-string))))
        (should (= (overlay-start overlay) (point)))
        (should (string-suffix-p covered shown))
        (substring-no-properties shown 0 (- (length shown) (length covered)))))))

(defun fim-test--line-before-point ()
  (buffer-substring-no-properties (line-beginning-position) (point)))

(defun fim-test--line ()
  (buffer-substring-no-properties (line-beginning-position) (line-end-position)))

(defun fim-test--mode-line ()
  "fim-mode's lighter, as the mode line shows it (`format-mode-line' is empty in batch)."
  (let ((lighter (cadr (assq 'fim-mode minor-mode-alist))))
    (should (eq (car-safe lighter) :eval))
    (eval (cadr lighter) t)))

(defvar fim-test--notifications nil "(METHOD . PARAMS) of every notification sent.")

(defun fim-test--record (_connection method &optional params)
  (push (cons method params) fim-test--notifications))

(defun fim-test--accepted ()
  "The params of the fim/accepted notifications sent, oldest first."
  (mapcar #'cdr (reverse (cl-remove-if-not (lambda (n) (eq (car n) :fim/accepted))
                                           fim-test--notifications))))

(defmacro fim-test--visit (file line gated &rest body)
  "Visit FILE with C-x C-f as a user would; `fim-setup' (from init.el) makes eglot
start fim-server there and turns on `fim-mode'. Wait for it (and, unless GATED, for the
model), go to the end of LINE, run BODY. GATED t: the server's model load waits for
FIM_TEST_GATE; `no-wait': do not wait for the model."
  (declare (indent 3))
  `(let ((buffer nil))
     (setq fim-test--notifications nil)
     (advice-add 'jsonrpc-notify :before #'fim-test--record)
     (unwind-protect
         (progn
           (let ((process-environment
                  (if (eq ,gated t)
                      (append (list (concat "PYTHONPATH=" (fim-test--env "FIM_TEST_GATE_PYTHONPATH"))
                                    (concat "FIM_TEST_LOAD_GATE=" (fim-test--env "FIM_TEST_GATE")))
                              process-environment)
                    process-environment)))
             ;; eglot-ensure (python-mode-hook) connects after the command that visited.
             (fim-test--type (concat "C-x C-f " ,file " RET")))
           (setq buffer (current-buffer))
           (should (equal (file-name-nondirectory buffer-file-name) ,file))
           (should (derived-mode-p 'python-mode))
           (fim-test--wait (lambda () (buffer-local-value 'fim-mode buffer))
                           60 "eglot to connect and fim-mode to come on")
           (should (fim--server))
           (unless ,gated
             ;; Wait for the model as a person would wait for the first suggestion.
             (fim-test--wait (lambda () (memq (car (fim--state)) '(ready error)))
                             180 "the model to load")
             (should (equal (fim--state) '(ready))))
           (goto-char (point-min))
           (forward-line (1- ,line))
           (end-of-line)
           ,@body)
       (advice-remove 'jsonrpc-notify #'fim-test--record)
       (when buffer
         (with-current-buffer buffer
           (let ((server (ignore-errors (fim--server))))
             (when server (ignore-errors (eglot-shutdown server))))
           (set-buffer-modified-p nil))
         (kill-buffer buffer)))))

(defconst fim-test--line (string-to-number (fim-test--env "FIM_TEST_LINE")))

(ert-deftest fim-ghost-text-as-you-type-then-accept ()
  (fim-test--visit "mean.py" fim-test--line nil
    (let* ((typed (fim-test--env "FIM_TEST_TYPED"))
           (expected (fim-test--env "FIM_TEST_EXPECTED"))
           (line-before (fim-test--line-before-point)))
      (should (string-match-p " fim:ready" (fim-test--mode-line)))
      (fim-test--type-text typed)
      (should (equal (fim-test--line-before-point) (concat line-before typed)))
      (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text") expected))
      (should (equal (fim-current) expected))
      ;; Ghost text is display only.
      (should (equal (fim-test--line) (concat line-before typed)))
      ;; C-g dismisses; M-\ asks again at the same place: the same suggestion.
      (fim-test--type "C-g")
      (should-not (fim-test--ghost))
      (fim-test--type "M-\\")
      (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text after M-\\")
                     expected))
      ;; The server sent one suggestion (the default on CPU): M-] keeps it.
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
      (should (equal (fim-test--line-before-point) (concat line-before typed expected)))
      (should (= (point) (line-end-position)))
      ;; The server is told.
      (should (equal (fim-test--accepted)
                     (list (list :uri (plist-get (eglot--TextDocumentIdentifier) :uri)
                                 :chars (length expected) :partial :json-false))))
      (let ((stats (jsonrpc-request (fim--server) :fim/stats nil)))
        (should (equal (list (plist-get stats :accepted) (plist-get stats :acceptedChars))
                       (list 1 (length expected)))))
      ;; M-x fim-status: the state, the server, its command and the last latency.
      (let ((status (fim-status)))
        (should (string-match-p "\\`fim: ready" status))
        (should (string-match-p (regexp-quote (car fim-server-command)) status))
        (should (string-match-p "last latency [0-9]+ ms" status))))))

(ert-deftest fim-several-suggestions-cycle-then-accept ()
  ;; With `fim-candidates' the server offers several distinct suggestions: the first is
  ;; shown, M-] and M-[ cycle through them (wrapping), the mode line says which one is
  ;; shown, and TAB accepts the one shown.
  (let ((fim-candidates (string-to-number (fim-test--env "FIM_TEST_CANDIDATES")))
        (candidates (append (json-parse-string (fim-test--env "FIM_TEST_CANDIDATE_TEXTS")) nil)))
    (fim-test--visit "mean.py" fim-test--line nil
      (let* ((typed (fim-test--env "FIM_TEST_TYPED"))
             (count (length candidates))
             (line-before (fim-test--line-before-point))
             (lighter (lambda (n) (format " fim:ready %d/%d" n count))))
        (should (>= count 2))
        (fim-test--type-text typed)
        (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text") (nth 0 candidates)))
        (should (equal (fim-test--mode-line) (funcall lighter 1)))
        (fim-test--type "M-]")
        (should (equal (fim-test--ghost) (nth 1 candidates)))
        (should (equal (fim-current) (nth 1 candidates)))
        (should (equal (fim-test--mode-line) (funcall lighter 2)))
        (fim-test--type "M-[")
        (should (equal (fim-test--ghost) (nth 0 candidates)))
        (should (equal (fim-test--mode-line) (funcall lighter 1)))
        ;; Back from the first: the last.
        (fim-test--type "M-[")
        (should (equal (fim-test--ghost) (car (last candidates))))
        (should (equal (fim-test--mode-line) (funcall lighter count)))
        ;; Cycling is display only: the buffer holds what was typed.
        (should (equal (fim-test--line) (concat line-before typed)))
        ;; Forward from the last: the first, then the second; TAB inserts it.
        (fim-test--type "M-]")
        (should (equal (fim-test--ghost) (nth 0 candidates)))
        (fim-test--type "M-]")
        (should (equal (fim-test--ghost) (nth 1 candidates)))
        (fim-test--type "TAB")
        (should-not (fim-test--ghost))
        (should (equal (fim-test--line-before-point) (concat line-before typed (nth 1 candidates))))
        (should (equal (fim-test--mode-line) " fim:ready"))
        (should (equal (mapcar (lambda (p) (plist-get p :chars)) (fim-test--accepted))
                       (list (length (nth 1 candidates)))))))))

(ert-deftest fim-partial-accept-word-then-line ()
  ;; M-f and C-e accept parts only where the user asked for it (`fim-motion-keys-accept').
  (let ((fim-motion-keys-accept t))
  (fim-test--visit "mean.py" fim-test--line nil
    (let* ((typed (fim-test--env "FIM_TEST_TYPED"))
           (expected (fim-test--env "FIM_TEST_EXPECTED"))
           (word (fim-test--env "FIM_TEST_WORD"))
           (word-line (fim-test--env "FIM_TEST_WORD_LINE"))
           (line-before (fim-test--line-before-point)))
      (fim-test--type-text typed)
      (should (equal (fim-test--wait #'fim-test--ghost 60 "the ghost text") expected))
      ;; M-f: the next word goes in, the rest stays shown after it.
      (fim-test--type "M-f")
      (should (equal (fim-test--line-before-point) (concat line-before typed word)))
      (should (equal (fim-test--ghost) (substring expected (length word))))
      ;; C-e: the next line of what is left.
      (fim-test--type "C-e")
      (should (equal (fim-test--line-before-point) (concat line-before typed word word-line)))
      (when (equal (concat word word-line) expected)
        (should-not (fim-test--ghost)))
      (should (equal (mapcar (lambda (p) (list (plist-get p :chars) (plist-get p :partial)))
                             (fim-test--accepted))
                     (list (list (length word) t) (list (length word-line) t))))
      (let ((stats (jsonrpc-request (fim--server) :fim/stats nil)))
        (should (equal (list (plist-get stats :accepted) (plist-get stats :acceptedChars))
                       (list 2 (+ (length word) (length word-line))))))))))

(ert-deftest fim-motion-keys-move-while-a-suggestion-is-shown ()
  ;; By default C-e and M-f move point as always, suggestion or not: nothing is inserted.
  (fim-test--visit "join.py" (string-to-number (fim-test--env "FIM_TEST_BRACKET_LINE")) nil
    (let ((line-before (fim-test--line-before-point)))
      (electric-pair-local-mode 1)
      (fim-test--type "(")
      (fim-test--wait #'fim-test--ghost 60 "the ghost text between the brackets")
      (fim-test--type "C-e")
      (should (equal (fim-test--line) (concat line-before "()")))
      (should (= (point) (line-end-position)))
      (fim-test--type "C-b")
      (fim-test--wait #'fim-test--ghost 60 "the ghost text between the brackets again")
      (let ((text (buffer-string)) (from (point)))
        (fim-test--type "M-f")
        (should (equal (buffer-string) text))
        (should (> (point) from)))
      (should-not (fim-test--accepted)))))

(ert-deftest fim-accept-before-an-auto-closed-bracket-replaces-it ()
  (fim-test--visit "join.py" (string-to-number (fim-test--env "FIM_TEST_BRACKET_LINE")) nil
    (let* ((completion (fim-test--env "FIM_TEST_BRACKET"))
           (replace (string-to-number (fim-test--env "FIM_TEST_BRACKET_REPLACE")))
           (line-before (fim-test--line-before-point)))
      ;; Emacs's own bracket pairing closes the "(" as it is typed.
      (electric-pair-local-mode 1)
      (fim-test--type "(")
      (should (equal (fim-test--line) (concat line-before "()")))
      (should (equal (fim-test--line-before-point) (concat line-before "(")))
      (let* ((cursor (point))
             (replaced (buffer-substring-no-properties cursor (+ cursor replace)))
             (after (buffer-substring-no-properties (+ cursor replace) (line-end-position))))
        (fim-test--wait #'fim-test--ghost 60 "the ghost text between the brackets")
        (should (equal (fim-current) completion))
        (should (equal (fim-current-replace) replace))
        ;; What is shown reads as the line will after accepting: the suggestion without
        ;; the bracket it replaces, which stays in view right after it.
        (when (string-suffix-p replaced completion)
          (should (equal (fim-test--ghost)
                         (substring completion 0 (- (length completion) (length replaced))))))
        (fim-test--type "TAB")
        (should (equal (fim-test--line) (concat line-before "(" completion after)))
        (should (= (point) (+ cursor (length completion))))))))

(ert-deftest fim-asks-again-when-the-model-is-ready-and-shows-the-state ()
  (fim-test--visit "mean.py" fim-test--line t
    (let ((typed (fim-test--env "FIM_TEST_TYPED"))
          (expected (fim-test--env "FIM_TEST_EXPECTED")))
      (should (equal (fim--state) '(loading)))
      (should (string-match-p " fim:loading" (fim-test--mode-line)))
      ;; Typed while the model loads: the request is answered empty.
      (fim-test--type-text typed)
      (fim-test--wait (lambda () (>= (plist-get (jsonrpc-request (fim--server) :fim/stats nil)
                                               :requests)
                                    1))
                      10 "a request while the model loads")
      (should (eq (plist-get (jsonrpc-request (fim--server) :fim/stats nil) :modelReady)
                  :json-false))
      (should-not (fim-test--ghost))
      ;; The model finishes loading; no key is pressed: fim-mode asks again by itself.
      (with-temp-file (fim-test--env "FIM_TEST_GATE"))
      (should (equal (fim-test--wait #'fim-test--ghost 180 "the ghost text once the model is ready")
                     expected))
      (should (equal (fim--state) '(ready)))
      (should (string-match-p " fim:ready" (fim-test--mode-line))))))

(ert-deftest fim-toggle-off-stops-requests ()
  (fim-test--visit "mean.py" fim-test--line nil
    (let ((before (plist-get (jsonrpc-request (fim--server) :fim/stats nil) :requests)))
      (fim-toggle -1)
      (unwind-protect
          (progn
            (should (string-match-p " fim:off" (fim-test--mode-line)))
            (fim-test--type-text (fim-test--env "FIM_TEST_TYPED"))
            (fim-test--type "M-\\")
            (fim-test--idle 1.0)
            (should-not (fim-test--ghost))
            (should (equal (plist-get (jsonrpc-request (fim--server) :fim/stats nil) :requests)
                           before)))
        (fim-toggle 1)))))

(ert-deftest fim-completion-at-point-after-a-partial-word ()
  ;; eglot's completion-at-point (C-M-i) gets the server's textDocument/completion item
  ;; after the word typed so far, and inserts the same text as the ghost text.
  (fim-test--visit "mean.py" fim-test--line nil
    (let ((typed (fim-test--env "FIM_TEST_TYPED"))
          (expected (fim-test--env "FIM_TEST_EXPECTED"))
          (line-before (fim-test--line-before-point)))
      (fim-test--type-text typed)
      (fim-test--type "C-M-i")
      (should (equal (fim-test--line) (concat line-before typed (car (split-string expected "\n")))))
      (when (not (string-match-p "\n" expected))
        (should (= (point) (line-end-position)))))))

(ert-deftest fim-a-model-that-fails-to-load-shows-as-an-error ()
  (let ((fim-model-path (expand-file-name "no-such-checkpoint" temporary-file-directory)))
    (fim-test--visit "mean.py" fim-test--line 'no-wait
      (fim-test--wait (lambda () (eq (car (fim--state)) 'error)) 60 "the error state")
      (should (string-match-p (regexp-quote fim-model-path) (cdr (fim--state))))
      (should (string-match-p " fim:error" (fim-test--mode-line)))
      (should (string-match-p "\\`fim: error" (fim-status))))))

;;; fim-e2e-test.el ends here

;; `_start` returns normally: exit status 0.
(module (func (export "_start")))

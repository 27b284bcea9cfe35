;; Declares 4000 pages (250 MiB) of memory up front.
(module (memory (export "memory") 4000) (func (export "_start")))

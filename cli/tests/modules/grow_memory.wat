;; Grows memory one page (64 KiB) at a time until memory.grow returns -1, then exits with the
;; number of MiB granted (pages / 16, at most 255 with `--memory` below 256). Must never trap.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $pages i32)
    (block $full
      (loop $grow
        (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $pages (i32.add (local.get $pages) (i32.const 1)))
        (br $grow)))
    (call $proc_exit (i32.shr_u (local.get $pages) (i32.const 4)))))

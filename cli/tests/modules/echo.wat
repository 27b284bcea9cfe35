;; Copies stdin to stdout until end of file, then exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $n i32)
    (loop $copy
      ;; iovec at 0: buffer 1024, length 60000
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 60000))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (then (call $proc_exit (i32.const 2))))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.eqz (local.get $n)) (then (call $proc_exit (i32.const 0))))
      (i32.store (i32.const 4) (local.get $n))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)) (then (call $proc_exit (i32.const 3))))
      (br $copy))))

;; Exits with the decimal number of the environment entry `EXIT=<n>` (99 when absent).
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $parse (param $p i32) (result i32)
    (local $n i32) (local $c i32)
    (block $done
      (loop $digits
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    (local.get $n))
  (func (export "_start")
    (local $i i32) (local $s i32)
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $environ_get (i32.const 16) (i32.const 2048)))
    (block $none
      (loop $entries
        (br_if $none (i32.ge_u (local.get $i) (i32.load (i32.const 0))))
        (local.set $s (i32.load (i32.add (i32.const 16) (i32.mul (local.get $i) (i32.const 4)))))
        ;; "EXIT=" is 0x45 0x58 0x49 0x54 0x3d
        (if (i32.and
              (i32.eq (i32.load (local.get $s)) (i32.const 0x54495845))
              (i32.eq (i32.load8_u (i32.add (local.get $s) (i32.const 4))) (i32.const 0x3d)))
          (then (call $proc_exit (call $parse (i32.add (local.get $s) (i32.const 5))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $entries)))
    (call $proc_exit (i32.const 99))))
